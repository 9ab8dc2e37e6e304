"""The nightly report on screen (a rich table: engines x platforms, then the findings) and as
the markdown summary a CI job shows on its run page. Rendering only: nothing is judged here.
rich is imported where a table is drawn, so importing the package stays light."""

from __future__ import annotations

from ..records.base import dig
from ..records.nightly import Finding, NightlyReport

CELL_STYLE = {"pass": "bold green", "reference": "cyan", "fail": "bold red", "error": "bold red",
              "unavailable": "yellow", "missing": "bold red", "not run": "dim"}


def nightly_table(report: NightlyReport):
    from rich.table import Table
    from rich.text import Text

    golden, ref = report.golden, report.reference_platform
    t = Table(title=f"qparity nightly: {len(report.engines_order)} engine(s) x "
                    f"{len(report.platforms_order)} platform(s); each engine vs its own "
                    f"platform's golden {golden}, each golden vs platform {ref} "
                    f"(tolerance {report.tolerance_map50_95} mAP points)",
              title_justify="left", header_style="bold", show_lines=True)
    t.add_column("engine", no_wrap=True)
    for name in report.platforms_order:
        host = report.platforms[name].host
        gpus = ", ".join(g or "?" for g in host.gpus)
        head = name + (" (ref)" if name == ref else "") + (f"\n{host.cpu}" if host.cpu else "") + \
            (f"\n{gpus}" if gpus else "")
        t.add_column(head, justify="right", no_wrap=True)
    for engine in report.engines_order:
        cells = [Text(engine + (" (golden)" if engine == golden else ""),
                      style="bold" if engine == golden else "")]
        for name in report.platforms_order:
            cells.append(cell_text(report, name, engine))
        t.add_row(*cells)
    verdicts = [Text("platform verdict")]
    for name in report.platforms_order:
        p = report.platforms[name]
        v = p.verdict if p.status == "ok" else p.status
        verdicts.append(Text(v or "-", style=CELL_STYLE.get(v or "", "")))
    t.add_row(*verdicts)
    return t


def cell_text(report: NightlyReport, platform: str, engine: str):
    from rich.text import Text

    p = report.platforms[platform]
    if p.status != "ok":
        return Text(p.status, style=CELL_STYLE.get(p.status, "bold red"))
    e = p.engines.get(engine)
    if e is None:
        return Text("not run", style="dim")
    golden = engine == report.golden
    gc = p.golden_check
    drift = golden and gc is not None and gc.drift
    out = Text(("DRIFT " if drift else "") + e.status,
               style="bold red" if drift else CELL_STYLE.get(e.status, ""))
    m = dig(e.metrics, "map50_95")
    if m is not None:
        if golden:
            d = gc.delta_map50_95 if gc else None
            rel = "" if platform == report.reference_platform else \
                f" Δref {d:+.2f}" if d is not None else " Δref ?"
        else:
            d = e.delta_map50_95
            rel = f" Δ {d:+.2f}" if d is not None else ""
        out.append(f"\n{m:.2f}{rel}", style="bold red" if e.status == "fail" or drift else "")
    if e.census:  # what really ran in int8 on this platform
        from ..census import ratio_text

        out.append(f"\nint8 {ratio_text(e.census, e.quantized_in_file)}")
    med = dig(e.latency_ms, "median")
    if med is not None:
        out.append(f"\n{med:.3f} ms")
    elif p.host.emulated:  # harness/emulate.py: never a latency
        out.append(f"\n{p.host.emulated}", style="yellow")
    return out


def where(f: Finding) -> str:
    return f.platform + (f"/{f.engine}" if f.engine else "")


def print_nightly(report: NightlyReport, console=None) -> None:
    from ..report import wide_console

    console = console or wide_console()
    console.print(nightly_table(report))
    style = {"error": "bold red", "fail": "bold red", "note": "yellow"}
    for f in report.findings:
        console.print(f"[{style[f.severity]}]{f.kind}[/] {where(f)}: {f.reason}", highlight=False)
    colour = "green" if report.verdict == "pass" else "red"
    console.print(f"nightly verdict: [bold {colour}]{report.verdict}[/] (exit {report.exit_code})")


def summary_markdown(report: NightlyReport) -> str:
    """The same table for a CI job summary (GitHub renders it on the run's page)."""
    plats = report.platforms_order
    lines = [f"## qparity nightly: **{report.verdict}** (exit {report.exit_code})", "",
             f"Golden `{report.golden}` per platform; reference platform "
             f"`{report.reference_platform}`; tolerance {report.tolerance_map50_95} mAP points.",
             "", "| engine | " + " | ".join(plats) + " |", "|---|" + "---|" * len(plats)]
    for engine in report.engines_order:
        cells = [cell_text(report, p, engine).plain.replace("\n", "<br>") for p in plats]
        lines.append(f"| {engine} | " + " | ".join(cells) + " |")
    if report.findings:
        lines += ["", "| severity | finding | where | reason |", "|---|---|---|---|"]
        for f in report.findings:
            lines.append(f"| {f.severity} | {f.kind} | {where(f)} | {f.reason.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
