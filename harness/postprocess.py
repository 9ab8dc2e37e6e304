"""Decode raw YOLO predictions and run class-aware NMS exactly as SPEC.md (YOLOv7 test.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detections:
    """Detections of one image, in network-input pixels until mapped back."""

    boxes: np.ndarray  # [K, 4] xyxy float32
    scores: np.ndarray  # [K] float32
    classes: np.ndarray  # [K] int64, model class index

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    half = xywh[:, 2:4] / 2
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)


def _pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of xyxy boxes; a zero union counts as no overlap."""
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _suppresses(a: np.ndarray, a_cls: np.ndarray, b: np.ndarray, b_cls: np.ndarray,
                iou_thres: float, class_agnostic: bool) -> np.ndarray:
    """[len(a), len(b)]: does box a_i suppress box b_j? Class-aware NMS only ever compares
    boxes of one class, so the IoU is computed per class: with 80 classes that is a small
    fraction of the full matrix."""
    if class_agnostic:
        return _pairwise_iou(a, b) > iou_thres
    out = np.zeros((len(a), len(b)), dtype=bool)
    for c in np.intersect1d(a_cls, b_cls):
        ia, ib = np.nonzero(a_cls == c)[0], np.nonzero(b_cls == c)[0]
        out[np.ix_(ia, ib)] = _pairwise_iou(a[ia], b[ib]) > iou_thres
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thres: float,
        max_det: int, class_agnostic: bool = False, block: int = 512) -> np.ndarray:
    """Greedy NMS; returns kept indices, highest score first.

    Exactly greedy NMS, computed block by block in score order: a candidate is kept iff no
    earlier kept box suppresses it. Each block is first checked against everything kept so far
    (one matrix), then resolved within itself (one matrix and a cheap scan). Because the k-th
    kept box never depends on later candidates, stopping at `max_det` keeps is exact, so at
    conf 0.001 the tens of thousands of low-score candidates are usually never touched.
    Ties in score keep input order (stable sort), as the brute-force reference in the tests.
    """
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order].astype(np.float64)
    classes = classes[order]
    kept: list[int] = []
    for start in range(0, len(order), block):
        idx = np.arange(start, min(start + block, len(order)))
        if kept:
            k = np.asarray(kept)
            supp = _suppresses(boxes[k], classes[k], boxes[idx], classes[idx], iou_thres, class_agnostic)
            idx = idx[~supp.any(axis=0)]
        if not len(idx):
            continue
        supp = _suppresses(boxes[idx], classes[idx], boxes[idx], classes[idx], iou_thres, class_agnostic)
        removed = np.zeros(len(idx), dtype=bool)
        for i in range(len(idx)):
            if removed[i]:
                continue
            kept.append(int(idx[i]))
            if len(kept) == max_det:
                return order[np.asarray(kept, dtype=np.int64)]
            removed |= supp[i]
    return order[np.asarray(kept, dtype=np.int64)]


def decode(pred: np.ndarray, conf_thres: float, iou_thres: float, max_nms: int, max_det: int,
           multi_label: bool = True, class_agnostic: bool = False) -> Detections:
    """Raw output of one image [N, 5+nc] (cx, cy, w, h, obj, cls...) -> detections after NMS."""
    if pred.ndim == 3:
        if pred.shape[0] != 1:
            raise ValueError(f"expected batch 1, got output shape {pred.shape}")
        pred = pred[0]
    pred = pred[pred[:, 4] > conf_thres]
    if not len(pred):
        return Detections.empty()
    conf = pred[:, 5:] * pred[:, 4:5]
    xyxy = xywh_to_xyxy(pred[:, :4])
    if multi_label:
        i, j = np.nonzero(conf > conf_thres)
        boxes, scores, classes = xyxy[i], conf[i, j], j
    else:
        j = conf.argmax(1)
        scores = conf[np.arange(len(conf)), j]
        m = scores > conf_thres
        boxes, scores, classes = xyxy[m], scores[m], j[m]
    if not len(scores):
        return Detections.empty()
    if len(scores) > max_nms:
        top = np.argsort(-scores, kind="stable")[:max_nms]
        boxes, scores, classes = boxes[top], scores[top], classes[top]
    keep = nms(boxes, scores, classes, iou_thres, max_det, class_agnostic)
    return Detections(boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                      classes[keep].astype(np.int64))
