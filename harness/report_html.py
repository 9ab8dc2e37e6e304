"""`report.html`: one self-contained page per run, beside `eval_report.json`.

The verdict and the table; mAP50-95 per engine against the tolerance band around the golden
engine; the classes whose AP moved most against the golden engine; latency distributions from
the raw samples; the executed-precision census; the settings and environment. Plots are inline
SVG written here (no JavaScript, no CDN, no plotting library), so the page opens offline, from
a CI artifact or an e-mail, and weighs a few tens of kB. Engine colours come from
`harness.palette`, as on the history page.

Everything is read from the results folder (`eval_report.json`'s content, the engines' result
files for the raw latency samples and the per-class AP the runner recorded), so `qparity
collect` rewrites the page from files alone, without numpy or pycocotools. Only a result from
before per-class AP was recorded has it recomputed from `detections/*.npz` and the annotation
file (`recomputed_class_aps`).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from .census import has_split, ratio_text
from .fileio import sha256_file, write_atomic
from .palette import engine_colour
from .records.report import EngineEntry, EvalReport
from .records.result import EngineResult
from .report import (as_report, emulation, engine_options, env_cpu, legend, mostly_float,
                     non_default_options, unstable)
from .stability import SPREAD_THRESHOLD

HTML_NAME = "report.html"
TOP_CLASSES = 10
W = 760  # plot width in px (the page is readable on a laptop without scrolling sideways)

esc = html.escape


# ------------------------------------------------------------------ data from the folder
def engine_results(out: Path, engines: list[str]) -> dict[str, EngineResult]:
    """`<out>/<engine>.json` per engine, read through the EngineResult record: a file that is
    not a result (the collector already lists it as invalid) is left out."""
    found = {}
    for name in engines:
        try:
            found[name] = EngineResult.from_json(json.loads((out / f"{name}.json").read_text()))
        except (OSError, ValueError):  # unreadable, not JSON, or not a result (RecordError)
            continue
    return found


def latency_samples(out: Path, engines: list[str],
                    results: dict[str, EngineResult] | None = None) -> dict[str, list[float]]:
    """Raw timed samples per engine from its result file (the report keeps summaries)."""
    results = engine_results(out, engines) if results is None else results
    found = {}
    for name, r in results.items():
        s = r.latency_ms.samples_ms if r.latency_ms is not None else None
        if s:
            found[name] = [float(x) for x in s]
    return found


def class_aps(out: Path, report: EvalReport | dict[str, Any],
              results: dict[str, EngineResult] | None = None
              ) -> tuple[dict[str, dict[str, float | None]], str]:
    """Per-class AP50-95 per engine, keyed by class name, as the runner recorded it from its
    own evaluation (`metrics.per_class_ap50_95`); for a result written before that field, the
    figure recomputed from the saved detections. ({}, why) when there is none."""
    report = as_report(report)
    results = engine_results(out, list(report.engines)) if results is None else results
    aps: dict[str, dict[str, float | None]] = {}
    older = []
    for name, e in report.engines.items():
        r = results.get(name)
        recorded = r.metrics.per_class_ap50_95 if r is not None and r.metrics else None
        if e.metrics is None:
            continue
        if recorded is not None:
            aps[name] = recorded
        else:
            older.append(name)
    why = ""
    if older:
        found, why = recomputed_class_aps(out, report, older)
        aps.update(found)
    return aps, why


def recomputed_class_aps(out: Path, report: EvalReport, engines: list[str]
                         ) -> tuple[dict[str, dict[str, float | None]], str]:
    """Per-class AP50-95 of results written before the runner recorded it, from their saved
    detections (numpy, pycocotools: seconds per engine); ({}, why) when impossible (a report
    copied from another machine without its annotation file, say)."""
    from .data import Dataset

    data = report.data
    if data is None or not data.annotations or not data.images_dir:
        return {}, "the report does not name its data"
    try:
        ds = Dataset.load(Path(data.images_dir), Path(data.annotations), data.limit)
    except Exception as e:  # the page must never cost the run its verdict
        return {}, f"data not readable here ({e})"
    aps = {}
    for name in engines:
        f = out / "detections" / f"{name}.npz"
        if not f.is_file():
            continue
        # pycocotools costs seconds per engine (more on full COCO): keep the answer beside the
        # detections, keyed by what it was computed from, so re-collecting does not pay again
        cache = f.with_suffix(".per_class_ap.json")
        key = {"detections_sha256": sha256_file(f), "annotations_sha256": data.annotations_sha256,
               "image_list_sha256": data.image_list_sha256, "keyed_by": "class name"}
        try:
            cached = json.loads(cache.read_text()) if cache.is_file() else {}
            if cached.get("key") == key:
                aps[name] = cached["ap"]
                continue
            import numpy as np  # only for an older result: `qparity collect` starts without it

            from .metrics import class_keys, per_class_ap  # pycocotools: only for an older result

            det = np.load(f)["detections"]
            by_id = per_class_ap(ds.coco_json, det, ds.image_ids)
            cats = sorted(ds.coco_json.get("categories", []), key=lambda c: int(c["id"]))
            keys = dict(zip((int(c["id"]) for c in cats), class_keys(cats)))
            aps[name] = {keys[c]: v for c, v in by_id.items()}
            write_atomic(cache, json.dumps({"key": key, "ap": aps[name]}).encode())
        except Exception:
            continue
    return aps, ""


def percentiles(values: list[float], qs: tuple[float, ...]) -> list[float]:
    """numpy.percentile's default ("linear") method, to the bit, without importing numpy (which
    would double the start-up of `qparity collect`, which writes this page)."""
    s, out = sorted(values), []
    for q in qs:
        h = (len(s) - 1) * (q / 100)
        lo = math.floor(h)
        a, b, t = s[lo], s[min(lo + 1, len(s) - 1)], h - lo
        out.append(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)  # numpy's _lerp
    return out


# ------------------------------------------------------------------ SVG helpers
def nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


def fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


class Axis:
    """x mapping from data to pixels, linear or log10."""

    def __init__(self, lo: float, hi: float, x0: float, x1: float, log: bool = False):
        self.lo, self.hi, self.x0, self.x1, self.log = lo, hi, x0, x1, log

    def __call__(self, v: float) -> float:
        f = (lambda z: math.log10(z)) if self.log else (lambda z: z)
        v = min(max(v, self.lo), self.hi)
        return self.x0 + (f(v) - f(self.lo)) / ((f(self.hi) - f(self.lo)) or 1) * (self.x1 - self.x0)

    def ticks(self) -> list[float]:
        if not self.log:
            return nice_ticks(self.lo, self.hi)
        out = []
        for e in range(math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi)) + 1):
            out += [m * 10 ** e for m in (1, 2, 5) if self.lo <= m * 10 ** e <= self.hi]
        return out


def svg(width: float, height: float, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{esc(label)}">'
            + "".join(body) + "</svg>")


def text(x: float, y: float, s: str, anchor: str = "start", size: int = 12, weight: str = "normal",
         fill: str = "#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{esc(s)}</text>')


def x_axis(ax: Axis, y: float, top: float, unit: str) -> list[str]:
    out = [f'<line x1="{ax.x0}" y1="{y}" x2="{ax.x1}" y2="{y}" stroke="#444"/>']
    for t in ax.ticks():
        x = ax(t)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{y}" stroke="#e4e4e4"/>')
        out.append(text(x, y + 15, fmt(t), "middle", 11))
    out.append(text((ax.x0 + ax.x1) / 2, y + 31, unit, "middle", 11, fill="#555"))
    return out


# ------------------------------------------------------------------ plots
def map50_95(e: EngineEntry | None) -> float | None:
    return e.metrics.map50_95 if e is not None and e.metrics is not None else None


def map_plot(report: EvalReport) -> str:
    """Two panels: mAP50-95 per engine with golden ± tolerance shaded, and the deltas zoomed."""
    golden, tol = report.golden, report.tolerance_map50_95
    rows = [(n, map50_95(e), e) for n, e in report.engines.items() if map50_95(e) is not None]
    if not rows:
        return "<p>No engine produced an mAP.</p>"
    g = map50_95(report.engines.get(golden))
    left, rh, top = 130, 26, 30
    h = top + rh * len(rows) + 44
    body = []
    # panel 1: absolute mAP
    hi = min(100.0, max(v for _, v, _ in rows) * 1.1 + 1)
    ax = Axis(0, hi, left, W / 2 - 20)
    body += x_axis(ax, top + rh * len(rows) + 4, top - 6, "mAP50-95 (points)")
    body.append(text(left, 16, "mAP50-95 per engine", weight="bold"))
    if g is not None:
        body.append(f'<rect x="{ax(g - tol):.1f}" y="{top - 6}" width="{max(ax(g + tol) - ax(g - tol), 2):.1f}" '
                    f'height="{rh * len(rows) + 10}" fill="#2ca02c" opacity="0.25"><title>golden '
                    f'{g:.2f} ± {tol}</title></rect>')
        body.append(f'<line x1="{ax(g):.1f}" y1="{top - 6}" x2="{ax(g):.1f}" '
                    f'y2="{top + rh * len(rows) + 4}" stroke="#2ca02c" stroke-dasharray="3,2"/>')
    for i, (name, v, _) in enumerate(rows):
        y = top + i * rh
        body.append(text(left - 8, y + 16, name, "end", weight="bold" if name == golden else "normal"))
        body.append(f'<rect x="{ax(0):.1f}" y="{y + 4}" width="{ax(v) - ax(0):.1f}" height="{rh - 8}" '
                    f'fill="{engine_colour(name)}"><title>{esc(name)}: {v:.2f}</title></rect>')
        body.append(text(ax(v) + 4, y + 16, f"{v:.2f}", size=11))
    # panel 2: deltas against golden, band = tolerance
    deltas = [(n, e.delta_map50_95) for n, _, e in rows]
    span = max([abs(d) for _, d in deltas if d is not None] + [2 * tol]) * 1.2
    ax2 = Axis(-span, span, W / 2 + 60, W - 20)
    body += x_axis(ax2, top + rh * len(rows) + 4, top - 6, f"Δ mAP50-95 vs {golden} (points)")
    body.append(text(W / 2 + 60, 16, f"Δ against the golden engine, band ±{tol}", weight="bold"))
    body.append(f'<rect x="{ax2(-tol):.1f}" y="{top - 6}" width="{ax2(tol) - ax2(-tol):.1f}" '
                f'height="{rh * len(rows) + 10}" fill="#2ca02c" opacity="0.25"><title>tolerance '
                f'±{tol}</title></rect>')
    for i, (name, d) in enumerate(deltas):
        y = top + i * rh
        body.append(text(W / 2 + 52, y + 16, name, "end"))
        if d is None:
            continue
        x0, x1 = sorted((ax2(0), ax2(d)))
        body.append(f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1.5):.1f}" height="{rh - 8}" '
                    f'fill="{engine_colour(name)}"><title>{esc(name)}: {d:+.2f}</title></rect>')
        # the value on the other side of zero from its bar, where it never meets the names
        body.append(text(ax2(0) + 4 if d < 0 else ax2(0) - 4, y + 16, f"{d:+.2f}",
                         "start" if d < 0 else "end", 11,
                         "bold" if abs(d) > tol else "normal", "#c00" if abs(d) > tol else "#222"))
    body.append(f'<line x1="{ax2(0):.1f}" y1="{top - 6}" x2="{ax2(0):.1f}" '
                f'y2="{top + rh * len(rows) + 4}" stroke="#444"/>')
    return svg(W, h, body, "mAP50-95 per engine and deltas against the golden engine")


def class_plot(golden: str, aps: dict[str, dict[str, float | None]], engine: str) -> str:
    """The TOP_CLASSES classes whose AP50-95 moved most against the golden engine."""
    g, e = aps[golden], aps[engine]
    moved = sorted(((c, e[c] - g[c]) for c in g if g.get(c) is not None and e.get(c) is not None),
                   key=lambda cd: -abs(cd[1]))[:TOP_CLASSES]
    if not moved:
        return "<p>No class with ground truth to compare.</p>"
    left, rh, top = 250, 22, 26
    span = max(max(abs(d) for _, d in moved), 1.0) * 1.15
    ax = Axis(-span, span, left, W - 60)
    body = [text(left, 14, f"{engine} − {golden}: AP50-95 per class (points), the "
                           f"{len(moved)} that moved most", weight="bold")]
    body += x_axis(ax, top + rh * len(moved) + 4, top - 4, "Δ AP50-95 (points)")
    for i, (c, d) in enumerate(moved):
        y = top + i * rh
        body.append(text(left - 8, y + 15, f"{c}  {g[c]:.1f} → {e[c]:.1f}", "end", 11))
        x0, x1 = sorted((ax(0), ax(d)))
        body.append(f'<rect x="{x0:.1f}" y="{y + 4}" width="{max(x1 - x0, 1.5):.1f}" height="{rh - 8}" '
                    f'fill="{engine_colour(engine)}"><title>{esc(c)}: '
                    f'{d:+.2f}</title></rect>')
        body.append(text(ax(0) + 4 if d < 0 else ax(0) - 4, y + 15, f"{d:+.2f}",
                         "start" if d < 0 else "end", 11))
    body.append(f'<line x1="{ax(0):.1f}" y1="{top - 4}" x2="{ax(0):.1f}" '
                f'y2="{top + rh * len(moved) + 4}" stroke="#444"/>')
    return svg(W, top + rh * len(moved) + 44, body, f"per-class AP differences, {engine}")


def latency_plot(report: EvalReport, samples: dict[str, list[float]]) -> str:
    """Per engine: every raw sample (a dot), the P5-P95 whisker, the box Q1-Q3, the median."""
    if not samples:
        return "<p>No latency samples in the result files.</p>"
    names = [n for n in report.engines if n in samples]
    lo = min(min(s) for s in samples.values())
    hi = max(max(s) for s in samples.values())
    log = hi / max(lo, 1e-9) > 8  # engines an order of magnitude apart: a linear axis hides one
    left, rh, top = 130, 46, 30
    ax = Axis(lo * 0.9 if log else max(0.0, lo - (hi - lo) * 0.08), hi * 1.1 if log else hi + (hi - lo) * 0.08,
              left, W - 215, log)
    body = [text(left, 16, "latency per batch-1 inference (ms)" + (", log axis" if log else ""),
                 weight="bold")]
    body += x_axis(ax, top + rh * len(names) + 4, top - 6, "ms" + (" (log scale)" if log else ""))
    for i, name in enumerate(names):
        s = samples[name]
        y = top + i * rh + rh / 2
        col = engine_colour(name)
        p5, q1, med, q3, p95 = percentiles(s, (5, 25, 50, 75, 95))
        body.append(text(left - 8, y + 4, name, "end"))
        jitter = [(k * 0.618034) % 1.0 - 0.5 for k in range(len(s))]  # deterministic spread
        body.append("".join(f'<circle cx="{ax(v):.1f}" cy="{y + j * (rh - 18):.1f}" r="1.6" '
                            f'fill="{col}" opacity="0.35"/>' for v, j in zip(s, jitter)))
        body.append(f'<line x1="{ax(p5):.1f}" y1="{y}" x2="{ax(p95):.1f}" y2="{y}" stroke="#333"/>')
        body.append(f'<rect x="{ax(q1):.1f}" y="{y - 9}" width="{max(ax(q3) - ax(q1), 1):.1f}" '
                    f'height="18" fill="{col}" fill-opacity="0.3" stroke="{col}"/>')
        body.append(f'<line x1="{ax(med):.1f}" y1="{y - 11}" x2="{ax(med):.1f}" y2="{y + 11}" '
                    f'stroke="{col}" stroke-width="3"><title>{esc(name)} median {med:.3f} ms'
                    f'</title></line>')
        shaky = unstable(report.engines[name])
        note = f"med {med:.3g} · P95 {p95:.3g}" + (" · UNSTABLE" if shaky else "")
        body.append(text(W - 205, y + 4, note, size=11, fill="#b36b00" if shaky else "#222",
                         weight="bold" if shaky else "normal"))
    return svg(W, top + rh * len(names) + 44, body, "latency distributions per engine")


# ------------------------------------------------------------------ page
STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;
max-width:1100px;color:#222;padding:0 1em}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;
border-bottom:1px solid #ddd}table{border-collapse:collapse;font-size:.85em}.scroll{overflow-x:auto}td,th{padding:3px 6px;
text-align:right;border-bottom:1px solid #eee}td:first-child{white-space:nowrap}td:first-child,th:first-child,td.l,th.l{text-align:left}
.verdict{display:inline-block;padding:.2em .7em;border-radius:4px;color:#fff;font-weight:bold}
.pass{background:#2a8a2a}.fail,.error{background:#c62828}.s-pass{color:#2a8a2a;font-weight:bold}
.s-fail,.s-error{color:#c62828;font-weight:bold}.s-unavailable,.warn{color:#b36b00}
.s-reference{color:#0a7a8a}.bad{color:#c62828;font-weight:bold}.swatch{display:inline-block;
width:.8em;height:.8em;margin-right:.35em;border-radius:2px;vertical-align:baseline}
.small{font-size:.85em;color:#555}code{background:#f4f4f4;padding:0 .25em}svg{display:block;
margin:.6em 0}"""


