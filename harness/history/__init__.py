"""The history of every collected run, and what changed since (`qparity history`).

- `store`: the SQLite store (one row per run x platform x engine) and the row layout.
- `trend`: the judgement per platform x engine series (accuracy changes, latency regressions).
- `ingest`: a results folder or a whole nightly into the store.
- `render`: the terminal tables; `html`: the self-contained page of plots (plotly).
- `command`: `qparity history`.

The names below are the ones readers of the history have always imported from
`harness.history`; new code imports from the module that does the job.
"""

from .command import cmd_history, register
from .ingest import append_nightly, ingest_folder, ingest_nightly
from .render import print_history, trend_tables
from .store import (COLUMNS, DEFAULT_STORE, STORE_SCHEMA, HistoryStore, compact_env, host_of,
                    result_row, utc_now)
from .trend import POLICY, Point, TrendPolicy, analyse, analyse_series, news

__all__ = ["COLUMNS", "DEFAULT_STORE", "POLICY", "STORE_SCHEMA", "HistoryStore", "Point",
           "TrendPolicy", "analyse", "analyse_series", "append_nightly", "cmd_history",
           "compact_env", "host_of", "ingest_folder", "ingest_nightly", "news", "print_history", "register",
           "result_row", "trend_tables", "utc_now"]
