"""`qparity nightly`: the command line over the judgement (`judge`), its rendering (`render`)
and the history append (`harness.history.ingest`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..fileio import write_json_atomic
from ..records.nightly import News, NightlyHistory
from .judge import NIGHTLY_REPORT, NIGHTLY_SUMMARY, nightly, platform_folders
from .render import print_nightly, summary_markdown


def default_run_id(date: str) -> str:
    gh = os.environ.get("GITHUB_RUN_ID")
    return f"gh-{gh}" if gh else f"local-{date}"


def cmd_nightly(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..history.ingest import append_nightly
    from ..history.store import DEFAULT_STORE, HistoryStore, utc_now
    from ..history.trend import analyse, news

    date = args.date or utc_now()
    run_id = args.run_id or default_run_id(date)
    expected = [p.strip() for p in (args.expected or "").split(",") if p.strip()]
    report = nightly(platform_folders(args.platforms), Path(args.out), expected,
                     args.reference, args.golden_drift, run_id, date)
    print_nightly(report)
    out = Path(args.out)
    (out / NIGHTLY_SUMMARY).write_text(summary_markdown(report))
    err = Console(stderr=True)
    if not args.no_history:
        store_path = Path(args.history or DEFAULT_STORE)
        append_nightly(store_path, report, out, run_id, date)
        with HistoryStore(store_path) as store:
            trend = analyse(store.rows())
        found = news(trend, run_id)
        report.history = NightlyHistory(store=str(store_path), run_id=run_id,
                                        news=[News.from_json(n, "news") for n in found])
        write_json_atomic(out / NIGHTLY_REPORT, report.to_json())
        if found:
            from ..report import wide_console

            c = wide_console()
            for n in found:
                for note in n["notes"]:
                    c.print(f"[bold magenta]history[/] {n['platform']}/{n['engine']}: {note}",
                            highlight=False)
        err.print(f"history: {len(report.platforms)} platform(s) of run {run_id} appended to "
                  f"{store_path}", highlight=False)
    err.print(f"report: {out / NIGHTLY_REPORT}", highlight=False)
    return report.exit_code


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "nightly", help="one verdict over every platform's results folder (engines x platforms), "
                        "then append them to the history store")
    p.add_argument("--platforms", nargs="*", default=[], metavar="[NAME=]DIR",
                   help="one results folder per platform; NAME defaults to the folder's "
                        "platform.json, else the folder name")
    p.add_argument("--expected", help="comma-separated platforms that should have results; one "
                                      "without a folder, or with an empty one, is `missing`")
    p.add_argument("--reference", help="platform whose golden run the others' goldens are judged "
                                       "against (default: the first expected platform)")
    p.add_argument("--golden-drift", choices=["fail", "warn"], default="fail",
                   help="a golden drift fails the nightly (default) or is only reported")
    p.add_argument("--out", required=True, help="folder for nightly_report.json, the summary and "
                                                "each platform's re-collected report")
    p.add_argument("--history", metavar="PATH", help="history store (results/history.sqlite)")
    p.add_argument("--no-history", action="store_true", help="do not append to the history")
    p.add_argument("--run-id", help="run id in the history (default gh-$GITHUB_RUN_ID, or "
                                    "local-<date>); a second append of the same id replaces it")
    p.add_argument("--date", help="ISO date-time of the run (default: now, UTC)")
    p.set_defaults(func=cmd_nightly)
