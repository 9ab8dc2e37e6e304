"""Decode + NMS time per image on 80-class YOLO outputs ([1, 6300, 85] at 320x320).

Two synthetic cases, both through `harness.postprocess.decode` with the locked protocol:
- typical: a few objects, each predicted by a cluster of neighbouring anchors, on a background
  of weak predictions; about 15k (box, class) candidates above conf 0.001 (multi-label).
- many: confident junk everywhere; 400-500k candidates (the 30000 cap and partial selection
  are what matter here).

    python bench/nms_bench.py [--images 50] [--repeat 3] [--old]

--old also times the previous implementation, alternating call by call, (git show c9f299d:harness/postprocess.py) on the
same outputs and checks both return identical detections.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from old_code import module_at  # bench/ is on sys.path when a script here runs

from harness.postprocess import decode
from harness.protocol import locked_protocol

SIZE, NC = 320, 80
STRIDES = (8, 16, 32)
# YOLOv7's P3/P4/P5 anchors (w, h at 640) halved for a 320 input
ANCHORS = np.array([[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146],
                    [142, 110, 192, 243, 459, 401]], np.float32).reshape(3, 3, 2) / 2


def grid() -> tuple[np.ndarray, np.ndarray]:
    """Cell centres [6300, 2] and anchor sizes [6300, 2] in YOLO output order."""
    centres, sizes = [], []
    for s, anchors in zip(STRIDES, ANCHORS):
        g = SIZE // s
        yy, xx = np.mgrid[0:g, 0:g]
        c = (np.stack([xx, yy], -1).reshape(-1, 2) + 0.5) * s
        for a in anchors:
            centres.append(c)
            sizes.append(np.broadcast_to(a, c.shape))
    return np.concatenate(centres).astype(np.float32), np.concatenate(sizes).astype(np.float32)


def typical_output(rng: np.random.Generator, n_objects: int = 8) -> np.ndarray:
    centre, anchor = grid()
    n = len(centre)
    out = np.empty((n, 5 + NC), np.float32)
    out[:, :2] = centre + rng.normal(0, 2, (n, 2))
    out[:, 2:4] = anchor * np.exp(rng.normal(0, 0.3, (n, 2)))
    # background: weak objectness and weak class scores (a long tail above 0.001)
    out[:, 4] = 10 ** rng.uniform(-4, -1.5, n)
    out[:, 5:] = 10 ** rng.uniform(-4, -1.2, (n, NC))
    for _ in range(n_objects):
        wh = rng.uniform(10, 200, 2)
        cxy = rng.uniform(wh / 2, SIZE - wh / 2)
        cls = rng.integers(NC)
        near = np.all(np.abs(centre - cxy) < wh / 2, 1) & np.all(np.abs(np.log(anchor / wh)) < 1.2, 1)
        k = int(near.sum())
        out[near, :2] = cxy + rng.normal(0, wh * 0.05, (k, 2))
        out[near, 2:4] = wh * np.exp(rng.normal(0, 0.1, (k, 2)))
        out[near, 4] = rng.uniform(0.3, 0.95, k)
        out[near, 5 + cls] = rng.uniform(0.5, 0.95, k)
    return out[None]


def many_output(rng: np.random.Generator) -> np.ndarray:
    out = typical_output(rng, 20)
    out[0, :, 4] = np.maximum(out[0, :, 4], rng.uniform(0.05, 1.0, out.shape[1]))
    out[0, :, 5:] = np.maximum(out[0, :, 5:], rng.uniform(0.0, 0.5, (out.shape[1], NC)))
    return out


def candidates(out: np.ndarray, conf: float) -> int:
    p = out[0][out[0, :, 4] > conf]
    return int(((p[:, 5:] * p[:, 4:5]) > conf).sum())


def load_old():
    return module_at("c9f299d", "harness/postprocess.py").decode


def time_per_image(fns, outputs, p, repeat: int) -> dict[str, dict[str, np.ndarray]]:
    """Per image, the median over `repeat` passes of wall and thread-CPU ms, for each function.
    The functions alternate call by call, so a load change on this shared machine hits both."""
    res = {name: {"wall": np.empty((repeat, len(outputs))), "cpu": np.empty((repeat, len(outputs)))}
           for name in fns}
    for r in range(repeat):
        for i, o in enumerate(outputs):
            for name, fn in fns.items():
                c0, t0 = time.thread_time(), time.perf_counter()
                fn(o, p.conf_thres, p.iou_thres, p.max_nms, p.max_det, p.multi_label, p.class_agnostic)
                res[name]["wall"][r, i] = (time.perf_counter() - t0) * 1e3
                res[name]["cpu"][r, i] = (time.thread_time() - c0) * 1e3
    return {name: {k: np.median(v, 0) for k, v in d.items()} for name, d in res.items()}


def fmt(a: np.ndarray) -> str:
    return f"median {np.median(a):.2f} / p95 {np.percentile(a, 95):.2f} / min {a.min():.2f}"


def same(a, b) -> bool:
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.classes, b.classes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--old", action="store_true", help="also time the previous implementation")
    args = ap.parse_args()
    p = locked_protocol()
    rng = np.random.default_rng(0)
    cases = {"typical": [typical_output(rng) for _ in range(args.images)],
             "many": [many_output(rng) for _ in range(max(5, args.images // 5))]}
    old = load_old() if args.old else None
    print(f"decode + NMS, {NC} classes, conf {p.conf_thres}, iou {p.iou_thres}, max_nms "
          f"{p.max_nms}, max_det {p.max_det}; ms per image (median over {args.repeat} passes)")
    for name, outs in cases.items():
        cands = [candidates(o, p.conf_thres) for o in outs]
        fns = {"new": decode, **({"old": old} if old else {})}
        t = time_per_image(fns, outs, p, args.repeat)
        print(f"{name}: {len(outs)} images, candidates median {int(np.median(cands))} "
              f"(min {min(cands)}, max {max(cands)})")
        for fn_name, d in t.items():
            print(f"  {fn_name}: wall ms {fmt(d['wall'])}; thread CPU ms {fmt(d['cpu'])}")
        if old:
            ok = all(same(decode(o, p.conf_thres, p.iou_thres, p.max_nms, p.max_det),
                          old(o, p.conf_thres, p.iou_thres, p.max_nms, p.max_det)) for o in outs)
            print(f"  old/new median wall {np.median(t['old']['wall']) / np.median(t['new']['wall']):.1f}x, "
                  f"CPU {np.median(t['old']['cpu']) / np.median(t['new']['cpu']):.1f}x; "
                  f"identical detections: {ok}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
