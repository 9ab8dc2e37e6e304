"""GPU-side timings per inference (CUDA events), kept beside the runner's host wall time.

Three figures describe one TensorRT inference, each labelled with what it covers:
- `gpu_compute` (events around execute_async_v3 alone): trtexec's "GPU Compute Time";
- `h2d_compute_d2h` (events before the H2D copy and after the D2H copy): trtexec's
  "Latency" (the H2D + compute + D2H sum it prints per query);
- the runner's `latency_ms` (perf_counter around `run()`): end-to-end host wall time, what
  the CPU engines are compared on; it adds the numpy copy into page-locked memory, the
  stream synchronize, the copy out of the staging buffer and Python's own overhead.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ...latency import summarize

GPU_COMPUTE = ("GPU compute only: CUDA events around execute_async_v3 (or the graph launch) on "
               "the engine's stream, no copies; trtexec's 'GPU Compute Time'")
H2D_COMPUTE_D2H = ("H2D copy + GPU compute + D2H copy: CUDA events before the input copy and "
                   "after the output copy on the engine's stream; trtexec's 'Latency' (its "
                   "H2D + compute + D2H per query), without host-side work")
HOST_WALL = ("end-to-end host wall time of one run(): numpy copy into page-locked memory, "
             "H2D copy, execute_async_v3, D2H copy, stream synchronize, copy out of the "
             "staging buffer, Python overhead; what the CPU engines are compared on")

#: What each latency figure of a TensorRT result is, by where it is in the result JSON.
FIGURES = {
    "latency_ms": HOST_WALL,
    "engine_info.extra_latency_ms.h2d_compute_d2h": H2D_COMPUTE_D2H,
    "engine_info.extra_latency_ms.gpu_compute": GPU_COMPUTE,
}


class GpuTimes:
    """The most recent event timings of one kind. The runner calls run() for the accuracy
    pass, then warm-up, then the timed runs, and describe() right after: so the last
    `window` samples are exactly the timed runs when `window` equals the runner's count."""

    def __init__(self, what: str = GPU_COMPUTE, keep: int = 10_000):
        self.what = what
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
        stats["what"] = self.what
        stats["samples_from"] = f"last {len(last)} of {self.total} run() calls"
        stats["samples_ms"] = [round(s, 6) for s in last]
        return stats
