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
