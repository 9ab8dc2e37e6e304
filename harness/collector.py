"""Merge per-engine results, check they measured the same thing, gate against the golden one.

Comparison is kept apart from running: the collector reads result files only, so it can be
re-run at any time (`qparity collect OUT`) and on results from other machines.

It trusts none of them: every `<engine>.json` is read as its record (results.read_result); a file
that fails is an `error` entry naming the file and the problem, never dropped. Only the files of
one run id are gathered (the one run.json names, else the newest); the others are listed as
skipped with the reason. The golden engine, the tolerance and the protocol come from the locked
protocol plus the overrides the results record, never from a result file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import QParityError
from .fileio import write_json_atomic
from .protocol import Protocol, locked_protocol
from .records.base import RecordError, dig
from .records.preflight import PREFLIGHT_NAME, PreflightVerdict, read_preflight
from .records.report import (REPORT_NAME, EngineEntry, EvalReport, ReferenceSummary,  # noqa: F401
                             ReportLatency, SkippedFile, read_report)  # (REPORT_NAME, read_report: re-exported)
from .records.result import COCO_METRICS, EngineResult, Metrics, ModelFacts
from .results import expected_protocol, read_result
from .rundir import RUN_NAME, read_run
from .stability import annotate as annotate_latency

# JSON files in a results folder that are not engine results.
NOT_RESULTS = (REPORT_NAME, PREFLIGHT_NAME, RUN_NAME, "platform.json")
REPORT_SCHEMA = EvalReport.VERSION
EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
REFERENCE = "qdq-ref"  # the built-in reference engine (the model's own Q/DQ arithmetic)
# Where the engine ran but the evidence says it did not measure the same thing as the golden.
SAME_AS_GOLDEN = (("model", "sha256", "model file"),
                  ("data", "image_list_sha256", "image list"),
                  ("data", "annotations_sha256", "annotation file"))


@dataclass
class Scan:
    """What a results folder holds for one run: results by engine (invalid files included, as
    errors), the run id gathered, and the files left out with the reason."""
    results: dict[str, EngineResult]
    run_id: str | None
    skipped: list[SkippedFile] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    run: dict[str, Any] | None = None


def _environment() -> dict[str, Any]:
    from .envinfo import environment  # package metadata and subprocesses: only when writing

    return environment()


def invalid_result(stem: str, f: Path, problem: str, run_id: Any = None) -> EngineResult:
    """An unusable `<stem>.json` as an error result naming the file and the problem."""
    return EngineResult.sparse(engine=stem, status="error",
                               run_id=run_id if isinstance(run_id, str) else None,
                               reason=f"invalid result file {f.name}: {problem}")


def _when(r: EngineResult) -> str:
    return str(r.finished or r.started or "")


def scan_results(out: Path, run_id: str | None = None) -> Scan:
    """Read and validate every `<engine>.json` in `out`, keep one run's."""
    out = Path(out)
    if not out.is_dir():
        raise QParityError("results folder does not exist", out)
    run = read_run(out)
    found: dict[str, EngineResult] = {}
    invalid: list[str] = []
    for f in sorted(out.glob("*.json")):
        if f.name in NOT_RESULTS or f.name.startswith("."):
            continue
        try:
            r = json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            found[f.stem] = invalid_result(f.stem, f, f"unreadable JSON ({e})")
            invalid.append(f.name)
            continue
        got = read_result(r, f.stem)
        if isinstance(got, str):
            found[f.stem] = invalid_result(f.stem, f, got,
                                           r.get("run_id") if isinstance(r, dict) else None)
            invalid.append(f.name)
        else:
            found[f.stem] = got
    if not found:
        raise QParityError("no engine result files (<engine>.json) in this folder", out)
    if run_id is None and run is not None:
        run_id = run["run_id"]
    valid = [r for n, r in found.items() if f"{n}.json" not in invalid]
    ids = {r.run_id for r in valid}
    if run_id is None and len(ids) > 1:  # no record of the run: the newest one is gathered
        run_id = max(valid, key=_when).run_id
    elif run_id is None and ids:
        run_id = next(iter(ids))
    results, skipped = {}, []
    for name, r in found.items():
        theirs = r.run_id
        if theirs == run_id or (f"{name}.json" in invalid and theirs is None):
            results[name] = r
        else:
            skipped.append(SkippedFile.sparse(file=f"{name}.json", run_id=theirs,
                                       reason=f"from run {theirs or '(no run id)'}, not the run "
                                              f"collected ({run_id or '(no run id)'})"))
    return Scan(results, run_id, skipped, invalid, run)


