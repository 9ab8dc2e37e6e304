"""`qparity localize`, judging: the first quantized tensor where an engine leaves the reference.

Both sides run the same real images (the evaluator's letterbox). What is compared is every
quantized activation: the output of each QuantizeLinear fed by a computed tensor, i.e. the int8
tensors of the model, taken as their dequantized values and measured in quantization steps
(units of that tensor's scale; of the finer scale where the two model files differ). A tensor
*diverges* when more than `frac` of its elements differ by more than one step; one step is the
rounding noise two correct integer pipelines may legitimately show.

How each side exposes a tensor:
- `cut` (every engine whose arithmetic may depend on what is a graph output): the engine compiles its own model truncated at that
  tensor: the unchanged nodes upstream of it, the tensor (through its own DequantizeLinear) the
  only output, read by name (`Engine.run_named`). The
  engine fuses what is upstream exactly as in the full model: everything that feeds the tensor,
  including its own output quantization, is there. Adding a graph output to the full model
  instead would change what an optimizing engine may fuse (a graph output must be materialised,
  which stops ONNX Runtime from folding some Q/DQ pairs). What a cut cannot reproduce is a fusion
  with a node *after* the tensor (a later Add fused into its convolution as a post-op); in the
  full model that tensor is then never materialised at all.
- `outputs` (an engine flagged EXTRA_OUTPUTS_EXACT: qdq-ref): one session with every tensor as an extra output. With graph optimizations
  off nothing is fused whatever the outputs are, so this is exact (a test checks it equals cuts).

Search: a cut is one compile per probed tensor, so not every tensor is probed. Divergence
propagates downstream, so the search bisects over graph order: a diverged probe drops every
candidate after it, an agreeing probe drops itself and every quantized tensor upstream of it.
About log2(n) + (number of output branches) compiles find the first diverging tensor. The answer
is verified: its nearest quantized inputs are probed too, and the search goes on from any that
diverges. `--exhaustive` probes every tensor (one compile each).

In context: on a real network, two correct engines drift apart. A one-step rounding difference
here and there is amplified layer after layer, so deep tensors differ by several steps in many
elements although every node computes correctly (measured: ONNX Runtime with all optimizations,
and OpenVINO with its low-precision path off, both cross 1 % at the same mid-network
convolution). So the first diverging tensor is checked in context: the reference's exact Q/DQ
arithmetic (ONNX Runtime, optimizations off, on the reference model file) is applied to the
*engine's own* values of its quantized inputs (graph.segmented). If that reproduces the engine's
tensor, the node computes correctly and the divergence is drift; if not, this node is where the
engine departs from the model (a fault). With `--exhaustive`, every node is checked in context
and every fault is listed, worst first.

Layout: this module runs both sides and judges (no terminal output, no argparse);
localize_search.py holds the step measure and the bisection, localize_render.py the tables,
localize.py the command.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QParityError
from .defaults import DEFAULT_FRAC
from .localize_search import STEP_TOL, compare, search


# ----------------------------------------------------------------------------- inputs
def image_inputs(data: Path, n: int) -> tuple[list[np.ndarray], list[str]]:
    """The first `n` images (sorted) of a COCO folder (DIR/val2017) or of an image folder,
    letterboxed exactly as the evaluator does."""
    from ..data import list_images
    from ..letterbox import read_input
    from ..protocol import locked_protocol

    if n < 1:
        raise QParityError(f"--images must be at least 1, got {n}")
    data = Path(data)
    folder = data / "val2017" if (data / "val2017").is_dir() else data
    files = list_images(folder)[:n]
    p = locked_protocol()
    xs = []
    for f in files:
        xs.append(read_input(f, p))
    return xs, [f.name for f in files]


# ----------------------------------------------------------------------------- engines
@dataclass
class Side:
    """One side of the comparison: an engine running a model file."""

    engine: str
    model_path: Path
    options: dict[str, str]
    threads: int
    workdir: Path
    graph: Any = None  # QdqGraph
    method: str = ""
    compiles: int = 0
    _cache: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import onnx

        from ..engines import engine_class
        from .graph import QdqGraph

        if not self.model_path.is_file():
            raise QParityError("model file does not exist", self.model_path)
        try:
            model = onnx.load(str(self.model_path))
        except Exception as e:
            raise QParityError(f"not a valid ONNX model ({e})", self.model_path) from e
        self.graph = QdqGraph(model)
        cls = engine_class(self.engine)
        if not cls.RUNS_SUBGRAPHS:
            raise QParityError(f"engine {self.engine} cannot run a cut subgraph (named inputs "
                               f"and outputs), which localize needs")
        reason = cls.probe()
        if reason:
            raise QParityError(f"engine {self.engine} cannot run here: {reason}")
        self.cls = cls
        self.method = "outputs" if cls.EXTRA_OUTPUTS_EXACT else "cut"

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.engine}{f' [{opts}]' if opts else ''} on {self.model_path.name}"

    def _engine(self, path: Path):
        from ..engines import EngineConfig, EngineFailure

        eng = self.cls(EngineConfig(threads=self.threads, options=dict(self.options)))
        try:
            eng.load(path)
        except EngineFailure as e:
            raise QParityError(f"{self.engine} refused the model cut at this tensor: {e}", path) from e
        self.compiles += 1
        return eng

    def values(self, qt_name: str, xs: list[np.ndarray]) -> np.ndarray:
        """Dequantized values of one quantized tensor for every image, stacked on axis 0."""
        if qt_name in self._cache:
            return self._cache[qt_name]
        if self.method == "outputs":
            self._all_outputs(xs)
        else:
            self._cache[qt_name] = self._cut(qt_name, xs)
        return self._cache[qt_name]

    def _cut(self, qt_name: str, xs: list[np.ndarray]) -> np.ndarray:
        import onnx

        from .graph import cut, float_output, graph_input

        qt = self.graph.by_name[qt_name]
        model, fname = float_output(self.graph.model, qt)
        image = graph_input(model)
        path = self.workdir / f"{self.engine}-{qt.index:04d}.onnx"
        onnx.save(cut(model, fname), str(path))
        eng = self._engine(path)
        try:
            outs = [np.asarray(eng.run_named({image: x}, [fname])[fname], dtype=np.float32)
                    for x in xs]
        finally:
            eng.close()
            path.unlink(missing_ok=True)
        return np.concatenate(outs, axis=0)

    def _all_outputs(self, xs: list[np.ndarray]) -> None:
        import onnx

        from .graph import float_output, graph_input, with_outputs

        model, names = self.graph.model, []
        for qt in self.graph.tensors:
            model, fname = float_output(model, qt)
            names.append(fname)
        path = self.workdir / f"{self.engine}-outputs.onnx"
        onnx.save(with_outputs(model, names), str(path))
        eng = self._engine(path)
        try:
            image = graph_input(model)
            per_image = [eng.run_named({image: x}, names) for x in xs]
        finally:
            eng.close()
            path.unlink(missing_ok=True)
        for qt, fname in zip(self.graph.tensors, names):
            self._cache[qt.name] = np.concatenate([np.asarray(o[fname], np.float32) for o in per_image])


def in_context(model: Any, graph: Any, targets: list[str], engine_vals: dict[str, np.ndarray],
               shapes: dict[str, tuple[int, ...]], xs: list[np.ndarray], threads: int,
               workdir: Path) -> dict[str, np.ndarray]:
    """The model's exact Q/DQ arithmetic (ONNX Runtime, optimizations off) of each target tensor,
    computed from the engine's own values of its quantized inputs (graph.segmented)."""
    import onnx

    from ..engines import EngineConfig
    from ..engines.qdq_ref import QdqReferenceEngine
    from .graph import graph_input, segmented

    feed = sorted({graph.tensors[j].name for t in targets for j in graph.by_name[t].q_inputs},
                  key=lambda n: graph.by_name[n].index)
    image = graph_input(model)
    seg = segmented(model, graph, feed, targets, {**shapes, image: tuple(xs[0].shape)})
    path = workdir / "in-context.onnx"
    onnx.save(seg.model, str(path))
    eng = QdqReferenceEngine(EngineConfig(threads=threads))
    eng.load(path)
    try:
        per_image = []
        for k, x in enumerate(xs):
            values = {n: engine_vals[n][k:k + 1].reshape(shapes[n]) for n in feed}
            values[image] = x
            got = eng.run_named({seg.inputs[n]: values[n] for n in seg.inputs},
                                list(seg.outputs.values()))
            per_image.append({t: got[o] for t, o in seg.outputs.items()})
    finally:
        eng.close()
        path.unlink(missing_ok=True)
    return {t: np.concatenate([p[t] for p in per_image]) for t in targets}