def _cell(v: Any, f: str = "{:.2f}", cls: str = "") -> str:
    return f'<td class="{cls}">{"-" if v is None else esc(f.format(v))}</td>'


def emulated_label(entry: EngineEntry) -> str:
    """The same `[emulated <model>: accuracy only]` mark as the terminal table's."""
    em = emulation(entry)
    return f" <i>[{esc(em.label)}]</i>" if em else ""


def results_table(report: EvalReport) -> str:
    golden, tol = report.golden, report.tolerance_map50_95
    ref = report.reference
    head = ["engine", "status", "mAP50-95", "Δ golden"] + (["Δ qdq-ref"] if ref else []) + [
        "mAP50", "mAP75", "S", "M", "L", "lat med ms", "lat P95 ms", "spread", "speed-up",
        "int8 ran/file"]
    rows = []
    for name, e in report.engines.items():
        m, lat = e.metrics, e.latency_ms
        st = e.status
        warn = "warn" if unstable(e) else ""
        cells = [f'<td><span class="swatch" style="background:{engine_colour(name)}"></span>'
                 f'{esc(name)}{" (golden)" if name == golden else ""}'
                 f'{" <b class=bad>DRIFT</b>" if e.golden_drift else ""}'
                 f'{emulated_label(e)}</td>',
                 f'<td class="l s-{esc(st)}">{esc(st)}</td>',
                 _cell(m and m.map50_95, cls="bad" if st in ("fail", "error") else ""),
                 _cell(e.delta_map50_95, "{:+.2f}", "bad" if st == "fail" else "")]
        if ref:
            d = e.delta_vs_qdq_ref
            cells.append(_cell(d, "{:+.2f}", "bad" if d is not None and abs(d) > tol else ""))
        cells += [_cell(m and getattr(m, k))
                  for k in ("map50", "map75", "map_small", "map_medium", "map_large")]
        spread = lat and lat.spread
        cells += [_cell(lat and lat.median, "{:.3f}", warn), _cell(lat and lat.p95, "{:.3f}", warn),
                  _cell(None if spread is None else spread * 100, "{:.0f}%", warn)]
        s, conf = e.speedup_vs_golden, e.speedup_confidence
        cells.append('<td class="warn">noisy</td>' if s is not None and conf == "noisy" else
                     _cell(s, "~{:.2f}x" if conf == "indicative" else "{:.2f}x",
                           "warn" if conf == "indicative" else ""))
        cells.append(_cell(ratio_text(e.census, e.quantized_in_file), "{}",
                           "warn" if mostly_float(name, e) else ""))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ("<div class=scroll><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head)
            + "</tr>" + "".join(rows) + "</table></div>")


