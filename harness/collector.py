"""Merge per-engine results, check they measured the same thing, gate against the golden one.

Comparison is kept apart from running: the collector reads result files only, so it can be
re-run at any time (`qparity collect OUT`) and on results from other machines.

It trusts none of them: every `<engine>.json` is validated (results.validate_result); a file
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
from .records.base import RecordError
from .records.preflight import PREFLIGHT_NAME, read_preflight
from .records.report import REPORT_NAME, EvalReport, read_report  # noqa: F401  (re-exported)
from .results import METRIC_KEYS as METRIC_NAMES, RESULT_SCHEMA, expected_protocol, validate_result
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
    results: dict[str, dict[str, Any]]
    run_id: str | None
    skipped: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    run: dict[str, Any] | None = None


def _environment() -> dict[str, Any]:
    from .envinfo import environment  # package metadata and subprocesses: only when writing

    return environment()


def invalid_result(stem: str, f: Path, problem: str, run_id: Any = None) -> dict[str, Any]:
    return {"schema": RESULT_SCHEMA, "engine": stem, "status": "error",
            "run_id": run_id if isinstance(run_id, str) else None,
            "reason": f"invalid result file {f.name}: {problem}", "invalid_file": f.name}


def _when(r: dict[str, Any]) -> str:
    return str(r.get("finished") or r.get("started") or "")


def scan_results(out: Path, run_id: str | None = None) -> Scan:
    """Read and validate every `<engine>.json` in `out`, keep one run's."""
    out = Path(out)
    if not out.is_dir():
        raise QParityError("results folder does not exist", out)
    run = read_run(out)
    found: dict[str, dict[str, Any]] = {}
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
        problem = validate_result(r, f.stem)
        if problem:
            found[f.stem] = invalid_result(f.stem, f, problem,
                                           r.get("run_id") if isinstance(r, dict) else None)
            invalid.append(f.name)
        else:
            found[f.stem] = r
    if not found:
        raise QParityError("no engine result files (<engine>.json) in this folder", out)
    if run_id is None and run is not None:
        run_id = run["run_id"]
    ids = {r.get("run_id") for n, r in found.items() if f"{n}.json" not in invalid}
    if run_id is None and len(ids) > 1:  # no record of the run: the newest one is gathered
        newest = max((r for n, r in found.items() if f"{n}.json" not in invalid), key=_when)
        run_id = newest.get("run_id")
    elif run_id is None and ids:
        run_id = next(iter(ids))
    results, skipped = {}, []
    for name, r in found.items():
        theirs = r.get("run_id")
        if theirs == run_id or (r.get("invalid_file") and theirs is None):
            results[name] = r
        else:
            skipped.append({"file": f"{name}.json", "run_id": theirs,
                            "reason": f"from run {theirs or '(no run id)'}, not the run collected "
                                      f"({run_id or '(no run id)'})"})
    return Scan(results, run_id, skipped, invalid, run)


def load_results(out: Path) -> dict[str, dict[str, Any]]:
    """The results of the run a folder holds (see scan_results), invalid files as errors."""
    return scan_results(out).results


