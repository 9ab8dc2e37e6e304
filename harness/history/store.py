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
from typing import Any

from ..errors import QParityError

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


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
