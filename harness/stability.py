"""Is a latency figure stable enough to compare? One rule, used by the report, table and page.

The measure is the spread `P95 / median - 1` of an engine's timed samples. Why this and not the
coefficient of variation: a single multi-millisecond stall (a page fault, a context switch)
inflates the standard deviation of 200 samples but moves neither the median nor the P95, and
is not what makes a rerun disagree. What does is the machine's speed changing *during* the
measurement (other processes, frequency scaling, a noisy neighbour in a VM): then a broad
slice of the samples is slow, the P95 moves away from the median, and the next run's median
lands somewhere else.

Threshold 0.20, from what was measured on the 2-core EPYC these tools were written on: in a
lightly loaded demo run the three engines' P95 sat 4-10 % above their medians; the runs that
gave qdq-ref a 0.82x speed-up and then 1.26x in an identical rerun had spreads of 27-51 %; a
demo run with seven jobs sharing the two cores had 64-101 % (and medians ten times the quiet
ones). 20 % sits above the quiet runs with a margin and below every run that flipped. It also
reads directly: one sample in twenty ran at least a fifth slower than typical, so medians
taken minutes apart can differ by about that much, and a speed-up inside that band is not a
measurement.

A speed-up (golden median / engine median) is then:
- "stable": both engines' spreads are within the threshold;
- "indicative": a spread is over it but the ratio is outside the band a rerun could move it
  by, so its direction holds though its size is uncertain. Each median can move by its own
  spread, and in opposite directions, so the band is (1 + s_engine) x (1 + s_golden) either
  way. (The larger spread alone is not enough: under load a demo run gave qdq-ref 1.55x with
  spreads of 30 % and 45 %; its quiet-machine value is 0.95x.);
- "noisy": a spread is over it and a rerun could put the ratio on the other side of 1.0; the
  table prints "noisy" instead of a number.
"""

from __future__ import annotations

from typing import Any

SPREAD_THRESHOLD = 0.20


def spread(lat: Any) -> float | None:
    """P95 / median - 1 of a latency summary (a record's LatencyStats), or None without both
    figures."""
    if lat is None or not lat.median or lat.p95 is None:
        return None
    return round(lat.p95 / lat.median - 1, 4)


def is_stable(lat: Any, threshold: float = SPREAD_THRESHOLD) -> bool | None:
    s = spread(lat)
    return None if s is None else s <= threshold


def speedup_confidence(speedup: float | None, engine_lat: Any, golden_lat: Any,
                       threshold: float = SPREAD_THRESHOLD) -> str | None:
    """"stable", "indicative" or "noisy" (see the module doc); None without a speed-up."""
    if not speedup:
        return None
    spreads = [s for s in (spread(engine_lat), spread(golden_lat)) if s is not None]
    if max(spreads, default=0.0) <= threshold:
        return "stable"
    band = 1.0
    for s in spreads:
        band *= 1 + max(s, 0.0)
    return "indicative" if speedup > band or speedup < 1 / band else "noisy"


def annotate(entries: dict[str, Any], golden: str, threshold: float = SPREAD_THRESHOLD) -> None:
    """Add the stability of each engine's latency and of its speed-up to the report entries
    (EngineEntry records)."""
    golden_lat = entries[golden].latency_ms if golden in entries else None
    for name, e in entries.items():
        lat = e.latency_ms
        if lat is None:
            continue
        lat.spread = spread(lat)
        lat.stable = is_stable(lat, threshold)
        lat.stability_rule = f"P95/median - 1 <= {threshold}"
        # the golden engine's 1.00x is a definition, not a measurement: nothing to qualify
        e.speedup_confidence = None if name == golden else speedup_confidence(
            e.speedup_vs_golden, lat, golden_lat, threshold)
