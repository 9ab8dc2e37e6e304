"""`qparity repro` on the demo's OpenVINO case, and OpenVINO's trigger pattern itself."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import harness.cli as cli
from harness.diagnose.repro import RUNNERS, disagreement, repro, runner
from harness.engines.openvino import OpenVinoEngine
from harness.errors import QParityError

from harness.envinfo import cpu_info

VNNI = cpu_info()["vnni"]  # where OpenVINO's Concat fault was characterised (docs/recipes.md)
needs_openvino = pytest.mark.skipif(OpenVinoEngine.probe() is not None, reason="openvino not installed")
HANDFUL = 8


def trigger_module():
    path = Path(__file__).resolve().parents[1] / "bench" / "ov_concat_trigger.py"
    spec = importlib.util.spec_from_file_location("ov_concat_trigger", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def demo_repro(demo_assets, tmp_path_factory):
    model_dir, data = demo_assets
    out = tmp_path_factory.mktemp("repro") / "openvino"
    summary = repro(out, model_dir / "model-int8.onnx", "openvino", data, images=1)
    return out, summary


@needs_openvino
def test_repro_reduces_the_demo_openvino_fault_to_a_handful_of_nodes(demo_repro):
    out, s = demo_repro
    for f in ("model.onnx", "input.npy", "repro.py", "reference_output.npy", "environment.json",
              "README.md", "repro.json"):
        assert (out / f).is_file(), f
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert len(ops) == s["model_nodes"] <= HANDFUL
    assert len(model.graph.input) == 1  # one input .npy
    if VNNI:  # the trigger: a Concat feeding an int8 convolution through an int8 Q/DQ pair
        assert "Concat" in ops and "Conv" in ops and "QuantizeLinear" in ops
    assert s["disagreement"]["frac_off"] > s["frac"]
    assert s["model_bytes"] == (out / "model.onnx").stat().st_size < 20_000
    # the localize target is where the reduction started
    if VNNI:
        assert s["target"]["localize"]["producer_op"] == "Conv"
    assert s["reduction"][0]["step"] == "segment"
    assert any(step.get("disagrees") for step in s["reduction"])


@needs_openvino
def test_repro_script_runs_alone_and_shows_the_disagreement(demo_repro, tmp_path):
    out, s = demo_repro
    # copied elsewhere: the folder needs nothing of qparity
    dest = tmp_path / "sent-upstream"
    dest.mkdir()
    for f in out.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    p = subprocess.run([sys.executable, "repro.py"], cwd=dest, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "DISAGREE" in p.stdout and "openvino" in p.stdout and "onnxruntime" in p.stdout
    assert "CPU flags" in p.stdout
    script = (dest / "repro.py").read_text()
    assert "harness" not in script.replace("qparity", "")  # no import of qparity itself
    # the script's numbers are the ones the tool measured
    frac = float(p.stdout.split("openvino vs qdq-ref: ")[1].split("%")[0]) / 100
    assert frac == pytest.approx(s["disagreement"]["frac_off"], abs=1e-4)


@needs_openvino
def test_repro_control_agrees_with_openvinos_low_precision_path_off(demo_repro, tmp_path):
    """The same subgraph and input agree once OpenVINO's low-precision transformations are off:
    the disagreement is OpenVINO's int8 path, not the data."""
    out, _ = demo_repro
    feeds = {onnx.load(str(out / "model.onnx")).graph.input[0].name: np.load(out / "input.npy")}
    a = runner("openvino")(out / "model.onnx", feeds, {"LP_TRANSFORMS_MODE": "NO"})
    b = np.load(out / "reference_output.npy")
    scale = json.loads((out / "repro.json").read_text())["output_scale"]
    assert disagreement(a, b, np.array(scale), None)["frac_off"] <= 0.01


def test_repro_has_nothing_to_reproduce_when_the_engines_agree(demo_assets, tmp_path):
    model_dir, data = demo_assets
    with pytest.raises(QParityError, match="nothing to reproduce"):
        repro(tmp_path / "r", model_dir / "model-int8.onnx", "qdq-ref", data, images=1)


def test_repro_refuses_an_engine_without_a_native_runner(demo_assets, tmp_path):
    model_dir, data = demo_assets
    with pytest.raises(QParityError, match="native runners"):
        repro(tmp_path / "r", model_dir / "model-int8.onnx", "tensorrt", data)
    assert set(RUNNERS) == {"qdq-ref", "ort-cpu", "openvino"}


def test_repro_cli_reads_a_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert cli.main(["repro", str(run), "--engine", "openvino", "--out", str(tmp_path / "o")]) == 2
    assert "openvino.json missing" in capsys.readouterr().err


def test_disagreement_counts_steps_per_channel():
    b = np.zeros((1, 2, 2, 2))
    a = b.copy()
    a[0, 1] = 0.25  # 2.5 steps of 0.1 on channel 1; 0.25 steps of 1.0 on channel 0 would be fine
    d = disagreement(a, b, np.array([1.0, 0.1]), 1)
    assert d["frac_off"] == 0.5 and d["max_steps"] == pytest.approx(2.5)


# ----------------------------------------------------------------------------- the trigger
@needs_openvino
@pytest.mark.skipif(not VNNI, reason="characterised on an AVX-512 VNNI CPU; without VNNI the int8 "
                                     "kernels differ (SPEC.md)")
def test_openvino_trigger_is_concat_into_an_int8_convolution():
    """OpenVINO's known fault (docs/recipes.md). If this starts failing after an OpenVINO
    upgrade, the fault may be fixed upstream: re-run `qparity recipes` and revisit the default."""
    t = trigger_module()
    by_name = {c.name.strip(): c for c in t.CASES}
    portable = t.measure(by_name["Concat(2 x int8 Q/DQ) -> int8 Q/DQ -> Conv  (the portable pattern)"])
    assert portable["frac_off"] > 0.5 and portable["max_steps"] > 10
    for agrees in ("same, uint8 Q/DQ (zero point 128)  (the spec-v1 pattern)",
                   "same, Conv with float weights  (the concat-safe pattern)",
                   "one input (no Concat) -> int8 Q/DQ -> Conv"):
        assert t.measure(by_name[agrees])["frac_off"] <= 0.01, agrees
    grid = t.conv_input_grid(0.09)
    assert grid["reference_grid"] == pytest.approx(0.09, rel=1e-3)
    assert grid["openvino_grid"] == pytest.approx(1.0, rel=1e-3)  # the scale is lost
