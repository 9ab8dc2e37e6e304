"""The terminal comparison: one rich table, one row per engine, failing cells standing out.

Two forms of the same table. The compact one (the default on a narrow terminal) fits 80
columns: engine, status, mAP50-95, Δ golden, Δ qdq-ref, latency median, speed-up, int8 ran.
The wide one (`--wide`, or chosen automatically when the terminal is wide enough for it) adds
mAP50/75, S/M/L, P95 and the latency spread. Under the table: a legend for every colour and
ratio, what a latency sample covers, the engine settings that differ from their defaults, then
the reasons and the verdict.
"""

from __future__ import annotations

import os
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from .census import has_split, int8_of_file_at_most, ratio_text
from .emulate import ACCURACY_ONLY
from .records.report import EngineEntry, EvalReport
from .records.result import Emulation
from .stability import SPREAD_THRESHOLD

STATUS_STYLE = {"pass": "bold green", "fail": "bold red", "error": "bold red",
                "unavailable": "yellow", "ok": "green", "reference": "cyan"}
LOG_WIDTH = 170  # a log or CI capture: wide enough for the wide table


def as_report(report: EvalReport | dict[str, Any]) -> EvalReport:
    """The report as its record: the dict the collector returns (or read from a file) is read
    once, here, at the entry of each renderer; a record passes through."""
    return report if isinstance(report, EvalReport) else EvalReport.from_json(report)


# --- the free-form parts (their keys belong to a library or to envinfo), one reader each -------
def env_cpu(env: dict[str, Any] | None) -> dict[str, Any]:
    """The CPU facts of an environment (harness/envinfo.py), {} when it has none."""
    return (env or {}).get("cpu") or {}


def emulation(e: EngineEntry) -> Emulation | None:
    """The emulated CPU an engine ran on (its environment's `cpu.emulated`, which
    harness/emulate.py mark_result writes), None when native."""
    em = env_cpu(e.env).get("emulated")
    return Emulation.from_json(em, "env.cpu.emulated") if em else None


def emulation_note(report: EvalReport) -> str | None:
    """One caption line for a report with emulated rows, naming the model and flags seen."""
    seen = {em.qemu_model: em for em in map(emulation, report.engines.values()) if em}
    if not seen:
        return None
    return "; ".join(f"emulated {m} (flags seen: {', '.join(em.flags_seen)}): {ACCURACY_ONLY}, "
                     f"no latency measured" for m, em in seen.items())


def _num(v: Any, fmt: str = "{:.2f}", style: str = "") -> Text:
    return Text("-" if v is None else fmt.format(v), style=style)


def mostly_float(name: str, e: EngineEntry) -> bool:
    """Fewer than half of the file's quantized compute ops really ran in int8 (counting the
    int8 ops the census could not match as the file's: never flagged on a guess; an older
    census, without the split, counts every int8 op)."""
    reference = e.status == "reference"  # float by design
    return (bool(e.census) and not reference
            and int8_of_file_at_most(e.census) * 2 < (e.quantized_in_file or 0))


def int8_legend(engines: dict[str, EngineEntry]) -> str:
    """The legend line of the 'int8 ran' cell, for the census forms and markers in use."""
    censuses = [e.census for e in engines.values() if e.census and not e.model_note]
    split = [c for c in censuses if has_split(c)]
    if split:
        line = ("int8 ran: the file's quantized compute ops that ran in int8 / ops quantized in "
                "the file (matched by node name)")
    else:
        line = "int8 ran: compute ops that really ran in int8 / ops quantized in the file"
    if len(split) < len(censuses) and split:
        line += ("; a result without the split (older) shows every int8 op it ran / ops "
                 "quantized in the file")
    if any(c.get("int8_added_by_engine") for c in split):
        line += ("; +N: N compute ops float in the file that the engine quantized itself and ran "
                 "in int8 (arithmetic the file does not contain)")
    if any(c.get("unmatched_int8") for c in split):
        line += ("; ?N: N int8 ops the census could not match to one node of the file (the "
                 "file's or the engine's own)")
    return line


