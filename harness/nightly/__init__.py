"""`qparity nightly`: one verdict over the results of every platform, then the history append.

- `judge`: collect each platform's folder, the findings across platforms, the verdict and the
  report (no terminal output, no argument parsing).
- `render`: the engines x platforms table and the markdown summary for a CI job.
- `command`: `qparity nightly` (`cmd_nightly`, `register`).
- the report itself is a typed record: `harness.records.nightly.NightlyReport`.

The names below are the ones modules and tests outside this package import from
`harness.nightly` today (cli.py's `register`, tests/test_emulate.py's `nightly` and
`summary_markdown`); everything else imports from the module that does the job.
"""

from .command import register
from .judge import nightly
from .render import summary_markdown

__all__ = ["nightly", "register", "summary_markdown"]
