"""The preflight verdict record: check-model's preflight.json reads back as one, an older file
without "schema" reads as version 1 only when it is version 1's shape, and a corrupt one stops
`qparity collect` with one line naming the file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from builders import tiny_detector
from test_records_result import real_run

from harness.collector import collect
from harness.errors import QParityError
from harness.preflight import write_preflight
from harness.records.preflight import PreflightVerdict, read_preflight


@pytest.fixture(scope="module")
def run_with_preflight(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight")
    out = real_run(root)
    write_preflight(tiny_detector(root / "m.onnx"), out, 320)
    return out


def test_check_models_file_reads_as_the_record(run_with_preflight):
    raw = json.loads((run_with_preflight / "preflight.json").read_text())
    assert raw["schema"] == PreflightVerdict.VERSION
    rec = PreflightVerdict.from_json(raw)
    assert set(rec.engines) >= {"ort-cpu", "openvino", "tensorrt"}
    rep = collect(run_with_preflight)
    assert rep["preflight"]["engines"]["ort-cpu"]["accepts"] is rec.engines["ort-cpu"].accepts
    assert rep["engines"]["ort-cpu"]["preflight"] == rec.engines["ort-cpu"].to_json()


def test_an_older_file_without_schema_reads_as_version_1(run_with_preflight, tmp_path):
    raw = json.loads((run_with_preflight / "preflight.json").read_text())
    del raw["schema"], raw["run_id"]
    (tmp_path / "preflight.json").write_text(json.dumps(raw))
    assert read_preflight(tmp_path / "preflight.json")["schema"] == 1


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("engines"), "not a valid preflight record: engines is missing"),
    (lambda d: d["engines"].update({"ort-cpu": {"accepts": "yes"}}),
     "engines.ort-cpu.accepts is string 'yes', not a boolean"),
    (lambda d: d.update(schema=2), "preflight schema version 2 was written by a newer qparity"),
    (lambda d: d.update(schema=None), "schema is None, not a preflight record of version 1"),
])
def test_a_corrupt_preflight_is_one_line_naming_the_file(run_with_preflight, tmp_path, edit,
                                                         message):
    raw = json.loads((run_with_preflight / "preflight.json").read_text())
    edit(raw)
    (tmp_path / "preflight.json").write_text(json.dumps(raw))
    with pytest.raises(QParityError, match=message) as e:
        read_preflight(tmp_path / "preflight.json")
    assert str(e.value).startswith(f"{tmp_path / 'preflight.json'}: ")


def test_collect_with_a_corrupt_preflight_says_which_file(run_with_preflight, tmp_path):
    """Used to be a KeyError path: a preflight.json without "engines"."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "ort-cpu.json").write_text((run_with_preflight / "ort-cpu.json").read_text())
    (out / "preflight.json").write_text(json.dumps({"model": "m.onnx"}))
    p = subprocess.run([sys.executable, "-m", "harness.cli", "collect", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{out / 'preflight.json'}: not a valid preflight record: engines is missing" in \
        " ".join(p.stderr.split())
