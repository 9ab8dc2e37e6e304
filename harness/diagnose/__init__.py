"""Diagnosis commands: why two engines disagree, where, and which layers quantization hurts.

- `qparity diff`: detection-level disagreement between two engines of a run, per image, with
  pictures (diff.py).
- `qparity localize`: the first quantized tensor where an engine leaves the reference
  arithmetic (localize.py).
- `qparity sensitivity`: layer-wise (block-wise) PTQ sensitivity and a proposed `--exclude`
  list for `qparity ptq` (sensitivity.py).
- `qparity repro`: a minimal, self-contained reproducer of an engine's disagreement, for the
  engine's maintainers (repro.py).

Each module exposes `register(subparsers)`; `register` here adds them all. Heavy libraries
(onnx, onnxruntime, OpenCV, pycocotools) are imported inside the commands, never at import time.
"""

from __future__ import annotations

import argparse

MODULES = ("harness.diagnose.diff", "harness.diagnose.localize", "harness.diagnose.sensitivity",
           "harness.diagnose.repro")


def register(subparsers: argparse._SubParsersAction) -> None:
    import importlib

    for name in MODULES:
        importlib.import_module(name).register(subparsers)
