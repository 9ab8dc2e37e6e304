"""`qparity check-model`: will each engine accept this INT8 QDQ file, and if not, why not.

Static checks of the graph, plus one float inference on a synthetic image to measure the
ranges meeting at quantized Concats (the "coordinates and scores under one scale" trap). This
module does the shared analysis (`ModelFacts`); what each engine makes of it is that engine's
own rule (`Engine.preflight`, in its module), so a plugin engine is judged like a built-in one.
"""

from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .diagnose.graph import graph_input, with_outputs
from .engines.rules import Finding, ModelFacts
from .errors import QParityError
from .ptq import tensor_consumers
from .modelinfo import inspect_model

__all__ = ["Finding", "ModelFacts", "check_model", "model_facts", "print_check", "write_preflight"]

CONCAT_RANGE_RATIO = 32.0  # inputs whose ranges differ this much cannot share one 8-bit scale


def _init_arrays(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _qdq_properties(model: onnx.ModelProto) -> dict[str, list[str]]:
    """The Q/DQ nodes by the properties some engine refuses (the keys of ModelFacts.qdq)."""
    g = model.graph
    inits = _init_arrays(g)
    producer = {o: n for n in g.node for o in n.output}
    def on_weight(name: str) -> bool:  # a DQ of a constant, or a Q->DQ pair on a constant
        q = producer.get(name)
        return name in inits or (q is not None and q.op_type == "QuantizeLinear" and q.input[0] in inits)

    found: dict[str, list[str]] = {k: [] for k in ("uint8-activations", "nonzero-zero-point",
                                                   "int32-bias", "per-channel-activation",
                                                   "weight-axis")}
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        weight = on_weight(n.input[0])
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        scale = inits.get(n.input[1])
        if zp is not None and zp.dtype == np.uint8 and not weight:
            found["uint8-activations"].append(n.name)
        elif zp is not None and np.any(zp != 0):
            found["nonzero-zero-point"].append(n.name)
        if n.input[0] in inits and inits[n.input[0]].dtype == np.int32:
            found["int32-bias"].append(n.name)
        if scale is not None and scale.size > 1:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if not weight:
                found["per-channel-activation"].append(n.name)
            elif axis != 0:
                found["weight-axis"].append(n.name)
    return found


def _quantized_convs(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """Conv nodes with a dequantized weight, and those of them whose bias is a float constant."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    quantized = [n for n in g.node if n.op_type == "Conv" and len(n.input) > 1
                 and n.input[1] in producer and producer[n.input[1]].op_type == "DequantizeLinear"]
    return ([n.name for n in quantized],
            [n.name for n in quantized if len(n.input) > 2 and n.input[2] in inits])


def _pair_edges(t: str, consumers: dict[str, list[onnx.NodeProto]], outputs: set[str]) -> int:
    """How many node inputs (or graph outputs) a QuantizeLinear's output `t` reaches once every
    DequantizeLinear after it is made unique per consumer (ONNX Runtime's
    EnsureUniqueDQForNodeUnit does that before it fuses anything)."""
    n = int(t in outputs)
    for c in consumers.get(t, []):
        if c.op_type == "DequantizeLinear" and c.input[0] == t:
            n += max(1, len(consumers.get(c.output[0], [])) + int(c.output[0] in outputs))
        else:
            n += 1
    return n


def _conv_links(model: onnx.ModelProto, convs: list[str]) -> dict[str, list[str]]:
    """How every convolution is wired to Q/DQ, as ONNX Runtime's CPU fusion reads it:
    "unquantized-io": quantized convolutions (`convs`) whose input is not a per-tensor
    DequantizeLinear or whose output is not consumed by one QuantizeLinear alone;
    "float-weight-qdq": convolutions with float constant weights between such a
    DequantizeLinear and QuantizeLinear (ONNX Runtime quantizes those weights itself);
    "shared-signed": convolutions of either kind with a signed (int8) activation Q/DQ pair, on
    the input or the output, that cannot be re-typed to uint8 as a pair: its QuantizeLinear
    reaches more than one consumer, or its zero point is not one scalar shared by Q and DQ."""
    g = model.graph
    inits = _init_arrays(g)
    producer = {o: n for n in g.node for o in n.output}
    consumers = tensor_consumers(g)
    outputs = {o.name for o in g.output}

    def zp(n: onnx.NodeProto) -> np.ndarray | None:
        return inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None

    def signed_pair_blocked(q: onnx.NodeProto | None, dq: onnx.NodeProto | None) -> bool:
        ref = dq if dq is not None else q
        z = zp(ref) if ref is not None else None
        if z is None or z.dtype != np.int8:
            return False  # uint8 (also the type of a missing zero point): nothing to re-type
        if q is None or q.op_type != "QuantizeLinear" or dq is None:
            return True
        zq = zp(q)
        return (_pair_edges(q.output[0], consumers, outputs) != 1 or zq is None
                or zq.size != 1 or z.size != 1 or zq.dtype != z.dtype or zq.item() != z.item())

    found: dict[str, list[str]] = {"unquantized-io": [], "float-weight-qdq": [], "shared-signed": []}
    for conv in (n for n in g.node if n.op_type == "Conv"):
        users = consumers.get(conv.output[0], [])
        q_out = users[0] if len(users) == 1 and users[0].op_type == "QuantizeLinear" else None
        dq_in = producer.get(conv.input[0])
        scale = inits.get(dq_in.input[1]) if dq_in is not None and dq_in.op_type == "DequantizeLinear" else None
        io = q_out is not None and conv.output[0] not in outputs and scale is not None and scale.size == 1
        if conv.name in convs:
            if not io:
                found["unquantized-io"].append(conv.name)
                continue
        elif io and inits.get(conv.input[1]) is not None and inits[conv.input[1]].dtype == np.float32:
            found["float-weight-qdq"].append(conv.name)
        else:
            continue
        outs = [c for c in consumers.get(q_out.output[0], []) if c.op_type == "DequantizeLinear"]
        if (signed_pair_blocked(producer.get(dq_in.input[0]), dq_in)
                or signed_pair_blocked(q_out, outs[0] if outs else None)):
            found["shared-signed"].append(conv.name)
    return found


def _signed_activations(model: onnx.ModelProto) -> bool:
    inits = _init_arrays(model.graph)
    return any(n.op_type == "QuantizeLinear" and len(n.input) > 2
               and inits.get(n.input[2]) is not None and inits[n.input[2]].dtype == np.int8
               for n in model.graph.node)


def model_facts(path: Path, model: onnx.ModelProto, cpu_flags: list[str],
                machine: str | None = None) -> ModelFacts:
    """The shared, engine-independent analysis every engine's preflight rule reads."""
    convs, float_bias = _quantized_convs(model)
    links = _conv_links(model, convs)
    return ModelFacts(path=Path(path), model=model, cpu_flags=list(cpu_flags),
                      machine=platform.machine() if machine is None else machine,
                      qdq=_qdq_properties(model), quantized_convs=convs,
                      float_bias_convs=float_bias, unquantized_io_convs=links["unquantized-io"],
                      float_weight_qdq_convs=links["float-weight-qdq"],
                      shared_signed_convs=links["shared-signed"],
                      signed_activations=_signed_activations(model))


def concat_ranges(model: onnx.ModelProto, size: int, seed: int = 0) -> list[dict[str, Any]]:
    """Max |value| of each input of every quantized Concat, from one float inference."""
    import tempfile

    from .engines.qdq_ref import QdqReferenceEngine

    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = tensor_consumers(g)
    concats = [n for n in g.node if n.op_type == "Concat" and len(n.input) > 1 and (
        any(c.op_type == "QuantizeLinear" for c in consumers.get(n.output[0], []))
        or all(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input))]
    if not concats:
        return []
    names = sorted({i for c in concats for i in c.input})
    x = np.random.default_rng(seed).uniform(0, 1, (1, 3, size, size)).astype(np.float32)
    # the model's own arithmetic, every Concat input an output: the reference engine (qdq-ref)
    eng = QdqReferenceEngine()
    with tempfile.TemporaryDirectory(prefix="qparity-preflight-") as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(with_outputs(model, names), str(path))
        eng.load(path)
        try:
            values = eng.run_named({graph_input(model): x}, names)
        finally:
            eng.close()
    out = []
    for c in concats:
        ranges = [float(np.abs(values[i]).max()) if values[i].size else 0.0 for i in c.input]
        pos = [r for r in ranges if r > 0]
        ratio = max(pos) / min(pos) if len(pos) > 1 else 1.0
        out.append({"node": c.name, "inputs": list(c.input), "max_abs": ranges, "ratio": ratio})
    return out


def _asked_engines() -> dict[str, Any]:
    """Every registered engine class, built-in or plugin; a plugin that cannot be loaded is
    left out here (the run that asks for it reports why)."""
    from .engines import engine_class, engine_names

    out = {}
    for name in engine_names():
        try:
            out[name] = engine_class(name)
        except QParityError:
            continue
    return out


def _merged(findings: list[Finding]) -> list[Finding]:
    """One finding per (code, severity, message, nodes), naming every engine it concerns."""
    out: dict[tuple[Any, ...], Finding] = {}
    for f in findings:
        key = (f.code, f.severity, f.message, tuple(f.nodes))
        if key in out:
            out[key].engines += [e for e in f.engines if e not in out[key].engines]
        else:
            out[key] = Finding(f.code, f.severity, list(f.engines), f.message, list(f.nodes))
    return list(out.values())


def check_model(path: Path, size: int = 320, cpu_flags: list[str] | None = None) -> dict[str, Any]:
    """The preflight verdict: findings, and per engine whether it accepts the model. The model
    is analysed once here; each registered engine judges the facts by its own rules
    (`Engine.preflight`, in its module)."""
    from .envinfo import cpu_info

    path = Path(path)
    classes = _asked_engines()
    findings: list[Finding] = []
    info = None
    try:
        info = inspect_model(path, size)
    except QParityError as e:
        if not path.is_file() or "not a valid ONNX" in str(e):
            raise
        findings.append(Finding("io-contract", "refuse", list(classes), str(e)))
    model = onnx.load(str(path))  # external data: resolved next to the model, not the cwd
    facts = model_facts(path, model, cpu_info()["flags"] if cpu_flags is None else cpu_flags)
    ranges = []
    if info is not None:
        try:
            ranges = concat_ranges(model, size)
        except Exception as e:  # a model ORT cannot run at all is the engines' verdict to give
            facts.ort_error = str(e)
    for name, cls in classes.items():
        findings += cls.preflight(facts)
    bad = [r for r in ranges if r["ratio"] >= CONCAT_RANGE_RATIO]
    if bad:
        worst = max(bad, key=lambda r: r["ratio"])
        findings.append(Finding(
            "concat-range-mismatch", "warn", list(classes),
            f"{len(bad)} quantized Concat(s) join inputs whose ranges differ up to "
            f"{worst['ratio']:.0f}x under one 8-bit scale (e.g. box coordinates with scores): "
            "the small-range inputs collapse; keep the decode tail in float",
            [r["node"] for r in bad]))
    findings = _merged(findings)
    engines = {}
    for e in classes:
        mine = [f for f in findings if e in f.engines]
        engines[e] = {"accepts": not any(f.severity == "refuse" for f in mine),
                      "reasons": [f.message for f in mine]}
    return {"model": str(path), "md5": info.md5 if info else None,
            "quantized_compute_ops": info.quantized_compute_ops if info else None,
            "compute_ops": info.compute_ops if info else None,
            "findings": [asdict(f) for f in findings], "concat_ranges": ranges, "engines": engines}


def write_preflight(model: Path, out: Path, size: int) -> dict[str, Any]:
    """Check the model and leave the verdict where the collector puts it into the report."""
    from .fileio import write_json_atomic
    from .records.preflight import PREFLIGHT_NAME, PreflightVerdict

    # checked as the record before writing: a check-model bug is caught here, not by collect
    verdict = PreflightVerdict.from_json({"schema": PreflightVerdict.VERSION,
                                          **check_model(model, size)}).to_json()
    write_json_atomic(Path(out) / PREFLIGHT_NAME, verdict)
    return verdict


def print_check(verdict: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from .report import wide_console

    t = Table(title=f"check-model {escape(str(verdict['model']))}", title_justify="left")
    t.add_column("engine")
    t.add_column("accepts")
    t.add_column("why / risks", overflow="fold")
    for e, v in verdict["engines"].items():
        t.add_row(e, "[green]yes[/]" if v["accepts"] else "[bold red]no[/]",
                  Text("\n".join(v["reasons"]) or "-"))  # reasons are text, not markup
    wide_console().print(t)
