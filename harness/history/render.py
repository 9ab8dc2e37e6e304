"""The history's trend on screen: one rich table per platform x engine series, then what changed
on the latest runs. Rendering only (the marks come from `trend`); rich is imported where a
table is drawn."""

from __future__ import annotations

from typing import Any

from .trend import POLICY, Point, TrendPolicy, news


def trend_tables(trend: dict[tuple[str, str], list[Point]], last: int):
    from rich.table import Table
    from rich.text import Text

    for (platform, engine), points in trend.items():
        points = points[-last:]
        golden = any(p.row["is_golden"] for p in points)
        t = Table(title=f"{platform} / {engine}" + (" (golden)" if golden else ""),
                  title_justify="left", header_style="bold")
        for col in ("date", "run", "status", "mAP50-95", "Δ golden", "lat med ms", "lat P95 ms",
                    "rolling med", "marks", "engine ver", "harness", "model"):
            t.add_column(col, justify="left" if col in ("date", "run", "status", "marks",
                                                        "engine ver", "harness", "model") else "right",
                         no_wrap=col != "marks")
        for p in points:
            r = p.row
            marks = []
            if p.accuracy_change is not None:
                marks.append(Text(f"ACC {p.accuracy_change:+.2f}",
                                  style="bold magenta" if golden else "magenta"))
            if p.regression is not None:
                marks.append(Text(f"SLOWER x{p.regression:.2f}", style="bold red"))
            if any(n.startswith(("new model", "machine changed")) for n in p.notes):
                marks.append(Text("baseline reset", style="yellow"))
            ok = r["status"] in ("pass", "reference", "ok")
            t.add_row(
                r["date"][:16].replace("T", " "), r["run_id"][-12:],
                Text(r["status"], style="green" if ok else "bold red" if r["status"] in (
                    "fail", "error", "missing") else "yellow"),
                _fmt(r["map50_95"], "{:.2f}"), _fmt(r["delta_map50_95"], "{:+.2f}"),
                _fmt(r["lat_median"], "{:.3f}", "bold red" if p.regression else ""),
                _fmt(r["lat_p95"], "{:.3f}"), _fmt(p.rolling_median, "{:.3f}"),
                Text(" ").join(marks) if marks else Text(""),
                r["engine_version"] or "-", (r["harness_commit"] or "-")[:8],
                (r["model_sha256"] or "-")[:8])
        yield t


def _fmt(v: Any, fmt: str, style: str = ""):
    from rich.text import Text

    return Text("-" if v is None else fmt.format(v), style=style)


def print_history(trend: dict[tuple[str, str], list[Point]], last: int, console=None,
                  policy: TrendPolicy = POLICY) -> None:
    from ..report import wide_console

    console = console or wide_console()
    if not trend:
        console.print("history store is empty")
        return
    for t in trend_tables(trend, last):
        console.print(t)
    found = news(trend)
    console.print(f"latency regressions: median > rolling median of the previous {policy.window} "
                  f"comparable runs x {1 + policy.latency_threshold:.2f} (same platform, engine, "
                  f"model, machine, protocol; at least {policy.min_history} earlier runs)",
                  highlight=False, style="dim")
    for n in found:
        style = "bold red" if "latency-regression" in n["marks"] else "bold magenta"
        for note in n["notes"]:
            console.print(f"[{style}]{n['platform']}/{n['engine']}[/] {n['date'][:10]}: {note}",
                          highlight=False)
    if not found:
        console.print("latest runs: no accuracy change, no latency regression", style="green")
