"""The published JSON Schemas (docs/schema) are the records' own, and real outputs of the runner,
the collector and check-model validate against them with the `jsonschema` library."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from builders import coco_folder, tiny_detector
from jsonschema import Draft202012Validator
from test_records_result import real_run

from harness.collector import collect
from harness.engines import EngineConfig
from harness.preflight import write_preflight
from harness.protocol import locked_protocol
from harness.records.schema import PUBLISHED, file_name, generated, main, stale
from harness.runner import RunRequest, execute

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schema"


def published(kind: str) -> Draft202012Validator:
    (record,) = [r for r in PUBLISHED if r.KIND == kind]
    schema = json.loads((DOCS / file_name(record)).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_published_schemas_are_the_generated_ones():
    assert stale(DOCS) == [], "run: python -m harness.records.schema --out docs/schema"
    assert main(["--check", "--out", str(DOCS)]) == 0


def test_check_names_a_stale_file(tmp_path, capsys):
    shutil.copytree(DOCS, tmp_path / "schema")
    (tmp_path / "schema" / "eval-report.v1.schema.json").write_text("{}\n")
    assert main(["--check", "--out", str(tmp_path / "schema")]) == 1
    assert "eval-report.v1.schema.json: stale or missing" in capsys.readouterr().err
    assert set(generated()) == {p.name for p in DOCS.glob("*.schema.json")}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A real run: two engines that ran, one the machine cannot run (TensorRT: an unavailable
    result), check-model's preflight.json and the collector's eval_report.json."""
    root = tmp_path_factory.mktemp("schema")
    out = real_run(root, ("ort-cpu", "qdq-ref"))
    data = coco_folder(root / "data")
    execute(RunRequest("tensorrt", root / "m.onnx", data / "val2017",
                       data / "annotations" / "instances_val2017.json", out, locked_protocol(),
                       None, EngineConfig(threads=1)), show_progress=False)
    write_preflight(tiny_detector(root / "m.onnx"), out, 320)
    collect(out, expect=["ort-cpu", "qdq-ref", "tensorrt"])
    return out


def test_real_outputs_validate_against_the_published_schemas(run_folder):
    statuses = set()
    for name in ("ort-cpu", "qdq-ref", "tensorrt"):
        r = json.loads((run_folder / f"{name}.json").read_text())
        published("engine-result").validate(r)
        statuses.add(r["status"])
    assert statuses == {"ok", "unavailable"}  # an error-shaped result is covered too
    report = json.loads((run_folder / "eval_report.json").read_text())
    published("eval-report").validate(report)
    assert report["engines"]["tensorrt"]["status"] == "unavailable"
    assert report["preflight"] is not None
    published("preflight").validate(json.loads((run_folder / "preflight.json").read_text()))


def test_the_schema_refuses_what_the_reader_refuses(run_folder):
    r = json.loads((run_folder / "ort-cpu.json").read_text())
    v = published("engine-result")
    for bad in ({**r, "surprise": 1}, {**r, "status": "great"},
                {**r, "metrics": {**r["metrics"], "map50": "high"}}):
        assert not v.is_valid(bad)


def test_the_marks_of_an_emulated_run_validate(tmp_path):
    """What harness/emulate.py writes into a result in the emulated engine process (its CPUID
    flags as this process sees them): the `emulated` block and the truthful env.cpu."""
    from harness import emulate
    from harness.records.result import EngineResult
    from harness.results import new_result

    r = new_result("ort-cpu", locked_protocol(), "run-1")
    emulate.mark_result(r, "avx2")
    r = json.loads(json.dumps(r))
    published("engine-result").validate(r)
    assert EngineResult.from_json(r).emulated.qemu_model == "EPYC-Rome"
