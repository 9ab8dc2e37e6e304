"""Where evaluation time goes: per-image decode, letterbox, inference, postprocess, and the
whole run's images/s against inference alone (prefetch should make them close).

    python bench/eval_breakdown.py --model M --data DIR [--engine ort-cpu] [--limit N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.table import Table

from harness.data import Dataset
from harness.engines import EngineConfig, engine_class
from harness.evaluate import run_dataset
from harness.metrics import evaluate
from harness.protocol import locked_protocol
from harness.report import wide_console


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="COCO-layout folder")
    ap.add_argument("--engine", default="ort-cpu")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    proto = locked_protocol()
    data = Dataset.load(Path(args.data) / "val2017",
                        Path(args.data) / "annotations" / "instances_val2017.json", args.limit)
    eng = engine_class(args.engine)(EngineConfig(threads=args.threads) if args.threads else None)
    eng.load(Path(args.model))
    out = run_dataset(eng.run, data, proto, args.engine)
    t0 = time.perf_counter()
    m = evaluate(data.coco_json, out.detections, data.image_ids)
    metric_s = time.perf_counter() - t0
    n, t = len(data.files), out.timing_s
    table = Table(title=f"{args.engine} on {n} images ({args.model})", title_justify="left")
    for col in ("stage", "ms / image", "share of wall"):
        table.add_column(col, justify="right" if col != "stage" else "left")
    for stage in ("read", "letterbox", "inference", "postprocess"):
        s = t[f"{stage}_s"]
        note = " (prefetch threads)" if stage in ("read", "letterbox") else ""
        table.add_row(stage + note, f"{s / n * 1e3:.2f}", f"{s / t['wall_s'] * 100:.0f}%")
    table.add_row("pycocotools (once)", f"{metric_s / n * 1e3:.2f}", "-")
    c = wide_console()
    c.print(table)
    c.print(f"whole run: {t['images_per_s']:.1f} images/s; inference alone: "
            f"{t['inference_only_images_per_s']:.1f} images/s "
            f"({t['images_per_s'] / t['inference_only_images_per_s'] * 100:.0f}%); "
            f"mAP50-95 {m['map50_95']}", highlight=False)


if __name__ == "__main__":
    main()