def speedup_cell(e: EngineEntry) -> Text:
    s, conf = e.speedup_vs_golden, e.speedup_confidence
    if s is None:
        return Text("-")
    if conf == "noisy":
        return Text("noisy", style="yellow")
    if conf == "indicative":
        return Text(f"~{s:.2f}x", style="yellow")
    return Text(f"{s:.2f}x")


def short_ms(v: float) -> str:
    """Four significant digits, never scientific: 1.234, 12.35, 123.5, 1235."""
    return f"{v:.3f}" if v < 10 else f"{v:.2f}" if v < 100 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _latency_cell(e: EngineEntry, key: str, compact: bool = False) -> Text:
    lat = e.latency_ms
    v = None if lat is None else getattr(lat, key)
    style = "yellow" if unstable(e) else ""
    return Text("-" if v is None else short_ms(v) if compact else f"{v:.3f}", style=style)


def unstable(e: EngineEntry) -> bool:
    """The engine's latency was measured and found unstable (harness/stability.py)."""
    return e.latency_ms is not None and e.latency_ms.stable is False


def _or(v: Any, default: Any) -> Any:
    return default if v is None else v


def engine_table(report: EvalReport | dict[str, Any], wide: bool = False) -> Table:
    report = as_report(report)
    golden, tol = report.golden, report.tolerance_map50_95
    data, proto = report.data, report.protocol or {}
    images = "?" if data is None else _or(data.images_evaluated, "?")
    title = (f"qparity: {len(report.engines)} engine(s) vs golden [bold]{escape(golden)}[/] "
             f"(tolerance {tol} mAP points) on {images} images")
    ref = report.reference
    t = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
              pad_edge=False, collapse_padding=True)
    if wide:
        cols = ["engine", "status", "mAP50-95", "Δ golden"] + (["Δ qdq-ref"] if ref else []) + [
            "mAP50", "mAP75", "S", "M", "L", "lat med ms", "lat P95 ms", "spread", "speed-up",
            "int8 ran/file"]
    else:
        cols = ["engine", "status", "mAP\n50-95", "Δ\ngolden"] + (["Δ\nqdq-ref"] if ref else []) + [
            "lat med\nms", "speed\n-up", "int8\nran"]
    for col in cols:
        # the engine label ("ort-cpu (golden) DRIFT", a plugin's long name) is the one cell that
        # may wrap: rich narrows wrappable columns first, so no number is ever cut
        t.add_column(col, justify="left" if col in ("engine", "status") else "right",
                     no_wrap=wide or col != "engine", overflow="fold")
    for name, e in report.engines.items():
        m = e.metrics
        bad = e.status in ("fail", "error")
        label = name + (" (golden)" if name == golden else "") + (" DRIFT" if e.golden_drift else "")
        em = emulation(e)
        if em:  # every emulated row says so (harness/emulate.py)
            label += f" [{em.label}]"
        cells = [
            Text(label, style="bold red" if e.golden_drift else "bold" if name == golden else ""),
            Text(e.status, style=STATUS_STYLE.get(e.status, "")),
            _num(m and m.map50_95, style="red" if bad else ""),
            _num(e.delta_map50_95, "{:+.2f}", "bold red" if e.status == "fail" else ""),
        ]
        if ref:
            d = e.delta_vs_qdq_ref
            cells.append(_num(d, "{:+.2f}", "bold red" if d is not None and abs(d) > tol else ""))
        int8 = (Text("no QDQ", style="bold yellow") if e.model_note else
                Text(ratio_text(e.census, e.quantized_in_file),
                     style="yellow" if mostly_float(name, e) else ""))
        if wide:
            sp = e.latency_ms and e.latency_ms.spread
            cells += [_num(m and m.map50), _num(m and m.map75), _num(m and m.map_small),
                      _num(m and m.map_medium), _num(m and m.map_large),
                      _latency_cell(e, "median"), _latency_cell(e, "p95"),
                      _num(None if sp is None else sp * 100, "{:.0f}%",
                           "yellow" if unstable(e) else ""),
                      speedup_cell(e), int8]
        else:
            cells += [_latency_cell(e, "median", compact=True), speedup_cell(e), int8]
        t.add_row(*cells)
    notes = [n for n in (emulation_note(report),) if n]
    if proto and not proto.get("baseline", True):
        notes.append(f"NOT a baseline run: protocol overrides {proto.get('overrides')}")
    if data is not None and data.limit:
        notes.append(f"--limit {data.limit}: first {data.images_evaluated} of "
                     f"{data.images_in_folder} images")
    if notes:
        t.caption = escape("; ".join(notes))
        t.caption_style = "bold yellow"
    return t