def localize(model: Path, engine: str, against: str = "qdq-ref", against_model: Path | None = None,
             data: Path | None = None, images: int = 4, frac: float = DEFAULT_FRAC,
             engine_opts: dict[str, str] | None = None, against_opts: dict[str, str] | None = None,
             threads: int | None = None, exhaustive: bool = False,
             xs: list[np.ndarray] | None = None, names: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns the JSON-able finding (rendered by localize_render.print_finding)."""
    from ..engines.base import visible_cpus

    if not 0 <= frac < 1:
        raise QParityError(f"--frac must be in [0, 1), got {frac}")
    if xs is None:
        if data is None:
            raise QParityError("give --data (a COCO folder or an image folder)")
        xs, names = image_inputs(Path(data), images)
    names = names or [f"input{i}" for i in range(len(xs))]
    threads = threads or visible_cpus()
    with tempfile.TemporaryDirectory(prefix="qparity-localize-") as tmp:
        a = Side(engine, Path(model), dict(engine_opts or {}), threads, Path(tmp))
        b = Side(against, Path(against_model or model), dict(against_opts or {}), threads, Path(tmp))
        if not a.graph.tensors:
            raise QParityError("no quantized activations (QuantizeLinear nodes) in the model", model)
        common = [qt for qt in a.graph.tensors if qt.name in b.graph.by_name]
        skipped = [qt.name for qt in a.graph.tensors if qt.name not in b.graph.by_name]
        if not common:
            raise QParityError("the two models share no quantized tensor names", against_model)
        order = [qt.index for qt in common]
        by_index = {qt.index: qt for qt in common}
        results: dict[int, dict[str, Any]] = {}

        def probe(i: int) -> bool:
            if i not in results:
                qt = by_index[i]
                va, vb = a.values(qt.name, xs), b.values(qt.name, xs)
                r = compare(va, vb, qt.params, b.graph.by_name[qt.name].params, names)
                r["diverged"] = r["frac_off"] > frac
                results[i] = r
            return results[i]["diverged"]

        in_common = set(order)
        first = search(order, {i: by_index[i].ancestors for i in order},
                       {i: [j for j in by_index[i].q_inputs if j in in_common] for i in order},
                       probe, exhaustive)
        # In context: is a diverged tensor what the model's Q/DQ arithmetic gives on the
        # engine's own inputs? Yes: drift from upstream rounding; no: this node is at fault.
        def ref_inputs(i: int) -> list[str]:  # its quantized inputs, as the reference file has them
            bg = b.graph
            return [bg.tensors[j].name for j in bg.by_name[by_index[i].name].q_inputs]

        probed = {by_index[i].name for i in results}
        checkable = [i for i in sorted(results) if (exhaustive or i == first)
                     and all(n in probed for n in ref_inputs(i))]
        ctx: dict[int, dict[str, Any]] = {}
        if checkable:
            tnames = [by_index[i].name for i in checkable]
            needed = {n for i in checkable for n in ref_inputs(i)} | set(tnames)
            shapes = {n: (1, *b.values(n, xs).shape[1:]) for n in needed}
            vals = {n: a.values(n, xs) for n in needed}
            exact = in_context(b.graph.model, b.graph, tnames, vals, shapes, xs, threads, Path(tmp))
            for i in checkable:
                qt = by_index[i]
                c = compare(a.values(qt.name, xs), exact[qt.name], qt.params,
                            b.graph.by_name[qt.name].params, names)
                ctx[i] = {"frac_off": round(c["frac_off"], 6), "max_steps": round(c["max_steps"], 3),
                          "mean_steps": round(c["mean_steps"], 4), "fault": c["frac_off"] > frac,
                          "worst": c["worst"]}
        rows = {i: {**_row(by_index[i], results[i]),
                    **({"in_context": {k: v for k, v in ctx[i].items() if k != "worst"}} if i in ctx else {})}
                for i in sorted(results)}
        finding = {
            "engine": a.label(), "against": b.label(), "in_context_reference": f"qdq-ref on {b.model_path.name}",
            "method": {"engine": a.method, "against": b.method},
            "images": names, "frac": frac, "step_tolerance": STEP_TOL,
            "quantized_tensors": len(a.graph.tensors), "compared_tensors": len(common),
            "skipped_tensors": skipped, "probed": len(results),
            "compiles": {"engine": a.compiles, "against": b.compiles},
            "exhaustive": exhaustive, "first_divergence": None,
            "trail": list(rows.values()),
        }
        if exhaustive:
            finding["origins"] = sorted(
                (rows[i] for i in rows if results[i]["diverged"] and not any(
                    results[j]["diverged"] for j in by_index[i].q_inputs if j in results)),
                key=lambda r: -r["frac_off"])
            faults = [i for i in sorted(ctx) if ctx[i]["fault"]]
            finding["faults"] = sorted((rows[i] for i in faults),
                                       key=lambda r: -r["in_context"]["frac_off"])
            finding["first_fault"] = _detail(a, b, by_index, rows, results, faults[0]) if faults else None
        if first is not None:
            finding["first_divergence"] = _detail(a, b, by_index, rows, results, first)
            if first in ctx:
                finding["first_divergence"]["in_context_worst"] = ctx[first]["worst"]
    return finding


def _detail(a: Side, b: Side, by_index: dict[int, Any], rows: dict[int, dict[str, Any]],
            results: dict[int, dict[str, Any]], i: int) -> dict[str, Any]:
    qt = by_index[i]
    bq = b.graph.by_name[qt.name]
    return {
        **rows[i],
        "quant": qt.params.to_dict(), "quant_text": qt.params.summary(),
        "against_quant": bq.params.to_dict(), "against_quant_text": bq.params.summary(),
        "producer_inputs": a.graph.input_params(qt.producer) if qt.producer else [],
        "against_producer_inputs": b.graph.input_params(bq.producer) if bq.producer else [],
        "quantized_inputs": [rows[j] for j in qt.q_inputs if j in rows],
        "worst": results[i]["worst"],
    }


def _row(qt: Any, r: dict[str, Any]) -> dict[str, Any]:
    return {"index": qt.index, "tensor": qt.name, "q_node": qt.q_node, "producer": qt.producer,
            "producer_op": qt.producer_op, "frac_off": round(r["frac_off"], 6),
            "max_steps": round(r["max_steps"], 3), "mean_steps": round(r["mean_steps"], 4),
            "diverged": r["diverged"]}
