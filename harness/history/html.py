"""`qparity history --html`: one self-contained page of plots from the history store.

Plotly draws them; its JavaScript is embedded once in the page (no CDN, so the page opens from
an artifact download or an air-gapped share). Latency is plotted per platform only, since
timings from different machines are not comparable; accuracy is compared across platforms.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from ..errors import QParityError
from ..palette import engine_colour  # the same colour per engine as on the run's report.html
from .trend import POLICY, Point, news

Series = dict[tuple[str, str], list[Point]]


def _plotly():
    try:
        import plotly.graph_objects as go
    except ImportError as e:
        raise QParityError("the history page needs plotly: pip install 'qparity[history]' "
                           f"(or plotly>=5) ({e})") from e
    return go


def label(platform: str, engine: str) -> str:
    return f"{platform}/{engine}"


def _dates(points: list[Point]) -> list[str]:
    return [p.row["date"][:16].replace("T", " ") for p in points]


def latency_figures(trend: Series, last: int) -> list[tuple[str, Any]]:
    """Per platform: raw-sample distributions of the latest run, per run, and the trend."""
    go = _plotly()
    figs = []
    for platform in sorted({p for p, _ in trend}):
        series = {e: pts[-last:] for (p, e), pts in trend.items() if p == platform}
        latest = go.Figure()
        over_runs = go.Figure()
        lines = go.Figure()
        for engine, pts in series.items():
            name = label(platform, engine)
            timed = [p for p in pts if p.row.get("samples_ms")]
            if timed:
                last_p = timed[-1]
                latest.add_trace(go.Violin(y=last_p.row["samples_ms"], name=name, box_visible=True,
                                           meanline_visible=True, points=False,
                                           line_color=engine_colour(engine)))
                xs, ys = [], []
                for p, d in zip(timed, _dates(timed)):
                    xs += [d] * len(p.row["samples_ms"])
                    ys += p.row["samples_ms"]
                over_runs.add_trace(go.Box(x=xs, y=ys, name=name, boxpoints=False,
                                           marker_color=engine_colour(engine)))
            med = [p for p in pts if p.row["lat_median"] is not None]
            if med:
                d = _dates(med)
                lines.add_trace(go.Scatter(x=d, y=[p.row["lat_median"] for p in med],
                                           mode="lines+markers", name=f"{name} median",
                                           line_color=engine_colour(engine)))
                lines.add_trace(go.Scatter(x=d, y=[p.row["lat_p95"] for p in med], mode="lines",
                                           line={"dash": "dash"}, name=f"{name} P95",
                                           line_color=engine_colour(engine)))
                roll = [p for p in med if p.rolling_median is not None]
                if roll:
                    lines.add_trace(go.Scatter(
                        x=_dates(roll),
                        y=[p.rolling_median * (1 + POLICY.latency_threshold) for p in roll],
                        mode="lines", line={"dash": "dot", "width": 1},
                        name=f"{name} regression line"))
                reg = [p for p in med if p.regression is not None]
                if reg:
                    lines.add_trace(go.Scatter(
                        x=_dates(reg), y=[p.row["lat_median"] for p in reg], mode="markers",
                        marker={"symbol": "x", "size": 14, "color": "red"},
                        name=f"{name} latency regression",
                        text=[n for p in reg for n in p.notes if n.startswith("latency")],
                        hoverinfo="text+y"))
        latest.update_layout(title=f"{platform}: latency distribution of the latest run (raw "
                                   f"samples, ms)", yaxis_title="ms", showlegend=True)
        over_runs.update_layout(title=f"{platform}: latency samples per run (ms)", boxmode="group",
                                yaxis_title="ms")
        lines.update_layout(title=f"{platform}: latency median and P95 per run (ms); regression "
                                  f"line = rolling median of the previous {POLICY.window} runs "
                                  f"x {1 + POLICY.latency_threshold:.2f}", yaxis_title="ms")
        figs += [(f"{platform}-latency-latest", latest), (f"{platform}-latency-runs", over_runs),
                 (f"{platform}-latency-trend", lines)]
    return figs


def accuracy_figures(trend: Series, last: int, reference: dict[str, str]) -> list[tuple[str, Any]]:
    """mAP50-95 per series over time, and the deltas that the gates judge, against the band."""
    go = _plotly()
    maps, deltas = go.Figure(), go.Figure()
    tolerance = None
    for (platform, engine), pts in trend.items():
        pts = [p for p in pts[-last:] if p.row["map50_95"] is not None]
        if not pts:
            continue
        name = label(platform, engine)
        tolerance = tolerance or pts[-1].row["tolerance_map50_95"]
        maps.add_trace(go.Scatter(x=_dates(pts), y=[p.row["map50_95"] for p in pts],
                                  mode="lines+markers", name=name, line_color=engine_colour(engine)))
        changed = [p for p in pts if p.accuracy_change is not None]
        if changed:
            maps.add_trace(go.Scatter(x=_dates(changed), y=[p.row["map50_95"] for p in changed],
                                      mode="markers", name=f"{name} accuracy change",
                                      marker={"symbol": "star", "size": 14, "color": "magenta"},
                                      text=[p.notes[0] for p in changed], hoverinfo="text+y"))
        if not pts[-1].row["is_golden"]:
            d = [p for p in pts if p.row["delta_map50_95"] is not None]
            if d:
                deltas.add_trace(go.Scatter(x=_dates(d), y=[p.row["delta_map50_95"] for p in d],
                                            mode="lines+markers", name=f"{name} Δ golden",
                                            line_color=engine_colour(engine)))
    # each platform's golden against the reference platform's golden of the same run
    goldens = {k: pts for k, pts in trend.items() if pts and pts[-1].row["is_golden"]}
    by_run: dict[str, dict[str, Point]] = {}
    for (platform, _), pts in goldens.items():
        for p in pts:
            by_run.setdefault(p.row["run_id"], {})[platform] = p
    for (platform, engine), pts in goldens.items():
        xs, ys, refs = [], [], set()
        for p in pts[-last:]:
            ref = reference.get(p.row["run_id"])
            other = by_run.get(p.row["run_id"], {}).get(ref) if ref else None
            if ref == platform or other is None or p.row["map50_95"] is None \
                    or other.row["map50_95"] is None \
                    or other.row["model_sha256"] != p.row["model_sha256"]:
                continue
            xs.append(p.row["date"][:16].replace("T", " "))
            ys.append(round(p.row["map50_95"] - other.row["map50_95"], 4))
            refs.add(ref)
        if xs:
            deltas.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers",
                                        line={"dash": "dash"},
                                        name=f"{label(platform, engine)} golden Δ ref "
                                             f"{'/'.join(sorted(refs))}"))
    if tolerance is not None:
        deltas.add_hrect(y0=-tolerance, y1=tolerance, fillcolor="green", opacity=0.12,
                         line_width=0, annotation_text=f"tolerance ±{tolerance}",
                         annotation_position="top left")
    maps.update_layout(title="mAP50-95 per platform and engine (stars: accuracy changes)",
                       yaxis_title="mAP50-95 (points)")
    deltas.update_layout(title="mAP50-95 deltas the gates judge: engine vs its platform's golden, "
                               "and each golden vs the reference platform's golden (band: "
                               "tolerance)", yaxis_title="Δ mAP50-95 (points)")
    return [("accuracy-trend", maps), ("accuracy-deltas", deltas)]


def render(trend: Series, last: int, nightlies: list[dict[str, Any]] | None = None,
           title: str = "qparity history") -> str:
    nightlies = nightlies or []
    reference = {n["run_id"]: n["reference_platform"] for n in nightlies}
    figs = accuracy_figures(trend, last, reference) + latency_figures(trend, last)
    parts = []
    for i, (fid, fig) in enumerate(figs):
        fig.update_layout(height=460, margin={"t": 60, "b": 40}, legend={"orientation": "v"})
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=fid))
    items = []
    for n in news(trend):
        for note in n["notes"]:
            items.append(f"<li><b>{html.escape(label(n['platform'], n['engine']))}</b> "
                         f"{html.escape(n['date'][:10])}: {html.escape(note)}</li>")
    runs = "".join(
        f"<tr><td>{html.escape(n['date'][:16])}</td><td>{html.escape(n['run_id'])}</td>"
        f"<td class='{html.escape(n['verdict'])}'>{html.escape(n['verdict'])}</td>"
        f"<td>{html.escape(str(n['reference_platform']))}</td></tr>"
        for n in reversed(nightlies[-last:]))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1400px}}
td,th{{padding:2px 10px;text-align:left}} .pass{{color:green}} .fail,.error{{color:#c00}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>Generated {html.escape(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}; the last {last} runs of
{len(trend)} platform/engine series. Latency regression: median more than
{POLICY.latency_threshold:.0%} above the rolling median of the previous {POLICY.window} runs of
the same platform, engine, model and machine (at least {POLICY.min_history} of them).</p>
<h2>Latest runs: what changed</h2>
<ul>{''.join(items) or '<li>no accuracy change, no latency regression</li>'}</ul>
{'<h2>Nightly verdicts</h2><table><tr><th>date</th><th>run</th><th>verdict</th><th>reference platform</th></tr>' + runs + '</table>' if runs else ''}
<h2>Plots</h2>
{''.join(parts)}
</body></html>
"""


def write_html(path: Path, trend: Series, last: int,
               nightlies: list[dict[str, Any]] | None = None) -> Path:
    page = render(trend, last, nightlies)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