def latency_notes(report: EvalReport | dict[str, Any]) -> list[str]:
    """What one latency sample covers, per engine, and the engine's own figure beside it."""
    out = []
    for name, e in as_report(report).engines.items():
        lat = e.latency_ms
        if lat is None or not lat.timed:
            continue
        own = lat.engine_reported.median if lat.engine_reported is not None else None
        out.append(f"latency {name}: {lat.timed}"
                   + (f" (engine's own median {own:.3f} ms)" if own is not None else ""))
    return out


def legend(report: EvalReport | dict[str, Any], wide: bool = False) -> list[str]:
    """One line per colour or ratio the table uses, only for those it does use."""
    engines = as_report(report).engines
    pct = f"{SPREAD_THRESHOLD:.0%}"
    lines = ["Δ: mAP50-95 points against the golden engine (and against qdq-ref, the model's own "
             "Q/DQ arithmetic); red: outside the tolerance."]
    lines.append("speed-up: golden median / engine median (>1 is faster); latency is "
                 + ("'lat med ms' and 'lat P95 ms' per batch-1 inference" if wide else
                    "the median per batch-1 inference")
                 + f"; yellow latency: its P95 is over {pct} above its median (unstable).")
    if any(e.speedup_confidence in ("noisy", "indicative") for e in engines.values()):
        lines.append(f"noisy: a latency spread over {pct} makes a rerun able to flip this "
                     f"speed-up; ~x: its direction holds, its size does not.")
    lines.append(int8_legend(engines)
                 + ("; yellow: under half ran in int8 (mostly float)." if any(
                     mostly_float(n, e) for n, e in engines.items()) else "."))
    if any(e.model_note for e in engines.values()):
        lines.append("no QDQ: the model file has no quantized ops, so it is not an INT8 QDQ model.")
    if any(e.golden_drift for e in engines.values()):
        lines.append("DRIFT: the golden engine is off qdq-ref by more than the tolerance.")
    return lines


