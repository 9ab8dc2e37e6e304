"""Decode raw YOLO predictions and run class-aware NMS exactly as SPEC.md (YOLOv7 test.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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


def _threshold_for(s: np.ndarray, size: int, above: float | None) -> float:
    """A score t with roughly `size` entries of `s` >= t, from a strided sample (any t gives
    the exact order; a good one just keeps the chunks small). -inf: take everything."""
    step = max(1, len(s) // 4096)
    sample = s[::step]
    if above is not None:
        sample = sample[sample > above]
    k = size // step
    if k >= len(sample):
        return -np.inf
    return float(np.partition(sample, len(sample) - 1 - k)[len(sample) - 1 - k])


def score_order(scores: np.ndarray, limit: int | None = None, above: float | None = None,
                first: int = 2048) -> Iterator[np.ndarray]:
    """Indices of the candidates (scores > `above`; every score if None) from highest score
    to lowest, ties in input order, cut at `limit`: exactly a stable argsort of -scores over
    the candidates, produced lazily in chunks of growing size.

    NMS usually reaches max_det long before the end of the list, so sorting every candidate
    is wasted: each chunk is every candidate >= a threshold picked from a small sample (one
    comparison pass, no full sort, no partition of the whole array), and only the chunk is
    sorted; what is left is gathered only if a next chunk is asked for. Taking every score
    >= the threshold keeps tied scores together and in input order, so the chunks
    concatenate to the stable order.
    """
    limit = len(scores) if limit is None else min(len(scores), limit)
    rest: np.ndarray | None = None  # indices of `s` into `scores`; None: all of them
    s = scores
    done, size = 0, first
    while done < limit and len(s):
        t = _threshold_for(s, size, above)
        # t comes from scores > above, so s >= t already implies s > above
        take = s >= t if t != -np.inf or above is None else s > above
        sel = np.flatnonzero(take)
        chunk = sel[np.argsort(-s[sel], kind="stable")][:limit - done]
        done += len(chunk)
        yield chunk if rest is None else rest[chunk]
        if t == -np.inf:
            return
        left = np.flatnonzero(~take)
        rest, s = (left if rest is None else rest[left]), s[left]
        size *= 4


def _class_pairs(q_cls: np.ndarray, k_cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (query, key) index pair of equal class, without a Python loop over classes:
    keys are grouped by class, each query is repeated once per key of its class."""
    k_order = np.argsort(k_cls, kind="stable")
    k_sorted = k_cls[k_order]
    lo = np.searchsorted(k_sorted, q_cls, "left")
    cnt = np.searchsorted(k_sorted, q_cls, "right") - lo
    total = int(cnt.sum())
    if total == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty
    qi = np.repeat(np.arange(len(q_cls)), cnt)
    starts = np.cumsum(cnt) - cnt
    ki = k_order[np.repeat(lo - starts, cnt) + np.arange(total)]
    return qi, ki


def _columns(boxes: np.ndarray) -> np.ndarray:
    """xyxy boxes -> [5, K] float64 rows x1, y1, x2, y2, area: contiguous columns gather fast,
    and each box's area is computed once instead of once per pair (same value either way)."""
    cols = np.empty((5, len(boxes)))
    cols[:4] = boxes.T
    cols[4] = (cols[2] - cols[0]) * (cols[3] - cols[1])
    return cols


def _suppressed_pairs(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray,
                      iou_thres: float) -> np.ndarray:
    """IoU(a[:, ia[k]], b[:, ib[k]]) > iou_thres for each pair k, boxes as `_columns`. A zero
    union counts as no overlap. The same float64 arithmetic, operation by operation, as the
    brute-force reference in the tests."""
    return pair_iou(a[:, ia], b[:, ib]) > iou_thres


def pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The one IoU of qparity: boxes as `_columns` ([5, ...] x1, y1, x2, y2, area), element by
    element with numpy broadcasting (aligned pairs, or [5, N, 1] against [5, 1, M] for a
    matrix); a zero union counts as no overlap."""
    iw = np.minimum(a[2], b[2]) - np.maximum(a[0], b[0])
    np.maximum(iw, 0, out=iw)
    ih = np.minimum(a[3], b[3]) - np.maximum(a[1], b[1])
    np.maximum(ih, 0, out=ih)
    inter = iw * ih
    union = a[4] + b[4] - inter
    iou = np.zeros_like(inter)
    np.divide(inter, union, out=iou, where=union > 0)
    return iou


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box of `a` [N, 4] with every one of `b` [M, 4]: [N, M]."""
    ca, cb = _columns(np.asarray(a, np.float64)), _columns(np.asarray(b, np.float64))
    return pair_iou(ca[:, :, None], cb[:, None, :])


