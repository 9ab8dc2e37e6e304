"""Into the history store: a collected results folder (`qparity history --add`), or every
platform of a nightly (`qparity nightly`), each as one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..collector import REPORT_NAME, load_results
from .store import HistoryStore, utc_now


def ingest_folder(store_path: Path, platform: str, folder: Path, run_id: str | None = None,
                  date: str | None = None) -> int:
    """Append one collected results folder (engine files + eval_report.json) as one run."""
    results = load_results(folder)
    report_file = folder / REPORT_NAME
    report = json.loads(report_file.read_text()) if report_file.is_file() else None
    date = date or utc_now()
    run_id = run_id or f"local-{date}"
    with HistoryStore(store_path) as store:
        return store.append_platform(run_id, date, platform, results, report)


def append_nightly(store_path: Path, report: dict[str, Any], out: Path, run_id: str,
                   date: str) -> None:
    """Append every usable platform of a nightly (its re-collected folder under `out`) as one
    run, and the nightly's verdict."""
    with HistoryStore(store_path) as store:
        for name, p in report["platforms"].items():
            if p["status"] != "ok":
                continue
            work = out / "platforms" / name
            collected = json.loads((work / REPORT_NAME).read_text())
            for e, entry in p["engines"].items():  # keep the nightly's "missing" cells too
                collected["engines"].setdefault(e, entry)
            results = load_results(work)
            for e, entry in collected["engines"].items():
                results.setdefault(e, {"engine": e, "status": entry["status"],
                                       "reason": entry.get("reason", "")})
            store.append_platform(run_id, date, name, results, collected)
        store.record_nightly(run_id, date, report["verdict"], report["exit_code"],
                             report["reference_platform"],
                             {n: {"status": p["status"], "verdict": p["verdict"]}
                              for n, p in report["platforms"].items()}
                             | {"findings": report["findings"]})
