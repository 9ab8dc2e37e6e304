"""The history's judgement: per (platform, engine) series of stored rows, each point compared
with its comparable predecessors. Judged per series, never across platforms, since timings from
different machines are not comparable:
- accuracy change: mAP50-95 differs from the previous run of the same series on the same model
  file, data and protocol. For a deterministic evaluator any change is news, and for the golden
  engine it moves the gate of every other engine.
- latency regression: median above the rolling median of the previous `window` runs of the
  same series (same model file, machine and protocol) by more than `latency_threshold`.
The policy is `POLICY`, below: the one place its numbers live. No storage and no rendering
here: `store` keeps the rows, `render` and `html` draw them."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrendPolicy:
    window: int = 7                   # earlier runs the rolling median is taken over
    latency_threshold: float = 0.10   # a median more than 10 % above that rolling median regresses
    min_history: int = 3              # fewer earlier comparable runs than this: no judgement yet


POLICY = TrendPolicy()


@dataclass
class Point:
    row: dict[str, Any]
    accuracy_change: float | None = None   # mAP points since the previous comparable run
    accuracy_since: str | None = None      # the date of that run
    rolling_median: float | None = None    # of the earlier comparable runs' medians
    regression: float | None = None        # median / rolling median, when a regression
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.row["map50_95"] is not None or self.row["lat_median"] is not None

    @property
    def marks(self) -> list[str]:
        out = []
        if self.accuracy_change is not None:
            out.append("accuracy-change")
        if self.regression is not None:
            out.append("latency-regression")
        return out


def _same_measurement(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a[k] == b[k] for k in ("model_sha256", "image_list_sha256", "annotations_sha256",
                                      "protocol_overrides"))


def analyse_series(rows: list[dict[str, Any]], policy: TrendPolicy = POLICY) -> list[Point]:
    """Marks for one platform x engine series, rows in date order."""
    points: list[Point] = []
    for row in rows:
        p = Point(row)
        earlier = [q.row for q in points if q.row["status"] in ("pass", "fail", "reference", "ok")]
        if row["map50_95"] is not None:
            prev = next((q for q in reversed(earlier) if q["map50_95"] is not None
                         and _same_measurement(q, row)), None)
            if prev is not None and round(row["map50_95"] - prev["map50_95"], 4) != 0:
                p.accuracy_change = round(row["map50_95"] - prev["map50_95"], 4)
                p.accuracy_since = prev["date"]
                moved = [f"{what} {prev[k]} -> {row[k]}" for k, what in (
                    ("engine_version", "engine"), ("harness_commit", "harness"), ("host", "host"))
                    if prev[k] != row[k]]
                p.notes.append(f"mAP50-95 {p.accuracy_change:+.4g} since {prev['date'][:10]}"
                               + (f" ({'; '.join(m if len(m) < 60 else m[:57] + '...' for m in moved)})"
                                  if moved else " with nothing else recorded as changed"))
            last = earlier[-1] if earlier else None
            if last is not None and last["model_sha256"] != row["model_sha256"]:
                p.notes.append("new model file: the accuracy baseline starts again")
        if row["lat_median"] is not None:
            base = [q["lat_median"] for q in earlier if q["lat_median"] is not None
                    and _same_measurement(q, row) and q["host"] == row["host"]][-policy.window:]
            if len(base) >= policy.min_history:
                p.rolling_median = statistics.median(base)
                ratio = row["lat_median"] / p.rolling_median
                if ratio > 1 + policy.latency_threshold:
                    p.regression = round(ratio, 3)
                    p.notes.append(f"latency median {row['lat_median']:.3f} ms is {ratio - 1:+.0%} "
                                   f"over the rolling median {p.rolling_median:.3f} ms of the "
                                   f"{len(base)} run(s) before (threshold "
                                   f"{policy.latency_threshold:.0%})")
            prev_host = next((q["host"] for q in reversed(earlier) if q["lat_median"] is not None), None)
            if prev_host is not None and prev_host != row["host"]:
                p.notes.append(f"machine changed ({prev_host} -> {row['host']}): latency "
                               f"baseline starts again")
        points.append(p)
    return points


def analyse(rows: Iterable[dict[str, Any]], policy: TrendPolicy = POLICY
            ) -> dict[tuple[str, str], list[Point]]:
    """Every series in the store, golden engine first within a platform."""
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: (r["date"], r.get("id") or 0)):
        series.setdefault((r["platform"], r["engine"]), []).append(r)
    order = sorted(series, key=lambda k: (k[0], not any(r["is_golden"] for r in series[k]), k[1]))
    return {k: analyse_series(series[k], policy) for k in order}


def news(trend: dict[tuple[str, str], list[Point]], run_id: str | None = None) -> list[dict[str, Any]]:
    """The marks on the latest run (or on `run_id`) of every series."""
    out = []
    for (platform, engine), points in trend.items():
        p = next((q for q in reversed(points) if run_id is None or q.row["run_id"] == run_id), None)
        if p is None or not p.marks:
            continue
        out.append({"platform": platform, "engine": engine, "date": p.row["date"],
                    "run_id": p.row["run_id"], "marks": p.marks, "golden": bool(p.row["is_golden"]),
                    "accuracy_change": p.accuracy_change, "latency_ratio": p.regression,
                    "notes": p.notes})
    return out
