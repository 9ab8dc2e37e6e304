"""ruff, configured in pyproject.toml ([tool.ruff]), passes on the whole tree: no unused or
undefined names (an undefined name in a report page is a crash on the first emulated row)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from builders import find_tool

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_passes():
    ruff = find_tool("ruff", "ruff")
    p = subprocess.run([ruff, "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-1000:]
