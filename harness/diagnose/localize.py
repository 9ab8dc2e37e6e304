"""`qparity localize`: the first quantized tensor where an engine leaves the reference.

The command (its parser is in commands.py). The work is in three modules: localize_judge.py
(both sides, the in-context check, the finding; the method is described there),
localize_search.py (the step measure and the bisection) and localize_render.py (the tables).
Their public names stay importable from here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .defaults import DEFAULT_FRAC
from .localize_judge import Side, image_inputs, in_context, localize
from .localize_render import print_finding
from .localize_search import STEP_TOL, WORST, compare, search

__all__ = ["DEFAULT_FRAC", "STEP_TOL", "WORST", "Side", "cmd_localize", "compare", "image_inputs",
           "in_context", "localize", "print_finding", "search"]


def cmd_localize(args: argparse.Namespace) -> int:
    from ..options import default_threads, parse_kv

    finding = localize(Path(args.model), args.engine, args.against,
                       Path(args.against_model) if args.against_model else None, Path(args.data),
                       args.images, args.frac, parse_kv(args.engine_opt, "--engine-opt"),
                       parse_kv(args.against_opt, "--against-opt"), args.threads or default_threads(),
                       args.exhaustive)
    print_finding(finding)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(finding, indent=1) + "\n")
    return 0
