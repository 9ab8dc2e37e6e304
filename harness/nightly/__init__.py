"""`qparity nightly`: one verdict over the results of every platform, then the history append.

- `judge`: collect each platform's folder, the findings across platforms, the verdict and the
  report (no terminal output, no argument parsing).
- `render`: the engines x platforms table and the markdown summary for a CI job.
- `command`: `qparity nightly` (`cmd_nightly`, `register`).

The names below are the ones other modules and tests have imported from `harness.nightly`;
new code imports from the module that does the job.
"""

from ..records.nightly import NIGHTLY_SCHEMA, Finding, NightlyReport, read_nightly_report
from .command import cmd_nightly, default_run_id, register
from .judge import (NIGHTLY_REPORT, NIGHTLY_SUMMARY, PLATFORM_META, collect_platform,
                    golden_check, nightly, platform_folders, read_meta)
from .render import cell_text, nightly_table, print_nightly, summary_markdown

__all__ = ["NIGHTLY_REPORT", "NIGHTLY_SCHEMA", "NIGHTLY_SUMMARY", "PLATFORM_META", "Finding",
           "NightlyReport", "cell_text", "cmd_nightly", "collect_platform", "default_run_id",
           "golden_check", "nightly", "nightly_table", "platform_folders", "print_nightly",
           "read_meta", "read_nightly_report", "register", "summary_markdown"]
