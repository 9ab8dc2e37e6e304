"""The real user-mode QEMU: the flags an emulated process sees, and the nightly on one machine.

Needs `qemu-x86_64` (Debian's qemu-user). Without it these tests skip, except where
QPARITY_REQUIRE_QEMU=1 (set by .ci/setup.d/30-qemu.sh), which turns the skip into a failure so
CI cannot pass without running them. Emulation is slow (17-50x CPU time, more in wall time), so the nightly
runs on 2 demo images, ort-cpu only, one emulated class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from builders import run_cli

from harness import emulate
from harness.errors import QParityError

ROOT = Path(__file__).resolve().parents[1]


def _require_qemu() -> None:
    if emulate.qemu_binary() is None:
        msg = "qemu-x86_64 not installed (apt-get install qemu-user)"
        if os.environ.get("QPARITY_REQUIRE_QEMU", "").strip() in {"1", "true", "yes"}:
            pytest.fail(f"QPARITY_REQUIRE_QEMU is set but {msg}")
        pytest.skip(msg)


@pytest.fixture(autouse=True)
def qemu():
    _require_qemu()


def test_an_emulated_avx2_cpu_shows_avx2_and_nothing_past_it():
    seen = emulate.check("avx2")
    assert {"AVX", "AVX2", "FMA3"} <= set(seen["flags_seen"])
    assert not {"AVX512F", "AVX512VNNI"} & set(seen["flags_seen"])
    assert seen["class_seen"] == "avx2"


def test_a_class_qemu_cannot_show_is_refused_never_run_under_its_name():
    """QEMU 7.2 (Debian 12) implements nothing past AVX2: the AVX-512 classes must be refused.
    A later QEMU that does emulate them must then show their flags (and pass the check)."""
    for name in ("avx512", "avx512-vnni"):
        seen = emulate.probe(name)
        if seen["missing"]:
            with pytest.raises(QParityError, match="cannot be emulated here"):
                emulate.check(name)
            assert set(seen["missing"]) <= set(emulate.CLASSES[name].needs)
        else:
            assert set(emulate.CLASSES[name].needs) <= set(seen["flags_seen"])


def test_emulated_nightly_on_the_demo(demo_assets, tmp_path):
    """Native plus the emulated AVX2 class, one cross-platform verdict, on 2 demo images."""
    model_dir, data = demo_assets
    out = tmp_path / "en"
    p = run_cli("emulate", "nightly", "--model", model_dir / "model-int8.onnx", "--data", data,
                "--out", out, "--limit", "2", "--classes", "avx2", "--engines", "ort-cpu",
                "--warmup", "1", "--runs", "3", "--no-history", cwd=ROOT)
    report = json.loads((out / "nightly" / "nightly_report.json").read_text())
    native = f"native-{emulate.cpu_class_of(emulate.features_here())}"
    assert report["platforms_order"] == [native, "emulated-avx2"]
    assert report["reference_platform"] == native
    emu = json.loads((out / "runs" / "emulated-avx2" / "ort-cpu.json").read_text())
    assert emu["status"] == "ok", emu["reason"]
    assert "latency_ms" not in emu and emu["emulated"]["qemu_model"] == "EPYC-Rome"
    assert "AVX2" in emu["emulated"]["flags_seen"] and "AVX512F" not in emu["emulated"]["flags_seen"]
    assert emu["env"]["cpu"]["vnni"] is False  # the host's /proc/cpuinfo is not believed
    assert json.loads((out / "runs" / native / "ort-cpu.json").read_text())["latency_ms"]["n"] == 3
    check = report["platforms"]["emulated-avx2"]["golden_check"]
    assert check["comparable"] and check["delta_map50_95"] is not None
    drift = [f for f in report["findings"] if f["kind"] == "golden-drift"]
    assert bool(drift) == check["drift"] == (abs(check["delta_map50_95"]) > 0.5)
    assert p.returncode == report["exit_code"] == (1 if drift else 0), p.stderr[-2000:]
    if native == "native-avx2":  # the same class emulated: the same arithmetic, exactly
        assert check["delta_map50_95"] == 0.0
    if native == "native-avx512-vnni":
        # the demo's portable model drifts on the AVX2 class (u8 x s8 saturation), measured
        # -7.5 points on these 2 images: the golden engine moves with the CPU class
        assert check["delta_map50_95"] < -0.5
    summary = (out / "nightly" / "nightly_summary.md").read_text()
    assert "emulated EPYC-Rome: accuracy only" in summary
