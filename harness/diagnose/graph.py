"""ONNX graph helpers for the diagnosis commands: quantized tensors, their parameters, cuts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import QParityError

COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass
class QuantParams:
    scale: np.ndarray  # scalar or 1-D (per-channel along `axis`)
    zero_point: np.ndarray
    axis: int | None  # None: per-tensor

    def summary(self) -> str:
        s, z = self.scale.astype(np.float64).ravel(), self.zero_point.astype(np.int64).ravel()
        zs = (f"zp {int(z[0])}" if np.unique(z).size <= 1 else
              f"zp {int(z.min())}..{int(z.max())}") + f" ({self.zero_point.dtype})"
        if s.size == 1:
            return f"scale {s[0]:.6g}, {zs}"
        return f"scale {s.min():.4g}..{s.max():.4g} per-channel x{s.size} (axis {self.axis}), {zs}"

    def to_dict(self) -> dict[str, Any]:
        s, z = self.scale.astype(np.float64).ravel(), self.zero_point.astype(np.int64).ravel()
        d: dict[str, Any] = {"dtype": str(self.zero_point.dtype), "per_channel": s.size > 1}
        if s.size == 1:
            d.update(scale=float(s[0]), zero_point=int(z[0]))
        else:
            d.update(axis=self.axis, channels=int(s.size), scale_min=float(s.min()),
                     scale_max=float(s.max()), zero_point_min=int(z.min()), zero_point_max=int(z.max()))
        return d


@dataclass
class QTensor:
    """One quantized activation: the output of a QuantizeLinear node fed by a computed tensor."""

    index: int  # position among the model's quantized activations, graph order
    name: str  # the QuantizeLinear output (the int8 tensor)
    q_node: str
    source: str  # the float tensor being quantized
    producer: str | None  # node producing `source` (None: a graph input)
    producer_op: str | None
    dq_output: str | None  # a DequantizeLinear of this tensor with the same parameters
    params: QuantParams
    ancestors: int = 0  # bitset of indices of quantized tensors upstream of this one
    q_inputs: list[int] = field(default_factory=list)  # nearest quantized tensors upstream


class QdqGraph:
    """The quantized activations of a QDQ model, in graph (topological) order."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        g = model.graph
        self.inits = {i.name: i for i in g.initializer}
        self.consts: dict[str, np.ndarray] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        for n in g.node:
            for o in n.output:
                self.producer[o] = n
            if n.op_type == "Constant" and n.attribute:
                try:
                    self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
                except Exception:
                    pass
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.tensors: list[QTensor] = []
        self.by_name: dict[str, QTensor] = {}
        # quantized-tensor ancestry, propagated along the (topologically sorted) node list
        anc: dict[str, int] = {}
        nearest: dict[str, frozenset[int]] = {}
        for n in g.node:
            up, near = 0, frozenset()
            for i in n.input:
                up |= anc.get(i, 0)
                near |= nearest.get(i, frozenset())
            if n.op_type == "QuantizeLinear" and not self.is_constant(n.input[0]):
                qt = self._qtensor(n, len(self.tensors))
                qt.ancestors, qt.q_inputs = up, sorted(near)
                self.tensors.append(qt)
                self.by_name[qt.name] = qt
                up |= 1 << qt.index
                near = frozenset([qt.index])
            for o in n.output:
                anc[o], nearest[o] = up, near

    def is_constant(self, name: str) -> bool:
        if name in self.inits or name in self.consts:
            return True
        p = self.producer.get(name)  # a DequantizeLinear of a constant (a weight) is constant
        return p is not None and p.op_type in ("DequantizeLinear", "Identity", "Cast") and \
            all(self.is_constant(i) for i in p.input if i)

    def value(self, name: str) -> np.ndarray | None:
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        return self.consts.get(name)

    def params(self, node: onnx.NodeProto) -> QuantParams:
        scale = self.value(node.input[1])
        if scale is None:
            raise QParityError(f"{node.op_type} {node.name!r}: scale {node.input[1]!r} is not a constant")
        zp = self.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zp is None:
            zp = np.zeros_like(scale, dtype=np.uint8)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) if np.size(scale) > 1 else None
        return QuantParams(np.asarray(scale), np.asarray(zp), axis)

    def _qtensor(self, q: onnx.NodeProto, index: int) -> QTensor:
        prod = self.producer.get(q.input[0])
        dq = next((c for c in self.consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"
                   and list(c.input[1:]) == list(q.input[1:])), None)
        return QTensor(index, q.output[0], q.name, q.input[0], prod.name if prod else None,
                       prod.op_type if prod else None, dq.output[0] if dq else None, self.params(q))

    def input_params(self, node_name: str) -> list[dict[str, Any]]:
        """Quantization parameters of a node's inputs, as they reach it (through a DQ or not)."""
        node = next((n for n in self.model.graph.node if n.name == node_name), None)
        if node is None:
            return []
        out = []
        for i, name in enumerate(node.input):
            if not name:
                continue
            p = self.producer.get(name)
            entry: dict[str, Any] = {"input": i, "tensor": name}
            if p is not None and p.op_type == "DequantizeLinear":
                qp = self.params(p)
                entry.update(kind="weight" if self.is_constant(name) else "activation",
                             quant=qp.to_dict(), text=qp.summary())
            else:
                entry.update(kind="constant" if self.is_constant(name) else "activation",
                             quant=None, text="float (not quantized)")
            out.append(entry)
        return out


