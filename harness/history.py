"""The history store and `qparity history`: every collected run, and what changed since.

Store: one SQLite file (standard library `sqlite3`, default `results/history.sqlite`), one row per
run x platform x engine. SQLite rather than JSON lines because an append is one transaction (an
interrupted nightly leaves no half row), re-ingesting the same run replaces its rows instead of
doubling them (UNIQUE(run_id, platform, engine)), and "the last N runs of this platform and
engine" or "the 7 runs before this one" are indexed queries instead of re-reading every line.
Raw latency samples are kept as a JSON array per row, readable with the sqlite3 shell's JSON
functions.

Trend marks, judged per series (platform x engine), never across platforms, since timings from
different machines are not comparable:
- accuracy change: mAP50-95 differs from the previous run of the same series on the same model
  file, data and protocol. For a deterministic evaluator any change is news, and for the golden
  engine it moves the gate of every other engine.
- latency regression: median above the rolling median of the previous `window` runs of the
  same series (same model file, machine and protocol) by more than `latency_threshold`.
The policy is `POLICY`, below: the one place its numbers live.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from .errors import QParityError
# the judgement lives in history_trend (history_html needs it without this module: no cycle);
# re-exported, the names readers of the history have always imported from here
from .history_trend import (POLICY, Point, TrendPolicy, analyse, analyse_series,  # noqa: F401
                            news)
from .options import split_kv

DEFAULT_STORE = Path("results") / "history.sqlite"
STORE_SCHEMA = 1

_COLUMNS = (
    ("run_id", "TEXT NOT NULL"), ("date", "TEXT NOT NULL"), ("platform", "TEXT NOT NULL"),
    ("engine", "TEXT NOT NULL"), ("status", "TEXT NOT NULL"), ("reason", "TEXT"),
    ("is_golden", "INTEGER NOT NULL"), ("golden", "TEXT"),
    ("model_sha256", "TEXT"), ("image_list_sha256", "TEXT"), ("annotations_sha256", "TEXT"),
    ("images_evaluated", "INTEGER"), ("protocol_overrides", "TEXT"),
    ("harness_commit", "TEXT"), ("harness_dirty", "INTEGER"),
    ("engine_library", "TEXT"), ("engine_version", "TEXT"), ("host", "TEXT"),
    ("map50_95", "REAL"), ("map50", "REAL"), ("map_small", "REAL"), ("map_medium", "REAL"),
    ("map_large", "REAL"), ("delta_map50_95", "REAL"), ("tolerance_map50_95", "REAL"),
    ("lat_median", "REAL"), ("lat_p95", "REAL"), ("lat_p99", "REAL"), ("lat_mean", "REAL"),
    ("lat_stdev", "REAL"), ("lat_min", "REAL"), ("lat_max", "REAL"), ("lat_n", "INTEGER"),
    ("lat_timed", "TEXT"), ("samples_ms", "TEXT"), ("env", "TEXT"),
)
COLUMNS = tuple(name for name, _ in _COLUMNS)
_DDL = f"""
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    {", ".join(f"{n} {t}" for n, t in _COLUMNS)},
    UNIQUE (run_id, platform, engine)
);
CREATE INDEX IF NOT EXISTS results_series ON results (platform, engine, date);
CREATE TABLE IF NOT EXISTS nightlies (
    run_id TEXT PRIMARY KEY, date TEXT NOT NULL, verdict TEXT NOT NULL, exit_code INTEGER NOT NULL,
    reference_platform TEXT, summary TEXT
);
"""


def host_of(env: dict[str, Any] | None) -> str:
    """What decides whether two timings are comparable: the CPU, the CPUs granted, the GPUs."""
    env = env or {}
    cpu = env.get("cpu") or {}
    gpus = "+".join(g.get("name", "?") for g in env.get("gpus") or []) or "no GPU"
    return f"{cpu.get('model') or '?'} x{cpu.get('visible_cpus') or '?'} / {gpus}"


def compact_env(env: dict[str, Any] | None) -> dict[str, Any]:
    env = env or {}
    return {k: env.get(k) for k in ("os", "python", "hostname", "cpu", "gpus", "libraries")}


class HistoryStore:
    """`with HistoryStore(path) as h: h.append(...)`; every append is one transaction."""

    def __init__(self, path: Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise QParityError("no history store here (a nightly creates it)", self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, STORE_SCHEMA):
                raise QParityError(f"history store schema {version}, this qparity reads "
                                   f"{STORE_SCHEMA}", self.path)
            with self.db:
                self.db.executescript(_DDL)
                self.db.execute(f"PRAGMA user_version = {STORE_SCHEMA}")
        except sqlite3.DatabaseError as e:
            raise QParityError(f"not a readable history store ({e})", self.path) from e
        self.db.row_factory = sqlite3.Row

    def __enter__(self) -> "HistoryStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def append_platform(self, run_id: str, date: str, platform: str,
                        results: dict[str, dict[str, Any]],
                        report: dict[str, Any] | None = None) -> int:
        """Append one platform's engine results (`<engine>.json`, with raw samples) and, when
        given, the collector's verdict on each (its `eval_report.json`). Returns rows written."""
        rows = [result_row(run_id, date, platform, name, r, report) for name, r in results.items()]
        with self.db:
            self.db.execute("DELETE FROM results WHERE run_id = ? AND platform = ?", (run_id, platform))
            self.db.executemany(
                f"INSERT INTO results ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [tuple(row[c] for c in COLUMNS) for row in rows])
        return len(rows)

    def record_nightly(self, run_id: str, date: str, verdict: str, exit_code: int,
                       reference_platform: str | None, summary: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO nightlies VALUES (?, ?, ?, ?, ?, ?)",
                            (run_id, date, verdict, exit_code, reference_platform,
                             json.dumps(summary, default=str)))

    def rows(self, platform: str | None = None, engine: str | None = None) -> list[dict[str, Any]]:
        q, args = "SELECT * FROM results", []
        where = [(c, v) for c, v in (("platform", platform), ("engine", engine)) if v]
        if where:
            q += " WHERE " + " AND ".join(f"{c} = ?" for c, _ in where)
            args = [v for _, v in where]
        out = []
        for r in self.db.execute(q + " ORDER BY date, id", args):
            d = dict(r)
            for key in ("samples_ms", "env", "protocol_overrides"):
                d[key] = json.loads(d[key]) if d[key] else None
            out.append(d)
        return out

    def nightlies(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM nightlies ORDER BY date, run_id")]


def result_row(run_id: str, date: str, platform: str, name: str, r: dict[str, Any],
               report: dict[str, Any] | None) -> dict[str, Any]:
    entry = ((report or {}).get("engines") or {}).get(name) or {}
    m = r.get("metrics") or {}
    lat = r.get("latency_ms") or {}
    info = r.get("engine_info") or {}
    env = r.get("env") or {}
    proto = r.get("protocol") or {}
    golden = (report or {}).get("golden") or proto.get("golden")
    return {
        "run_id": run_id, "date": date, "platform": platform, "engine": name,
        "status": entry.get("status") or r.get("status", "error"),
        "reason": entry.get("reason") or r.get("reason") or "",
        "is_golden": int(name == golden), "golden": golden,
        "model_sha256": (r.get("model") or {}).get("sha256"),
        "image_list_sha256": (r.get("data") or {}).get("image_list_sha256"),
        "annotations_sha256": (r.get("data") or {}).get("annotations_sha256"),
        "images_evaluated": (r.get("data") or {}).get("images_evaluated"),
        "protocol_overrides": json.dumps(proto.get("overrides") or {}, sort_keys=True),
        "harness_commit": (env.get("harness") or {}).get("commit"),
        "harness_dirty": (env.get("harness") or {}).get("dirty"),
        "engine_library": info.get("library"), "engine_version": info.get("version"),
        "host": host_of(env),
        "map50_95": m.get("map50_95"), "map50": m.get("map50"), "map_small": m.get("map_small"),
        "map_medium": m.get("map_medium"), "map_large": m.get("map_large"),
        "delta_map50_95": entry.get("delta_map50_95"),
        "tolerance_map50_95": (report or {}).get("tolerance_map50_95", proto.get("tolerance_map50_95")),
        "lat_median": lat.get("median"), "lat_p95": lat.get("p95"), "lat_p99": lat.get("p99"),
        "lat_mean": lat.get("mean"), "lat_stdev": lat.get("stdev"), "lat_min": lat.get("min"),
        "lat_max": lat.get("max"), "lat_n": lat.get("n"), "lat_timed": lat.get("timed"),
        "samples_ms": json.dumps(lat.get("samples_ms")) if lat.get("samples_ms") else None,
        "env": json.dumps(compact_env(env), default=str),
    }


# ------------------------------------------------------------------------------ the command

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
    from .report import wide_console

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


def cmd_history(args: argparse.Namespace) -> int:
    store_path = Path(args.store)
    for spec in args.add or []:
        name, folder = split_kv(spec, "--add", "PLATFORM=DIR")
        ingest_folder(store_path, name, Path(folder), args.run_id, args.date)
    with HistoryStore(store_path, create=False) as store:
        rows = store.rows(args.platform, args.engine)
        nightlies = store.nightlies()
    trend = analyse(rows)
    print_history(trend, args.last)
    if args.html:
        from .history_html import write_html

        write_html(Path(args.html), trend, args.last, nightlies)
        from rich.console import Console

        Console(stderr=True).print(f"page: {args.html}", highlight=False)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"policy": POLICY.__dict__, "news": news(trend),
             "series": [{"platform": p, "engine": e,
                         "points": [{**{k: v for k, v in q.row.items() if k not in ("samples_ms", "env")},
                                     "marks": q.marks, "notes": q.notes,
                                     "rolling_median": q.rolling_median} for q in pts[-args.last:]]}
                        for (p, e), pts in trend.items()]}, indent=1, default=str) + "\n")
    return 0


