"""The shared evaluator: every engine's raw outputs go through exactly this code."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Dataset
from .engines.base import visible_cpus
from .errors import QParityError
from .letterbox import LetterboxInfo, boxes_to_original, letterbox_as, to_input
from .postprocess import Detections, decode
from .protocol import Protocol


@dataclass
class Prepared:
    index: int
    x: np.ndarray
    info: LetterboxInfo
    read_s: float
    letterbox_s: float


@dataclass
class EvalOutput:
    detections: np.ndarray  # [K, 7] COCO rows: image_id, x, y, w, h, score, category_id
    first_inference_ms: float
    latency_inputs: list[np.ndarray]
    timing_s: dict[str, float] = field(default_factory=dict)


def prepare(dataset: Dataset, protocol: Protocol, index: int) -> Prepared:
    t0 = time.perf_counter()
    img = dataset.read_image(index)
    t1 = time.perf_counter()
    lb, info = letterbox_as(img, protocol)
    x = to_input(lb)
    return Prepared(index, x, info, t1 - t0, time.perf_counter() - t1)


def prefetched(dataset: Dataset, protocol: Protocol, workers: int = 2, depth: int = 8
               ) -> Iterator[Prepared]:
    """Decode and letterbox ahead of inference on a small thread pool (OpenCV releases the
    GIL), bounded so memory stays flat on 5000 images; yields in dataset order."""
    n = len(dataset.files)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch") as pool:
        pending: deque = deque()
        nxt = 0
        while nxt < n or pending:
            while nxt < n and len(pending) < depth:
                pending.append(pool.submit(prepare, dataset, protocol, nxt))
                nxt += 1
            yield pending.popleft().result()


def prefetch_workers(engine_threads: int | None) -> int:
    """Threads for reading and letterboxing: the cores the engine's threads leave over, at
    least one, at most two (more only contend with the engine for the same cores)."""
    if engine_threads is None:
        return 2
    return max(1, min(2, visible_cpus() - engine_threads))


def to_coco_rows(dets: Detections, info: LetterboxInfo, image_id: int,
                 category_ids: list[int]) -> np.ndarray:
    xyxy = boxes_to_original(dets.boxes, info)
    rows = np.empty((len(dets), 7), dtype=np.float64)
    rows[:, 0] = image_id
    rows[:, 1:3] = xyxy[:, :2]
    rows[:, 3:5] = xyxy[:, 2:4] - xyxy[:, :2]
    rows[:, 5] = dets.scores
    rows[:, 6] = np.asarray(category_ids)[dets.classes]
    return rows


def check_output(raw: Any, num_classes: int, engine: str) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim != 3 or raw.shape[0] != 1 or raw.shape[2] != 5 + num_classes:
        raise QParityError(f"engine {engine} returned an output of shape {list(raw.shape)}; "
                           f"expected [1, N, {5 + num_classes}]")
    return raw.astype(np.float32, copy=False)


def run_dataset(run: Callable[[np.ndarray], np.ndarray], dataset: Dataset, protocol: Protocol,
                engine_name: str, on_image: Callable[[], None] | None = None,
                keep_latency_inputs: int = 8, engine_threads: int | None = None,
                max_pending: int = 4) -> EvalOutput:
    """Run every image through `run`, decode + NMS + map back, and collect COCO rows.

    Inference runs on this thread, one image after another; reading and letterboxing run
    ahead on `prefetch_workers` threads, and decode + NMS run behind on one more thread (at
    most `max_pending` outputs waiting), so the engine is not idle while a previous image is
    decoded. `engine_threads` sizes the prefetch pool to the cores left over.
    """
    rows: list[np.ndarray] = []
    latency_inputs: list[np.ndarray] = []
    totals = dict.fromkeys(("read", "letterbox", "inference", "postprocess"), 0.0)
    first_ms = float("nan")
    nc, ids, cats = dataset.num_classes, dataset.image_ids, dataset.category_ids

    def post(raw: np.ndarray, p: Prepared) -> tuple[np.ndarray, float]:
        t0 = time.perf_counter()
        dets = decode(raw[0], protocol.conf_thres, protocol.iou_thres, protocol.max_nms,
                      protocol.max_det, protocol.multi_label, protocol.class_agnostic)
        out = to_coco_rows(dets, p.info, ids[p.index], cats)
        return out, time.perf_counter() - t0

    def collect(fut) -> None:
        out, dt = fut.result()
        rows.append(out)
        totals["postprocess"] += dt
        if on_image:
            on_image()

    t_start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder:
        waiting: deque = deque()
        for p in prefetched(dataset, protocol, workers=prefetch_workers(engine_threads)):
            t0 = time.perf_counter()
            raw = run(p.x)
            t1 = time.perf_counter()
            if p.index == 0:
                first_ms = (t1 - t0) * 1e3
            raw = check_output(raw, nc, engine_name)
            totals["inference"] += t1 - t0
            totals["read"] += p.read_s
            totals["letterbox"] += p.letterbox_s
            if len(latency_inputs) < keep_latency_inputs:
                latency_inputs.append(p.x)
            while len(waiting) >= max_pending:
                collect(waiting.popleft())
            waiting.append(decoder.submit(post, raw, p))
        while waiting:
            collect(waiting.popleft())
    wall = time.perf_counter() - t_start
    n = len(dataset.files)
    timing = {f"{k}_s": round(v, 4) for k, v in totals.items()}
    timing.update(wall_s=round(wall, 4), images=n, images_per_s=round(n / wall, 3) if wall else 0.0,
                  inference_only_images_per_s=round(n / totals["inference"], 3)
                  if totals["inference"] else 0.0,
                  wall_over_inference=round(wall / totals["inference"], 3)
                  if totals["inference"] else 0.0,
                  prefetch_workers=prefetch_workers(engine_threads), decode_threads=1)
    detections = np.concatenate(rows) if rows else np.zeros((0, 7))
    return EvalOutput(detections, first_ms, latency_inputs, timing)
