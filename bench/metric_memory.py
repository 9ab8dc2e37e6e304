"""Peak memory of scoring COCO-scale detections: 5000 images x 300 detections by default.

    python bench/metric_memory.py [--images 5000] [--per-image 300] [--impl new|old|both]

Each measurement runs in a fresh process and prints its peak RSS (ru_maxrss) and wall time:
a synthetic COCO-like ground truth (80 categories, ~7 boxes with a polygon each per image,
roughly val2017's 36k annotations at 5000 images), the run's [K, 7] detection array as
run_dataset holds it, then `harness.metrics.evaluate` ("new": one category at a time) or the
previous evaluate (git fd2125b: deep copy of the annotations, one joint pycocotools run).
The baseline line is the same process without the evaluate call.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from old_code import module_at  # bench/ is on sys.path when a script here runs

OLD_COMMIT = "fd2125b"


def synthetic(n_images: int, per_image: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cats = [{"id": i, "name": f"c{i}", "supercategory": "x"} for i in range(1, 91) if i % 9 != 0][:80]
    cat_ids = np.array([c["id"] for c in cats])
    images, anns, aid = [], [], 1
    gt_boxes = []
    for img in range(1, n_images + 1):
        images.append({"id": img, "file_name": f"{img:012d}.jpg", "width": 640, "height": 480})
        boxes = []
        for _ in range(rng.integers(0, 15)):
            w, h = rng.uniform(4, 300, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            c = int(rng.choice(cat_ids))
            poly = np.round(np.stack([x + w * rng.uniform(0, 1, 12), y + h * rng.uniform(0, 1, 12)], 1)
                            .ravel(), 2).tolist()
            anns.append({"id": aid, "image_id": img, "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0, "segmentation": [poly]})
            aid += 1
            boxes.append((x, y, w, h, c))
        gt_boxes.append(boxes)
    rows = np.empty((n_images * per_image, 7))
    k = 0
    for img, boxes in enumerate(gt_boxes, 1):
        d = rows[k:k + per_image]
        d[:, 0] = img
        d[:, 1:3] = rng.uniform(0, 500, (per_image, 2))
        d[:, 3:5] = rng.uniform(2, 150, (per_image, 2))
        d[:, 5] = rng.uniform(0.001, 0.3, per_image)
        d[:, 6] = rng.choice(cat_ids, per_image)
        for j, (x, y, w, h, c) in enumerate(boxes[:per_image]):  # one good hit per object
            d[j, 1:7] = [x + rng.normal(0, 2), y + rng.normal(0, 2), w, h, rng.uniform(0.3, 1), c]
        k += per_image
    return {"images": images, "annotations": anns, "categories": cats}, rows


def load_old_evaluate():
    return module_at(OLD_COMMIT, "harness/metrics.py").evaluate


def child(impl: str, n_images: int, per_image: int) -> None:
    coco, dets = synthetic(n_images, per_image)
    if impl == "new":
        from harness.metrics import evaluate
    elif impl == "old":
        evaluate = load_old_evaluate()
    t0 = time.perf_counter()
    m = evaluate(coco, dets, [im["id"] for im in coco["images"]]) if impl != "baseline" else {}
    print(json.dumps({"impl": impl, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "evaluate_s": round(time.perf_counter() - t0, 1), "detections": len(dets),
                      "annotations": len(coco["annotations"]), "map50_95": m.get("map50_95")}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--per-image", type=int, default=300)
    ap.add_argument("--impl", default="both", choices=["new", "old", "both", "baseline"])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.impl, args.images, args.per_image)
    impls = {"both": ["baseline", "new", "old"]}.get(args.impl, [args.impl])
    for impl in impls:
        out = subprocess.run([sys.executable, __file__, "--child", "--impl", impl, "--images",
                              str(args.images), "--per-image", str(args.per_image)],
                             capture_output=True, text=True)
        print(out.stdout.strip() or f"{impl} failed: {out.stderr[-500:]}", flush=True)


if __name__ == "__main__":
    main()
