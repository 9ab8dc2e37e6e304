"""GPU compute time per inference (CUDA events around execute), beside the host latency."""

from __future__ import annotations

from collections import deque
from typing import Any

from ...latency import summarize


class GpuTimes:
    """The most recent event timings. The runner calls run() for the accuracy pass, then
    warm-up, then the timed runs, and describe() right after: so the last `window` samples
    are exactly the timed runs when `window` equals the protocol's run count."""

    def __init__(self, keep: int = 10_000):
        self.samples: deque[float] = deque(maxlen=keep)
        self.total = 0

    def add(self, ms: float) -> None:
        self.samples.append(float(ms))
        self.total += 1

    def summary(self, window: int) -> dict[str, Any] | None:
        if not self.samples or window <= 0:
            return None
        last = list(self.samples)[-window:]
        stats = summarize(last)
        stats["what"] = ("CUDA events around execute_async_v3 (or the graph launch) on the "
                         "engine's stream: GPU compute only, no copies")
        stats["samples_from"] = f"last {len(last)} of {self.total} run() calls"
        stats["samples_ms"] = [round(s, 6) for s in last]
        return stats