def _names(c: dict[str, Any], key: str, count: int) -> str:
    """A census list of names (at most MAX_LISTED kept), and how many more it counted."""
    listed = c.get(key) or []
    more = count - len(listed)
    return (esc(", ".join(listed)) or "-") + (f" … and {more} more" if more > 0 else "")


def census_table(report: EvalReport) -> str:
    """Per engine: the file's quantized ops split by how they ran, the float ops the engine
    quantized itself, what could not be matched; an older census (no split) as it was."""
    rows = []
    for name, e in report.engines.items():
        c = e.census  # free-form: its keys are harness/census.py's
        if not c:
            rows.append(f"<tr><td>{esc(name)}</td><td colspan=7 class=l>no census (engine did not "
                        f"run or does not report one)</td></tr>")
            continue
        q = _or(e.quantized_in_file, "?")
        src = f"<td class=l>{esc(c.get('source', ''))}</td>"
        if has_split(c):
            added, unmatched = c.get("int8_added_by_engine", 0), c.get("unmatched", 0)
            nfloat, unseen = c.get("float_of_quantized", 0), c.get("quantized_not_seen", 0)
            added_cell = f"{added}: {_names(c, 'added_by_engine_ops', added)}" if added else "0"
            unmatched_cell = (f"{unmatched} ({c.get('unmatched_int8', 0)} int8): "
                              f"{_names(c, 'unmatched_ops', unmatched)}" if unmatched else "0")
            if unseen:
                unmatched_cell += f"; {unseen} quantized op(s) of the file not seen"
            rows.append(
                f"<tr><td>{esc(name)}</td><td>{c['int8_of_quantized']} / {q}</td>"
                f"<td class='l small'>{nfloat}: {_names(c, 'float_of_quantized_ops', nfloat)}</td>"
                f"<td class='l small{' warn' if added else ''}'>{added_cell}</td>"
                f"<td class='l small'>{unmatched_cell}</td>"
                f"<td>{c['compute_ops']}</td>{src}</tr>")
        else:
            floats = _names(c, "float_ops", c.get("float_compute_ops", 0))
            rows.append(
                f"<tr><td>{esc(name)}</td><td>{c['int8_compute_ops']} / {q} (every int8 op; "
                f"recorded before the split)</td><td class='l small'>every float op: {floats}</td><td>-</td>"
                f"<td>-</td><td>{c['compute_ops']}</td>{src}</tr>")
    return ("<table><tr><th>engine</th><th>file's quantized ops run in int8 / quantized in file</th>"
            "<th class=l>file's quantized ops run in float</th>"
            "<th class=l>float in the file, int8 as run (quantized by the engine)</th>"
            "<th class=l>unmatched to the file's nodes</th><th>compute ops</th>"
            "<th class=l>source</th></tr>" + "".join(rows) + "</table>")


