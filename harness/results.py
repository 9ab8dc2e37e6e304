"""The per-engine result file: where it lives, what a new one holds, and what a valid one is.

Kept apart from the runner (which imports OpenCV, pycocotools and the engines) so the collector,
the nightly and the history store read and check result files without importing any of that.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from .protocol import Protocol, locked_protocol

RESULT_SCHEMA = 1
# What an engine run can end as. Anything else in a file is not a result we wrote.
STATUSES = ("ok", "error", "unavailable", "interrupted")
# Protocol fields no result file may move: the gate is the locked protocol's, never a file's.
GATE_FIELDS = ("version", "golden", "tolerance_map50_95")
METRIC_KEYS = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")


def result_path(out: Path, engine: str) -> Path:
    return Path(out) / f"{engine}.json"


def detections_path(out: Path, engine: str) -> Path:
    return Path(out) / "detections" / f"{engine}.npz"


def new_result(engine: str, protocol: Protocol, run_id: str | None = None) -> dict[str, Any]:
    from .envinfo import environment

    return {"schema": RESULT_SCHEMA, "engine": engine, "run_id": run_id, "status": "error",
            "reason": "", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "protocol": protocol.to_dict(), "env": environment()}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _non_finite(obj: Any, where: str) -> str | None:
    """The first non-finite number (NaN, Infinity: JSON readers accept both) under obj."""
    if _is_number(obj):
        return None if math.isfinite(obj) else f"{where} is {obj}"
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list):
        items = ((f"[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for k, v in items:
        bad = _non_finite(v, f"{where}.{k}" if not str(k).startswith("[") else f"{where}{k}")
        if bad:
            return bad
    return None


def expected_protocol(recorded: dict[str, Any]) -> Protocol:
    """The locked protocol with the overrides a result records, which must be real overrides
    of the locked values and may never touch the gate."""
    locked = locked_protocol()
    overrides = recorded.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ValueError("protocol.overrides is not an object")
    used = {}
    for key, ov in overrides.items():
        if key in GATE_FIELDS:
            raise ValueError(f"protocol override of {key} (the gate comes from the locked "
                             f"protocol, never from a result file)")
        if not hasattr(locked, key) or key == "overrides":
            raise ValueError(f"protocol override of unknown field {key!r}")
        if not isinstance(ov, dict) or "used" not in ov or ov.get("locked") != getattr(locked, key):
            raise ValueError(f"protocol override of {key} does not record the locked value "
                             f"{getattr(locked, key)!r}")
        used[key] = ov["used"]
    try:
        return locked.with_overrides(**used)
    except Exception as e:  # a value of the wrong type for its field
        raise ValueError(f"protocol overrides cannot be applied ({e})") from e


def check_protocol(recorded: Any) -> str | None:
    if not isinstance(recorded, dict):
        return "protocol is missing or not an object"
    try:
        want = expected_protocol(recorded).to_dict()
    except ValueError as e:
        return str(e)
    for key, value in want.items():
        if key == "overrides":
            continue
        if recorded.get(key) != value:
            return (f"protocol.{key} is {recorded.get(key)!r} but the locked protocol "
                    f"{'with its recorded overrides ' if want['overrides'] else ''}says {value!r}")
    return None


def validate_result(r: Any, stem: str) -> str | None:
    """None when `r` (the parsed `<stem>.json`) is a result file as the runner writes it, else
    the first problem. Required fields and types, a known status, the engine named like its
    file, the locked protocol, and finite numbers wherever a number is read."""
    if not isinstance(r, dict):
        return f"not a result object (a JSON {type(r).__name__})"
    if r.get("schema") != RESULT_SCHEMA:
        return f"schema is {r.get('schema')!r}, this qparity reads schema {RESULT_SCHEMA}"
    if r.get("engine") != stem:
        return f"names engine {r.get('engine')!r} but the file is {stem}.json"
    if r.get("status") not in STATUSES:
        return f"status {r.get('status')!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(r.get("reason", ""), str):
        return "reason is not a string"
    if r.get("run_id") is not None and not isinstance(r.get("run_id"), str):
        return "run_id is not a string"
    for section in ("metrics", "latency_ms", "eval_timing", "load_s"):
        bad = _non_finite(r.get(section), section)
        if bad:
            return f"non-finite number: {bad}"
    for section in ("model", "data", "metrics", "latency_ms"):
        if r.get(section) is not None and not isinstance(r[section], dict):
            return f"{section} is not an object"
    if r["status"] != "ok":
        return None
    bad = check_protocol(r.get("protocol"))
    if bad:
        return bad
    m = r.get("metrics")
    if not m:
        return "status ok but no metrics"
    for k in METRIC_KEYS:
        if k not in m or not (m[k] is None or _is_number(m[k])):
            return f"metrics.{k} is missing or not a number"
    if m["map50_95"] is None or not 0 <= m["map50_95"] <= 100:
        return f"metrics.map50_95 is {m['map50_95']!r}, not a score in 0..100"
    lat = r.get("latency_ms")
    if r.get("emulated"):  # an emulated CPU measures accuracy only: a latency would be a lie
        if lat:
            return "an emulated run carries a latency_ms"
    elif not lat:
        return "status ok but no latency_ms"
    else:
        for k in ("median", "p95"):
            if not _is_number(lat.get(k)) or lat[k] < 0:
                return f"latency_ms.{k} is missing or not a non-negative number"
    for section, key in (("model", "sha256"), ("data", "image_list_sha256"),
                         ("data", "annotations_sha256")):
        if not isinstance((r.get(section) or {}).get(key), str):
            return f"status ok but {section}.{key} is missing"
    return None
