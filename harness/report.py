"""The terminal comparison: one rich table, one row per engine, failing cells standing out."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .census import ratio_text
from .emulate import emulated_of, report_note

STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "error": "bold red",
                "unavailable": "yellow", "ok": "green", "reference": "cyan"}


def _num(v: Any, fmt: str = "{:.2f}", style: str = "") -> Text:
    return Text("-" if v is None else fmt.format(v), style=style)


def engine_table(report: dict[str, Any]) -> Table:
    golden, tol = report["golden"], report["tolerance_map50_95"]
    data = report.get("data") or {}
    proto = report.get("protocol") or {}
    title = (f"qparity: {len(report['engines'])} engine(s) vs golden [bold]{golden}[/] "
             f"(tolerance {tol} mAP points) on {data.get('images_evaluated', '?')} images")
    ref = report.get("reference")
    t = Table(title=title, title_justify="left", header_style="bold")
    cols = ["engine", "status", "mAP50-95", "Δ golden"] + (["Δ qdq-ref"] if ref else []) + [
        "mAP50", "S", "M", "L", "lat med ms", "lat P95 ms", "speed-up", "int8 ran/file"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("engine", "status") else "right", no_wrap=True)
    for name, e in report["engines"].items():
        m = e.get("metrics") or {}
        lat = e.get("latency_ms") or {}
        bad = e["status"] in ("fail", "error")
        delta = e.get("delta_map50_95")
        label = name + (" (golden)" if name == golden else "") + (" DRIFT" if e.get("golden_drift") else "")
        if emulated_of(e):  # every emulated row says so (harness/emulate.py)
            label += f" [{emulated_of(e)['label']}]"
        cells = [
            Text(label, style="bold red" if e.get("golden_drift") else "bold" if name == golden else ""),
            Text(e["status"], style=STATUS_STYLE.get(e["status"], "")),
            _num(m.get("map50_95"), style="red" if bad else ""),
            _num(delta, "{:+.2f}", "bold red" if e["status"] == "fail" else ""),
        ]
        if ref:
            d = e.get("delta_vs_qdq_ref")
            cells.append(_num(d, "{:+.2f}", "bold red" if d is not None and abs(d) > tol else ""))
        int8 = ratio_text(e.get("census"), e.get("quantized_in_file"))
        mostly_float = bool(e.get("census")) and name != "qdq-ref" and \
            e["census"]["int8_compute_ops"] * 2 < (e.get("quantized_in_file") or 0)
        cells += [
            _num(m.get("map50")), _num(m.get("map_small")), _num(m.get("map_medium")),
            _num(m.get("map_large")), _num(lat.get("median"), "{:.3f}"),
            _num(lat.get("p95"), "{:.3f}"), _num(e.get("speedup_vs_golden"), "{:.2f}x"),
            Text(int8, style="yellow" if mostly_float else ""),
        ]
        t.add_row(*cells)
    notes = [n for n in (report_note(report),) if n]
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
        c = Console(stderr=stderr, width=170)
    return c


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    console = console or wide_console()
    console.print(engine_table(report))
    for name, e in report["engines"].items():
        if e.get("reason"):
            console.print(f"[{STATUS_STYLE.get(e['status'], '')}]{name}[/]: {e['reason']}",
                          highlight=False)
    ref = report.get("reference")
    if ref and ref.get("golden_drift"):
        console.print(f"[bold red]golden drift:[/] {ref['note']}", highlight=False)
    colour = {"pass": "green", "fail": "red"}.get(report["verdict"], "red")
    console.print(f"verdict: [bold {colour}]{report['verdict']}[/] (exit {report['exit_code']})")
