"""`qparity sensitivity`: which blocks lose accuracy when quantized, and what to keep in float.

For each block of the fp32 model, quantize the model with the locked PTQ (`harness.ptq.quantize`,
the portable recipe by default) with that block kept in float (`exclude-one`) or with only that
block quantized (`only-one`), and measure mAP with the golden engine through the shared
evaluator (`harness.evaluate.run_dataset` + `harness.metrics.evaluate`), on a calibration and
an evaluation subset small enough for a laptop. Blocks are ranked by what they cost; then blocks
are kept in float, most costly first, until the quantized model is within `--target-drop` mAP
points of fp32. The JSON's "exclude" list is what `qparity ptq --exclude-from` reads.

Blocks: exporters name nodes by module path (`/model.3/conv/Conv`, `/model.3/act/LeakyRelu`).
Where most compute nodes have such names, a block is every node sharing the path prefix at a
depth (`--block-depth`; automatic: the shallowest depth giving at least
min(8, number of compute nodes) blocks, which is one block per `/model.N/` for YOLOv5/v7
exports). Otherwise every compute node (Conv, ConvTranspose, MatMul, Gemm) is a block together
with the activation directly after it. Nodes of the box-decoding tail are never candidates (the
recipe keeps them in float anyway).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import QParityError
from ..progress import bar as progress_bar
from ..modelinfo import COMPUTE_OPS
from .defaults import DEFAULT_CALIB_IMAGES, DEFAULT_EVAL_IMAGES, DEFAULT_TARGET, MODES  # noqa: F401  (also read from here)

ACTIVATIONS = ("Relu", "LeakyRelu", "Sigmoid", "Clip", "HardSigmoid", "HardSwish", "Elu", "Selu",
               "PRelu", "Tanh", "Softplus", "Mish", "Gelu")
AUTO_MIN_BLOCKS = 8


@dataclass
class Block:
    name: str
    nodes: list[str] = field(default_factory=list)  # every member, graph order
    compute: list[str] = field(default_factory=list)
    first: int = 0  # graph position of its first node


def _path_parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p][:-1]  # the last part is the node itself


def find_blocks(model: Any, depth: int | None = None) -> tuple[list[Block], int | None]:
    """Blocks of an fp32 model (see the module doc); returns (blocks, path depth or None)."""
    from ..ptq import decode_tail, name_nodes

    name_nodes(model)  # the names `quantize` will use for anonymous nodes
    g = model.graph
    try:
        tail = set(decode_tail(g))
    except QParityError:
        tail = set()
    nodes = [n for n in g.node if n.name not in tail and n.op_type not in
             ("QuantizeLinear", "DequantizeLinear", "Constant")]
    compute = [n for n in nodes if n.op_type in COMPUTE_OPS]
    if not compute:
        raise QParityError("no Conv/MatMul/Gemm outside the decode tail: nothing to rank")
    pathy = sum(len(_path_parts(n.name)) > 0 for n in compute) * 2 >= len(compute)
    if pathy:
        max_depth = max(len(_path_parts(n.name)) for n in compute)
        if depth is None:
            want = min(AUTO_MIN_BLOCKS, len(compute))
            depth = next((d for d in range(1, max_depth + 1)
                          if len({_prefix(n.name, d) for n in compute}) >= want), max_depth)
        keys = {_prefix(n.name, depth) for n in compute}
        blocks: dict[str, Block] = {}
        for pos, n in enumerate(nodes):
            key = _prefix(n.name, depth)
            if key in keys:
                b = blocks.setdefault(key, Block(key, first=pos))
                b.nodes.append(n.name)
                if n.op_type in COMPUTE_OPS:
                    b.compute.append(n.name)
        return sorted(blocks.values(), key=lambda b: b.first), depth
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for pos, n in enumerate(nodes):
        if n.op_type not in COMPUTE_OPS:
            continue
        b = Block(n.name, [n.name], [n.name], pos)
        cons = consumers.get(n.output[0], [])
        if len(cons) == 1 and cons[0].op_type in ACTIVATIONS and cons[0].name not in tail:
            b.nodes.append(cons[0].name)
        out.append(b)
    return out, None


def _prefix(name: str, depth: int) -> str:
    parts = _path_parts(name)
    return "/" + "/".join(parts[:depth]) + "/" if parts else name


# ----------------------------------------------------------------------------- measuring
class Bench:
    """Quantize-and-measure, with everything that does not change between candidates fixed."""

    def __init__(self, fp32: Path, calib: list[Path], images_dir: Path, annotations: Path,
                 limit: int | None, recipe: str, method: str, threads: int, metric: str,
                 workdir: Path):
        from ..data import Dataset
        from ..modelinfo import inspect_model
        from ..protocol import locked_protocol

        self.fp32, self.calib, self.recipe, self.method = fp32, calib, recipe, method
        self.threads, self.metric, self.workdir = threads, metric, workdir
        self.protocol = locked_protocol()
        self.engine = self.protocol.golden
        info = inspect_model(fp32, self.protocol.size)
        self.data = Dataset.load(images_dir, annotations, limit)
        self.data.check_num_classes(info.num_classes, fp32)
        self.evaluations = 0
        self.seconds = 0.0
        self.n = 0
        self.on_quantized = None  # a progress tick per quantize-and-measure

    def measure(self, model: Path) -> float:
        from ..engines import EngineConfig, engine_class
        from ..evaluate import run_dataset
        from ..metrics import evaluate

        t0 = time.perf_counter()
        eng = engine_class(self.engine)(EngineConfig(threads=self.threads))
        eng.load(model)
        try:
            out = run_dataset(eng.run, self.data, self.protocol, self.engine)
        finally:
            eng.close()
        m = evaluate(self.data.coco_json, out.detections, self.data.image_ids)
        self.evaluations += 1
        self.seconds += time.perf_counter() - t0
        return float(m[self.metric] or 0.0)

    def quantized(self, exclude: list[str]) -> float:
        from ..ptq import quantize

        self.n += 1
        out = self.workdir / f"c{self.n:03d}" / "model-int8.onnx"
        t0 = time.perf_counter()
        quantize(self.fp32, self.calib, out, self.recipe, self.method, exclude)
        self.seconds += time.perf_counter() - t0
        try:
            return self.measure(out)
        finally:
            shutil.rmtree(out.parent, ignore_errors=True)
            if self.on_quantized:
                self.on_quantized()


def sensitivity(fp32: Path, calib: list[Path], images_dir: Path, annotations: Path,
                limit: int | None = DEFAULT_EVAL_IMAGES, mode: str = "exclude-one",
                target_drop: float = DEFAULT_TARGET, recipe: str = "portable",
                method: str = "percentile", threads: int | None = None, metric: str = "map50_95",
                block_depth: int | None = None, max_exclude: int | None = None,
                progress: bool = True) -> dict[str, Any]:
    import onnx

    from ..fileio import sha256_file
    from ..engines.base import visible_cpus

    if mode not in MODES:
        raise QParityError(f"unknown --mode {mode!r}; known: {', '.join(MODES)}")
    if target_drop < 0:
        raise QParityError(f"--target-drop must be >= 0, got {target_drop}")
    fp32 = Path(fp32)
    try:
        model = onnx.load(str(fp32))
    except Exception as e:
        raise QParityError(f"not a valid ONNX model ({e})", fp32) from e
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise QParityError("already quantized: sensitivity needs the fp32 model", fp32)
    blocks, depth = find_blocks(model, block_depth)
    every = [n.name for n in model.graph.node]
    t_start = time.perf_counter()
    with (tempfile.TemporaryDirectory(prefix="qparity-sens-") as tmp,
          progress_bar("sensitivity", len(blocks) + 2, progress) as tick):
        bench = Bench(fp32, calib, images_dir, annotations, limit, recipe, method,
                      threads or visible_cpus(), metric, Path(tmp))
        fp32_map = bench.measure(fp32)
        tick()
        int8_map = bench.quantized([])
        tick()
        ranking = []
        for b in blocks:
            tick(0, description=b.name)
            if mode == "exclude-one":
                m = bench.quantized(b.nodes)
                score = m - int8_map  # mAP recovered by keeping this block in float
            else:
                members = set(b.nodes)
                m = bench.quantized([n for n in every if n not in members])
                score = fp32_map - m  # mAP lost by quantizing this block alone
            ranking.append({"block": b.name, "nodes": b.nodes, "compute_nodes": b.compute,
                            "map": round(m, 4), "score": round(score, 4), "first": b.first})
            tick()
        ranking.sort(key=lambda r: (-r["score"], r["first"]))
        for i, r in enumerate(ranking, 1):
            r["rank"] = i
            del r["first"]
        kmax = min(max_exclude if max_exclude is not None else len(ranking), len(ranking))
        total = len(blocks) + 2 + proposal_bound(kmax)  # the proposal's runs are counted too
        tick(0, total=total, description=f"proposal (at most {proposal_bound(kmax)} runs)")
        bench.on_quantized = tick
        proposal = propose(bench, ranking, fp32_map, int8_map, target_drop, kmax)
        tick(0, completed=total)
        evaluations, seconds = bench.evaluations, bench.seconds
        eval_images = len(bench.data.files)
    chosen = proposal["blocks"]
    by_block = {r["block"]: r for r in ranking}
    return {
        "schema": 1,
        "model": str(fp32), "model_sha256": sha256_file(fp32),
        "mode": mode, "metric": metric, "target_drop": target_drop,
        "engine": bench.engine, "recipe": recipe, "method": method,
        "calibration_images": len(calib), "eval_images": eval_images,
        "images_dir": str(images_dir), "annotations": str(annotations),
        "blocks": len(blocks), "block_depth": depth,
        "fp32": round(fp32_map, 4), "int8": round(int8_map, 4),
        "int8_drop": round(fp32_map - int8_map, 4),
        "score_meaning": ("mAP recovered by keeping this block in float (block excluded, rest "
                          "quantized) minus the fully quantized mAP" if mode == "exclude-one" else
                          "fp32 mAP minus the mAP with only this block quantized"),
        "ranking": ranking,
        "proposal": proposal,
        "exclude_blocks": chosen,
        "exclude": [n for b in chosen for n in by_block[b]["nodes"]],
        "evaluations": evaluations, "wall_s": round(time.perf_counter() - t_start, 1),
        "quantize_and_eval_s": round(seconds, 1),
    }


def proposal_bound(kmax: int) -> int:
    """Most quantize-and-measure runs `propose` can need: doubling 1, 2, 4 .. kmax, then
    bisection inside the last doubling step."""
    if kmax <= 1:
        return kmax
    steps = math.ceil(math.log2(kmax))
    return 2 * steps


def propose(bench: Bench, ranking: list[dict[str, Any]], fp32_map: float, int8_map: float,
            target: float, max_exclude: int) -> dict[str, Any]:
    """Keep the k most costly blocks in float, for the smallest k that reaches the target.

    k is searched by doubling, then bisection (the drop falls, not always strictly, as k grows),
    so a model with 60 blocks needs about a dozen quantize-and-measure runs, not 60. Every
    evaluated k is recorded; the answer is always a measured one."""
    steps: dict[int, float] = {0: int8_map}
    order = [r["block"] for r in ranking]
    nodes = {r["block"]: r["nodes"] for r in ranking}
    kmax = min(max_exclude, len(order))

    def drop(k: int) -> float:
        if k not in steps:
            steps[k] = bench.quantized([n for b in order[:k] for n in nodes[b]])
        return fp32_map - steps[k]

    ok = None
    if drop(0) > target and kmax > 0:
        lo, hi = 0, 1
        while hi < kmax and drop(hi) > target:
            lo, hi = hi, min(hi * 2, kmax)
        if drop(hi) <= target:
            ok = hi
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if drop(mid) <= target:
                    hi = ok = mid
                else:
                    lo = mid
    elif drop(0) <= target:
        ok = 0
    if ok is None:  # not reachable within max_exclude: propose the best measured k
        ok = min(steps, key=lambda k: (fp32_map - steps[k], k))
    return {
        "reached": fp32_map - steps[ok] <= target,
        "blocks": order[:ok], "map": round(steps[ok], 4), "drop": round(fp32_map - steps[ok], 4),
        "steps": [{"k": k, "blocks": order[:k], "map": round(v, 4), "drop": round(fp32_map - v, 4)}
                  for k, v in sorted(steps.items())],
    }


# ----------------------------------------------------------------------------- output
def print_result(r: dict[str, Any], console: Any = None, rows: int = 25) -> None:
    from rich.table import Table

    from ..report import wide_console

    console = console or wide_console()
    name = "mAP50-95" if r["metric"] == "map50_95" else r["metric"]
    head = "recovered vs int8" if r["mode"] == "exclude-one" else "drop vs fp32"
    chosen = set(r["exclude_blocks"])
    t = Table("rank", "block", "compute ops", f"{name}", head, "proposed",
              title=f"sensitivity ({r['mode']}) of {Path(r['model']).name}: {r['blocks']} blocks, "
                    f"{r['engine']}, {r['eval_images']} eval / {r['calibration_images']} calibration "
                    f"images; fp32 {r['fp32']:.2f}, int8 {r['int8']:.2f} (drop {r['int8_drop']:.2f})",
              title_justify="left")
    for e in r["ranking"][:rows]:
        t.add_row(str(e["rank"]), e["block"], str(len(e["compute_nodes"])), f"{e['map']:.2f}",
                  f"{e['score']:+.2f}", "[bold]keep float[/]" if e["block"] in chosen else "")
    if len(r["ranking"]) > rows:
        t.caption = f"{len(r['ranking']) - rows} more blocks in the JSON"
    console.print(t)
    p = r["proposal"]
    verdict = "[green]reaches[/]" if p["reached"] else "[yellow]does not reach[/]"
    console.print(f"proposal: keep {len(p['blocks'])} block(s) in float ({len(r['exclude'])} nodes): "
                  f"{name} {p['map']:.2f}, drop {p['drop']:.2f}, {verdict} the target "
                  f"{r['target_drop']:.2f} ({len(p['steps'])} settings measured; "
                  f"{r['evaluations']} evaluations in {r['wall_s']} s)", highlight=False)


def cmd_sensitivity(args: argparse.Namespace) -> int:
    from ..options import data_paths, default_threads
    from ..lists import read_list

    images, ann = data_paths(args)
    calib = read_list(Path(args.calib), Path(args.data) if args.data else None)
    if args.calib_limit:
        calib = calib[: args.calib_limit]
    r = sensitivity(Path(args.model), calib, images, ann, args.limit, args.mode, args.target_drop,
                    args.recipe, args.method, args.threads or default_threads(), args.metric,
                    args.block_depth, args.max_exclude)
    print_result(r)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(r, indent=1) + "\n")
    from rich.console import Console

    Console(stderr=True).print(f"written: {out} (qparity ptq --exclude-from {out})", highlight=False)
    return 0
