"""The per-engine result file: where it lives, what a new one holds, and what a valid one is.

Kept apart from the runner (which imports OpenCV, pycocotools and the engines) so the collector,
the nightly and the history store read and check result files without importing any of that.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .protocol import Protocol, locked_protocol
from .records.base import RecordError
from .records.result import STATUSES, EngineResult  # noqa: F401  (STATUSES: re-exported)

RESULT_SCHEMA = EngineResult.VERSION
# Protocol fields no result file may move: the gate is the locked protocol's, never a file's.
GATE_FIELDS = ("version", "golden", "tolerance_map50_95")


def result_path(out: Path, engine: str) -> Path:
    return Path(out) / f"{engine}.json"


def detections_path(out: Path, engine: str) -> Path:
    return Path(out) / "detections" / f"{engine}.npz"


def new_result(engine: str, protocol: Protocol, run_id: str | None = None) -> dict[str, Any]:
    from .envinfo import environment

    return {"schema": RESULT_SCHEMA, "engine": engine, "run_id": run_id, "status": "error",
            "reason": "", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "protocol": protocol.to_dict(), "env": environment()}


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
    the first problem, one line naming the field. The structure (fields and types, a known
    status, finite numbers, no unknown field) is the EngineResult record's; on top of it, the
    engine named like its file, the locked protocol, and an `ok` result carrying what it claims."""
    got = read_result(r, stem)
    return got if isinstance(got, str) else None


def read_result(r: Any, stem: str) -> EngineResult | str:
    """`r` (the parsed `<stem>.json`) as the record, or the first problem (see validate_result)."""
    if not isinstance(r, dict):
        return f"not a result object (a JSON {type(r).__name__})"
    try:
        rec = EngineResult.from_json(r)
    except RecordError as e:
        return str(e)
    return check_result(rec, stem) or rec


def check_result(rec: EngineResult, stem: str) -> str | None:
    """The checks a type cannot express, on a result that is structurally an EngineResult."""
    if rec.engine != stem:
        return f"names engine {rec.engine!r} but the file is {stem}.json"
    if rec.status != "ok":
        return None
    bad = check_protocol(rec.protocol)
    if bad:
        return bad
    m = rec.metrics
    if m is None:
        return "status ok but no metrics"
    if m.map50_95 is None or not 0 <= m.map50_95 <= 100:
        return f"metrics.map50_95 is {m.map50_95!r}, not a score in 0..100"
    lat = rec.latency_ms
    if rec.emulated is not None:  # an emulated CPU measures accuracy only: a latency would lie
        if lat is not None:
            return "an emulated run carries a latency_ms"
    elif lat is None:
        return "status ok but no latency_ms"
    else:
        for k in ("median", "p95"):
            if getattr(lat, k) < 0:
                return f"latency_ms.{k} is {getattr(lat, k)}, not a non-negative number"
    for section, key in (("model", "sha256"), ("data", "image_list_sha256"),
                         ("data", "annotations_sha256")):
        if getattr(getattr(rec, section), key, None) is None:
            return f"status ok but {section}.{key} is missing"
    return None


def write_result(path: Path, r: dict[str, Any]) -> dict[str, Any]:
    """Write `r` (as the runner built it) to `path` once it is an EngineResult record. One that
    is not is a bug in qparity, caught here where it happens rather than by a reader: what is
    written instead is an error result naming the field, with the run's own identity kept."""
    from .fileio import write_json_atomic

    try:
        EngineResult.from_json(r)
    except RecordError as e:
        keep = {k: r[k] for k in ("engine", "run_id", "started", "finished", "protocol", "env")
                if k in r}
        r = {"schema": RESULT_SCHEMA, **keep, "status": "error",
             "reason": f"qparity built an invalid result ({e}); this is a bug in qparity, "
                       f"nothing it measured is kept"}
        EngineResult.from_json(r)  # still wrong (the engine name, the env): fail loudly here
    write_json_atomic(path, r)
    return r
