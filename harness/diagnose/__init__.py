"""Diagnosis commands: why two engines disagree, where, and which layers quantization hurts.

- `qparity diff`: detection-level disagreement between two engines of a run, per image, with
  pictures (diff.py).
- `qparity localize`: the first quantized tensor where an engine leaves the reference
  arithmetic (localize.py the command, localize_judge.py / localize_search.py the judging,
  localize_render.py the tables).
- `qparity sensitivity`: layer-wise (block-wise) PTQ sensitivity and a proposed `--exclude`
  list for `qparity ptq` (sensitivity.py).
- `qparity repro`: a minimal, self-contained reproducer of an engine's disagreement, for the
  engine's maintainers (repro.py).

The parsers are in commands.py (with their defaults in defaults.py), which imports a command's
module only when it runs: `qparity --help` loads none of numpy, onnx, OpenCV or pycocotools.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from .commands import register as register_all

    register_all(subparsers)