def _or(v: Any, default: Any) -> Any:
    return default if v is None else v


def run_env(report: EvalReport) -> dict[str, Any]:
    """The environment the page describes (free-form, harness/envinfo.py): the golden engine's,
    else the collector's."""
    g = report.engines.get(report.golden)
    return (g.env if g is not None else None) or report.collector_env or {}


def _kv(d: dict[str, Any]) -> str:
    return "".join(f"<tr><td>{esc(str(k))}</td><td class=l>{esc(str(v))}</td></tr>" for k, v in d.items())


def render(report: EvalReport | dict[str, Any], samples: dict[str, list[float]],
           aps: dict[str, dict[str, float | None]], class_note: str = "") -> str:
    """The page. `report`: the collector's dict (read here as an EvalReport, once) or the
    record; `samples`, `aps`, `class_note`: what latency_samples and class_aps found."""
    report = as_report(report)
    golden, v = report.golden, report.verdict
    model, data, proto = report.model, report.data, report.protocol or {}
    reasons = "".join(f"<li><b>{esc(n)}</b> ({esc(e.status)}): {esc(e.reason)}</li>"
                      for n, e in report.engines.items() if e.reason)
    ref = report.reference
    if ref is not None and ref.golden_drift:
        reasons += f"<li><b class=bad>golden drift</b>: {esc(ref.note)}</li>"
    classes = ""
    if golden in aps:
        plots = [class_plot(golden, aps, n) for n in aps if n != golden]
        classes = "".join(plots) or "<p>Only the golden engine has detections.</p>"
    else:
        classes = f"<p>Per-class AP not available: {esc(class_note or 'the golden engine has none')}.</p>"
    opts = engine_options(report)
    env = run_env(report)
    cpu = env_cpu(env)
    demo = report.demo or {}
    images = "?" if data is None else _or(data.images_evaluated, "?")
    limit = data.limit if data is not None else None
    first_timed = next((e.latency_ms.timed for e in report.engines.values() if e.latency_ms), None)
    model_facts = {"model": "path", "model md5": "md5", "md5 record": "md5_file_check"}
    data_facts = {"image list sha256": "image_list_sha256", "annotations": "annotations"}
    baseline = ("baseline run (the locked protocol)" if proto.get("baseline", True) else
                f"<b class=bad>NOT a baseline run</b>: overrides {esc(json.dumps(proto.get('overrides')))}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>qparity report: {esc(v)}</title><style>{STYLE}</style></head><body>
<h1>qparity report <span class="verdict {esc(v)}">{esc(v)}</span></h1>
<p>Verdict <b>{esc(v)}</b>, exit code {report.exit_code}: {esc(verdict_sentence(report))}
Golden engine <b>{esc(golden)}</b>, tolerance ±{report.tolerance_map50_95} mAP50-95 points;
{images} images{f" (--limit {limit})" if limit else ''};
{baseline}. Written {esc(str(report.created))}.</p>
{f'<ul>{reasons}</ul>' if reasons else ''}
{results_table(report)}
<p class=small>{'<br>'.join(esc(line) for line in legend(report, wide=True))}</p>
{f"<p>fp32 model on {esc(golden)}: mAP50-95 {demo['fp32_map50_95']:.2f} (what quantization cost); demo wall time {demo.get('wall_s')} s.</p>" if demo.get('fp32_map50_95') is not None else ''}
<h2>Accuracy</h2>
{map_plot(report)}
<h2>Classes that moved most against {esc(golden)}</h2>
{classes}
<h2>Latency</h2>
<p class=small>Every timed sample is a dot; the box spans the quartiles, the thick line is the
median, the whiskers reach P5 and P95. What one sample covers: {esc(str(first_timed or '-'))}.
An engine whose P95 is more than {SPREAD_THRESHOLD:.0%} above its median is marked unstable: its
speed-up is shown as indicative (~) or, where a rerun could put it on the other side of 1.0, as
"noisy".</p>
{latency_plot(report, samples)}
<h2>Executed precision (census)</h2>
{census_table(report)}
<h2>Settings and environment</h2>
<table>{_kv({f"{n} settings": o for n, o in opts.items()})}
{_kv({f"{n} not at default": o for n, o in non_default_options(report).items()})}
{_kv({**{k: _or(model and getattr(model, f), '-') for k, f in model_facts.items()},
      **{k: _or(data and getattr(data, f), '-') for k, f in data_facts.items()},
      "protocol": proto.get('version', '-'),
      "CPU": cpu.get('model', '-'), "visible CPUs": cpu.get('visible_cpus', '-'),
      "OS": env.get('os', '-'),
      "libraries": ", ".join(f"{k} {v}" for k, v in (env.get('libraries') or {}).items() if v)})}
</table>
<p class=small>Everything on this page comes from the files beside it (eval_report.json, one
&lt;engine&gt;.json per engine with the raw latency samples and the per-class AP).</p>
</body></html>
"""


def verdict_sentence(report: EvalReport) -> str:
    v = report.verdict
    if v == "pass":
        return "every engine that ran is within the tolerance of the golden engine."
    if v == "fail":
        failed = [n for n, e in report.engines.items() if e.status == "fail"]
        return f"{', '.join(failed)} outside the tolerance of the golden engine."
    return "an engine could not run or its result could not be judged (see the reasons)."


def write_report_html(out: Path, report: EvalReport | dict[str, Any]) -> Path:
    """`<out>/report.html` for this report (the collector's dict or the record) and the files
    beside it."""
    out = Path(out)
    report = as_report(report)
    results = engine_results(out, list(report.engines))
    samples = latency_samples(out, list(report.engines), results)
    aps, why = class_aps(out, report, results)
    page = render(report, samples, aps, why)
    path = out / HTML_NAME
    write_atomic(path, page.encode("utf-8"))
    return path


def try_write_html(out: Path, report: EvalReport | dict[str, Any],
                   console: Any = None) -> Path | None:
    """Write the page; a failure costs the page (with a warning), never the run's verdict."""
    try:
        return write_report_html(out, report)
    except Exception as e:
        if console is not None:
            console.print(f"[yellow]warning:[/] report.html not written ({type(e).__name__}: "
                          f"{e})", highlight=False)
        return None