def node_index(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {n.name: n for n in model.graph.node if n.name}


def graph_input(model: onnx.ModelProto) -> str:
    inits = {i.name for i in model.graph.initializer}
    return next(i.name for i in model.graph.input if i.name not in inits)


def float_output(model: onnx.ModelProto, qt: QTensor) -> tuple[onnx.ModelProto, str]:
    """A copy of the model with a float view of `qt` available: its own DequantizeLinear, or one
    added with the QuantizeLinear's parameters. Returns (model, float tensor name)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if qt.dq_output:
        return m, qt.dq_output
    q = next(n for n in m.graph.node if n.name == qt.q_node and n.output[0] == qt.name)
    name = f"qparity_dq::{qt.name}"
    dq = helper.make_node("DequantizeLinear", [qt.name, *q.input[1:]], [name], name=name,
                          **({"axis": qt.params.axis} if qt.params.axis is not None else {}))
    m.graph.node.append(dq)
    return m, name


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The model with extra float graph outputs (for engines whose arithmetic ignores outputs)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    return m


def cut(model: onnx.ModelProto, tensor: str, flatten_to_rank3: bool = True) -> onnx.ModelProto:
    """The model truncated at `tensor` (a float tensor): only the nodes it depends on, and that
    tensor as the single output. With `flatten_to_rank3`, a Reshape [0, 0, -1] makes the output
    [1, C, H*W], the rank-3 shape every engine's output contract accepts; it moves no value."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    keep: set[int] = set()
    stack = [tensor]
    seen: set[str] = set()
    pos = {id(n): i for i, n in enumerate(g.node)}
    while stack:
        t = stack.pop()
        if t in seen or t not in producer:
            continue
        seen.add(t)
        n = producer[t]
        if pos[id(n)] in keep:
            continue
        keep.add(pos[id(n)])
        stack.extend(i for i in n.input if i)
        for a in n.attribute:  # subgraphs (If/Loop) read outer tensors implicitly
            if a.type == onnx.AttributeProto.GRAPH:
                stack.extend(_outer_names(a.g))
    nodes = [g.node[i] for i in sorted(keep)]
    used = {i for n in nodes for i in n.input} | seen
    out_name = tensor
    extra_nodes, extra_inits = [], []
    if flatten_to_rank3:
        out_name = f"qparity_cut::{tensor}"
        extra_inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), f"{out_name}.shape"))
        extra_nodes.append(helper.make_node("Reshape", [tensor, f"{out_name}.shape"], [out_name],
                                            name=out_name))
    new = helper.make_graph(
        nodes + extra_nodes, f"{g.name}_cut",
        [i for i in g.input if i.name in used],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None)],
        [i for i in g.initializer if i.name in used] + extra_inits,
        value_info=[v for v in g.value_info if v.name in used])
    m = helper.make_model(new, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m


def _outer_names(g: onnx.GraphProto) -> list[str]:
    return [i for n in g.node for i in n.input if i]