def _flat(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def settings_of(info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """An engine's describe() (free-form): the settings it ran with, and their defaults (None
    for a result that records none)."""
    return info.get("settings") or {}, info.get("defaults")


def _setting_items(info: dict[str, Any]) -> list[tuple[str, Any]]:
    """(key, value) of every setting an engine recorded: scalars, and the keys of each group of
    settings that has defaults (OpenVINO's requested properties, TensorRT's builder and runtime
    settings); groups of facts (OpenVINO's effective properties, a plan's cache entry) are not
    settings. A result without defaults: its scalars and OpenVINO's requested properties."""
    settings, defaults = settings_of(info)
    groups = set(defaults) if defaults is not None else {"requested"}
    out: list[tuple[str, Any]] = []
    for k, v in settings.items():
        if not isinstance(v, dict):
            out.append((k, v))
        elif k in groups:
            out += list(v.items())
    return out


def engine_options(report: EvalReport | dict[str, Any]) -> dict[str, str]:
    """Every setting each engine ran with, as `KEY=VALUE` (what was asked for, not defaults we
    assume), so that a run with `--engine-opt` is never mistaken for one without."""
    out = {}
    for name, e in as_report(report).engines.items():
        flat = [f"{k}={_flat(v)}" for k, v in _setting_items(e.engine or {})]
        if flat:
            out[name] = " ".join(flat)
    return out


def changed_settings(info: dict[str, Any]) -> dict[str, Any] | None:
    """The settings an engine ran with that differ from its defaults (describe()'s "defaults");
    None for a result that records no defaults (then which differ is unknown)."""
    settings, defaults = settings_of(info)
    if defaults is None:
        return None
    out: dict[str, Any] = {}
    for k, d in defaults.items():
        v = settings.get(k)
        if isinstance(d, dict) and isinstance(v, dict):
            out.update({sk: sv for sk, sv in v.items() if sk not in d or sv != d[sk]})
        elif k in settings and v != d:
            out[k] = v
    return out


def non_default_options(report: EvalReport | dict[str, Any]) -> dict[str, str]:
    """Per engine, `KEY=VALUE` of the settings away from their default: what the terminal
    caption lists (the HTML report keeps every setting). An older result without defaults
    shows all its settings, marked so."""
    out = {}
    for name, e in as_report(report).engines.items():
        info = e.engine or {}
        changed = changed_settings(info)
        if changed is None:
            flat = [f"{k}={_flat(v)}" for k, v in _setting_items(info)]
            if flat:
                out[name] = " ".join(flat) + " (all: this result records no defaults)"
        elif changed:
            out[name] = " ".join(f"{k}={_flat(v)}" for k, v in changed.items())
    return out


def wide_console(stderr: bool = False) -> Console:
    """A log or CI capture is not a terminal; rich would wrap tables at 80 columns there.
    An explicit COLUMNS (e.g. COLUMNS=80) is always honoured."""
    c = Console(stderr=stderr)
    if not c.is_terminal and not os.environ.get("COLUMNS", "").isdigit():
        c = Console(stderr=stderr, width=LOG_WIDTH)
    return c


def fits(console: Console, table: Table) -> bool:
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    return natural <= console.width


def choose_table(report: EvalReport | dict[str, Any], console: Console,
                 wide: bool | None = None) -> Table:
    """`wide` True/False forces a form; None takes the wide one only when it fits."""
    report = as_report(report)
    if wide is None:
        t = engine_table(report, wide=True)
        return t if fits(console, t) else engine_table(report, wide=False)
    return engine_table(report, wide=wide)


def print_report(report: EvalReport | dict[str, Any], console: Console | None = None,
                 wide: bool | None = None) -> None:
    """The table, its legend, what each latency covers, the settings away from their defaults,
    the reasons and the verdict. `report`: the collector's dict (read here as an EvalReport,
    once) or the record."""
    report = as_report(report)
    console = console or wide_console()
    table = choose_table(report, console, wide)
    is_wide = any(c.header == "mAP50" for c in table.columns)
    console.print(table)
    for line in legend(report, is_wide):
        console.print(Text(line, style="dim"))
    for line in latency_notes(report):
        console.print(Text(line, style="dim"))
    opts = non_default_options(report)
    if opts:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column()
        for name, line in opts.items():
            grid.add_row(f"  {name}:", line)
        console.print(Text("engine settings not at their default (the HTML report lists all):",
                           style="dim"))
        console.print(grid, style="dim")
    for name, e in report.engines.items():
        if e.reason:
            console.print(Text.assemble((name, STATUS_STYLE.get(e.status, "")), f": {e.reason}"))
    ref = report.reference
    if ref and ref.golden_drift:
        console.print(Text.assemble(("golden drift:", "bold red"), f" {ref.note}"))
    colour = {"pass": "green", "fail": "red"}.get(report.verdict, "red")
    console.print(Text.assemble("verdict: ", (report.verdict, f"bold {colour}"),
                                f" (exit {report.exit_code})"))
