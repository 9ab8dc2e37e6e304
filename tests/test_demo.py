"""A reduced `qparity demo`, end to end: generate, lists, PTQ, check-model, engines, collect."""

import json
import subprocess
import sys

import onnx
import pytest

from harness.demo import DEMO_MODEL
from harness.ptq import DEFAULT_RECIPE


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    p = subprocess.run([sys.executable, "-m", "harness.cli", "demo", "--out", str(out), "--images", "40",
                        "--runs", "20", "--warmup", "3"], capture_output=True, text=True, timeout=900)
    return out, p


def test_demo_model_honours_the_output_contract():
    m = onnx.load(str(DEMO_MODEL))
    dims = lambda vi: [d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(m.graph.input[0]) == [1, 3, 320, 320]
    out = dims(m.graph.output[0])
    assert out[0] == 1 and out[2] == 5 + 6
    md5_line = (DEMO_MODEL.parent / "demo-fp32.onnx.md5").read_text().split()[0]
    import hashlib
    assert md5_line == hashlib.md5(DEMO_MODEL.read_bytes()).hexdigest()


def test_demo_runs_the_whole_pipeline(demo):
    out, p = demo
    assert p.returncode in (0, 1), p.stderr[-3000:]
    for f in ("lists/val.txt", "lists/calib.txt", "lists/manifest_val.sha256", "lists/manifest_calib.sha256",
              "model/model-int8.onnx", "model/onnx_int8_md5.txt", "model/model-int8.json",
              "results/preflight.json", "results/eval_report.json"):
        assert (out / f).is_file(), f
    rep = json.loads((out / "results" / "eval_report.json").read_text())
    engines = rep["engines"]
    assert {"ort-cpu", "openvino", "qdq-ref"} <= engines.keys()
    assert engines["qdq-ref"]["status"] == "reference"
    # the verdict is the gate applied to the deltas actually measured
    gated = {n: e for n, e in engines.items() if n not in ("ort-cpu", "qdq-ref") and e["status"] != "unavailable"}
    assert all(e["status"] == ("pass" if abs(e["delta_map50_95"]) <= 0.5 else "fail") for e in gated.values())
    assert rep["exit_code"] == p.returncode and rep["verdict"] in ("pass", "fail")
    # a trained detector: the float model scores well, and int8 stays close to it
    assert rep["demo"]["fp32_map50_95"] >= 40
    assert engines["ort-cpu"]["metrics"]["map50_95"] >= rep["demo"]["fp32_map50_95"] - 10
    assert rep["preflight"]["engines"]["tensorrt"]["accepts"] is True  # the default recipe
    assert rep["demo"]["ptq"]["recipe"]["name"] == DEFAULT_RECIPE and rep["demo"]["ptq"]["decode_tail"]
    assert engines["openvino"]["census"]["int8_compute_ops"] > 0
    assert "ort-cpu (golden)" in p.stdout and "report:" in p.stdout
