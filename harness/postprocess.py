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


def box_iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with many; a zero union counts as no overlap (not NaN)."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thres: float,
        max_det: int, class_agnostic: bool = False) -> np.ndarray:
    """Greedy NMS; returns kept indices, highest score first.

    Greedy NMS visits boxes in score order and the k-th kept box never depends on later ones,
    so stopping after `max_det` keeps is exact and bounds the loop to max_det iterations,
    each one vectorized over the remaining candidates. Ties in score keep input order
    (stable sort), which the brute-force reference in the tests mirrors.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, classes = boxes[order].astype(np.float64), classes[order]
    alive = np.arange(len(order))
    keep: list[int] = []
    while alive.size and len(keep) < max_det:
        i, rest = alive[0], alive[1:]
        keep.append(i)
        iou = box_iou_one_to_many(boxes[i], boxes[rest])
        suppress = iou > iou_thres
        if not class_agnostic:
            suppress &= classes[rest] == classes[i]
        alive = rest[~suppress]
    return order[np.asarray(keep, dtype=np.int64)]


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
