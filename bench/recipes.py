"""Recipes side by side on the demo: what each PTQ choice costs on every CPU engine.

For the fp32 demo model and variants of the locked PTQ (portable, portable with the decode
tail quantized, spec-v1), runs ort-cpu, qdq-ref and openvino through the shared evaluator on
the demo val split and prints mAP50-95, deltas, latency and the int8 census.

    python bench/recipes.py [--images 300] [--out results/bench-recipes]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from harness.census import ratio_text
from harness.demo import DEMO_MODEL, load_generator
from harness.engines import EngineConfig
from harness.lists import read_list, write_lists
from harness.protocol import locked_protocol
from harness.ptq import quantize
from harness.report import wide_console
from harness.runner import RunRequest, run_isolated

VARIANTS = {
    "fp32": None,
    "portable": {"recipe": "portable"},
    "portable+tail": {"recipe": "portable", "quantize_tail": True},
    "spec-v1": {"recipe": "spec-v1"},
}
ENGINES = ("ort-cpu", "qdq-ref", "openvino")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("results/bench-recipes"))
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    data = args.out / "data"
    load_generator().generate(data, n_images=args.images, seed=0, split="val2017")
    lists = write_lists(data, args.out / "lists")
    calib = read_list(lists["calib"], data)
    proto = locked_protocol().with_overrides(runs=args.runs)
    images, ann = data / "val2017", data / "annotations" / "instances_val2017.json"
    t = Table(title=f"demo recipes on {args.images} images", title_justify="left")
    for c in ("variant", "engine", "mAP50-95", "Δ ort-cpu", "Δ qdq-ref", "lat med ms", "int8 ran/file"):
        t.add_column(c, justify="left" if c in ("variant", "engine") else "right")
    summary = {}
    for name, kw in VARIANTS.items():
        model = DEMO_MODEL if kw is None else args.out / name / "model-int8.onnx"
        if kw is not None:
            quantize(DEMO_MODEL, calib, model, **kw)
        res = {}
        for eng in ENGINES:
            res[eng] = run_isolated(RunRequest(eng, model, images, ann, args.out / name / "results",
                                               proto, None, EngineConfig()))
        m = {e: (r.get("metrics") or {}).get("map50_95") for e, r in res.items()}
        for eng, r in res.items():
            lat = (r.get("latency_ms") or {}).get("median")
            d = lambda ref: f"{m[eng] - m[ref]:+.2f}" if m[eng] is not None and m[ref] is not None else "-"  # noqa: E731
            t.add_row(name, eng, f"{m[eng]:.2f}" if m[eng] is not None else r["status"], d("ort-cpu"),
                      d("qdq-ref"), f"{lat:.2f}" if lat else "-",
                      ratio_text(r.get("census"), (r.get("model") or {}).get("quantized_compute_ops")))
        summary[name] = {"map50_95": m, "latency_median_ms": {e: (r.get("latency_ms") or {}).get("median")
                                                              for e, r in res.items()}}
    wide_console().print(t)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
