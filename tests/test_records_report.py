"""The evaluation report record: the collector's report reads back as one, and every reader of an
eval_report.json on disk gets one line naming the file when it is not one."""

from __future__ import annotations

import json

import pytest
from test_records_result import real_run

from harness.collector import collect
from harness.errors import QParityError
from harness.records.report import EngineEntry, EvalReport, read_report, read_report_record


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    out = real_run(tmp_path_factory.mktemp("report"), ("ort-cpu", "qdq-ref"))
    collect(out)
    return out / "eval_report.json"


def test_the_collectors_report_reads_as_the_record(report_file):
    rep = read_report_record(report_file)
    assert isinstance(rep, EvalReport) and isinstance(rep.engines["ort-cpu"], EngineEntry)
    assert rep.engines["ort-cpu"].status == "pass" and rep.engines["qdq-ref"].status == "reference"
    assert rep.engines["ort-cpu"].latency_ms.stable in (True, False)
    assert read_report(report_file) == json.loads(report_file.read_text())


@pytest.mark.parametrize("text, message", [
    ("{", "unreadable evaluation report"),
    ('{"schema": 1, "verdict": "pass"}', "not a valid evaluation report: created is missing"),
])
def test_a_corrupt_report_is_one_line_naming_the_file(tmp_path, text, message):
    f = tmp_path / "eval_report.json"
    f.write_text(text)
    with pytest.raises(QParityError) as e:
        read_report(f)
    assert str(e.value).startswith(f"{f}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("version, says", [(0, "written by an older qparity"),
                                           (2, "written by a newer qparity")])
def test_another_schema_version_says_so(report_file, tmp_path, version, says):
    f = tmp_path / "eval_report.json"
    f.write_text(json.dumps({**json.loads(report_file.read_text()), "schema": version}))
    with pytest.raises(QParityError, match=f"eval-report schema version {version} was {says}"):
        read_report(f)


def test_an_entry_status_the_collector_never_writes_is_refused(report_file, tmp_path):
    rep = json.loads(report_file.read_text())
    rep["engines"]["ort-cpu"]["status"] = "ok"
    f = tmp_path / "eval_report.json"
    f.write_text(json.dumps(rep))
    with pytest.raises(QParityError, match=r"engines\.ort-cpu\.status is 'ok', not one of"):
        read_report(f)
