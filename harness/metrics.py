"""COCO bbox mAP through pycocotools, the unquestioned reference; reported in points (0-100)."""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

METRIC_NAMES = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")


def coco_from_dict(coco_json: dict[str, Any]) -> COCO:
    gt = COCO()
    gt.dataset = copy.deepcopy(coco_json)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def evaluate(coco_json: dict[str, Any], detections: np.ndarray, image_ids: list[int]) -> dict[str, Any]:
    """detections: [K, 7] rows (image_id, x, y, w, h, score, category_id), original pixels.

    Only `image_ids` are scored, so a --limit run is a fair subset and not penalised for the
    images it skipped. A metric pycocotools cannot define (no ground truth of that size) is None.
    """
    gt = coco_from_dict(coco_json)
    result: dict[str, Any] = {"images": len(image_ids), "detections": int(len(detections))}
    if len(detections) == 0:
        result.update({k: 0.0 for k in METRIC_NAMES})
        return result
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(np.asarray(detections, dtype=np.float64))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(METRIC_NAMES, (ev.stats[i] for i in (0, 1, 2, 3, 4, 5))):
        result[name] = None if value < 0 else round(float(value) * 100, 4)
    return result


def per_class_ap(coco_json: dict[str, Any], detections: np.ndarray,
                 image_ids: list[int]) -> dict[int, float | None]:
    """AP50-95 per category id, in points, from pycocotools' own precision array (area "all",
    100 detections, averaged over IoU thresholds and recall points as COCOeval.summarize does
    for the whole); None for a category without ground truth among `image_ids`. Kept apart
    from `evaluate` so the gate's metric path stays as it is (used by the HTML report)."""
    gt = coco_from_dict(coco_json)
    cats = sorted(int(c["id"]) for c in coco_json.get("categories", []))
    if len(detections) == 0:
        return {c: 0.0 for c in cats}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(np.asarray(detections, dtype=np.float64))
        ev = COCOeval(gt, dt, "bbox")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"]  # [IoU thresholds, recall points, classes, areas, maxDets]
    out: dict[int, float | None] = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        out[int(cat)] = round(float(valid.mean()) * 100, 4) if valid.size else None
    return out
