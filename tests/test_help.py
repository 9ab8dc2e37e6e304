"""Every option says what it does and what it defaults to; one option name, one meaning; the
README's commands are ones the CLI accepts."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from harness.cli import parser

README = Path(__file__).resolve().parents[1] / "README.md"


def commands() -> dict[str, argparse.ArgumentParser]:
    ap = parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def visible_options(p: argparse.ArgumentParser):
    for a in p._actions:
        if a.option_strings and a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction):
            yield a


def test_every_option_has_help_that_shows_its_default():
    missing, no_default = [], []
    for name, p in commands().items():
        text = p.format_help()
        for a in visible_options(p):
            if not (a.help or "").strip():
                missing.append(f"{name} {a.option_strings[0]}")
            d = a.default
            if d not in (None, False, [], argparse.SUPPRESS) and str(d) not in text:
                no_default.append(f"{name} {a.option_strings[0]} ({d})")
        for a in p._actions:  # positionals too
            if not a.option_strings and not (a.help or "").strip():
                missing.append(f"{name} {a.dest}")
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"defaults not shown: {no_default}"


def test_one_name_one_meaning():
    """--images names a folder wherever it is visible; a count is --num-images."""
    for name, p in commands().items():
        for a in visible_options(p):
            if "--images" in a.option_strings:
                assert a.type in (None, str), f"{name} --images is not a folder"
            if "--num-images" in a.option_strings:
                assert a.type is int
    assert parser().parse_args(["localize", "--model", "m", "--engine", "openvino", "--data", "d",
                                "--num-images", "3"]).images == 3
    assert parser().parse_args(["demo", "--num-images", "40"]).images == 40
    assert parser().parse_args(["demo", "--images", "40"]).images == 40  # the old spelling still works


def readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    cmds = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("qparity "):
                cmds.append(line)
    return cmds


@pytest.mark.parametrize("line", readme_commands())
def test_readme_commands_parse(line):
    line = line.replace("$(date +%Y%m%d)", "20260101")
    argv = [w for w in shlex.split(line)[1:] if not (w.startswith("[") or w.endswith("]"))]
    args = parser().parse_args(argv)
    if args.command == "ptq" and args.exclude_from:  # the list's paths need the data folder
        assert args.data, line


def test_exit_codes_are_in_the_help_and_the_readme():
    text = parser().format_help()
    assert "exit codes:" in text and "check-model" in text
    readme = README.read_text()
    for cmd in ("run", "collect", "demo", "check-model", "nightly", "lists", "ptq", "diff",
                "localize", "sensitivity", "history", "engines", "run-engine"):
        assert re.search(rf"^\|[^\n]*`{cmd}`[^\n]*\|", readme, re.M), f"{cmd} not in the exit-code table"


def test_error_messages_keep_their_brackets(monkeypatch, capsys):
    """rich markup must not swallow an install hint's extra: `qparity[history]`."""
    import harness.cli as cli
    from harness.errors import QParityError

    def boom(args):
        raise QParityError("the history page needs plotly: pip install 'qparity[history]'")

    monkeypatch.setattr(cli, "cmd_engines", boom)
    assert cli.main(["engines"]) == 2
    assert "pip install 'qparity[history]'" in capsys.readouterr().err
