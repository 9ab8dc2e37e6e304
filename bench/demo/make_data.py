"""Deterministic synthetic COCO-format detection data for the qparity demo.

Each image is a mildly noisy gradient background with 0..25 non-overlapping
coloured shapes drawn on it. Six classes, each a distinct shape with a
distinct (jittered) hue:

    id  name      colour (hue)
    1   circle    red
    2   square    green
    3   triangle  blue
    5   ring      yellow
    7   cross     magenta
    9   star      cyan

The category ids are deliberately *not* contiguous, so code that maps a
model's class index to a COCO category id has to do it properly
(class index i -> i-th category id sorted by id).

Boxes are computed from the rasterised mask of each shape, so they are tight
(COCO pixel-edge convention: a shape covering pixel columns x0..x1 has
bbox x=x0, w=x1-x0+1). ``area`` is the bbox area w*h. Objects never overlap,
so every box is fully visible.

Same seed -> byte-identical files (numpy Generator, cv2 JPEG quality 95,
json with sort_keys and fixed separators).

Usage:
    python bench/demo/make_data.py --out DIR --n 300 --seed 0 --split val2017
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np

CATEGORIES = [
    # (id, name, hue in OpenCV units 0..179)
    (1, "circle", 0),      # red
    (2, "square", 60),     # green
    (3, "triangle", 120),  # blue
    (5, "ring", 28),       # yellow
    (7, "cross", 150),     # magenta
    (9, "star", 92),       # cyan
]

JPEG_QUALITY = 95
MIN_SIDE, MAX_SIDE = 200, 640


def _rot(pts: np.ndarray, ang: float) -> np.ndarray:
    c, s = math.cos(ang), math.sin(ang)
    return pts @ np.array([[c, s], [-s, c]])


def _shape_mask(name: str, size: float, aspect: float, ang: float) -> np.ndarray:
    """Rasterise one shape centred in its own canvas; returns a uint8 mask."""
    half = int(math.ceil(size * max(aspect, 1.0 / aspect) * 0.75)) + 2
    dim = 2 * half + 1
    m = np.zeros((dim, dim), np.uint8)
    ax, ay = size / 2 * math.sqrt(aspect), size / 2 / math.sqrt(aspect)  # semi-axes
    ctr = np.array([half, half], np.float64)
    deg = math.degrees(ang)
    sh = 4  # fixed-point bits for sub-pixel polygon vertices
    sc = float(1 << sh)

    def poly(pts: np.ndarray, val: int = 255) -> None:
        p = np.round((_rot(pts, ang) + ctr) * sc).astype(np.int32)
        cv2.fillPoly(m, [p], val, lineType=cv2.LINE_8, shift=sh)

    def ell(a: float, b: float, val: int) -> None:
        cv2.ellipse(m, (int(round(half * sc)), int(round(half * sc))),
                    (int(round(a * sc)), int(round(b * sc))), deg, 0, 360, val, -1,
                    lineType=cv2.LINE_8, shift=sh)

    if name == "circle":
        ell(ax, ay, 255)
    elif name == "ring":
        ell(ax, ay, 255)
        ell(ax * 0.55, ay * 0.55, 0)
    elif name == "square":
        poly(np.array([[-ax, -ay], [ax, -ay], [ax, ay], [-ax, ay]]))
    elif name == "triangle":
        poly(np.array([[0.0, -ay], [ax, ay], [-ax, ay]]))
    elif name == "cross":
        t = 0.36
        poly(np.array([[-ax, -ay * t], [ax, -ay * t], [ax, ay * t], [-ax, ay * t]]))
        poly(np.array([[-ax * t, -ay], [ax * t, -ay], [ax * t, ay], [-ax * t, ay]]))
    elif name == "star":
        k = np.arange(10)
        r = np.where(k % 2 == 0, 1.0, 0.45)
        th = -math.pi / 2 + k * math.pi / 5
        poly(np.stack([ax * r * np.cos(th), ay * r * np.sin(th)], 1))
    else:  # pragma: no cover
        raise ValueError(name)
    return m


def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    px = np.array([[[h, s, v]]], np.uint8)
    return cv2.cvtColor(px, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # two muted (low-saturation) colours, linear gradient at a random angle
    c0 = _hsv_to_bgr(rng.integers(0, 180), rng.integers(0, 60), rng.integers(70, 220))
    c1 = _hsv_to_bgr(rng.integers(0, 180), rng.integers(0, 60), rng.integers(70, 220))
    ang = rng.uniform(0, 2 * math.pi)
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    t = xx * np.float32(math.cos(ang)) + yy * np.float32(math.sin(ang))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = c0 + (c1 - c0) * t[..., None]
    return img


def _n_objects(rng: np.random.Generator) -> int:
    u = rng.random()
    if u < 0.05:
        return 0
    if u < 0.20:
        return int(rng.integers(15, 26))  # crowded
    return int(rng.integers(1, 11))


def _make_image(rng: np.random.Generator):
    # varied sizes / aspect ratios, portrait and landscape
    w = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    h = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    img = _background(rng, h, w)
    n = _n_objects(rng)
    crowded = n >= 15
    smin = max(10.0, 0.022 * max(w, h))  # keep >= ~7 px after letterbox to 320
    smax = min(w, h) * (0.22 if crowded else 0.6)
    smax = max(smax, smin * 1.5)
    occ = np.zeros((h, w), bool)  # occupied pixels (object boxes + margin)
    objs = []
    for _ in range(n):
        ci = int(rng.integers(0, len(CATEGORIES)))
        cid, name, hue = CATEGORIES[ci]
        for _try in range(30):
            size = float(math.exp(rng.uniform(math.log(smin), math.log(smax))))
            aspect = float(math.exp(rng.uniform(-0.35, 0.35)))
            ang = float(rng.uniform(0, 2 * math.pi)) if name not in ("circle", "ring") or rng.random() < 0.5 else 0.0
            m = _shape_mask(name, size, aspect, ang)
            ys, xs = np.nonzero(m)
            if len(xs) == 0:
                continue
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            bw, bh = int(x1 - x0 + 1), int(y1 - y0 + 1)
            if bw + 2 > w or bh + 2 > h:
                continue
            px = int(rng.integers(1, w - bw))  # top-left of the box in the image
            py = int(rng.integers(1, h - bh))
            if occ[max(py - 2, 0):py + bh + 2, max(px - 2, 0):px + bw + 2].any():
                continue
            crop = m[y0:y1 + 1, x0:x1 + 1] > 0
            col = _hsv_to_bgr((hue + rng.integers(-6, 7)) % 180,
                              rng.integers(170, 256), rng.integers(150, 256))
            region = img[py:py + bh, px:px + bw]
            region[crop] = col
            occ[py:py + bh, px:px + bw] = True
            objs.append((cid, [px, py, bw, bh]))
            break
    sigma = np.float32(rng.uniform(2.0, 8.0))
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * sigma
    img = np.clip(img, 0, 255, out=img).round().astype(np.uint8)
    return img, objs


def generate(out_dir: Path, n_images: int = 300, seed: int = 0, split: str = "val2017") -> Path:
    """Write ``n_images`` images to ``out_dir/<split>/`` and the COCO annotation
    file ``out_dir/annotations/instances_<split>.json``; returns the latter."""
    out_dir = Path(out_dir)
    img_dir = out_dir / split
    ann_dir = out_dir / "annotations"
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, anns = [], []
    aid = 1
    for i in range(1, n_images + 1):
        img, objs = _make_image(rng)
        fname = f"{i:012d}.jpg"
        if not cv2.imwrite(str(img_dir / fname), img, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise IOError(f"could not write {img_dir / fname}")
        h, w = img.shape[:2]
        images.append({"id": i, "file_name": fname, "width": int(w), "height": int(h)})
        for cid, (x, y, bw, bh) in objs:
            anns.append({"id": aid, "image_id": i, "category_id": int(cid),
                         "bbox": [float(x), float(y), float(bw), float(bh)],
                         "area": float(bw * bh), "iscrowd": 0})
            aid += 1
    coco = {
        "info": {"description": f"qparity synthetic demo data ({split}, seed {seed})",
                 "version": "1.0", "year": 2024},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"}
                       for cid, name, _ in CATEGORIES],
    }
    ann_path = ann_dir / f"instances_{split}.json"
    ann_path.write_text(json.dumps(coco, sort_keys=True, separators=(",", ":")))
    return ann_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="val2017")
    a = ap.parse_args()
    p = generate(a.out, a.n, a.seed, a.split)
    print(p)


if __name__ == "__main__":
    main()
