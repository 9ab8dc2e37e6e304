"""Recipes side by side on the demo: now `qparity recipes --demo` (this entry point is kept).

Every recipe variant x every engine (accepted, mAP50-95, delta, int8 ran, latency) and a
recommendation per deployment set; see docs/recipes.md.

    python bench/recipes.py [--images 300] [--out results/bench-recipes] [--runs 200] [...]

Any other option is passed to `qparity recipes` as is.
"""

from __future__ import annotations

import sys

from harness.cli import main


def argv(args: list[str]) -> list[str]:
    out = ["recipes", "--demo"]
    args = list(args)
    if "--out" not in args:
        args += ["--out", "results/bench-recipes"]
    for a in args:
        out.append("--demo-images" if a == "--images" else a)
    return out


if __name__ == "__main__":
    sys.exit(main(argv(sys.argv[1:])))
