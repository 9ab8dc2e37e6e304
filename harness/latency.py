"""The latency protocol: batch 1, warm-up then timed runs, one clock, one set of statistics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def summarize(samples_ms: Sequence[float]) -> dict[str, Any]:
    """Statistics of latency samples in milliseconds; the raw samples are kept beside them."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    mean = float(a.mean())
    stdev = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {
        "n": int(a.size),
        "median": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "mean": mean,
        "stdev": stdev,
        "min": float(a.min()),
        "max": float(a.max()),
        "cv": stdev / mean if mean > 0 else 0.0,
    }


def measure(run: Callable[[np.ndarray], object], inputs: Sequence[np.ndarray], warmup: int,
            runs: int, clock: Callable[[], int] = time.perf_counter_ns,
            on_run: Callable[[], None] | None = None) -> dict[str, Any]:
    """Time `run` on real inputs, cycling through them so no single image is favoured.

    The warm-up runs are not timed; each timed run is bracketed by the monotonic
    high-resolution clock alone, so the figure is the engine's call and nothing else.
    `on_run` (a progress tick) is called after each run, outside the timed bracket.
    """
    if not inputs:
        raise ValueError("latency needs at least one input")
    for k in range(warmup):
        run(inputs[k % len(inputs)])
        if on_run:
            on_run()
    samples = []
    for k in range(runs):
        x = inputs[k % len(inputs)]
        t0 = clock()
        run(x)
        samples.append((clock() - t0) / 1e6)
        if on_run:
            on_run()
    stats = summarize(samples)
    stats["warmup"] = warmup
    stats["samples_ms"] = [round(s, 6) for s in samples]
    return stats