def load_records(out: Path) -> dict[str, EngineResult]:
    """The results of the run a folder holds (see scan_results), invalid files as errors."""
    return scan_results(out).results


def load_results(out: Path) -> dict[str, dict[str, Any]]:
    """load_records as the files hold them (dicts), for readers that want plain JSON."""
    return {n: r.to_json(omit_absent=True) for n, r in load_records(out).items()}


def map_delta(a: Metrics | dict[str, Any] | None,
              b: Metrics | dict[str, Any] | None) -> float | None:
    """a - b in mAP50-95 points, rounded as the metrics are stored, so that a delta of exactly
    the tolerance is not pushed over it by binary floating point. Metrics records, or metrics
    as a report holds them (dicts)."""
    x, y = _map50_95(a), _map50_95(b)
    return None if x is None or y is None else round(x - y, 4)


def _map50_95(m: Metrics | dict[str, Any] | None) -> float | None:
    return m.get("map50_95") if isinstance(m, dict) else getattr(m, "map50_95", None)


def gate(delta: float | None, tolerance: float) -> str:
    return "pass" if delta is not None and abs(delta) <= tolerance else "fail"


def part(r: EngineResult, section: str, key: str) -> Any:
    """One fact of a result's model or data section (None without the section)."""
    s = getattr(r, section)
    return None if s is None else getattr(s, key)


def emulated_cpu(r: EngineResult) -> str | None:
    """The emulated CPU a result ran on: its `emulated` section, else what its environment says
    (harness/emulate.py emulated_of)."""
    if r.emulated is not None:
        return f"emulated {r.emulated.qemu_model}"
    em = dig(r.env, "cpu", "emulated")
    return f"emulated {em['qemu_model']}" if em else None


def report_latency(r: EngineResult) -> ReportLatency | None:
    """The result's latency figures without the raw samples (they stay in the result file)."""
    lat = r.latency_ms
    if lat is None:
        return None
    return ReportLatency.sparse(**{k: getattr(lat, k) for k in lat.field_names()
                                   if k != "samples_ms"})


def engine_entry(name: str, r: EngineResult, golden: EngineResult | None,
                 golden_name: str, tolerance: float) -> EngineEntry:
    m = r.metrics
    entry = EngineEntry.sparse(
        status="error", reason=r.reason,
        metrics=Metrics.sparse(**{k: getattr(m, k) for k in COCO_METRICS}) if m else None,
        images=m.images if m else None, detections=m.detections if m else None,
        delta_map50_95=None, latency_ms=report_latency(r), speedup_vs_golden=None,
        engine=r.engine_info, census=r.census, eval_timing=r.eval_timing, env=r.env,
        model_sha256=part(r, "model", "sha256"),
        quantized_in_file=part(r, "model", "quantized_compute_ops"),
        result_file=f"{name}.json", run_id=r.run_id)
    note = not_int8_note(r.model)
    if note:
        entry.model_note = note
    if r.status != "ok":  # the report's statuses stay pass/fail/error/...: an interrupted
        entry.status = "error" if r.status == "interrupted" else r.status  # engine is an error
        return entry
    if golden is None or golden.status != "ok":
        why = golden.reason if golden else "no result file"
        entry.reason = f"golden engine {golden_name} did not run ({why}); nothing to gate against"
        return entry
    for section, key, what in SAME_AS_GOLDEN:
        mine, theirs = part(r, section, key), part(golden, section, key)
        if mine != theirs:
            entry.reason = (f"{what} differs from the golden engine's "
                            f"({str(mine)[:12]} vs {str(theirs)[:12]})")
            return entry
    cpu, golden_cpu = emulated_cpu(r), emulated_cpu(golden)
    if cpu != golden_cpu:  # one CPU class per gate (harness/emulate.py)
        entry.reason = (f"ran on {cpu or 'the native CPU'}, the golden engine "
                        f"on {golden_cpu or 'the native CPU'}: not one platform")
        return entry
    if dig(r.protocol, "overrides") != dig(golden.protocol, "overrides"):
        entry.reason = "protocol differs from the golden engine's run"
        return entry
    entry.delta_map50_95 = map_delta(r.metrics, golden.metrics)
    if is_reference(name, r):  # a diagnostic yardstick, not a deployment engine: never gated
        entry.status = "reference"
        return _with_speedup(entry, golden)
    entry.status = gate(entry.delta_map50_95, tolerance)  # type: ignore[assignment]
    if entry.status == "fail":
        entry.reason = (f"mAP50-95 {entry.delta_map50_95:+.2f} points from {golden_name}, "
                        f"tolerance {tolerance}")
    return _with_speedup(entry, golden)