def map_delta(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """a - b in mAP50-95 points, rounded as the metrics are stored, so that a delta of exactly
    the tolerance is not pushed over it by binary floating point."""
    if not a or not b or a.get("map50_95") is None or b.get("map50_95") is None:
        return None
    return round(a["map50_95"] - b["map50_95"], 4)


def gate(delta: float | None, tolerance: float) -> str:
    return "pass" if delta is not None and abs(delta) <= tolerance else "fail"


def emulated_cpu(r: dict[str, Any]) -> str | None:
    from .emulate import emulated_of

    em = emulated_of(r)
    return f"emulated {em['qemu_model']}" if em else None


def engine_entry(name: str, r: dict[str, Any], golden: dict[str, Any] | None,
                 golden_name: str, tolerance: float) -> dict[str, Any]:
    lat = r.get("latency_ms") or {}
    entry: dict[str, Any] = {
        "status": r.get("status", "error"), "reason": r.get("reason", ""),
        "metrics": {k: (r.get("metrics") or {}).get(k) for k in METRIC_NAMES}
        if r.get("metrics") else None,
        "images": (r.get("metrics") or {}).get("images"),
        "detections": (r.get("metrics") or {}).get("detections"),
        "delta_map50_95": None,
        "latency_ms": {k: v for k, v in lat.items() if k != "samples_ms"} or None,
        "speedup_vs_golden": None,
        "engine": r.get("engine_info"), "census": r.get("census"),
        "eval_timing": r.get("eval_timing"), "env": r.get("env"),
        "model_sha256": (r.get("model") or {}).get("sha256"),
        "quantized_in_file": (r.get("model") or {}).get("quantized_compute_ops"),
        "result_file": f"{name}.json",
        "run_id": r.get("run_id"),
    }
    note = not_int8_note(r.get("model"))
    if note:
        entry["model_note"] = note
    if entry["status"] == "interrupted":  # the report's statuses stay pass/fail/error/...: an
        entry["status"] = "error"         # interrupted engine is an error wherever it is read
    if entry["status"] != "ok":
        return entry
    if golden is None or golden.get("status") != "ok":
        why = golden.get("reason") if golden else "no result file"
        entry.update(status="error", reason=f"golden engine {golden_name} did not run ({why}); "
                                            f"nothing to gate against")
        return entry
    for section, key, what in SAME_AS_GOLDEN:
        mine, theirs = (r.get(section) or {}).get(key), (golden.get(section) or {}).get(key)
        if mine != theirs:
            entry.update(status="error", reason=f"{what} differs from the golden engine's "
                                                f"({str(mine)[:12]} vs {str(theirs)[:12]})")
            return entry
    cpu, golden_cpu = emulated_cpu(r), emulated_cpu(golden)
    if cpu != golden_cpu:  # one CPU class per gate (harness/emulate.py)
        entry.update(status="error", reason=f"ran on {cpu or 'the native CPU'}, the golden engine "
                                            f"on {golden_cpu or 'the native CPU'}: not one platform")
        return entry
    if r.get("protocol", {}).get("overrides") != golden.get("protocol", {}).get("overrides"):
        entry.update(status="error", reason="protocol differs from the golden engine's run")
        return entry
    entry["delta_map50_95"] = map_delta(r.get("metrics"), golden.get("metrics"))
    if is_reference(name, r):  # a diagnostic yardstick, not a deployment engine: never gated
        entry["status"] = "reference"
        return _with_speedup(entry, golden, lat)
    entry["status"] = gate(entry["delta_map50_95"], tolerance)
    if entry["status"] == "fail":
        entry["reason"] = (f"mAP50-95 {entry['delta_map50_95']:+.2f} points from {golden_name}, "
                           f"tolerance {tolerance}")
    return _with_speedup(entry, golden, lat)


def is_reference(name: str, r: dict[str, Any]) -> bool:
    """Whether a result is a diagnostic yardstick (never gated): what its `reference` field says.
    A result file from before the field existed (schema 1 files carry it only since it was
    added) falls back to the built-in reference engine's name."""
    flag = r.get("reference")
    return flag if isinstance(flag, bool) else name == REFERENCE


def not_int8_note(model: dict[str, Any] | None) -> str | None:
    """A model with no compute op fed by a DequantizeLinear weight is not what the gate is for:
    every engine then runs float and agrees, and "0/0 int8" would pass unnoticed."""
    if not model or model.get("quantized_compute_ops") is None:
        return None
    if model["quantized_compute_ops"] == 0:
        return (f"not an INT8 QDQ model: none of its {model.get('compute_ops', '?')} compute ops "
                f"takes a quantized weight ({model.get('quantize_nodes', 0)} QuantizeLinear "
                f"nodes); every engine runs it in float")
    return None


def _with_speedup(entry: dict[str, Any], golden: dict[str, Any], lat: dict[str, Any]) -> dict[str, Any]:
    g_med = (golden.get("latency_ms") or {}).get("median")
    if g_med and lat.get("median"):
        entry["speedup_vs_golden"] = round(g_med / lat["median"], 3)
    return entry


def add_reference_deltas(entries: dict[str, dict[str, Any]], results: dict[str, dict[str, Any]],
                         golden_name: str, tolerance: float) -> dict[str, Any] | None:
    """Each engine's delta against the reference engine (qdq-ref, or else the first engine whose
    result says `reference`), beside (never instead of) the golden gate, and a flag when the
    golden engine itself is off the model's own arithmetic. Only a reference that passed the
    golden's sameness checks (model, data, protocol: status "reference") compares."""
    refs = [n for n, e in entries.items() if e["status"] == "reference"]
    if not refs:
        return None
    ref_name = REFERENCE if REFERENCE in refs else refs[0]
    ref = results[ref_name]
    comparable = ("pass", "fail")
    for name, e in entries.items():
        if name != ref_name and e["status"] in comparable:
            e["delta_vs_qdq_ref"] = map_delta(results[name].get("metrics"), ref.get("metrics"))
    g = entries.get(golden_name, {}).get("delta_vs_qdq_ref")
    drift = g is not None and abs(g) > tolerance
    if drift and golden_name in entries:
        entries[golden_name]["golden_drift"] = True
    return {"engine": ref_name, "map50_95": (ref.get("metrics") or {}).get("map50_95"),
            "golden_delta": g, "golden_drift": drift,
            "note": (f"golden {golden_name} is {g:+.2f} points from the model's own Q/DQ "
                     f"arithmetic: the golden engine moved, not (only) the others") if drift else ""}


def verdict(entries: dict[str, dict[str, Any]], errors: list[str] | None = None) -> tuple[str, int]:
    statuses = {e["status"] for e in entries.values()}
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


def report_protocol(ref: dict[str, Any], locked: Protocol) -> dict[str, Any]:
    """The locked protocol with the overrides the gathered results record (validated)."""
    if ref.get("status") == "ok":
        try:
            return expected_protocol(ref.get("protocol") or {}).to_dict()
        except ValueError:
            pass
    return locked.to_dict()


def collect(out: Path, protocol: Protocol | None = None,
            expect: list[str] | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Build and write `<out>/eval_report.json` from the result files in `out`.

    With `expect` (by default the engines run.json lists), only those engines are judged (a
    file left by an earlier run with other engines is ignored) and an expected engine without a
    result file is an error. `run_id` picks the run to gather (default: run.json's, else the
    newest). The gate (golden engine, tolerance) is `protocol`'s, by default the locked one.
    """
    out = Path(out)
    scan = scan_results(out, run_id)
    results = scan.results
    if expect is None and scan.run is not None and scan.run["run_id"] == scan.run_id:
        expect = [str(e) for e in scan.run.get("engines") or []] or None
    if expect is not None:
        for name in sorted(set(results) - set(expect)):
            scan.skipped.append({"file": f"{name}.json", "run_id": results[name].get("run_id"),
                                 "reason": "engine not asked for in this run"})
        results = {n: r for n, r in results.items() if n in expect}
        for name in expect:
            if name not in results:
                results[name] = {"schema": RESULT_SCHEMA, "engine": name, "status": "error",
                                 "reason": f"no result file {name}.json in {out}"}
    locked = protocol or locked_protocol()
    golden_name = locked.golden
    tolerance = float(locked.tolerance_map50_95)
    golden = results.get(golden_name)
    ref = golden if golden and golden.get("status") == "ok" else next(
        (r for r in results.values() if r.get("status") == "ok"), golden or {})
    order = [golden_name] + sorted(n for n in results if n != golden_name)
    entries = {n: engine_entry(n, results[n], golden, golden_name, tolerance)
               for n in order if n in results}
    if golden is None:
        entries[golden_name] = {"status": "error", "reason": "golden engine has no result file",
                                "metrics": None, "delta_map50_95": None, "latency_ms": None}
    reference = add_reference_deltas(entries, results, golden_name, tolerance)
    annotate_latency(entries, golden_name)  # latency spread; is each speed-up comparable
    preflight = None
    if (out / PREFLIGHT_NAME).is_file():
        preflight = read_preflight(out / PREFLIGHT_NAME)  # one line naming the file if corrupt
        pre_engines = preflight["engines"]
        if preflight["run_id"] not in (None, scan.run_id):
            scan.skipped.append({"file": PREFLIGHT_NAME, "run_id": preflight.get("run_id"),
                                 "reason": f"from run {preflight.get('run_id')}, not the run "
                                           f"collected ({scan.run_id})"})
            preflight = None
        else:
            for name, e in entries.items():
                pre = pre_engines.get(name)
                if pre is not None:  # beside an engine's refusal, what check-model predicted
                    e["preflight"] = pre
    errors = run_problems(scan)
    v, code = verdict(entries, errors)
    warnings = sorted({e["model_note"] for e in entries.values() if e.get("model_note")})
    report = {
        "schema": REPORT_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_id": scan.run_id,
        "golden": golden_name,
        "tolerance_map50_95": tolerance,
        "verdict": v,
        "exit_code": code,
        "errors": errors,
        "warnings": warnings,
        "skipped_files": scan.skipped,
        "invalid_files": scan.invalid,
        "protocol": report_protocol(ref, locked),
        "model": ref.get("model"),
        "data": ref.get("data"),
        "reference": reference,
        "preflight": preflight,
        "engines": entries,
        "collector_env": _environment(),
    }
    try:  # the record's check: a collector bug is caught here, not by the next reader
        EvalReport.from_json(report)
    except RecordError as e:
        raise QParityError(f"qparity built an invalid evaluation report ({e}); this is a bug "
                           f"in qparity", out / REPORT_NAME) from e
    write_json_atomic(out / REPORT_NAME, report)
    return report
