"""The nightly report (`nightly_report.json`) as a typed record: one verdict over every platform.

`qparity nightly` builds a `NightlyReport` (harness.nightly.judge) and writes its `to_json()`;
whatever reads the file back (the history, `qparity emulate nightly`, the tests) reads it with
`read_nightly_report`, which names the file and the first bad field in one line.

The parts that come from elsewhere keep their owners' shape: a platform's `meta` is its
`platform.json` as the platform job wrote it, the `model` and `data` sections are the reference
platform's collected report's, an engine's `engine` and `census` are its result's; those are
free-form here (their keys belong to the engine library or the job), every number the nightly
judges by is typed and must be finite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import QParityError
from .base import Record, RecordError, Section

NIGHTLY_SCHEMA = 1
NIGHTLY_REPORT = "nightly_report.json"  # in the nightly's --out folder

FindingKind = Literal["missing", "error", "model-mismatch", "data-mismatch", "protocol-mismatch",
                      "engine-fail", "engine-error", "golden-drift", "no-reference",
                      "reference-drift"]
Severity = Literal["error", "fail", "note"]
Verdict = Literal["pass", "fail", "error"]
CellStatus = Literal["pass", "fail", "reference", "error", "unavailable", "missing"]
# A latency summary as the collector keeps it (median, p95, n, what was timed, ...): numbers
# checked finite, the engine's own nested figures free-form.
LatencyValue = int | float | str | bool | dict[str, Any] | list[Any] | None


def doc(text: str, **kw: Any) -> Any:
    """A field with its description in the published schema."""
    return field(metadata={"doc": text}, **kw)


@dataclass
class Finding(Section):
    """One thing the nightly found; its severity decides the verdict (error > fail > note)."""

    kind: FindingKind
    severity: Severity
    platform: str
    engine: str | None
    reason: str


@dataclass
class GoldenCheck(Section):
    """A platform's golden engine against the reference platform's golden engine."""

    reference: str = doc("the reference platform")
    delta_map50_95: float | None = doc("mAP50-95 points from the reference platform's golden; "
                                       "null when not comparable")
    drift: bool = doc("the delta is outside the tolerance")
    comparable: bool = doc("same model file, data and protocol as the reference platform")


@dataclass
class Host(Section):
    """The machine of a platform, as its golden engine's result describes it."""

    cpu: str | None
    vnni: bool | None
    emulated: str | None = doc("the emulated CPU class (accuracy only, never a latency), or null")
    gpus: list[str | None] = doc("GPU names")


@dataclass
class QdqRef(Section):
    """A platform's golden engine against qdq-ref, the model's own Q/DQ arithmetic."""

    engine: str
    map50_95: float | None
    golden_delta: float | None
    golden_drift: bool
    note: str


@dataclass
class EngineCell(Section):
    """One engine on one platform, as that platform's collected report judged it."""

    status: CellStatus
    reason: str | None
    metrics: dict[str, float | None] | None = doc("COCO mAP statistics, in points")
    delta_map50_95: float | None = doc("mAP50-95 points from this platform's golden engine")
    delta_vs_qdq_ref: float | None
    latency_ms: dict[str, LatencyValue] | None = doc("latency summary (no raw samples: those "
                                                     "are in the result file and the history)")
    speedup_vs_golden: float | None
    engine: dict[str, Any] | None = doc("the engine's description (library, version, settings)")
    model_sha256: str | None
    census: dict[str, Any] | None = doc("what really ran in int8 (executed-precision census)")
    quantized_in_file: int | None


@dataclass
class PlatformSummary(Section):
    """One platform: ok (re-collected and judged), missing (no results) or error (unusable)."""

    status: Literal["ok", "missing", "error"]
    reason: str
    folder: str | None
    meta: dict[str, Any] | None = doc("the platform.json its job wrote, as written")
    collected_report: str | None = doc("its re-collected eval_report.json, relative to the "
                                       "nightly's folder")
    verdict: Verdict | None = doc("the verdict of its re-collected report")
    exit_code: int | None
    platform_verdict: str | None = doc("the verdict its own job's eval_report.json gave")
    model_sha256: str | None
    image_list_sha256: str | None
    images_evaluated: int | None
    host: Host
    golden_check: GoldenCheck | None
    qdq_ref: QdqRef | None
    engines: dict[str, EngineCell]


@dataclass
class News(Section):
    """A mark of the history on this run's row of one platform x engine series."""

    platform: str
    engine: str
    date: str
    run_id: str
    marks: list[Literal["accuracy-change", "latency-regression"]]
    golden: bool
    accuracy_change: float | None
    latency_ratio: float | None
    notes: list[str]


@dataclass
class NightlyHistory(Section):
    """Where the nightly was appended, and what the history found new in it."""

    store: str
    run_id: str
    news: list[News]


@dataclass
class Emulation(Section):
    """`qparity emulate nightly`: the native platform and the emulated CPU classes."""

    native: str
    classes: list[str]
    platform_wall_s: dict[str, float]
    note: str


@dataclass
class NightlyReport(Record):
    """qparity's nightly report: every platform's engines judged against their own platform's
    golden engine, every golden engine against the reference platform's, one verdict."""

    KIND = "nightly-report"
    VERSION = NIGHTLY_SCHEMA

    created: str
    run_id: str | None
    date: str | None
    verdict: Verdict
    exit_code: Literal[0, 1, 2] = doc("0 pass, 1 fail (an engine outside the gate, a golden "
                                      "drift), 2 error")
    golden: str = doc("the golden engine")
    tolerance_map50_95: float = doc("mAP50-95 points an engine may differ from the golden")
    reference_platform: str = doc("the platform whose golden engine the others' are judged by")
    golden_drift_policy: Literal["fail", "warn"]
    expected_platforms: list[str]
    platforms_order: list[str] = doc("every platform judged, in the table's order")
    engines_order: list[str]
    model: dict[str, Any] | None = doc("the reference platform's model section")
    data: dict[str, Any] | None = doc("the reference platform's data section")
    findings: list[Finding] = doc("most severe first")
    platforms: dict[str, PlatformSummary]
    history: NightlyHistory | None = None
    emulation: Emulation | None = None

    def problem(self) -> str | None:
        """What the types cannot say: the table's order names exactly the platforms there are."""
        if sorted(self.platforms_order) != sorted(self.platforms):
            return (f"platforms_order {self.platforms_order} does not name the platforms "
                    f"{sorted(self.platforms)}")
        if self.reference_platform not in self.platforms:
            return f"reference_platform {self.reference_platform!r} is not one of the platforms"
        return None


def read_nightly_report(path: Path | str) -> NightlyReport:
    """The nightly report in `path`; a QParityError naming the file on anything else."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise QParityError("no nightly report here (qparity nightly writes it)", path) from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise QParityError(f"not a readable nightly report ({e})", path) from e
    try:
        report = NightlyReport.from_json(data)
    except RecordError as e:
        raise QParityError(str(e), path) from e
    problem = report.problem()
    if problem:
        raise QParityError(problem, path)
    return report


__all__ = ["NIGHTLY_REPORT", "NIGHTLY_SCHEMA", "Emulation", "EngineCell", "Finding", "GoldenCheck", "Host", "News",
           "NightlyHistory", "NightlyReport", "PlatformSummary", "QdqRef", "read_nightly_report"]