def is_reference(name: str, r: EngineResult) -> bool:
    """Whether a result is a diagnostic yardstick (never gated): what its `reference` field says.
    A result file from before the field existed (schema 1 files carry it only since it was
    added) falls back to the built-in reference engine's name."""
    return r.reference if r.has("reference") else name == REFERENCE


def not_int8_note(model: ModelFacts | None) -> str | None:
    """A model with no compute op fed by a DequantizeLinear weight is not what the gate is for:
    every engine then runs float and agrees, and "0/0 int8" would pass unnoticed."""
    if model is None or model.quantized_compute_ops is None:
        return None
    if model.quantized_compute_ops == 0:
        ops = model.compute_ops if model.has("compute_ops") else "?"
        quant = model.quantize_nodes if model.has("quantize_nodes") else 0
        return (f"not an INT8 QDQ model: none of its {ops} compute ops "
                f"takes a quantized weight ({quant} QuantizeLinear "
                f"nodes); every engine runs it in float")
    return None


def _with_speedup(entry: EngineEntry, golden: EngineResult) -> EngineEntry:
    g_med = golden.latency_ms.median if golden.latency_ms else None
    med = entry.latency_ms.median if entry.latency_ms else None
    if g_med and med:
        entry.speedup_vs_golden = round(g_med / med, 3)
    return entry


def add_reference_deltas(entries: dict[str, EngineEntry], results: dict[str, EngineResult],
                         golden_name: str, tolerance: float) -> ReferenceSummary | None:
    """Each engine's delta against the reference engine (qdq-ref, or else the first engine whose
    result says `reference`), beside (never instead of) the golden gate, and a flag when the
    golden engine itself is off the model's own arithmetic. Only a reference that passed the
    golden's sameness checks (model, data, protocol: status "reference") compares."""
    refs = [n for n, e in entries.items() if e.status == "reference"]
    if not refs:
        return None
    ref_name = REFERENCE if REFERENCE in refs else refs[0]
    ref = results[ref_name]
    comparable = ("pass", "fail")
    for name, e in entries.items():
        if name != ref_name and e.status in comparable:
            e.delta_vs_qdq_ref = map_delta(results[name].metrics, ref.metrics)
    g = entries[golden_name].delta_vs_qdq_ref if golden_name in entries else None
    drift = g is not None and abs(g) > tolerance
    if drift and golden_name in entries:
        entries[golden_name].golden_drift = True
    return ReferenceSummary(
        engine=ref_name, map50_95=ref.metrics.map50_95 if ref.metrics else None,
        golden_delta=g, golden_drift=drift,
        note=(f"golden {golden_name} is {g:+.2f} points from the model's own Q/DQ "
              f"arithmetic: the golden engine moved, not (only) the others") if drift else "")


def verdict(entries: dict[str, EngineEntry], errors: list[str] | None = None) -> tuple[str, int]:
    statuses = {e.status for e in entries.values()}
    if errors or statuses - {"pass", "fail", "reference"}:
        return "error", EXIT_ERROR
    if "fail" in statuses:
        return "fail", EXIT_FAIL
    return "pass", EXIT_PASS


def run_problems(scan: Scan) -> list[str]:
    """What run.json says about the run gathered: an interrupted or unfinished run is no verdict."""
    run = scan.run
    if run is None or run.get("run_id") != scan.run_id:
        return []
    status = run.get("status")
    if status == "interrupted":
        return [f"run {scan.run_id} was interrupted; its results are incomplete"]
    if status == "running" and run.get("pid") != os.getpid():
        try:
            os.kill(int(run.get("pid")), 0)
            alive = True
        except (OSError, TypeError, ValueError):
            alive = False
        return [f"run {scan.run_id} is still running (pid {run.get('pid')})" if alive else
                f"run {scan.run_id} never finished (its process is gone)"]
    return []


def report_protocol(ref: EngineResult | None, locked: Protocol) -> dict[str, Any]:
    """The locked protocol with the overrides the gathered results record (validated)."""
    if ref is not None and ref.status == "ok":
        try:
            return expected_protocol(ref.protocol or {}).to_dict()
        except ValueError:
            pass
    return locked.to_dict()


def _preflight(out: Path) -> PreflightVerdict | None:
    if not (out / PREFLIGHT_NAME).is_file():
        return None
    # one line naming the file if corrupt; read with every field filled in (an older file's
    # missing run_id included), as the report has always carried it
    return PreflightVerdict.from_json(read_preflight(out / PREFLIGHT_NAME))