def ingest_folder(store_path: Path, platform: str, folder: Path, run_id: str | None = None,
                  date: str | None = None) -> int:
    """Append one collected results folder (engine files + eval_report.json) as one run."""
    from .collector import REPORT_NAME, load_results

    results = load_results(folder)
    report_file = folder / REPORT_NAME
    report = json.loads(report_file.read_text()) if report_file.is_file() else None
    date = date or utc_now()
    run_id = run_id or f"local-{date}"
    with HistoryStore(store_path) as store:
        return store.append_platform(run_id, date, platform, results, report)


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("history", help="trend per platform and engine from the history "
                                              "store: accuracy changes, latency regressions")
    p.add_argument("--store", default=str(DEFAULT_STORE), help="history store (SQLite)")
    p.add_argument("--last", type=int, default=14, help="show the last N runs of each series")
    p.add_argument("--platform", help="only this platform")
    p.add_argument("--engine", help="only this engine")
    p.add_argument("--html", metavar="OUT.html", help="also write a self-contained page with "
                                                      "plots (needs plotly: pip install -e "
                                                      "'.[history]')")
    p.add_argument("--json", metavar="OUT.json", help="also write the trend and its marks as JSON")
    p.add_argument("--add", action="append", metavar="PLATFORM=DIR",
                   help="first append a collected results folder as a run of PLATFORM (repeatable)")
    p.add_argument("--run-id", help="run id for --add (default: local-<date>)")
    p.add_argument("--date", help="ISO date-time for --add (default: now, UTC)")
    p.set_defaults(func=cmd_history)
