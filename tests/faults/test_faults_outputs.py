"""Non-finite engine outputs: an error naming the image and the count, never a score."""

import onnx
from conftest import read
from onnx import numpy_helper

import numpy as np


def nan_model(src, dest):
    """The tiny detector with NaN in its output scale: every box centre comes out NaN, on any
    engine (the golden one included)."""
    m = onnx.load(str(src))
    for i, t in enumerate(m.graph.initializer):
        if t.name == "scale":
            a = numpy_helper.to_array(t).copy()
            a[..., 0] = np.nan
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(a, "scale"))
    onnx.save(m, str(dest))
    return dest


def test_nan_in_one_image_is_an_error_naming_it(run, tmp_path):
    p = run(tmp_path, "ort-cpu,nanout")
    assert p.code == 2, p.stderr
    r = read(tmp_path / "nanout.json")
    assert r["status"] == "error"
    assert "3 non-finite value(s)" in r["reason"] and "000000000002.jpg" in r["reason"]
    assert "metrics" not in r and not (tmp_path / "detections" / "nanout.npz").exists()
    rep = read(tmp_path / "eval_report.json")
    assert rep["engines"]["nanout"]["status"] == "error" and rep["verdict"] == "error"
    assert rep["engines"]["ort-cpu"]["status"] == "pass"  # the golden is untouched


def test_infinite_box_is_an_error(run, tmp_path):
    p = run(tmp_path, "ort-cpu,infout")
    assert p.code == 2
    reason = read(tmp_path / "infout.json")["reason"]
    assert "1 non-finite value(s)" in reason and "000000000001.jpg" in reason


def test_golden_broken_the_same_way_is_no_pass(run, assets, tmp_path):
    """All-NaN from every engine used to score 0.00 everywhere and pass the gate."""
    model = nan_model(assets[0], tmp_path / "nan.onnx")
    p = run(tmp_path / "out", "ort-cpu,openvino", model=model)
    assert p.code == 2, p.stdout + p.stderr
    rep = read(tmp_path / "out" / "eval_report.json")
    assert rep["verdict"] == "error"
    for name in ("ort-cpu", "openvino"):
        r = read(tmp_path / "out" / f"{name}.json")
        assert r["status"] == "error" and "non-finite" in r["reason"] and "metrics" not in r
        assert rep["engines"][name]["metrics"] is None
