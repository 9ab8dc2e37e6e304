"""Into the history store: a collected results folder (`qparity history --add`), or every
platform of a nightly (`qparity nightly`, `qparity history --add-nightly`), each as one run."""

from __future__ import annotations

from pathlib import Path

from ..collector import load_records
from ..errors import QParityError
from ..records.report import REPORT_NAME, read_report_record
from ..records.nightly import NIGHTLY_REPORT, NightlyReport, read_nightly_report
from ..records.result import EngineResult
from .store import Entry, HistoryStore, utc_now


def ingest_folder(store_path: Path, platform: str, folder: Path, run_id: str | None = None,
                  date: str | None = None) -> int:
    """Append one collected results folder (engine files + eval_report.json) as one run."""
    results = load_records(folder)
    report_file = folder / REPORT_NAME
    report = read_report_record(report_file) if report_file.is_file() else None
    date = date or utc_now()
    run_id = run_id or f"local-{date}"
    with HistoryStore(store_path) as store:
        return store.append_platform(run_id, date, platform, results, report)


def ingest_nightly(store_path: Path, folder: Path, run_id: str | None = None,
                   date: str | None = None) -> NightlyReport:
    """Append a nightly's folder (its nightly_report.json and platforms/<p>/, as the
    qparity-nightly artifact holds them) as its run; `run_id` and `date` default to its own."""
    report = read_nightly_report(folder / NIGHTLY_REPORT)
    run_id, date = run_id or report.run_id, date or report.date
    if not run_id or not date:
        raise QParityError("the report has no run_id or date: give --run-id and --date",
                           folder / NIGHTLY_REPORT)
    append_nightly(store_path, report, folder, run_id, date)
    return report


def append_nightly(store_path: Path, report: NightlyReport, out: Path, run_id: str,
                   date: str) -> None:
    """Append every usable platform of a nightly (its re-collected folder under `out`) as one
    run, and the nightly's verdict."""
    usable = [name for name, p in report.platforms.items() if p.status == "ok"]
    for name in usable:  # all there before anything is appended
        if not (out / "platforms" / name / REPORT_NAME).is_file():
            raise QParityError(f"platform {name} was collected by the nightly but its "
                               f"re-collected {REPORT_NAME} is not here", out / "platforms" / name)
    with HistoryStore(store_path) as store:
        for name in usable:
            work = out / "platforms" / name
            collected = read_report_record(work / REPORT_NAME)
            entries: dict[str, Entry] = dict(collected.engines)
            for e, cell in report.platforms[name].engines.items():  # the nightly's "missing" too
                entries.setdefault(e, cell)
            results: dict[str, EngineResult | None] = dict(load_records(work))
            for e in entries:  # an engine without a result still has its row (its status)
                results.setdefault(e, None)
            store.append_platform(run_id, date, name, results, collected, entries)
        store.record_nightly(run_id, date, report.verdict, report.exit_code,
                             report.reference_platform,
                             {n: {"status": p.status, "verdict": p.verdict}
                              for n, p in report.platforms.items()}
                             | {"findings": [f.to_json() for f in report.findings]})
