"""`qparity run` end to end on real engines, and every bad input giving its one-line error."""

import json
import os
from pathlib import Path

import pytest
from builders import coco_folder, run_cli, tiny_detector

TESTS = Path(__file__).parent
PLUGINS = ("segfault=plugin_engines:SegfaultEngine,notinstalled=plugin_engines:NotInstalledEngine,"
           "wrongoutput=plugin_engines:WrongOutputEngine,dieslate=plugin_engines:DiesWhileTimedEngine")


def qparity(*args, cwd=None):
    env = dict(os.environ, QPARITY_EXTRA_ENGINES=PLUGINS,
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return run_cli(*args, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    return tiny_detector(root / "model.onnx"), coco_folder(root / "coco", n=10)


def run(assets, out, engines="ort-cpu,openvino", *extra):
    model, data = assets
    return qparity("run", "--model", str(model), "--data", str(data), "--engines", engines,
                   "--out", str(out), *extra)


def test_run_both_cpu_engines_end_to_end(assets, tmp_path):
    p = run(assets, tmp_path)
    assert p.returncode == 0, p.stderr + p.stdout
    rep = json.loads((tmp_path / "eval_report.json").read_text())
    assert rep["verdict"] == "pass" and rep["protocol"]["baseline"] is True
    for name in ("ort-cpu", "openvino"):
        e = rep["engines"][name]
        assert e["status"] == "pass" and e["images"] == 10
        assert e["latency_ms"]["n"] == 200 and e["latency_ms"]["warmup"] == 50
        r = json.loads((tmp_path / f"{name}.json").read_text())
        assert len(r["latency_ms"]["samples_ms"]) == 200 and r["latency_ms"]["first_inference_ms"] > 0
        assert r["model"]["sha256"] == rep["model"]["sha256"]
        assert r["env"]["cpu"]["visible_cpus"] >= 1 and "onnxruntime" in r["env"]["libraries"]
    # a float model: both engines compute the same function, so the metrics agree closely
    assert abs(rep["engines"]["openvino"]["delta_map50_95"]) < 0.5
    assert rep["engines"]["ort-cpu"]["engine"]["settings"]["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert rep["engines"]["openvino"]["engine"]["settings"]["requested"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert "ort-cpu (golden)" in p.stdout and "verdict: pass" in p.stdout
    # the collector alone gives the same verdict from the files
    again = qparity("collect", str(tmp_path))
    assert again.returncode == 0 and json.loads((tmp_path / "eval_report.json").read_text())["verdict"] == "pass"


def test_limit_and_protocol_override_are_reported(assets, tmp_path):
    p = run(assets, tmp_path, "ort-cpu", "--limit", "4", "--runs", "20", "--warmup", "2")
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "eval_report.json").read_text())
    assert rep["data"]["limit"] == 4 and rep["data"]["images_evaluated"] == 4
    assert rep["protocol"]["baseline"] is False and rep["protocol"]["overrides"]["runs"]["used"] == 20
    assert "NOT a baseline run" in p.stdout and "--limit 4" in p.stdout


def one_line_error(p):
    lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(lines) == 1, p.stderr
    return lines[0]


def test_corrupt_model(assets, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x01garbage" * 10)
    line = one_line_error(run((bad, assets[1]), tmp_path / "o"))
    assert str(bad) in line and "not a valid ONNX model" in line


def test_wrong_input_shape(assets, tmp_path):
    m = tiny_detector(tmp_path / "m640.onnx", size=640)
    line = one_line_error(run((m, assets[1]), tmp_path / "o"))
    assert "m640.onnx" in line and "1x3x320x320" in line


def test_dynamic_input_shape(assets, tmp_path):
    m = tiny_detector(tmp_path / "dyn.onnx", in_shape=["batch", 3, 320, 320])
    assert "dyn.onnx" in one_line_error(run((m, assets[1]), tmp_path / "o"))


def test_class_count_mismatch(assets, tmp_path):
    m = tiny_detector(tmp_path / "nc80.onnx", nc=80)
    line = one_line_error(run((m, assets[1]), tmp_path / "o"))
    assert "predicts 80 classes" in line and "3 categories" in line


def test_missing_data(assets, tmp_path):
    line = one_line_error(run((assets[0], tmp_path / "nope"), tmp_path / "o"))
    assert "nope" in line and "does not exist" in line


def test_annotations_do_not_match_images(assets, tmp_path):
    data = coco_folder(tmp_path / "coco", n=4)
    (data / "val2017" / "000000000002.jpg").rename(data / "val2017" / "000000000042.jpg")
    line = one_line_error(run((assets[0], data), tmp_path / "o"))
    assert "000000000042.jpg" in line and "not in the annotations" in line


def test_unreadable_image_mid_run_keeps_other_engines(assets, tmp_path):
    data = coco_folder(tmp_path / "coco", n=4)
    (data / "val2017" / "000000000003.jpg").write_bytes(b"\xff\xd8 truncated")
    p = run((assets[0], data), tmp_path / "o")
    assert p.returncode == 2
    rep = json.loads((tmp_path / "o" / "eval_report.json").read_text())
    for name in ("ort-cpu", "openvino"):
        assert rep["engines"][name]["status"] == "error"
        assert "000000000003.jpg: image cannot be decoded" in rep["engines"][name]["reason"]


def test_crashing_engine_loses_nothing_else(assets, tmp_path):
    p = run(assets, tmp_path, "ort-cpu,segfault,openvino")
    assert p.returncode == 2
    rep = json.loads((tmp_path / "eval_report.json").read_text())
    assert rep["engines"]["segfault"]["status"] == "error"
    assert "SIGSEGV" in rep["engines"]["segfault"]["reason"]
    assert rep["engines"]["ort-cpu"]["status"] == "pass" and rep["engines"]["openvino"]["status"] == "pass"
    assert rep["engines"]["openvino"]["metrics"]["map50"] is not None


def test_engine_not_installed_is_unavailable(assets, tmp_path):
    p = run(assets, tmp_path, "ort-cpu,notinstalled")
    rep = json.loads((tmp_path / "eval_report.json").read_text())
    assert rep["engines"]["notinstalled"]["status"] == "unavailable"
    assert "fakelib is not installed" in rep["engines"]["notinstalled"]["reason"]
    assert rep["engines"]["ort-cpu"]["status"] == "pass" and p.returncode == 2


def test_engine_with_wrong_output_shape(assets, tmp_path):
    run(assets, tmp_path, "ort-cpu,wrongoutput")
    rep = json.loads((tmp_path / "eval_report.json").read_text())
    assert "returned an output of shape [1, 100, 4]" in rep["engines"]["wrongoutput"]["reason"]


def test_unknown_engine(assets, tmp_path):
    assert "unknown engine 'nope'" in one_line_error(run(assets, tmp_path, "nope"))


def test_engine_dying_while_timed_keeps_its_accuracy(assets, tmp_path):
    p = run(assets, tmp_path, "ort-cpu,dieslate")
    assert p.returncode == 2
    rep = json.loads((tmp_path / "eval_report.json").read_text())
    e = rep["engines"]["dieslate"]
    assert e["status"] == "error" and "during the latency measurement" in e["reason"]
    assert "SIGSEGV" in e["reason"]
    assert e["metrics"]["map50_95"] == rep["engines"]["ort-cpu"]["metrics"]["map50_95"]
