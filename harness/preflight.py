"""`qparity check-model`: will each engine accept this INT8 QDQ file, and if not, why not.

Static checks of the graph, plus one float inference on a synthetic image to measure the
ranges meeting at quantized Concats (the "coordinates and scores under one scale" trap).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .diagnose.graph import with_outputs
from .errors import QParityError
from .ptq import tensor_consumers
from .modelinfo import inspect_model

ENGINES = ("ort-cpu", "openvino", "tensorrt")
CONCAT_RANGE_RATIO = 32.0  # inputs whose ranges differ this much cannot share one 8-bit scale


@dataclass
class Finding:
    code: str
    severity: str  # "refuse": the engine will not take the model; "warn": it will, with a risk
    engines: list[str]
    message: str
    nodes: list[str] = field(default_factory=list)


def _init_arrays(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _qdq_findings(model: onnx.ModelProto) -> list[Finding]:
    g = model.graph
    inits = _init_arrays(g)
    producer = {o: n for n in g.node for o in n.output}
    def on_weight(name: str) -> bool:  # a DQ of a constant, or a Q->DQ pair on a constant
        q = producer.get(name)
        return name in inits or (q is not None and q.op_type == "QuantizeLinear" and q.input[0] in inits)

    uint8, nonzero, per_channel_act, bad_axis, int32_bias = [], [], [], [], []
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        weight = on_weight(n.input[0])
        zp = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        scale = inits.get(n.input[1])
        if zp is not None and zp.dtype == np.uint8 and not weight:
            uint8.append(n.name)
        elif zp is not None and np.any(zp != 0):
            nonzero.append(n.name)
        if n.input[0] in inits and inits[n.input[0]].dtype == np.int32:
            int32_bias.append(n.name)
        if scale is not None and scale.size > 1:
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
            if not weight:
                per_channel_act.append(n.name)
            elif axis != 0:
                bad_axis.append(n.name)
    checks = (
        ("uint8-activations", uint8, "activation Q/DQ node(s) use uint8 (asymmetric) activations; "
         "TensorRT supports only int8 with zero point 0"),
        ("nonzero-zero-point", nonzero, "Q/DQ node(s) have a non-zero zero point; TensorRT "
         "rejects any non-zero zero point"),
        ("int32-bias", int32_bias, "DequantizeLinear node(s) dequantize int32 biases; TensorRT's "
         "parser needs int8 inputs to DequantizeLinear"),
        ("per-channel-activation", per_channel_act, "activation Q/DQ node(s) are per-channel; "
         "TensorRT takes per-tensor activations only"),
        ("weight-axis", bad_axis, "per-channel weight scale(s) on an axis other than 0"),
    )
    return [Finding(code, "refuse", ["tensorrt"], f"{len(nodes)} {text}", nodes)
            for code, nodes, text in checks if nodes]


def _float_bias_convs(model: onnx.ModelProto) -> Finding | None:
    """ONNX Runtime fuses DQ->Conv->Q into an integer kernel only with an int32 bias."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name for i in g.initializer}
    quantized = [n for n in g.node if n.op_type == "Conv" and len(n.input) > 1
                 and n.input[1] in producer and producer[n.input[1]].op_type == "DequantizeLinear"]
    float_bias = [n.name for n in quantized if len(n.input) > 2 and n.input[2] in inits]
    if not float_bias:
        return None
    return Finding("float-bias", "warn", ["ort-cpu"],
                   f"{len(float_bias)} of {len(quantized)} quantized convolutions have float "
                   "biases: ONNX Runtime may not fuse those into integer kernels and then runs "
                   "them in float (correct, not INT8 speed); the result's census says what ran",
                   float_bias)


def _signed_activation_risk(model: onnx.ModelProto, cpu_flags: list[str]) -> Finding | None:
    inits = _init_arrays(model.graph)
    signed = any(n.op_type == "QuantizeLinear" and len(n.input) > 2
                 and inits.get(n.input[2]) is not None and inits[n.input[2]].dtype == np.int8
                 for n in model.graph.node)
    if not signed or {"avx512_vnni", "avx_vnni", "amx_int8"} & set(cpu_flags):
        return None
    return Finding("signed-int8-no-vnni", "warn", ["openvino", "ort-cpu"],
                   "signed int8 activations on a CPU without VNNI: OpenVINO's int8 kernels were "
                   "measured wrong on this CPU class, and u8 x s8 kernels can saturate "
                   "(SPEC.md); compare against qdq-ref")


def concat_ranges(model: onnx.ModelProto, size: int, seed: int = 0) -> list[dict[str, Any]]:
    """Max |value| of each input of every quantized Concat, from one float inference."""
    import onnxruntime as ort

    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers = tensor_consumers(g)
    concats = [n for n in g.node if n.op_type == "Concat" and len(n.input) > 1 and (
        any(c.op_type == "QuantizeLinear" for c in consumers.get(n.output[0], []))
        or all(i in producer and producer[i].op_type == "DequantizeLinear" for i in n.input))]
    if not concats:
        return []
    probe = with_outputs(model, sorted({i for c in concats for i in c.input}))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(seed).uniform(0, 1, (1, 3, size, size)).astype(np.float32)
    names = [o.name for o in sess.get_outputs()]
    values = dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x})))
    out = []
    for c in concats:
        ranges = [float(np.abs(values[i]).max()) if values[i].size else 0.0 for i in c.input]
        pos = [r for r in ranges if r > 0]
        ratio = max(pos) / min(pos) if len(pos) > 1 else 1.0
        out.append({"node": c.name, "inputs": list(c.input), "max_abs": ranges, "ratio": ratio})
    return out


def check_model(path: Path, size: int = 320, cpu_flags: list[str] | None = None) -> dict[str, Any]:
    """The preflight verdict: findings, and per engine whether it accepts the model."""
    from .envinfo import cpu_info

    path = Path(path)
    findings: list[Finding] = []
    info = None
    try:
        info = inspect_model(path, size)
    except QParityError as e:
        if not path.is_file() or "not a valid ONNX" in str(e):
            raise
        findings.append(Finding("io-contract", "refuse", list(ENGINES), str(e)))
    model = onnx.load(str(path))  # external data: resolved next to the model, not the cwd
    findings += _qdq_findings(model)
    for f in (_float_bias_convs(model),
              _signed_activation_risk(model, cpu_info()["flags"] if cpu_flags is None else cpu_flags)):
        if f:
            findings.append(f)
    ranges = []
    if info is not None:
        try:
            ranges = concat_ranges(model, size)
        except Exception as e:  # a model ORT cannot run at all is the engines' verdict to give
            findings.append(Finding("unrunnable", "refuse", ["ort-cpu"], f"onnxruntime cannot run it: {e}"))
        bad = [r for r in ranges if r["ratio"] >= CONCAT_RANGE_RATIO]
        if bad:
            worst = max(bad, key=lambda r: r["ratio"])
            findings.append(Finding(
                "concat-range-mismatch", "warn", list(ENGINES),
                f"{len(bad)} quantized Concat(s) join inputs whose ranges differ up to "
                f"{worst['ratio']:.0f}x under one 8-bit scale (e.g. box coordinates with scores): "
                "the small-range inputs collapse; keep the decode tail in float",
                [r["node"] for r in bad]))
    engines = {}
    for e in ENGINES:
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
