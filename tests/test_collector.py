import json

import pytest

from harness.collector import collect, gate, map_delta
from harness.errors import QParityError
from harness.protocol import locked_protocol
from harness.fileio import write_json_atomic
from harness.runner import new_result


def result(engine, map50_95, sha="abc", status="ok", median=10.0):
    r = new_result(engine, locked_protocol())
    r.update(status=status, model={"sha256": sha},
             data={"image_list_sha256": "L", "annotations_sha256": "A", "images_evaluated": 5})
    if status == "ok":
        r["metrics"] = {"map50_95": map50_95, "map50": 50.0, "map75": 30.0, "map_small": 1.0,
                        "map_medium": 2.0, "map_large": 3.0, "images": 5, "detections": 9}
        r["latency_ms"] = {"median": median, "p95": median * 1.2, "samples_ms": [median] * 3}
    return r


def write(tmp_path, *results):
    for r in results:
        write_json_atomic(tmp_path / f"{r['engine']}.json", r)
    return tmp_path


@pytest.mark.parametrize("other,expected", [
    (33.6, "pass"),      # exactly at the tolerance: 0.5 points
    (33.5999, "pass"),   # just under
    (33.6001, "fail"),   # just over
    (32.6, "pass"),      # at the tolerance below
    (32.5999, "fail"),   # just over below
])
def test_gate_at_under_and_over_tolerance(tmp_path, other, expected):
    rep = collect(write(tmp_path, result("ort-cpu", 33.1), result("openvino", other, median=5.0)))
    e = rep["engines"]["openvino"]
    assert e["status"] == expected
    assert e["delta_map50_95"] == pytest.approx(other - 33.1, abs=1e-9)
    assert rep["verdict"] == expected and rep["exit_code"] == (0 if expected == "pass" else 1)
    assert e["speedup_vs_golden"] == 2.0
    assert "samples_ms" not in e["latency_ms"]  # the report summarises; raw samples stay per engine
    on_disk = json.loads((tmp_path / "eval_report.json").read_text())
    assert on_disk["engines"]["openvino"]["status"] == expected
    assert on_disk["golden"] == "ort-cpu" and on_disk["tolerance_map50_95"] == 0.5


def test_delta_rounding_does_not_push_exact_tolerance_over():
    assert map_delta({"map50_95": 33.6}, {"map50_95": 33.1}) == 0.5
    assert gate(0.5, 0.5) == "pass" and gate(-0.5001, 0.5) == "fail" and gate(None, 0.5) == "fail"


def test_golden_must_have_run(tmp_path):
    rep = collect(write(tmp_path, result("ort-cpu", 0, status="error"), result("openvino", 33.0)))
    assert rep["engines"]["openvino"]["status"] == "error"
    assert "golden engine ort-cpu did not run" in rep["engines"]["openvino"]["reason"]
    assert rep["exit_code"] == 2


def test_missing_golden_file_is_an_error(tmp_path):
    rep = collect(write(tmp_path, result("openvino", 33.0)))
    assert rep["engines"]["ort-cpu"]["status"] == "error" and rep["exit_code"] == 2


def test_different_model_file_is_an_error(tmp_path):
    rep = collect(write(tmp_path, result("ort-cpu", 33.0), result("openvino", 33.0, sha="zzz")))
    assert rep["engines"]["openvino"]["status"] == "error"
    assert "model file differs" in rep["engines"]["openvino"]["reason"]


def test_unavailable_engine_does_not_hide_others(tmp_path):
    rep = collect(write(tmp_path, result("ort-cpu", 33.0), result("openvino", 33.2),
                        result("tensorrt", 0, status="unavailable")))
    assert rep["engines"]["openvino"]["status"] == "pass"
    assert rep["engines"]["tensorrt"]["status"] == "unavailable"
    assert rep["exit_code"] == 2  # an engine that was asked for could not run


def test_collect_empty_folder(tmp_path):
    with pytest.raises(QParityError, match="no engine result files"):
        collect(tmp_path)


def test_expect_ignores_stale_files_and_flags_missing(tmp_path):
    write(tmp_path, result("ort-cpu", 33.0), result("openvino", 30.0))  # openvino: stale, failing
    rep = collect(tmp_path, expect=["ort-cpu"])
    assert set(rep["engines"]) == {"ort-cpu"} and rep["verdict"] == "pass"
    rep = collect(tmp_path, expect=["ort-cpu", "tensorrt"])
    assert rep["engines"]["tensorrt"]["status"] == "error"
    assert "no result file tensorrt.json" in rep["engines"]["tensorrt"]["reason"]


def test_report_carries_the_results_sections_as_written(tmp_path):
    """The collector reads results as records and writes the report from records: the sections
    it passes on (model, data, latency) keep the file's keys, their order and integer numbers."""
    golden = result("ort-cpu", 33.0)
    golden["model"] = {"sha256": "abc", "opset": 13, "quantized_compute_ops": 7}
    golden["eval_timing"] = {"images": 5, "wall_s": 1.5}
    golden["latency_ms"] = {"p95": 12.0, "median": 10.0, "n": 3, "samples_ms": [10.0] * 3}
    rep = collect(write(tmp_path, golden, result("openvino", 33.2)))
    assert json.dumps(rep["model"]) == json.dumps(golden["model"])  # no key added, none moved
    e = rep["engines"]["ort-cpu"]
    assert json.dumps(e["eval_timing"]) == '{"images": 5, "wall_s": 1.5}'
    assert list(e["latency_ms"]) == ["p95", "median", "n", "spread", "stable", "stability_rule"]
    assert "model_note" not in e and "preflight" not in e and "demo" not in rep
    assert rep == json.loads((tmp_path / "eval_report.json").read_text())


def test_invalid_file_is_an_error_entry_naming_it(tmp_path):
    write(tmp_path, result("ort-cpu", 33.0))
    (tmp_path / "openvino.json").write_text('{"schema": 1, "engine": "openvino", "status": "ok"}')
    rep = collect(tmp_path)
    e = rep["engines"]["openvino"]
    assert e["status"] == "error" and rep["invalid_files"] == ["openvino.json"]
    assert e["reason"].startswith("invalid result file openvino.json: ")
    assert rep["exit_code"] == 2
