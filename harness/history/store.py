"""The history store: one SQLite file (standard library `sqlite3`, default
`results/history.sqlite`), one row per run x platform x engine.

SQLite rather than JSON lines because an append is one transaction (an interrupted nightly
leaves no half row), re-ingesting the same run replaces its rows instead of doubling them
(UNIQUE(run_id, platform, engine)), and "the last N runs of this platform and engine" or "the 7
runs before this one" are indexed queries instead of re-reading every line. Raw latency samples
are kept as a JSON array per row, readable with the sqlite3 shell's JSON functions.
Storage only: the judgement is `trend`, the tables `render`, the page `html`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Mapping

from ..errors import QParityError
from ..records.base import dig
from ..records.nightly import EngineCell
from ..records.report import EngineEntry, EvalReport
from ..records.result import EngineResult

# The report's verdict on an engine: the collector's entry, or the nightly's cell for an engine
# its platform's profile runs but that left no result ("missing").
Entry = EngineEntry | EngineCell

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
    gpus = "+".join(g.get("name", "?") for g in dig(env, "gpus") or []) or "no GPU"
    return f"{dig(env, 'cpu', 'model') or '?'} x{dig(env, 'cpu', 'visible_cpus') or '?'} / {gpus}"


def compact_env(env: dict[str, Any] | None) -> dict[str, Any]:
    return {k: dig(env, k) for k in ("os", "python", "hostname", "cpu", "gpus", "libraries")}


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
                        results: Mapping[str, EngineResult | None],
                        report: EvalReport | None = None,
                        entries: Mapping[str, Entry] | None = None) -> int:
        """Append one platform's engine results (`<engine>.json`, with raw samples; None for an
        engine that left none) and, when given, the collector's verdict on each (its
        `eval_report.json`, or `entries`: the report's, with the nightly's own cells beside
        them). Returns rows written."""
        if entries is None:
            entries = report.engines if report is not None else {}
        rows = [result_row(run_id, date, platform, name, r, report, entries.get(name))
                for name, r in results.items()]
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


def result_row(run_id: str, date: str, platform: str, name: str,
               r: EngineResult | dict[str, Any] | None,
               report: EvalReport | dict[str, Any] | None,
               entry: Entry | None = None) -> dict[str, Any]:
    """One engine's row: its result (a record, or the file's JSON; None when it left none)
    and the report's verdict on it (`entry`, by default the report's entry for `name`)."""
    if isinstance(r, dict):
        r = EngineResult.from_json(r)
    if isinstance(report, dict):
        report = EvalReport.from_json(report)
    if entry is None and report is not None:
        entry = report.engines.get(name)
    m, lat = (r.metrics, r.latency_ms) if r else (None, None)
    model, data = (r.model, r.data) if r else (None, None)
    env, info, proto = (r.env, r.engine_info, r.protocol) if r else (None, None, None)  # free-form
    golden = report.golden if report else dig(proto, "golden")

    def fig(section: Any, key: str) -> Any:
        return None if section is None else getattr(section, key)

    return {
        "run_id": run_id, "date": date, "platform": platform, "engine": name,
        "status": (entry.status if entry else None) or (r.status if r else "error"),
        "reason": (entry.reason if entry else None) or (r.reason if r else None) or "",
        "is_golden": int(name == golden), "golden": golden,
        "model_sha256": fig(model, "sha256"),
        "image_list_sha256": fig(data, "image_list_sha256"),
        "annotations_sha256": fig(data, "annotations_sha256"),
        "images_evaluated": fig(data, "images_evaluated"),
        "protocol_overrides": json.dumps(dig(proto, "overrides") or {}, sort_keys=True),
        "harness_commit": dig(env, "harness", "commit"),
        "harness_dirty": dig(env, "harness", "dirty"),
        "engine_library": dig(info, "library"),
        "engine_version": dig(info, "version"),
        "host": host_of(env),
        "map50_95": fig(m, "map50_95"), "map50": fig(m, "map50"), "map_small": fig(m, "map_small"),
        "map_medium": fig(m, "map_medium"), "map_large": fig(m, "map_large"),
        "delta_map50_95": entry.delta_map50_95 if entry else None,
        "tolerance_map50_95": report.tolerance_map50_95 if report
        else dig(proto, "tolerance_map50_95"),
        "lat_median": fig(lat, "median"), "lat_p95": fig(lat, "p95"), "lat_p99": fig(lat, "p99"),
        "lat_mean": fig(lat, "mean"), "lat_stdev": fig(lat, "stdev"), "lat_min": fig(lat, "min"),
        "lat_max": fig(lat, "max"), "lat_n": fig(lat, "n"), "lat_timed": fig(lat, "timed"),
        "samples_ms": json.dumps(lat.samples_ms) if lat and lat.samples_ms else None,
        "env": json.dumps(compact_env(env), default=str),
    }


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
