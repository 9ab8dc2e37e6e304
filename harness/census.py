"""Executed-precision census: which compute ops an engine really ran in int8.

A QDQ file says what *may* run in int8; each engine decides what does. Engines report the ops
they executed as (name, op type, ran-in-int8, the file's nodes it came from); this module turns
that into the one summary every result carries, so "INT8" runs that were mostly float are
visible in every report.

An engine may also quantize on its own: ONNX Runtime gives a float-weight convolution between a
DequantizeLinear and a QuantizeLinear int8 weights of its own (docs/recipes.md). So, given the
names of the file's compute ops, each executed op is matched by name to the file node it runs,
and the int8 ops are split into the file's quantized ops that ran in int8 (`int8_of_quantized`)
and float ops of the file the engine ran in int8 (`int8_added_by_engine`). An executed op whose
names match no compute op of the file, or several, or a file op another executed op also
claims, is `unmatched`: counted, never guessed. `int8_compute_ops` keeps its meaning (every
executed int8 compute op), so older results still read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_LISTED = 25  # ops named in a result, per list; the counts are always complete


@dataclass(frozen=True)
class ExecutedOp:
    name: str
    op_type: str
    int8: bool
    # other names the engine gives for what this op runs (the file nodes a fused layer came
    # from, a renamed node's original name); matched with `name` against the file's nodes
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileOps:
    """The file's compute ops by node name: quantized (weight through a DequantizeLinear) or
    float, and the tensors they write (an engine may name an executed op after its output).
    `quantized_count` counts every quantized op, unnamed or duplicate names included (those
    can never be matched and show as `quantized_not_seen`)."""

    quantized: frozenset[str]
    kept_float: frozenset[str]
    quantized_count: int
    outputs: dict[str, str] = field(default_factory=dict)  # tensor -> compute op writing it

    @classmethod
    def from_nodes(cls, quantized: list[Any], kept_float: list[Any]) -> FileOps:
        seen = Counter(n.name for n in quantized + kept_float)
        unique = {n for n, k in seen.items() if n and k == 1}  # a name used twice identifies nothing
        outputs = {t: n.name for n in quantized + kept_float if n.name in unique for t in n.output}
        return cls(frozenset(unique & {n.name for n in quantized}),
                   frozenset(unique & {n.name for n in kept_float}), len(quantized),
                   {t: n for t, n in outputs.items() if t and t not in unique})

    @classmethod
    def of_model(cls, path: Path) -> FileOps:
        from .modelinfo import file_compute_ops

        return cls.from_nodes(*file_compute_ops(path))


def file_node(op: ExecutedOp, file: FileOps) -> str | None:
    """The one compute op of the file this executed op runs (a name given is that op's node
    name or the tensor it writes), None when its names give none or several."""
    hits = set()
    for n in (op.name, *op.sources):
        if n in file.quantized or n in file.kept_float:
            hits.add(n)
        elif n in file.outputs:
            hits.add(file.outputs[n])
    return hits.pop() if len(hits) == 1 else None


def summarize(ops: list[ExecutedOp], source: str, file: FileOps | None = None) -> dict[str, Any]:
    by_type: Counter = Counter()
    for op in ops:
        by_type[(op.op_type, "int8" if op.int8 else "float")] += 1
    floats = [op.name for op in ops if not op.int8]
    out = {
        "source": source,
        "compute_ops": len(ops),
        "int8_compute_ops": sum(op.int8 for op in ops),
        "float_compute_ops": len(floats),
        "float_ops": floats[:MAX_LISTED],
        "by_type": {f"{t}/{p}": n for (t, p), n in sorted(by_type.items())},
    }
    if file is not None:
        out.update(split_by_file(ops, file))
    return out


def split_by_file(ops: list[ExecutedOp], file: FileOps) -> dict[str, Any]:
    """The census against the file: int8 of the file's quantized ops, int8 the engine added."""
    matched = [(op, file_node(op, file)) for op in ops]
    claims = Counter(n for _, n in matched if n is not None)
    matched = [(op, n if n is not None and claims[n] == 1 else None) for op, n in matched]
    unmatched = [op for op, n in matched if n is None]
    int8_q = sorted(n for op, n in matched if n in file.quantized and op.int8)
    float_q = sorted(n for op, n in matched if n in file.quantized and not op.int8)
    added = sorted(n for op, n in matched if n in file.kept_float and op.int8)
    return {
        "quantized_in_file": file.quantized_count,
        "int8_of_quantized": len(int8_q),
        "float_of_quantized": len(float_q),
        "float_of_quantized_ops": float_q[:MAX_LISTED],
        "int8_added_by_engine": len(added),
        "added_by_engine_ops": added[:MAX_LISTED],
        "float_of_float": sum(1 for op, n in matched if n in file.kept_float and not op.int8),
        "unmatched": len(unmatched),
        "unmatched_int8": sum(op.int8 for op in unmatched),
        "unmatched_ops": [op.name for op in unmatched][:MAX_LISTED],
        # the file's quantized ops no executed op could be matched to (fused out of sight,
        # renamed, unnamed in the file)
        "quantized_not_seen": file.quantized_count - len(int8_q) - len(float_q),
    }


def has_split(census: dict[str, Any] | None) -> bool:
    """Whether the census was matched against the file (results from before it was are not)."""
    return bool(census) and "int8_of_quantized" in census


def ratio_text(census: dict[str, Any] | None, quantized_in_file: int | None) -> str:
    """'int8 of the file's quantized ops / quantized in the file', as the report table shows
    it, '+N' for the float ops of the file the engine ran in int8 on its own, '?N' for int8
    ops the census could not match to the file; an older census: 'int8 ops ran / quantized'."""
    if not census:
        return "-"
    q = quantized_in_file if quantized_in_file is not None else "?"
    if not has_split(census):
        return f"{census['int8_compute_ops']}/{q}"
    text = f"{census['int8_of_quantized']}/{q}"
    if census.get("int8_added_by_engine"):
        text += f" +{census['int8_added_by_engine']}"
    if census.get("unmatched_int8"):
        text += f" ?{census['unmatched_int8']}"
    return text


def int8_of_file_at_most(census: dict[str, Any]) -> int:
    """How many of the file's quantized ops may have run in int8: the matched ones plus every
    int8 op the census could not match (an older census: every int8 op)."""
    if not has_split(census):
        return census["int8_compute_ops"]
    return census["int8_of_quantized"] + census.get("unmatched_int8", 0)
