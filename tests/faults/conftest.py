"""The fault suite: each test feeds one fault to the real command line and asserts the exit
code, the one-line message, and what is left on disk. See docs/faults.md for the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

FAULTS = Path(__file__).parent
TESTS = FAULTS.parent
sys.path[:0] = [str(FAULTS), str(TESTS)]  # builders.py, fault_engines.py

from builders import coco_folder, tiny_detector  # noqa: E402

PLUGINS = ("nanout=fault_engines:NanEngine,infout=fault_engines:InfEngine,"
           "hang=fault_engines:HangEngine,slow=fault_engines:SlowEngine")
FAST = ("--runs", "2", "--warmup", "0")  # a latency phase that costs nothing


@dataclass
class Done:
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def one_line(self, code: int = 2) -> str:
        """The process gave `code` and exactly one line on stderr, with no traceback."""
        assert self.code == code, f"exit {self.code}\n{self.stdout}\n{self.stderr}"
        assert "Traceback" not in self.stderr + self.stdout, self.stderr
        assert len(self.lines) == 1, self.stderr
        return self.lines[0]


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ, QPARITY_EXTRA_ENGINES=PLUGINS,
             PYTHONPATH=os.pathsep.join([str(FAULTS), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    e.pop("QPARITY_DEBUG", None)
    e.pop("QPARITY_RUN_ID", None)
    e.update(extra)
    return e


def qparity(*args: str, cwd: Path | None = None, timeout: float = 300, **extra_env: str) -> Done:
    p = subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)], capture_output=True,
                       text=True, env=env(**extra_env), cwd=cwd, timeout=timeout)
    return Done(p.returncode, p.stdout, p.stderr)


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny float detector, a 4-image COCO folder): fast real runs."""
    root = tmp_path_factory.mktemp("fault_assets")
    return tiny_detector(root / "model.onnx"), coco_folder(root / "coco", n=4)


@pytest.fixture()
def run(assets):
    """`qparity run` on the tiny assets (or others given), latency phase cut short."""
    def go(out: Path, engines: str = "ort-cpu", *extra: str, model: Path | None = None,
           data: Path | None = None, cwd: Path | None = None, **extra_env: str) -> Done:
        return qparity("run", "--model", model or assets[0], "--data", data or assets[1],
                       "--engines", engines, "--out", out, *FAST, *extra, cwd=cwd, **extra_env)
    return go


@pytest.fixture()
def run_here(assets, monkeypatch, capsys):
    """`run`, but through harness.cli.main in this process: for the many cases refused before
    any engine starts (a subprocess costs seconds of interpreter start-up each). What reaches
    the user is the same: the exit code main returns and what it printed."""
    from harness.cli import main

    def go(out: Path, engines: str = "ort-cpu", *extra: str, model: Path | None = None,
           data: Path | None = None, **extra_env: str) -> Done:
        monkeypatch.setenv("QPARITY_EXTRA_ENGINES", PLUGINS)
        for k in ("QPARITY_DEBUG", "QPARITY_RUN_ID"):
            monkeypatch.delenv(k, raising=False)
        for k, v in extra_env.items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        argv = ["run", "--model", model or assets[0], "--data", data or assets[1], "--engines",
                engines, "--out", out, *FAST, *extra]
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's own exit, as the process would end
            code = e.code
        captured = capsys.readouterr()
        return Done(code, captured.out, captured.err)
    return go