def build_report(out: Path, protocol: Protocol | None = None, expect: list[str] | None = None,
                 run_id: str | None = None) -> EvalReport:
    """The evaluation report on the result files in `out`, as a record (see `collect`)."""
    out = Path(out)
    scan = scan_results(out, run_id)
    results = scan.results
    if expect is None and scan.run is not None and scan.run["run_id"] == scan.run_id:
        expect = [str(e) for e in scan.run.get("engines") or []] or None
    if expect is not None:
        for name in sorted(set(results) - set(expect)):
            scan.skipped.append(SkippedFile.sparse(file=f"{name}.json", run_id=results[name].run_id,
                                            reason="engine not asked for in this run"))
        results = {n: r for n, r in results.items() if n in expect}
        for name in expect:
            if name not in results:
                results[name] = EngineResult.sparse(
                    engine=name, status="error", reason=f"no result file {name}.json in {out}")
    locked = protocol or locked_protocol()
    golden_name = locked.golden
    tolerance = float(locked.tolerance_map50_95)
    golden = results.get(golden_name)
    ref = golden if golden and golden.status == "ok" else next(
        (r for r in results.values() if r.status == "ok"), golden)
    order = [golden_name] + sorted(n for n in results if n != golden_name)
    entries = {n: engine_entry(n, results[n], golden, golden_name, tolerance)
               for n in order if n in results}
    if golden is None:
        entries[golden_name] = EngineEntry.sparse(
            status="error", reason="golden engine has no result file", metrics=None,
            delta_map50_95=None, latency_ms=None)
    reference = add_reference_deltas(entries, results, golden_name, tolerance)
    annotate_latency(entries, golden_name)  # latency spread; is each speed-up comparable
    preflight = _preflight(out)
    if preflight is not None:
        if preflight.run_id not in (None, scan.run_id):
            scan.skipped.append(SkippedFile.sparse(file=PREFLIGHT_NAME, run_id=preflight.run_id,
                                            reason=f"from run {preflight.run_id}, not the run "
                                                   f"collected ({scan.run_id})"))
            preflight = None
        else:
            for name, e in entries.items():
                pre = preflight.engines.get(name)
                if pre is not None:  # beside an engine's refusal, what check-model predicted
                    e.preflight = pre
    errors = run_problems(scan)
    v, code = verdict(entries, errors)
    return EvalReport.sparse(  # no `demo`: only the demo adds its figures
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), run_id=scan.run_id, golden=golden_name,
        tolerance_map50_95=tolerance, verdict=v, exit_code=code, errors=errors,
        warnings=sorted({e.model_note for e in entries.values() if e.model_note}),
        skipped_files=scan.skipped, invalid_files=scan.invalid,
        protocol=report_protocol(ref, locked),
        model=ref.model if ref else None, data=ref.data if ref else None,
        reference=reference, preflight=preflight, engines=entries,
        collector_env=_environment())


def collect_report(out: Path, protocol: Protocol | None = None,
                   expect: list[str] | None = None, run_id: str | None = None) -> EvalReport:
    """`collect`, returning the report as its record, as written."""
    return _collect(out, protocol, expect, run_id)[1]


def _collect(out: Path, protocol: Protocol | None, expect: list[str] | None,
             run_id: str | None) -> tuple[dict[str, Any], EvalReport]:
    out = Path(out)
    report = build_report(out, protocol, expect, run_id).to_json(omit_absent=True)
    try:  # the record's check: a collector bug is caught here, not by the next reader
        record = EvalReport.from_json(report)
    except RecordError as e:
        raise QParityError(f"qparity built an invalid evaluation report ({e}); this is a bug "
                           f"in qparity", out / REPORT_NAME) from e
    write_json_atomic(out / REPORT_NAME, report)
    return report, record


def collect(out: Path, protocol: Protocol | None = None,
            expect: list[str] | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Build and write `<out>/eval_report.json` from the result files in `out`; return it as
    written (a dict; `collect_report` gives the record).

    With `expect` (by default the engines run.json lists), only those engines are judged (a
    file left by an earlier run with other engines is ignored) and an expected engine without a
    result file is an error. `run_id` picks the run to gather (default: run.json's, else the
    newest). The gate (golden engine, tolerance) is `protocol`'s, by default the locked one.
    The sections passed on from the results (model, data, latency) are as the files hold them:
    no key added or moved (records' omit_absent).
    """
    return _collect(out, protocol, expect, run_id)[0]
