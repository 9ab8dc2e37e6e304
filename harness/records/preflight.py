"""The preflight verdict record: `<out>/preflight.json`, what `qparity check-model` predicted
(harness/preflight.py): per engine, whether it will accept the model file, and the findings.

The collector puts it into the report beside each engine's row, read through `read_preflight`:
a corrupt file is one line naming it, never a KeyError.

Files written before the record existed carry no "schema" key. Their shape is exactly version
1's (the key is all that was added), so such a file is read as version 1 when it passes every
check of version 1; any other value of "schema" is refused as another version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import QParityError  # standard library only, like the records
from .base import Record, RecordError, Section

PREFLIGHT_NAME = "preflight.json"


@dataclass
class Finding(Section):
    """One problem check-model found in the model file, and the engines it concerns."""
    code: str
    severity: Literal["refuse", "warn"] = field(metadata={"doc": (
        "refuse: the engine will not take the model; warn: it will, with a risk")})
    engines: list[str]
    message: str
    nodes: list[str] = field(default_factory=list)


@dataclass
class ConcatRange(Section):
    """The float ranges meeting at one quantized Concat, measured on a synthetic image."""
    node: str
    inputs: list[str]
    max_abs: list[float]
    ratio: float


@dataclass
class EngineVerdict(Section):
    """Whether one engine will accept the model, and why not or with which risks."""
    accepts: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class PreflightVerdict(Record):
    """check-model's verdict on a model file: findings, and per engine whether it accepts it."""
    KIND = "preflight"
    VERSION = 1

    model: str
    engines: dict[str, EngineVerdict]
    md5: str | None = None
    quantized_compute_ops: int | None = None
    compute_ops: int | None = None
    findings: list[Finding] = field(default_factory=list)
    concat_ranges: list[ConcatRange] = field(default_factory=list)
    run_id: str | None = field(default=None, metadata={"doc": "the run it was checked for"})

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "PreflightVerdict":
        if isinstance(data, dict) and "schema" not in data:  # written before the key existed
            data = {"schema": 1, **data}
        return super().from_json(data, where)


def read_preflight(path: Path) -> dict[str, Any]:
    """preflight.json as written (with "schema", also for an older file without it), checked as
    a PreflightVerdict; QParityError naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise QParityError(f"unreadable preflight record ({e})", path) from e
    try:
        return PreflightVerdict.from_json(data).to_json()
    except RecordError as e:
        raise QParityError(f"not a valid preflight record: {e}", path) from e


__all__ = ["ConcatRange", "EngineVerdict", "Finding", "PREFLIGHT_NAME", "PreflightVerdict",
           "read_preflight"]
