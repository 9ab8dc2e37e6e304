"""`qparity repro`: an upstream-ready reproducer of an engine's disagreement.

From a run (or a model and data) where an engine leaves the model's arithmetic, write a folder
an engine's maintainers can run without qparity:

- `model.onnx`: the smallest subgraph found that still disagrees beyond tolerance;
- `input.npy` (one input) or `inputs.npz` (several): real values, taken from the full model;
- `repro.py`: a short script that uses only the two engines' own Python APIs (and numpy) and
  prints the disagreement; it exits 1 while the engines disagree, 0 once they agree;
- `reference_output.npy`, `environment.json` (versions, CPU flags), `README.md`
  (written by repro_folder.py).

How the subgraph is found:
1. the target: the first node where the engine departs from the model (`localize`'s bisection
   with its in-context check; with `--exhaustive` if the first divergence is only drift);
2. grow: the model is cut at that node's quantized output and at its inputs, which are fed with
   the reference's values of the full model on one real image; while that segment agrees, the
   cut moves up one node on every branch (a Concat, the Q/DQ pairs above it...);
3. shrink, as Polygraphy's `debug reduce` does: every node kept is tried as a cut point again
   (its outputs fed instead of computed), kept out if the disagreement survives;
4. simplify: inputs of equal shape are tried as one input fed everywhere, and the spatial size is
   halved while the disagreement survives (only for graphs of spatially agnostic ops).

A candidate "disagrees" when more than `frac` of the output's elements differ by more than one
quantization step of the target tensor (localize's measure). Both sides compute every candidate
from the same input values, so a disagreement of the subgraph is the engine's own, not drift.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import QParityError
from ..records.report import read_report
from .defaults import DEFAULT_FRAC  # noqa: F401  (also read from here)
# what repro_folder shares with the reduction (there, so that the two do not import each other)
from .repro_runners import (CONTROLS, RUNNERS, STEP_TOL, VERSION_OF, Reduced, _fn,  # noqa: F401
                            disagreement, runner)

MAX_GROW = 12  # levels of nodes added above the target before giving up
MIN_SPATIAL = 8  # smaller inputs show fewer differing elements: keep the evidence visible
# ops whose result does not depend on the spatial size they are given (cropping stays valid)
SPATIAL_AGNOSTIC = {"QuantizeLinear", "DequantizeLinear", "Conv", "Concat", "Relu", "LeakyRelu",
                    "Sigmoid", "Mul", "Add", "Sub", "Clip", "MaxPool", "AveragePool", "Identity",
                    "BatchNormalization", "HardSigmoid", "HardSwish", "Tanh", "PRelu", "Div"}

# ----------------------------------------------------------------------------- graph helpers
@dataclass
class Graph:
    """The model, indexed once: producers, constants, float tensors."""

    model: Any
    producer: dict[str, int] = field(default_factory=dict)
    constant: set[str] = field(default_factory=set)
    image: str = ""

    def __post_init__(self) -> None:
        from .graph import graph_input

        g = self.model.graph
        self.nodes = list(g.node)
        self.producer = {o: k for k, n in enumerate(self.nodes) for o in n.output}
        self.constant = {i.name for i in g.initializer}
        for n in self.nodes:  # constant subtrees (weight DQs, shape constants) are never cut
            if n.op_type == "Constant" or (n.input and all(i in self.constant for i in n.input if i)):
                self.constant.update(n.output)
        self.image = graph_input(self.model)

    def is_float_activation(self, t: str, values: dict[str, np.ndarray]) -> bool:
        return t not in self.constant and t in values and values[t].dtype == np.float32

    def needed(self, output: str, cuts: set[str]) -> list[int]:
        """Indices of the nodes computing `output` from the tensors in `cuts` (and constants)."""
        keep: set[int] = set()
        stack = [output]
        seen: set[str] = set()
        while stack:
            t = stack.pop()
            if t in seen or t in cuts or t not in self.producer:
                continue
            seen.add(t)
            k = self.producer[t]
            if k not in keep:
                keep.add(k)
                stack.extend(i for i in self.nodes[k].input if i)
        return sorted(keep)

    def subgraph(self, output: str, cuts: set[str], values: dict[str, np.ndarray]) -> Any:
        """A model computing `output` from the cut tensors, which become graph inputs."""
        from onnx import TensorProto, helper

        idx = self.needed(output, cuts)
        nodes = [self.nodes[k] for k in idx]
        used = {i for n in nodes for i in n.input if i}
        if not nodes:
            used = {output}
        g = self.model.graph
        inputs = [t for t in sorted(used & (cuts | {self.image}))]
        new = helper.make_graph(
            nodes, "qparity_repro",
            [helper.make_tensor_value_info(t, TensorProto.FLOAT, list(values[t].shape)) for t in inputs],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(values[output].shape))],
            [i for i in g.initializer if i.name in used])
        m = helper.make_model(new, opset_imports=list(self.model.opset_import),
                              producer_name="qparity repro")
        m.ir_version = self.model.ir_version
        return m


def reference_values(model: Any, x: np.ndarray, threads: int) -> dict[str, np.ndarray]:
    """Every float tensor of the model on input `x`, by the model's own Q/DQ arithmetic."""
    import onnx
    import onnxruntime as ort

    from .graph import graph_input, with_outputs

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    names = [o for n in model.graph.node for o in n.output
             if o and types.get(o) == onnx.TensorProto.FLOAT]
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    sess = ort.InferenceSession(with_outputs(model, names).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    outs = [o.name for o in sess.get_outputs()]
    image = graph_input(model)
    vals = dict(zip(outs, sess.run(outs, {image: x})))
    vals[image] = x
    return {k: np.asarray(v) for k, v in vals.items()}


@dataclass
class Checker:
    """Runs a candidate subgraph on both sides and says whether it still disagrees."""

    engine: str
    against: str
    engine_opts: dict[str, str]
    against_opts: dict[str, str]
    scale: np.ndarray
    axis: int | None
    frac: float
    workdir: Path
    runs: int = 0

    def __post_init__(self) -> None:
        self.run_a, self.run_b = runner(self.engine), runner(self.against)

    def measure(self, model: Any, feeds: dict[str, np.ndarray]) -> dict[str, Any] | None:
        import onnx

        path = self.workdir / f"candidate-{self.runs}.onnx"
        onnx.save(model, str(path))
        self.runs += 1
        try:
            a = self.run_a(path, feeds, self.engine_opts)
            b = self.run_b(path, feeds, self.against_opts)
        except Exception:  # a candidate an engine refuses reproduces nothing
            return None
        finally:
            path.unlink(missing_ok=True)
        d = disagreement(a, b, self.scale, self.axis)
        d["disagrees"] = d["frac_off"] > self.frac
        return d


# ----------------------------------------------------------------------------- reduction
def _expand(g: Graph, cuts: set[str], output: str, values: dict[str, np.ndarray]) -> set[str]:
    """Move every cut one node up: a cut tensor's producer is computed, its inputs are cut.
    Non-float inputs (an int8 tensor between a Q and its DQ) are expanded again at once."""
    frontier = [t for t in cuts if t in g.producer and t != g.image]
    new = set(cuts) - set(frontier)
    stack = list(frontier)
    while stack:
        t = stack.pop()
        for i in g.nodes[g.producer[t]].input:
            if not i or i in g.constant:
                continue
            if g.is_float_activation(i, values) or i == g.image or i not in g.producer:
                new.add(i)
            else:
                stack.append(i)
    # keep only cuts the output still reads
    needed = {i for k in g.needed(output, new) for i in g.nodes[k].input}
    return {t for t in new if t in needed}


def _inputs_of(g: Graph, output: str, cuts: set[str]) -> set[str]:
    used = {i for k in g.needed(output, cuts) for i in g.nodes[k].input if i}
    return used & (cuts | {g.image})


def reduce_model(g: Graph, output: str, first_cuts: set[str], values: dict[str, np.ndarray],
                 check: Checker, log: Callable[[str], None] = lambda s: None) -> Reduced:
    steps: list[dict[str, Any]] = []

    def attempt(cuts: set[str], what: str) -> dict[str, Any] | None:
        m = g.subgraph(output, cuts, values)
        feeds = {i.name: values[i.name] for i in m.graph.input}
        r = check.measure(m, feeds)
        steps.append({"step": what, "nodes": len(m.graph.node), "inputs": len(feeds),
                      **({k: r[k] for k in ("frac_off", "max_steps", "disagrees")} if r else
                         {"refused": True})})
        log(f"{what}: {len(m.graph.node)} nodes, {len(feeds)} input(s): "
            + (f"{r['frac_off']:.2%} off, max {r['max_steps']:.1f} steps" if r else "refused"))
        return r

    cuts = set(first_cuts)
    r = attempt(cuts, "segment")
    level = 0
    while not (r and r["disagrees"]):
        level += 1
        grown = _expand(g, cuts, output, values)
        if grown == cuts or level > MAX_GROW:
            raise QParityError("the disagreement does not reproduce in a subgraph fed with the "
                               f"reference's values (grew {level - 1} levels): it needs values the "
                               "engine computes differently upstream (drift), or the whole model")
        cuts = grown
        r = attempt(cuts, f"grow {level}")
    # shrink: try each computed node as a cut point again, nearest to the inputs first
    changed = True
    while changed:
        changed = False
        for k in g.needed(output, cuts):
            outs = {o for o in g.nodes[k].output if g.is_float_activation(o, values)}
            if not outs or output in outs or outs <= cuts:
                continue
            trial = cuts | outs
            trial = _inputs_of(g, output, trial)
            rr = attempt(trial, f"cut at {g.nodes[k].name or g.nodes[k].op_type}")
            if rr and rr["disagrees"]:
                cuts, r, changed = trial, rr, True
                break
    model = g.subgraph(output, cuts, values)
    feeds = {i.name: values[i.name] for i in model.graph.input}
    model, feeds, r = _merge_inputs(model, feeds, r, check, steps, log)
    model, feeds, r = _crop(model, feeds, r, check, steps, log)
    return Reduced(model, feeds, r, steps, output)


def _merge_inputs(model: Any, feeds: dict[str, np.ndarray], r: dict[str, Any], check: Checker,
                  steps: list[dict[str, Any]], log: Callable[[str], None]):
    """Several inputs of one shape: try one input fed to all of them (one .npy to ship)."""
    import onnx

    if len(feeds) < 2 or len({v.shape for v in feeds.values()}) != 1:
        return model, feeds, r
    names = list(feeds)
    keep = names[0]
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        for j, i in enumerate(n.input):
            if i in names:
                n.input[j] = keep
    inputs = [i for i in m.graph.input if i.name == keep]
    del m.graph.input[:]
    m.graph.input.extend(inputs)
    rr = check.measure(m, {keep: feeds[keep]})
    ok = bool(rr and rr["disagrees"])
    steps.append({"step": "one input for all", "nodes": len(m.graph.node), "inputs": 1,
                  **({k: rr[k] for k in ("frac_off", "max_steps", "disagrees")} if rr else {"refused": True})})
    log(f"one input fed to all {len(names)}: " + (f"{rr['frac_off']:.2%} off" if rr else "refused"))
    return (m, {keep: feeds[keep]}, rr) if ok else (model, feeds, r)


def _crop(model: Any, feeds: dict[str, np.ndarray], r: dict[str, Any], check: Checker,
          steps: list[dict[str, Any]], log: Callable[[str], None]):
    """Halve the spatial size of every 4-D input while the disagreement survives."""
    from onnx import TensorProto, helper

    if any(n.op_type not in SPATIAL_AGNOSTIC for n in model.graph.node) or \
            any(v.ndim != 4 for v in feeds.values()) or \
            len({v.shape[2:] for v in feeds.values()}) != 1:
        return model, feeds, r
    while True:
        h, w = next(iter(feeds.values())).shape[2:]
        nh, nw = h // 2, w // 2
        if nh < MIN_SPATIAL or nw < MIN_SPATIAL:
            return model, feeds, r
        # the centre, where real content is (letterbox padding sits at the borders)
        y0, x0 = (h - nh) // 2, (w - nw) // 2
        small = {k: np.ascontiguousarray(v[:, :, y0:y0 + nh, x0:x0 + nw]) for k, v in feeds.items()}
        m = type(model)()
        m.CopyFrom(model)
        for i in m.graph.input:
            i.CopyFrom(helper.make_tensor_value_info(i.name, TensorProto.FLOAT, list(small[i.name].shape)))
        _infer_output_shape(m)
        rr = check.measure(m, small)
        ok = bool(rr and rr["disagrees"])
        steps.append({"step": f"crop to {nh}x{nw}", "nodes": len(m.graph.node), "inputs": len(small),
                      **({k: rr[k] for k in ("frac_off", "max_steps", "disagrees")} if rr else {"refused": True})})
        log(f"crop to {nh}x{nw}: " + (f"{rr['frac_off']:.2%} off" if rr else "refused"))
        if not ok:
            return model, feeds, r
        model, feeds, r = m, small, rr


def _infer_output_shape(m: Any) -> None:
    """Give the (single) graph output the shape ONNX shape inference derives from the inputs."""
    import onnx
    from onnx import TensorProto, helper

    out = m.graph.output[0]
    out.CopyFrom(helper.make_tensor_value_info(out.name, TensorProto.FLOAT, None))
    inferred = onnx.shape_inference.infer_shapes(m)
    vi = next((v for v in inferred.graph.value_info if v.name == out.name), None)
    if vi is None:
        vi = next((v for v in inferred.graph.output if v.name == out.name), None)
    if vi is not None and vi.type.tensor_type.HasField("shape"):
        out.CopyFrom(vi)
    else:  # unknown: a rank-free but valid declaration
        out.type.tensor_type.shape.SetInParent()


# ----------------------------------------------------------------------------- target
def find_target(model_path: Path, engine: str, against: str, xs: list[np.ndarray], names: list[str],
                frac: float, engine_opts: dict[str, str], against_opts: dict[str, str],
                threads: int, log: Callable[[str], None]) -> dict[str, Any]:
    """localize's first fault: the first divergence if it is a fault in context, else (drift)
    the first fault of an exhaustive search."""
    from .localize_judge import localize

    f = localize(model_path, engine, against, None, None, len(xs), frac, engine_opts,
                 against_opts, threads, False, xs=xs, names=names)
    d = f["first_divergence"]
    if d is None:
        raise QParityError(f"{engine} does not diverge from {against} on these images: "
                           "nothing to reproduce", model_path)
    if d.get("in_context", {}).get("fault"):
        log(f"target: {d['tensor']} (first divergence, a fault in context)")
        return {"tensor": d["tensor"], "localize": _brief(f, d)}
    log("first divergence is drift; searching every node in context (--exhaustive)")
    f = localize(model_path, engine, against, None, None, len(xs), frac, engine_opts,
                 against_opts, threads, True, xs=xs, names=names)
    ff = f.get("first_fault")
    if ff is None:
        raise QParityError(f"{engine} drifts from {against} but no node departs from the model's "
                           "arithmetic on its own inputs: no subgraph can reproduce it", model_path)
    log(f"target: {ff['tensor']} (first fault)")
    return {"tensor": ff["tensor"], "localize": _brief(f, ff)}


def _brief(f: dict[str, Any], d: dict[str, Any]) -> dict[str, Any]:
    return {"engine": f["engine"], "against": f["against"], "images": f["images"],
            "tensor": d["tensor"], "producer": d["producer"], "producer_op": d["producer_op"],
            "frac_off": d["frac_off"], "max_steps": d["max_steps"],
            "in_context": d.get("in_context"), "probed": f["probed"], "compiles": f["compiles"]}


# ----------------------------------------------------------------------------- entry point
def repro(out: Path, model: Path, engine: str, data: Path, against: str = "qdq-ref",
          images: int = 2, frac: float = DEFAULT_FRAC, engine_opts: dict[str, str] | None = None,
          against_opts: dict[str, str] | None = None, threads: int | None = None,
          tensor: str | None = None, log: Callable[[str], None] = lambda s: None,
          source: dict[str, Any] | None = None) -> dict[str, Any]:
    import onnx

    from ..engines.base import visible_cpus
    from .graph import QdqGraph, float_output
    from .localize_judge import image_inputs
    from .repro_folder import write_folder

    for e in (engine, against):
        runner(e)  # unsupported engines fail before any work
    engine_opts, against_opts = dict(engine_opts or {}), dict(against_opts or {})
    threads = threads or visible_cpus()
    model = Path(model)
    if not model.is_file():
        raise QParityError("model file does not exist", model)
    xs, names = image_inputs(Path(data), images)
    if tensor is None:
        target = find_target(model, engine, against, xs, names, frac, engine_opts, against_opts,
                             threads, log)
    else:
        target = {"tensor": tensor, "localize": {"producer": None, "producer_op": None}}
    full = onnx.load(str(model))
    qg = QdqGraph(full)
    if target["tensor"] not in qg.by_name:
        raise QParityError(f"no quantized tensor named {target['tensor']!r}", model)
    qt = qg.by_name[target["tensor"]]
    if tensor is not None:
        target["localize"].update(producer=qt.producer, producer_op=qt.producer_op)
    with_dq, out_name = float_output(full, qt)
    g = Graph(with_dq)
    # the image where the target disagrees most is the one shipped
    best = None
    with tempfile.TemporaryDirectory(prefix="qparity-repro-") as tmp:
        check = Checker(engine, against, engine_opts, against_opts, qt.params.scale,
                        qt.params.axis, frac, Path(tmp))
        for x, name in zip(xs, names):
            values = reference_values(with_dq, x, threads)
            first = {qg.tensors[j].source for j in qt.q_inputs} or {g.image}
            first = {t for t in first if t in values}
            seg = g.subgraph(out_name, first, values)
            r = check.measure(seg, {i.name: values[i.name] for i in seg.graph.input})
            score = r["frac_off"] if r else -1.0
            if best is None or score > best[0]:
                best = (score, name, values, first)
        _, image_name, values, first = best
        log(f"image: {image_name}")
        red = reduce_model(g, out_name, first, values, check, log)
        summary = write_folder(Path(out), red, engine, against, engine_opts, against_opts,
                               qt.params.scale, qt.params.axis, frac, target,
                               {**(source or {}), "model": model.name, "image": image_name})
        summary["candidates_run"] = check.runs
    return summary


def from_run(run: Path, engine: str) -> tuple[Path, Path, dict[str, Any]]:
    """The model and images an engine's result in a run folder used."""
    f = Path(run) / f"{engine}.json"
    if not f.is_file():
        raise QParityError(f"no result for {engine} in this run ({f.name} missing)", run)
    try:
        r = json.loads(f.read_text())
        model, images = Path(r["model"]["path"]), Path(r["data"]["images_dir"])
    except (ValueError, KeyError, TypeError) as e:
        raise QParityError(f"result file has no model path / image folder ({e})", f) from e
    delta = None
    rep = Path(run) / "eval_report.json"
    if rep.is_file():
        try:
            delta = read_report(rep)["engines"][engine].get("delta_map50_95")
        except (QParityError, KeyError):
            pass
    return model, images, {"run": str(run), "delta_map50_95": delta}


def cmd_repro(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..options import default_threads, parse_kv

    console = Console(stderr=True)
    if args.run:
        model, data, source = from_run(Path(args.run), args.engine)
    else:
        if not (args.model and args.data):
            raise QParityError("give a run folder, or --model and --data")
        model, data, source = Path(args.model), Path(args.data), {}
    model = Path(args.model) if args.model else model
    data = Path(args.data) if args.data else data
    s = repro(Path(args.out), model, args.engine, data, args.against, args.images, args.frac,
              parse_kv(args.engine_opt, "--engine-opt"), parse_kv(args.against_opt, "--against-opt"),
              args.threads or default_threads(), args.tensor,
              log=lambda m: console.print(f"  {m}", highlight=False), source=source)
    d = s["disagreement"]
    Console().print(
        f"[bold]repro[/]: {s['engine']} vs {s['against']}: {s['model_nodes']} nodes "
        f"({s['graph']}), model {s['model_bytes']} bytes, input "
        f"{', '.join(str(v) for v in s['inputs'].values())} ({s['input_bytes']} bytes): "
        f"{d['frac_off']:.2%} of elements off by > 1 step (max {d['max_steps']:.1f}) -> {args.out}",
        highlight=False)
    return 0
