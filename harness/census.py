"""Executed-precision census: which compute ops an engine really ran in int8.

A QDQ file says what *may* run in int8; each engine decides what does. Engines report the ops
they executed as (name, op type, ran-in-int8); this module turns that into the one summary
every result carries, so "INT8" runs that were mostly float are visible in every report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

MAX_LISTED = 25  # float compute ops named in a result; the count is always complete


@dataclass(frozen=True)
class ExecutedOp:
    name: str
    op_type: str
    int8: bool


def summarize(ops: list[ExecutedOp], source: str) -> dict[str, Any]:
    by_type: Counter = Counter()
    for op in ops:
        by_type[(op.op_type, "int8" if op.int8 else "float")] += 1
    floats = [op.name for op in ops if not op.int8]
    return {
        "source": source,
        "compute_ops": len(ops),
        "int8_compute_ops": sum(op.int8 for op in ops),
        "float_compute_ops": len(floats),
        "float_ops": floats[:MAX_LISTED],
        "by_type": {f"{t}/{p}": n for (t, p), n in sorted(by_type.items())},
    }


def ratio_text(census: dict[str, Any] | None, quantized_in_file: int | None) -> str:
    """'int8 ops ran / quantized in the file', as the report table shows it."""
    if not census:
        return "-"
    return f"{census['int8_compute_ops']}/{quantized_in_file if quantized_in_file is not None else '?'}"
