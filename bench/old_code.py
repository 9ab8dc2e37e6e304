"""A harness module as it stood at an earlier commit, for the benchmarks' before/after pairs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def module_at(commit: str, path: str) -> ModuleType:
    """`path` (e.g. harness/metrics.py) from `commit`, imported under the harness package so its
    relative imports resolve to today's modules, and registered in sys.modules (dataclasses look
    their module up there)."""
    src = subprocess.run(["git", "show", f"{commit}:{path}"], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    name = f"harness._old_{Path(path).stem}"
    file = Path(tempfile.mkdtemp()) / f"{Path(path).stem}.py"
    file.write_text(src)
    spec = importlib.util.spec_from_file_location(name, file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
