"""The terminal comparison: one rich table, one row per engine, failing cells standing out."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "error": "bold red",
                "unavailable": "yellow", "ok": "green"}


def _num(v: Any, fmt: str = "{:.2f}", style: str = "") -> Text:
    return Text("-" if v is None else fmt.format(v), style=style)


def engine_table(report: dict[str, Any]) -> Table:
    golden, tol = report["golden"], report["tolerance_map50_95"]
    data = report.get("data") or {}
    proto = report.get("protocol") or {}
    title = (f"qparity: {len(report['engines'])} engine(s) vs golden [bold]{golden}[/] "
             f"(tolerance {tol} mAP points) on {data.get('images_evaluated', '?')} images")
    t = Table(title=title, title_justify="left", header_style="bold")
    for col in ("engine", "status", "mAP50-95", "Δ golden", "mAP50", "S", "M", "L",
                "lat med ms", "lat P95 ms", "speed-up"):
        t.add_column(col, justify="left" if col in ("engine", "status") else "right", no_wrap=True)
    for name, e in report["engines"].items():
        m = e.get("metrics") or {}
        lat = e.get("latency_ms") or {}
        bad = e["status"] in ("fail", "error")
        delta = e.get("delta_map50_95")
        t.add_row(
            Text(name + (" (golden)" if name == golden else ""), style="bold" if name == golden else ""),
            Text(e["status"], style=STATUS_STYLE.get(e["status"], "")),
            _num(m.get("map50_95"), style="red" if bad else ""),
            _num(delta, "{:+.2f}", "bold red" if e["status"] == "fail" else ""),
            _num(m.get("map50")), _num(m.get("map_small")), _num(m.get("map_medium")),
            _num(m.get("map_large")), _num(lat.get("median"), "{:.3f}"),
            _num(lat.get("p95"), "{:.3f}"), _num(e.get("speedup_vs_golden"), "{:.2f}x"),
        )
    notes = []
    if proto and not proto.get("baseline", True):
        notes.append(f"NOT a baseline run: protocol overrides {proto.get('overrides')}")
    if data.get("limit"):
        notes.append(f"--limit {data['limit']}: first {data.get('images_evaluated')} of "
                     f"{data.get('images_in_folder')} images")
    if notes:
        t.caption = "; ".join(notes)
        t.caption_style = "bold yellow"
    return t


def wide_console(stderr: bool = False) -> Console:
    """A log or CI capture is not a terminal; rich would wrap the table at 80 columns."""
    c = Console(stderr=stderr)
    if not c.is_terminal:
        c = Console(stderr=stderr, width=150)
    return c


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or wide_console()
    console.print(engine_table(report))
    for name, e in report["engines"].items():
        if e.get("reason"):
            console.print(f"[{STATUS_STYLE.get(e['status'], '')}]{name}[/]: {e['reason']}",
                          highlight=False)
    colour = {"pass": "green", "fail": "red"}.get(report["verdict"], "red")
    console.print(f"verdict: [bold {colour}]{report['verdict']}[/] (exit {report['exit_code']})")
