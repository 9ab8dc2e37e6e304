"""Merge per-engine results, check they measured the same thing, gate against the golden one.

Comparison is kept apart from running: the collector reads result files only, so it can be
re-run at any time (`qparity collect OUT`) and on results from other machines.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .envinfo import environment
from .errors import QParityError
from .metrics import METRIC_NAMES
from .protocol import Protocol, locked_protocol
from .fileio import write_json_atomic
from .runner import RESULT_SCHEMA

REPORT_NAME = "eval_report.json"
PREFLIGHT_NAME = "preflight.json"
REPORT_SCHEMA = 1
EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
REFERENCE = "qdq-ref"  # the model's own Q/DQ arithmetic: tells which engine moved
# Where the engine ran but the evidence says it did not measure the same thing as the golden.
SAME_AS_GOLDEN = (("model", "sha256", "model file"),
                  ("data", "image_list_sha256", "image list"),
                  ("data", "annotations_sha256", "annotation file"))


def load_results(out: Path) -> dict[str, dict[str, Any]]:
    out = Path(out)
    if not out.is_dir():
        raise QParityError("results folder does not exist", out)
    results = {}
    for f in sorted(out.glob("*.json")):
        if f.name in (REPORT_NAME, PREFLIGHT_NAME) or f.name.startswith("."):
            continue
        try:
            r = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise QParityError(f"unreadable result file ({e})", f) from e
        if isinstance(r, dict) and r.get("schema") == RESULT_SCHEMA and "engine" in r:
            results[r["engine"]] = r
    if not results:
        raise QParityError("no engine result files (<engine>.json) in this folder", out)
    return results


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
    }
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
    if name == REFERENCE:  # a diagnostic yardstick, not a deployment engine: never gated
        entry["status"] = "reference"
        return _with_speedup(entry, golden, lat)
    entry["status"] = gate(entry["delta_map50_95"], tolerance)
    if entry["status"] == "fail":
        entry["reason"] = (f"mAP50-95 {entry['delta_map50_95']:+.2f} points from {golden_name}, "
                           f"tolerance {tolerance}")
    return _with_speedup(entry, golden, lat)


def _with_speedup(entry: dict[str, Any], golden: dict[str, Any], lat: dict[str, Any]) -> dict[str, Any]:
    g_med = (golden.get("latency_ms") or {}).get("median")
    if g_med and lat.get("median"):
        entry["speedup_vs_golden"] = round(g_med / lat["median"], 3)
    return entry


def add_reference_deltas(entries: dict[str, dict[str, Any]], results: dict[str, dict[str, Any]],
                         golden_name: str, tolerance: float) -> dict[str, Any] | None:
    """Each engine's delta against qdq-ref, beside (never instead of) the golden gate, and a
    flag when the golden engine itself is off the model's own arithmetic."""
    ref = results.get(REFERENCE)
    if not ref or ref.get("status") != "ok":
        return None
    for name, e in entries.items():
        if name != REFERENCE and results.get(name, {}).get("status") == "ok":
            e["delta_vs_qdq_ref"] = map_delta(results[name].get("metrics"), ref.get("metrics"))
    g = entries.get(golden_name, {}).get("delta_vs_qdq_ref")
    drift = g is not None and abs(g) > tolerance
    if drift and golden_name in entries:
        entries[golden_name]["golden_drift"] = True
    return {"engine": REFERENCE, "map50_95": (ref.get("metrics") or {}).get("map50_95"),
            "golden_delta": g, "golden_drift": drift,
            "note": (f"golden {golden_name} is {g:+.2f} points from the model's own Q/DQ "
                     f"arithmetic: the golden engine moved, not (only) the others") if drift else ""}


def verdict(entries: dict[str, dict[str, Any]]) -> tuple[str, int]:
    statuses = {e["status"] for e in entries.values()}
    if statuses & {"error", "unavailable"}:
        return "error", EXIT_ERROR
    if "fail" in statuses:
        return "fail", EXIT_FAIL
    return "pass", EXIT_PASS


def collect(out: Path, protocol: Protocol | None = None,
            expect: list[str] | None = None) -> dict[str, Any]:
    """Build and write `<out>/eval_report.json` from the result files in `out`.

    With `expect`, only those engines are judged (a file left by an earlier run with other
    engines is ignored) and an expected engine without a result file is an error.
    """
    out = Path(out)
    results = load_results(out)
    if expect is not None:
        results = {n: r for n, r in results.items() if n in expect}
        for name in expect:
            if name not in results:
                results[name] = {"schema": RESULT_SCHEMA, "engine": name, "status": "error",
                                 "reason": f"no result file {name}.json in {out}"}
    recorded = next((r["protocol"] for r in results.values() if r.get("protocol")), {})
    golden_name = (protocol.golden if protocol else recorded.get("golden")) or locked_protocol().golden
    golden = results.get(golden_name)
    ref = golden if golden and golden.get("status") == "ok" else next(
        (r for r in results.values() if r.get("status") == "ok"), golden or {})
    tolerance = float((ref.get("protocol") or {}).get("tolerance_map50_95",
                                                       locked_protocol().tolerance_map50_95))
    order = [golden_name] + sorted(n for n in results if n != golden_name)
    entries = {n: engine_entry(n, results[n], golden, golden_name, tolerance)
               for n in order if n in results}
    if golden is None:
        entries[golden_name] = {"status": "error", "reason": "golden engine has no result file",
                                "metrics": None, "delta_map50_95": None, "latency_ms": None}
    reference = add_reference_deltas(entries, results, golden_name, tolerance)
    preflight = None
    if (out / PREFLIGHT_NAME).is_file():
        preflight = json.loads((out / PREFLIGHT_NAME).read_text())
        for name, e in entries.items():
            pre = preflight["engines"].get(name)
            if pre is not None:  # beside an engine's refusal, what check-model predicted
                e["preflight"] = pre
    v, code = verdict(entries)
    report = {
        "schema": REPORT_SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "golden": golden_name,
        "tolerance_map50_95": tolerance,
        "verdict": v,
        "exit_code": code,
        "protocol": ref.get("protocol"),
        "model": ref.get("model"),
        "data": ref.get("data"),
        "reference": reference,
        "preflight": preflight,
        "engines": entries,
        "collector_env": environment(),
    }
    write_json_atomic(out / REPORT_NAME, report)
    return report
