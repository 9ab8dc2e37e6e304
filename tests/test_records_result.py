"""The engine result record: what the runner writes reads back as one, what it must not write is
refused where it is written, and the collector takes "reference" from the result's own field."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from builders import coco_folder, tiny_detector

from harness.collector import collect
from harness.engines import EngineConfig
from harness.fileio import write_json_atomic
from harness.protocol import locked_protocol
from harness.records.result import EngineResult, Latency, Metrics
from harness.results import new_result, validate_result, write_result
from harness.runner import RunRequest, execute


def real_run(root, engines=("ort-cpu",)):
    """Real runs of the tiny detector on a tiny COCO folder (few timed runs) into root/out:
    the outputs the record tests read, produced by the runner itself, never written by hand."""
    model, data = tiny_detector(root / "m.onnx"), coco_folder(root / "data")
    proto = locked_protocol().with_overrides(warmup=1, runs=3)
    for engine in engines:
        res = execute(RunRequest(engine, model, data / "val2017",
                                 data / "annotations" / "instances_val2017.json", root / "out",
                                 proto, None, EngineConfig(threads=1)), show_progress=False)
        assert res["status"] == "ok", res["reason"]
    return root / "out"


@pytest.fixture(scope="module")
def real_result(tmp_path_factory):
    return real_run(tmp_path_factory.mktemp("result")) / "ort-cpu.json"


def test_a_real_result_reads_as_the_record(real_result):
    r = json.loads(real_result.read_text())
    rec = EngineResult.from_json(r)
    assert isinstance(rec.metrics, Metrics) and isinstance(rec.latency_ms, Latency)
    assert rec.latency_ms.median == r["latency_ms"]["median"]
    assert rec.model.sha256 == r["model"]["sha256"] and rec.data.images_evaluated == 6
    assert validate_result(r, "ort-cpu") is None
    # the record writes back every key the runner wrote, with the same values (and the
    # optional fields it did not write as their defaults, null or false)
    assert written_back(rec.to_json(), r)


def written_back(out, r):
    if isinstance(r, dict):
        return (isinstance(out, dict) and all(written_back(out[k], v) for k, v in r.items())
                and all(out[k] in (None, False) for k in set(out) - set(r)))
    return out == r


@pytest.mark.parametrize("change, message", [
    ({"surprise": 1}, "surprise is not a field of EngineResult"),
    ({"reference": "yes"}, "reference is string 'yes', not a boolean"),
    ({"run_id": 7}, "run_id is number 7, not a string"),
    ({"load_s": float("inf")}, "load_s is inf, not a finite number"),
])
def test_validate_result_names_the_field(real_result, change, message):
    r = {**json.loads(real_result.read_text()), **change}
    assert validate_result(r, "ort-cpu") == message


def test_nested_sections_name_their_path(real_result):
    r = json.loads(real_result.read_text())
    r["latency_ms"]["spinning"]["latncy"] = "x"
    assert validate_result(r, "ort-cpu") == "latency_ms.spinning.latncy is not a field of Spinning"
    r = json.loads(real_result.read_text())
    r["model"]["md5_file_check"] = "maybe"
    assert validate_result(r, "ort-cpu").startswith("model.md5_file_check is 'maybe', not one of")


def test_the_runner_records_per_class_ap_from_its_own_evaluation(real_result):
    """The runner's result carries AP50-95 per class name, from the evaluation that gave its
    metrics (their mean is the overall figure); a result written before that field still
    reads, and a class AP that is not a number or null is refused where it is read."""
    import numpy as np

    from harness.data import Dataset
    from harness.metrics import per_class_ap

    r = json.loads(real_result.read_text())
    rec = EngineResult.from_json(r)
    per = rec.metrics.per_class_ap50_95
    out = real_result.parent
    ds = Dataset.load(out.parent / "data" / "val2017",
                      out.parent / "data" / "annotations" / "instances_val2017.json")
    names = {c["id"]: c["name"] for c in ds.coco_json["categories"]}
    det = np.load(out / rec.detections_file)["detections"]
    assert per == {names[c]: v for c, v in per_class_ap(ds.coco_json, det, ds.image_ids).items()}
    present = [v for v in per.values() if v is not None]
    assert present and abs(sum(present) / len(present) - rec.metrics.map50_95) <= 1e-4
    older = json.loads(real_result.read_text())
    del older["metrics"]["per_class_ap50_95"]
    assert validate_result(older, "ort-cpu") is None
    assert EngineResult.from_json(older).metrics.per_class_ap50_95 is None
    assert "per_class_ap50_95" not in EngineResult.from_json(older).to_json(True)["metrics"]
    r["metrics"]["per_class_ap50_95"] = {"person": "high"}
    assert validate_result(r, "ort-cpu").startswith("metrics.per_class_ap50_95")


def test_emulated_block_keeps_its_class_key():
    r = new_result("ort-cpu", locked_protocol())
    r["emulated"] = {"spec": "avx2", "class": "avx2", "qemu_model": "EPYC-Rome",
                     "flags_seen": ["AVX2"], "class_seen": "avx2", "label": "emulated",
                     "latency": "not measured", "host_cpu": None}
    rec = EngineResult.from_json(r)
    assert rec.emulated.class_ == "avx2" and rec.to_json()["emulated"]["class"] == "avx2"
    assert "class" in EngineResult.json_schema()["$defs"]["Emulation"]["properties"]


def test_write_result_catches_a_writer_bug_where_it_happens(tmp_path):
    r = new_result("ort-cpu", locked_protocol(), "run-1")
    r["metrics"] = {"map50_95": float("nan")}  # what a broken writer could build
    written = write_result(tmp_path / "ort-cpu.json", r)
    on_disk = json.loads((tmp_path / "ort-cpu.json").read_text())
    assert on_disk == written and on_disk["status"] == "error" and on_disk["run_id"] == "run-1"
    assert "metrics.map50_95 is nan, not a finite number" in on_disk["reason"]
    assert "bug in qparity" in on_disk["reason"]
    assert validate_result(on_disk, "ort-cpu") is None


def _ok(engine, map50_95, **extra):
    r = new_result(engine, locked_protocol())
    r.update(status="ok", model={"sha256": "S"},
             data={"image_list_sha256": "L", "annotations_sha256": "A"},
             metrics={"map50_95": map50_95, "map50": 50.0, "map75": 30.0, "map_small": 1.0,
                      "map_medium": 2.0, "map_large": 3.0},
             latency_ms={"median": 10.0, "p95": 11.0}, **extra)
    return r


def test_reference_comes_from_the_result_not_the_name(tmp_path):
    """A plugin engine flagged reference is never gated; qdq-ref flagged false is gated."""
    for r in (_ok("ort-cpu", 30.0), _ok("my-ref", 20.0, reference=True),
              _ok("qdq-ref", 20.0, reference=False)):
        write_json_atomic(tmp_path / f"{r['engine']}.json", r)
    rep = collect(tmp_path)
    assert rep["engines"]["my-ref"]["status"] == "reference"
    assert rep["engines"]["qdq-ref"]["status"] == "fail"
    assert rep["reference"]["engine"] == "my-ref" and rep["reference"]["golden_delta"] == 10.0


def test_records_are_standard_library_only():
    code = ("import sys, harness.records, harness.records.result; "
            "print(' '.join(m for m in ('numpy', 'cv2', 'pycocotools', 'rich') if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.split() == []
