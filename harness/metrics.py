"""COCO bbox mAP through pycocotools, the unquestioned reference; reported in points (0-100).

pycocotools is run one category at a time and its per-category precision/recall tables are
put back together before its own `summarize`: each category's table is exactly what one joint
run computes for it (pycocotools matches detections per image and category), so the statistics
are the same numbers, while only one category's detections are ever turned into the Python
dicts that cost pycocotools ~2 KiB per detection (1.5 million detections at COCO scale).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .records.result import COCO_METRICS


def coco_from_dict(coco_json: dict[str, Any]) -> COCO:
    """A ground-truth COCO object over `coco_json` that leaves the caller's dict untouched.

    pycocotools writes one key ('ignore') into each ground-truth annotation it evaluates, so
    the annotation dicts are copied one level deep; their bbox/segmentation values are shared
    (a deep copy of COCO's polygons costs hundreds of MB for nothing)."""
    gt = COCO()
    gt.dataset = {**coco_json, "annotations": [dict(a) for a in coco_json.get("annotations", [])]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def _results(gt: COCO, rows: np.ndarray) -> COCO:
    """pycocotools' result object for [K, 7] rows; an empty one where K is 0 (loadRes
    cannot build one from nothing)."""
    if len(rows):
        return gt.loadRes(rows)
    dt = COCO()
    dt.dataset = {"images": list(gt.dataset["images"]), "categories": gt.dataset["categories"],
                  "annotations": []}
    dt.createIndex()
    return dt


def coco_eval(gt: COCO, detections: np.ndarray, image_ids: list[int]) -> COCOeval:
    """An accumulated COCOeval over all categories, evaluated one category at a time.

    Detections keep their order within a category (pycocotools breaks score ties by it)."""
    dets = np.asarray(detections, dtype=np.float64)
    order = np.argsort(dets[:, 6], kind="stable")
    dets = dets[order]
    cats = dets[:, 6]
    final = COCOeval(gt, None, "bbox")
    final.params.imgIds = list(image_ids)
    p = final.params
    shape = (len(p.iouThrs), len(p.recThrs), len(p.catIds), len(p.areaRng), len(p.maxDets))
    precision, scores = -np.ones(shape), -np.ones(shape)
    recall = -np.ones((shape[0],) + shape[2:])
    for k, cat in enumerate(p.catIds):
        lo, hi = np.searchsorted(cats, cat, "left"), np.searchsorted(cats, cat, "right")
        ev = COCOeval(gt, _results(gt, dets[lo:hi]), "bbox")
        ev.params.imgIds = list(image_ids)
        ev.params.catIds = [cat]
        ev.evaluate()
        ev.accumulate()
        precision[:, :, k] = ev.eval["precision"][:, :, 0]
        scores[:, :, k] = ev.eval["scores"][:, :, 0]
        recall[:, k] = ev.eval["recall"][:, 0]
    final.eval = {"params": p, "counts": list(shape), "precision": precision, "recall": recall,
                  "scores": scores}
    return final


def evaluate(coco_json: dict[str, Any], detections: np.ndarray, image_ids: list[int]) -> dict[str, Any]:
    """detections: [K, 7] rows (image_id, x, y, w, h, score, category_id), original pixels.

    Only `image_ids` are scored, so a --limit run is a fair subset and not penalised for the
    images it skipped. A metric pycocotools cannot define (no ground truth of that size) is None.
    `per_class_ap50_95` is AP50-95 per category name from the same evaluation (`class_aps`).
    """
    gt = coco_from_dict(coco_json)
    result: dict[str, Any] = {"images": len(image_ids), "detections": int(len(detections))}
    with contextlib.redirect_stdout(io.StringIO()):
        ev = coco_eval(gt, np.asarray(detections, dtype=np.float64).reshape(-1, 7), image_ids)
        if len(detections):
            ev.summarize()
    if len(detections) == 0:
        result.update({k: 0.0 for k in COCO_METRICS})
    else:
        for name, value in zip(COCO_METRICS, (ev.stats[i] for i in (0, 1, 2, 3, 4, 5))):
            result[name] = None if value < 0 else round(float(value) * 100, 4)
    result["per_class_ap50_95"] = class_aps(ev, gt)
    return result


def class_aps(ev: COCOeval, gt: COCO) -> dict[str, float | None]:
    """AP50-95 per category of an accumulated evaluation, in points, keyed by category name in
    category id order: each category's slice of `precision` (area "all", 100 detections),
    averaged over its entries > -1 as `summarize` averages the whole; None for a category
    without ground truth among the evaluated images (pycocotools leaves its slice at -1).

    pycocotools fills a category's whole slice as soon as it has ground truth, so every such
    category weighs the same in `summarize`'s mean: the overall mAP50-95 is the mean of these
    values over the categories that have one (tests/test_metrics_percategory.py)."""
    precision = ev.eval["precision"]  # [IoU thresholds, recall points, classes, areas, maxDets]
    a, m = ev.params.areaRngLbl.index("all"), ev.params.maxDets.index(100)
    names = class_keys([gt.cats[c] for c in ev.params.catIds])
    out: dict[str, float | None] = {}
    for k, name in enumerate(names):
        p = precision[:, :, k, a, m]
        valid = p[p > -1]
        out[name] = round(float(valid.mean()) * 100, 4) if valid.size else None
    return out


def class_keys(categories: list[dict[str, Any]]) -> list[str]:
    """Each category's name; a name two categories share gets its id ("name #id"), one without
    a name is its id, so no class's AP is written over another's."""
    names = [str(c.get("name", c["id"])) for c in categories]
    return [f"{n} #{c['id']}" if names.count(n) > 1 else n for n, c in zip(names, categories)]


def per_class_ap(coco_json: dict[str, Any], detections: np.ndarray,
                 image_ids: list[int]) -> dict[int, float | None]:
    """AP50-95 per category id, in points, from pycocotools' own precision array (area "all",
    100 detections, averaged over IoU thresholds and recall points as COCOeval.summarize does
    for the whole); None for a category without ground truth among `image_ids`. The same
    one-category-at-a-time evaluation as `evaluate`, so its memory stays bounded the same way
    (used by the HTML report)."""
    gt = coco_from_dict(coco_json)
    if len(detections) == 0:
        return {int(c["id"]): 0.0 for c in coco_json.get("categories", [])}
    with contextlib.redirect_stdout(io.StringIO()):
        ev = coco_eval(gt, detections, image_ids)
    precision = ev.eval["precision"]  # [IoU thresholds, recall points, classes, areas, maxDets]
    out: dict[int, float | None] = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        valid = p[p > -1]
        out[int(cat)] = round(float(valid.mean()) * 100, 4) if valid.size else None
    return out
