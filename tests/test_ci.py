"""CI runs exactly the README's test command, pinned to what the images ship."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, re.S)


def test_ci_runs_the_readme_test_command():
    demo, tests = readme_commands()[:2]
    assert "pytest" in tests and "qparity demo" in demo
    ci_lines = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines()
                if ln and not ln.startswith("#")]
    assert tests in ci_lines, f".ci/run does not run the README's test command: {tests}"


def test_both_readme_commands_install_the_image_pins():
    for cmd in readme_commands()[:2]:
        assert "-c docker/constraints.txt" in cmd, cmd
