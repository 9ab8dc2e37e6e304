"""The evaluation report record: `<out>/eval_report.json`, the collector's verdict on one run.

The collector builds it from the engine results, checks it through `EvalReport.from_json`
before writing, and every reader of an `eval_report.json` on disk goes through `read_report`,
so a file that is not one (corrupt, hand-edited, of another schema version) is one line naming
the file and the problem, never a KeyError three modules later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import QParityError  # standard library only, like the records
from .base import Record, RecordError, Section
from .preflight import EngineVerdict, PreflightVerdict
from .result import DataManifest, Latency, Metrics, ModelFacts

REPORT_NAME = "eval_report.json"
# A report entry's status: a gated engine passes or fails; the reference engine is never gated;
# an engine that did not run, or whose result cannot be compared, is an error.
EntryStatus = Literal["pass", "fail", "reference", "error", "unavailable"]


def doc(text: str) -> Any:
    return field(default=None, metadata={"doc": text})


@dataclass
class ReportLatency(Latency):
    """An engine's latency figures as the report gives them: its result's latency without the
    raw samples (they stay in the result file), plus how stable they were."""
    spread: float | None = doc("P95 / median - 1")
    stable: bool | None = None
    stability_rule: str | None = None


@dataclass
class EngineEntry(Section):
    """One engine's row: its status against the golden engine and the evidence behind it."""
    status: EntryStatus
    reason: str = ""
    metrics: Metrics | None = None
    images: int | None = None
    detections: int | None = None
    delta_map50_95: float | None = doc("mAP50-95 minus the golden engine's, in points")
    latency_ms: ReportLatency | None = None
    speedup_vs_golden: float | None = None
    speedup_confidence: Literal["stable", "indicative", "noisy"] | None = None
    engine: dict[str, Any] | None = doc("the engine's describe(), from its result")
    census: dict[str, Any] | None = None
    eval_timing: dict[str, float] | None = None
    env: dict[str, Any] | None = None
    model_sha256: str | None = None
    quantized_in_file: int | None = None
    result_file: str | None = None
    run_id: str | None = None
    model_note: str | None = doc("why this model is not what the gate is for (not INT8)")
    delta_vs_qdq_ref: float | None = doc("mAP50-95 minus the reference engine's, in points")
    golden_drift: bool | None = None
    preflight: EngineVerdict | None = doc("what check-model predicted for this engine")


@dataclass
class SkippedFile(Section):
    """A file in the results folder left out of this report, and why."""
    file: str
    reason: str
    run_id: str | None = None


@dataclass
class ReferenceSummary(Section):
    """The reference engine (the model's own Q/DQ arithmetic) against the golden engine."""
    engine: str
    map50_95: float | None
    golden_delta: float | None
    golden_drift: bool
    note: str = ""


@dataclass
class EvalReport(Record):
    """The verdict on one run: each engine against the golden engine, within the tolerance of
    the locked protocol, with what each figure covers."""
    KIND = "eval-report"
    VERSION = 1

    created: str
    run_id: str | None
    golden: str
    tolerance_map50_95: float
    verdict: Literal["pass", "fail", "error"]
    exit_code: Literal[0, 1, 2] = field(metadata={"doc": "0 pass, 1 gate failure, 2 any error"})
    engines: dict[str, EngineEntry]
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped_files: list[SkippedFile] = field(default_factory=list)
    invalid_files: list[str] = field(default_factory=list)
    protocol: dict[str, Any] | None = doc("the locked protocol with the overrides the results "
                                          "record")
    model: ModelFacts | None = None
    data: DataManifest | None = None
    reference: ReferenceSummary | None = None
    preflight: PreflightVerdict | None = doc("check-model's verdict on the model "
                                             "(preflight.json)")
    collector_env: dict[str, Any] | None = None
    demo: dict[str, Any] | None = doc("the embedded demo's own figures (qparity demo only)")


def _load(path: Path) -> tuple[dict[str, Any], EvalReport]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise QParityError("no evaluation report here (run `qparity collect` first)", path) from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise QParityError(f"unreadable evaluation report ({e})", path) from e
    try:
        return data, EvalReport.from_json(data)
    except RecordError as e:
        raise QParityError(f"not a valid evaluation report: {e}", path) from e


def read_report_record(path: Path) -> EvalReport:
    """The report at `path` as a record; QParityError naming the file when it is not one."""
    return _load(path)[1]


def read_report(path: Path) -> dict[str, Any]:
    """The report at `path` as the collector wrote it (a dict), checked as an EvalReport first;
    QParityError naming the file when it is not one. What every reader of an eval_report.json
    on disk calls."""
    return _load(path)[0]


__all__ = ["EngineEntry", "EntryStatus", "EvalReport", "REPORT_NAME", "ReferenceSummary",
           "ReportLatency", "SkippedFile", "read_report", "read_report_record"]
