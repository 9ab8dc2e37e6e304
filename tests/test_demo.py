"""A reduced `qparity demo`, end to end: generate, lists, PTQ, check-model, engines, collect."""

import json
import os

import onnx
import pytest
from builders import run_cli

from harness.demo import DEMO_MODEL
from harness.ptq import DEFAULT_RECIPE


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "COLUMNS": "80"}  # what a new user's terminal may be
    p = run_cli("demo", "--out", out, "--num-images", "40", "--runs", "20", "--warmup", "3",
                env=env)
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
              "model/model-int8.onnx.md5", "results/preflight.json", "results/eval_report.json",
              "results/report.html"):
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


def test_demo_output_fits_80_columns_and_explains_itself(demo):
    out, p = demo
    lines = p.stdout.splitlines()
    commands = [ln for ln in lines if ln.startswith("  qparity ")]
    paths = [ln for ln in lines if ln.startswith(("report: ", "page: "))]
    # nothing cut; every line but the copy-pasteable commands and paths within 80 columns
    assert "…" not in p.stdout
    too_long = [ln for ln in lines if ln not in commands + paths and len(ln) > 80]
    assert not too_long, too_long
    tail = p.stdout[p.stdout.index("Verdict "):]
    assert f"exit {p.returncode}" in tail
    assert "Next, on this very result:" in tail
    assert f"  qparity diff {out / 'results'} --engine openvino --against qdq-ref" in commands
    assert (f"  qparity localize --model {out / 'model' / 'model-int8.onnx'} --engine openvino "
            f"--data {out / 'data'} --num-images 4") in commands
    if p.returncode == 1:  # the finding the demo exists to show
        assert "the finding this demo exists to show" in " ".join(tail.split())
    assert "fp32 pass" in p.stderr and "3/7 PTQ" in p.stderr  # phases are labelled
    # what a latency sample covers is always said; the demo runs every engine at its defaults,
    # so no "settings not at their default" block lengthens the caption
    assert "latency ort-cpu:" in p.stdout and "int8 ran:" in p.stdout
    assert "not at their default" not in p.stdout


def test_explanation_follows_the_verdict(tmp_path):
    from harness.demo import explain

    def rep(verdict, code, ov_status, ov_map=49.2):
        return {"golden": "ort-cpu", "tolerance_map50_95": 0.5, "verdict": verdict, "exit_code": code,
                "engines": {"ort-cpu": {"status": "pass", "metrics": {"map50_95": 75.0}},
                            "openvino": {"status": ov_status, "metrics": {"map50_95": ov_map}},
                            "qdq-ref": {"status": "reference", "delta_map50_95": 0.1,
                                        "metrics": {"map50_95": 75.1}}}}

    fail = " ".join(explain(rep("fail", 1, "fail"), tmp_path))
    assert "Exit 1 always means exactly that" in fail and "finding this demo exists to show" in fail
    assert "OpenVINO is the engine that moved" in fail
    ok = " ".join(explain(rep("pass", 0, "pass", 75.1), tmp_path))
    assert "Verdict pass, exit 0" in ok and "agreed with the golden engine on this CPU" in ok
    err = " ".join(explain(rep("error", 2, "error", None), tmp_path))
    assert "Verdict error, exit 2" in err and "not a gate failure" in err
    for text in (fail, ok, err):
        assert f"qparity diff {tmp_path / 'results'} --engine openvino" in text