def _resolve_block(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Greedy NMS inside one score-ordered block, given its suppression edges src -> dst
    (src earlier). Returns the kept mask. A node is decided once every earlier node that
    could suppress it is decided: removed if one of them was kept, else kept. Each round
    decides at least the earliest undecided node, and usually everything in two or three."""
    UNKNOWN, KEPT, REMOVED = 0, 1, 2
    state = np.zeros(n, np.int8)
    while True:
        undecided = state == UNKNOWN
        if not undecided.any():
            return state == KEPT
        s_state = state[src]
        hit = np.zeros(n, bool)
        hit[dst[s_state == KEPT]] = True
        state[undecided & hit] = REMOVED
        s_state = state[src]
        waiting = np.zeros(n, bool)
        waiting[dst[s_state == UNKNOWN]] = True
        state[(state == UNKNOWN) & ~waiting] = KEPT


def nms_ordered(candidates: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                chunks: Iterable[np.ndarray], iou_thres: float, max_det: int, block: int = 128,
                max_block: int = 2048) -> np.ndarray:
    """Greedy class-aware NMS over candidates visited in the order `chunks` gives (highest
    score first); returns the kept indices in that order. `candidates(idx)` gives the xyxy
    boxes and classes of those candidates, so only visited candidates are ever built.

    Exactly greedy NMS, block by block: a block is first checked against everything kept so
    far, then resolved within itself. Only same-class pairs are ever compared (gathered for
    all classes at once), so 80 classes cost no more than one. Blocks start small, because
    the top of the list holds the clusters of overlapping boxes around real objects, which
    the first kept boxes remove cheaply, and grow for the sparse tail. The k-th kept box
    never depends on later candidates, so stopping at `max_det` keeps is exact: at conf
    0.001 most low-score candidates are never touched (nor sorted, see `score_order`).
    """
    kept: list[np.ndarray] = []
    n_kept = 0
    k_cols = np.zeros((5, 0))
    k_cls = np.zeros(0, np.int64)
    pending = np.zeros(0, np.int64)
    chunks = iter(chunks)
    while True:
        if not len(pending):  # the next chunk costs a pass over the rest: only when needed
            pending = next(chunks, None)
            if pending is None:
                break
        idx, pending = pending[:block], pending[block:]
        block = min(2 * block, max_block)
        b, c = candidates(idx)
        cols = _columns(np.asarray(b, np.float64))
        if n_kept:
            qi, ki = _class_pairs(c, k_cls)
            if len(qi):
                alive = np.ones(len(idx), bool)
                alive[qi[_suppressed_pairs(cols, qi, k_cols, ki, iou_thres)]] = False
                idx, cols, c = idx[alive], cols[:, alive], c[alive]
        if not len(idx):
            continue
        qi, ki = _class_pairs(c, c)
        later = ki < qi  # ki comes first in score order: it may suppress qi
        qi, ki = qi[later], ki[later]
        if len(qi):
            supp = _suppressed_pairs(cols, ki, cols, qi, iou_thres)
            keep = _resolve_block(len(idx), ki[supp], qi[supp])
            idx, cols, c = idx[keep], cols[:, keep], c[keep]
        room = max_det - n_kept
        idx, cols, c = idx[:room], cols[:, :room], c[:room]
        kept.append(idx)
        n_kept += len(idx)
        if n_kept >= max_det:
            break
        k_cols = np.concatenate([k_cols, cols], axis=1)
        k_cls = np.concatenate([k_cls, c])
    return np.concatenate(kept) if kept else np.zeros(0, np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thres: float,
        max_det: int, class_agnostic: bool = False) -> np.ndarray:
    """Greedy NMS; returns kept indices, highest score first. Ties in score keep input order
    (a stable sort), as the brute-force reference in the tests."""
    boxes = np.asarray(boxes)
    classes = np.zeros(len(scores), np.int64) if class_agnostic else np.asarray(classes)
    return nms_ordered(lambda idx: (boxes[idx], classes[idx]), score_order(np.asarray(scores)),
                       iou_thres, max_det).astype(np.int64)


def decode(pred: np.ndarray, conf_thres: float, iou_thres: float, max_nms: int, max_det: int,
           multi_label: bool = True, class_agnostic: bool = False) -> Detections:
    """Raw output of one image [N, 5+nc] (cx, cy, w, h, obj, cls...) -> detections after NMS.

    With multi-label on, candidates are (box, class) pairs in row-major order, which is the
    order tied scores keep (YOLOv7's `nonzero`). Boxes and classes are built only for the
    candidates NMS visits."""
    if pred.ndim == 3:
        if pred.shape[0] != 1:
            raise ValueError(f"expected batch 1, got output shape {pred.shape}")
        pred = pred[0]
    pred = pred[pred[:, 4] > conf_thres]
    if not len(pred):
        return Detections.empty()
    nc = pred.shape[1] - 5
    conf = pred[:, 5:] * pred[:, 4:5]
    if multi_label:
        # candidates are the entries of conf above conf_thres, in row-major (flat) order
        scores = conf.ravel()
        above: float | None = conf_thres

        def candidates(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rows, cls = np.divmod(idx, nc)
            return xywh_to_xyxy(pred[rows, :4]), cls
    else:
        best = conf.argmax(1)
        scores = conf[np.arange(len(conf)), best]
        rows = np.flatnonzero(scores > conf_thres)
        scores, above = scores[rows], None

        def candidates(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return xywh_to_xyxy(pred[rows[idx], :4]), best[rows[idx]]
    if class_agnostic:
        pick = candidates
        candidates = lambda idx: (pick(idx)[0], np.zeros(len(idx), np.int64))  # noqa: E731
    keep = nms_ordered(candidates, score_order(scores, max_nms, above), iou_thres, max_det)
    boxes, _ = (pick if class_agnostic else candidates)(keep)
    classes = (keep % nc) if multi_label else best[rows[keep]]
    return Detections(boxes.astype(np.float32), scores[keep].astype(np.float32),
                      classes.astype(np.int64))
