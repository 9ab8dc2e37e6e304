"""ONNX graph helpers for the diagnosis commands: quantized tensors, their parameters, cuts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import QParityError



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


def cut(model: onnx.ModelProto, tensor: str) -> onnx.ModelProto:
    """The model truncated at `tensor` (a float tensor): only the nodes it depends on, and that
    tensor, in its own shape, as the single output (engines run it through `run_named`)."""
    g = model.graph
    all_nodes = list(g.node)
    producer = {o: i for i, n in enumerate(all_nodes) for o in n.output}
    keep: set[int] = set()
    stack = [tensor]
    seen: set[str] = set()
    while stack:
        t = stack.pop()
        if t in seen or t not in producer:
            continue
        seen.add(t)
        i = producer[t]
        if i in keep:
            continue
        keep.add(i)
        n = all_nodes[i]
        stack.extend(x for x in n.input if x)
        for a in n.attribute:  # subgraphs (If/Loop) read outer tensors implicitly
            if a.type == onnx.AttributeProto.GRAPH:
                stack.extend(_outer_names(a.g))
    nodes = [all_nodes[i] for i in sorted(keep)]
    used = {i for n in nodes for i in n.input} | seen
    new = helper.make_graph(
        nodes, f"{g.name}_cut",
        [i for i in g.input if i.name in used],
        [helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None)],
        [i for i in g.initializer if i.name in used],
        value_info=[v for v in g.value_info if v.name in used])
    m = helper.make_model(new, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m


def _outer_names(g: onnx.GraphProto) -> list[str]:
    return [i for n in g.node for i in n.input if i]


@dataclass
class Segmented:
    """A model rewired so that every listed quantized tensor is computed from given values of
    its quantized inputs (see `segmented`). Run it with `Engine.run_named`."""

    model: onnx.ModelProto
    inputs: dict[str, str]  # fed tensor (or the graph input) -> the model input taking it
    outputs: dict[str, str]  # computed tensor -> the model output holding its float value


def segmented(model: onnx.ModelProto, graph: QdqGraph, feed: list[str], outputs: list[str],
              shapes: dict[str, tuple[int, ...]]) -> Segmented:
    """The model cut open at quantized tensors, so that each segment computes from given inputs.

    Every tensor T in `feed` is fed from outside: its consumers read T' = QuantizeLinear(<input>)
    with T's own parameters instead of T (the input takes dequantized, hence on-grid, values, so
    T' has exactly the given int8 codes). Every tensor in `outputs` is returned (dequantized),
    computed by its own producer and QuantizeLinear from whatever feeds them. Used for the
    reference arithmetic (ONNX Runtime, optimizations off), where cutting a graph cannot change
    how a node computes. The model's own image input stays an input where a float path from it
    is still needed.
    """
    names = list(dict.fromkeys([*feed, *outputs]))
    feed_set, out_set = set(feed), set(outputs)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    image = graph_input(model)
    head: list[onnx.NodeProto] = []
    fed: dict[str, str] = {}
    # Protobuf wrappers have no stable identity: work on a plain list, identify nodes by index.
    body: list[onnx.NodeProto] = list(g.node)
    rename: dict[str, str] = {}
    keep_reading: set[int] = set()  # the listed QuantizeLinear nodes and their output DQs
    added: dict[int, onnx.NodeProto] = {}  # a DQ to add after the QuantizeLinear at this index
    out_dq: dict[str, str] = {}
    for name in names:
        qt = graph.by_name[name]
        qi = next(i for i, n in enumerate(body) if n.name == qt.q_node and n.output[0] == qt.name)
        q = body[qi]
        axis = {"axis": qt.params.axis} if qt.params.axis is not None else {}
        di = next((i for i, c in enumerate(body) if c.op_type == "DequantizeLinear"
                   and c.input[0] == qt.name and list(c.input[1:]) == list(q.input[1:])), None)
        if name in out_set:
            if di is None:
                dq = helper.make_node("DequantizeLinear", [qt.name, *q.input[1:]], [f"qparity_dq::{qt.name}"],
                                      name=f"qparity_dq::{qt.name}", **axis)
                added[qi] = dq
            else:
                dq = body[di]
                keep_reading.add(di)  # reads the tensor as computed: it is the output
            out_dq[name] = dq.output[0]
        if name not in feed_set:
            continue
        keep_reading.add(qi)
        if di is not None:
            rename[body[di].output[0]] = f"qparity_dqin::{name}"
        fed[name] = f"qparity_in::{name}"
        head.append(helper.make_node("QuantizeLinear", [fed[name], *q.input[1:]],
                                     [f"qparity_q::{name}"], name=f"qparity_q::{name}", **axis))
        head.append(helper.make_node("DequantizeLinear", [f"qparity_q::{name}", *q.input[1:]],
                                     [f"qparity_dqin::{name}"], name=f"qparity_dqin::{name}", **axis))
        rename[qt.name] = f"qparity_q::{name}"
    rewired: list[onnx.NodeProto] = []
    for i, n in enumerate(body):
        if i not in keep_reading:
            n = _renamed(n, rename)
        rewired.append(n)
        if i in added:
            rewired.append(added[i])
    nodes = head + rewired
    # keep only what the outputs need (the decode tail and the original outputs are dead now)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    need: set[int] = set()
    stack = [out_dq[n] for n in outputs]
    while stack:
        k = producer.get(stack.pop())
        if k is None or k in need:
            continue
        need.add(k)
        stack.extend(i for i in nodes[k].input if i)
    nodes = [n for k, n in enumerate(nodes) if k in need]
    used = {i for n in nodes for i in n.input}
    inputs = {name: fed[name] for name in feed if fed[name] in used}
    if image in used:
        inputs = {image: image, **inputs}
    new = helper.make_graph(
        nodes, f"{g.name}_segmented",
        [helper.make_tensor_value_info(inputs[n], TensorProto.FLOAT, list(shapes[n])) for n in inputs],
        [helper.make_tensor_value_info(out_dq[n], TensorProto.FLOAT, list(shapes[n])) for n in outputs],
        [i for i in g.initializer if i.name in used])
    seg = helper.make_model(new, opset_imports=list(model.opset_import))
    seg.ir_version = model.ir_version
    return Segmented(seg, inputs, {n: out_dq[n] for n in outputs})


def _renamed(node: onnx.NodeProto, rename: dict[str, str]) -> onnx.NodeProto:
    if not any(i in rename for i in node.input):
        return node
    n = onnx.NodeProto()
    n.CopyFrom(node)
    for k, i in enumerate(n.input):
        if i in rename:
            n.input[k] = rename[i]
    return n
