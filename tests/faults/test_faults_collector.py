"""The collector trusts no file: each one that fails validation is an error entry naming it,
never dropped; the gate comes from the locked protocol, never from a result file."""

import json

import pytest
from conftest import qparity, read

from harness.fileio import write_json_atomic
from harness.protocol import locked_protocol
from harness.results import new_result


def result(engine, map50_95, run_id=None, sha="abc", status="ok"):
    r = new_result(engine, locked_protocol(), run_id)
    r.update(status=status, model={"sha256": sha, "quantized_compute_ops": 5},
             data={"image_list_sha256": "L", "annotations_sha256": "A", "images_evaluated": 5})
    if status == "ok":
        r["metrics"] = {"map50_95": map50_95, "map50": 50.0, "map75": 30.0, "map_small": None,
                        "map_medium": 2.0, "map_large": 3.0, "images": 5, "detections": 9}
        r["latency_ms"] = {"median": 10.0, "p95": 12.0, "samples_ms": [10.0] * 3}
    return r


def folder(tmp_path, *results):
    for r in results:
        write_json_atomic(tmp_path / f"{r['engine']}.json", r)
    return tmp_path


def collect_error(tmp_path, engine):
    """`qparity collect` gives exit 2 and the report has `engine` as an error: its reason."""
    p = qparity("collect", tmp_path)
    assert p.code == 2, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    rep = read(tmp_path / "eval_report.json")
    assert rep["verdict"] == "error" and rep["exit_code"] == 2
    e = rep["engines"][engine]
    assert e["status"] == "error"
    assert engine in p.stdout  # the engine is in the table, not silently gone
    return e["reason"]


def edited(tmp_path, **changes):
    """A passing pair of results, then the openvino file edited by hand."""
    folder(tmp_path, result("ort-cpu", 33.0), result("openvino", 33.1))
    r = read(tmp_path / "openvino.json")
    for k, v in changes.items():
        r[k] = v
    return r


def test_result_file_that_is_a_json_array(tmp_path):
    folder(tmp_path, result("ort-cpu", 33.0))
    (tmp_path / "openvino.json").write_text("[1, 2]")
    reason = collect_error(tmp_path, "openvino")
    assert "invalid result file openvino.json: not a result object (a JSON list)" in reason


def test_result_file_of_another_schema(tmp_path):
    write_json_atomic(tmp_path / "openvino.json", edited(tmp_path, schema=99))
    assert "engine-result schema version 99 was written by a newer qparity" in collect_error(
        tmp_path, "openvino")


def test_result_file_naming_another_engine(tmp_path):
    write_json_atomic(tmp_path / "openvino.json", edited(tmp_path, engine="tensorrt"))
    reason = collect_error(tmp_path, "openvino")
    assert "names engine 'tensorrt' but the file is openvino.json" in reason
    assert "tensorrt" not in read(tmp_path / "eval_report.json")["engines"]


def test_unknown_status_is_not_a_pass(tmp_path):
    write_json_atomic(tmp_path / "openvino.json", edited(tmp_path, status="great"))
    assert "status is 'great', not one of" in collect_error(tmp_path, "openvino")


def test_tolerance_from_a_result_file_is_refused(tmp_path):
    """A tolerance of 1000 in a result file used to make everything pass."""
    folder(tmp_path, result("ort-cpu", 33.0), result("openvino", 20.0))
    for name in ("ort-cpu", "openvino"):
        r = read(tmp_path / f"{name}.json")
        r["protocol"]["tolerance_map50_95"] = 1000
        write_json_atomic(tmp_path / f"{name}.json", r)
    p = qparity("collect", tmp_path)
    rep = read(tmp_path / "eval_report.json")
    assert p.code == 2 and rep["tolerance_map50_95"] == 0.5
    assert "protocol.tolerance_map50_95 is 1000" in rep["engines"]["ort-cpu"]["reason"]
    assert rep["engines"]["openvino"]["status"] == "error"


def test_gate_override_recorded_in_a_result_is_refused(tmp_path):
    r = edited(tmp_path)
    r["protocol"]["golden"] = "openvino"
    r["protocol"]["overrides"] = {"golden": {"locked": "ort-cpu", "used": "openvino"}}
    write_json_atomic(tmp_path / "openvino.json", r)
    assert "override of golden" in collect_error(tmp_path, "openvino")


@pytest.mark.parametrize("where,value", [("map50_95", "NaN"), ("map50", "Infinity")])
def test_non_finite_metric(tmp_path, where, value):
    r = edited(tmp_path)
    text = json.dumps(r).replace(f'"{where}": {r["metrics"][where]}', f'"{where}": {value}')
    (tmp_path / "openvino.json").write_text(text)
    assert f"metrics.{where} is {value.lower()[:3]}, not a finite number" in collect_error(tmp_path, "openvino")


def test_non_finite_latency(tmp_path):
    r = edited(tmp_path)
    r["latency_ms"]["median"] = float("nan")
    write_json_atomic(tmp_path / "openvino.json", r)
    assert "latency_ms.median is nan, not a finite number" in collect_error(tmp_path, "openvino")


def test_missing_required_field(tmp_path):
    r = edited(tmp_path)
    del r["latency_ms"]
    write_json_atomic(tmp_path / "openvino.json", r)
    assert "no latency_ms" in collect_error(tmp_path, "openvino")


def test_unreadable_json(tmp_path):
    folder(tmp_path, result("ort-cpu", 33.0))
    (tmp_path / "openvino.json").write_text('{"schema": 1, "engine": "openv')
    assert "unreadable JSON" in collect_error(tmp_path, "openvino")


def test_invalid_golden_is_an_error_for_all(tmp_path):
    folder(tmp_path, result("openvino", 33.0))
    (tmp_path / "ort-cpu.json").write_text("null")
    reason = collect_error(tmp_path, "openvino")
    assert "golden engine ort-cpu did not run (invalid result file ort-cpu.json" in reason


def test_reference_delta_only_from_comparable_results(tmp_path):
    """A qdq-ref result of another model file gives no delta, and no golden-drift finding."""
    folder(tmp_path, result("ort-cpu", 33.0), result("openvino", 33.1),
           result("qdq-ref", 20.0, sha="other"))
    p = qparity("collect", tmp_path)
    rep = read(tmp_path / "eval_report.json")
    assert p.code == 2 and rep["engines"]["qdq-ref"]["status"] == "error"
    assert rep["reference"] is None
    assert "delta_vs_qdq_ref" not in rep["engines"]["openvino"]
