"""`qparity history`: the command line over the store, the trend, its tables and its page."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..options import split_kv
from ..records.nightly import NIGHTLY_REPORT, read_nightly_report
from .ingest import ingest_folder, ingest_nightly
from .render import print_history
from .store import DEFAULT_STORE, HistoryStore
from .trend import POLICY, analyse, news


def cmd_history(args: argparse.Namespace) -> int:
    store_path = Path(args.store)
    nightlies = [Path(f) for f in args.add_nightly or []]
    for folder in nightlies:  # every report readable before anything is appended
        read_nightly_report(folder / NIGHTLY_REPORT)
    for folder in nightlies:
        ingest_nightly(store_path, folder, args.run_id, args.date)
    for spec in args.add or []:
        name, folder = split_kv(spec, "--add", "PLATFORM=DIR")
        ingest_folder(store_path, name, Path(folder), args.run_id, args.date)
    with HistoryStore(store_path, create=False) as store:
        rows = store.rows(args.platform, args.engine)
        nightlies = store.nightlies()
    trend = analyse(rows)
    print_history(trend, args.last)
    if args.html:
        from .html import write_html

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
    p.add_argument("--add-nightly", action="append", metavar="NIGHTLY_DIR",
                   help="first append a nightly's --out folder (nightly_report.json and "
                        "platforms/, e.g. a downloaded qparity-nightly artifact) as its run "
                        "(repeatable)")
    p.add_argument("--run-id", help="run id for --add (default: local-<date>) and --add-nightly "
                                    "(default: the nightly's)")
    p.add_argument("--date", help="ISO date-time for --add (default: now, UTC) and --add-nightly "
                                  "(default: the nightly's)")
    p.set_defaults(func=cmd_history)
