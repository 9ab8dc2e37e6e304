"""Start-up time of the light commands: `qparity --help` and `qparity collect DIR`.

    python bench/startup.py [--results DIR] [--repeats 7] [--fresh] [--imports]

Each command is run as a fresh process (`python -m harness.cli ...`), `--repeats` times after
one warm-up, and the median and min-max wall times are printed (goal: under 0.3 s each). The
collect figure includes its real work on a small folder (reading the results, gating, writing
eval_report.json and report.html); without --results a folder is made once with `qparity demo`
on 8 images (a minute). --fresh times the first `collect` after a run: before each run
(the warm-up too) it removes what an earlier collect left beside the results (the report,
report.html, per-class AP caches under detections/). --imports also lists which heavy modules
each command's module loads (`collect`, `nightly` and `history` must load neither cv2 nor
pycocotools).

The children run without PYTHONDONTWRITEBYTECODE, as an installed qparity does (its .pyc files
are written once, by the warm-up); with it set, every start compiles qparity's modules again
(about 0.1 s more here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("cv2", "pycocotools", "onnxruntime", "openvino", "onnx", "numpy", "rich")


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str], repeats: int, before=lambda: None) -> list[float]:
    before()
    subprocess.run(argv, capture_output=True, env=ENV)  # warm-up: the file cache, .pyc files
    out = []
    for _ in range(repeats):
        before()
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=ENV)
        out.append(time.perf_counter() - t0)
    return out


def demo_results(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "harness.cli", "demo", "--out", str(where),
                    "--num-images", "8", "--warmup", "0", "--runs", "1"], check=False,
                   capture_output=True)
    results = where / "results"
    if not (results / "eval_report.json").is_file():
        sys.exit(f"qparity demo did not leave a report in {results}")
    return results


def as_fresh(results: Path) -> None:
    """The folder as a run leaves it, before any collect: no report, no page, no cache."""
    for f in [results / "eval_report.json", results / "report.html",
              *(results / "detections").glob("*.per_class_ap.json")]:
        f.unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", help="a results folder for `collect` (default: a small demo run)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--fresh", action="store_true",
                    help="time the first collect after a run (remove report, page and caches first)")
    ap.add_argument("--imports", action="store_true", help="list heavy modules per module")
    a = ap.parse_args()
    py = [sys.executable, "-m", "harness.cli"]
    results = Path(a.results) if a.results else demo_results(Path(tempfile.mkdtemp()) / "demo")
    cases = {"qparity --help": [*py, "--help"],
             "qparity collect": [*py, "collect", str(results)],
             "python (no import, the floor)": [sys.executable, "-c", "pass"]}
    for name, argv in cases.items():
        fresh = a.fresh and name == "qparity collect"
        t = timed(argv, a.repeats, (lambda: as_fresh(results)) if fresh else (lambda: None))
        name += " (fresh)" if fresh else ""
        print(f"{name:32s} median {statistics.median(t):.3f} s  "
              f"(min {min(t):.3f}, max {max(t):.3f}, n={len(t)})")
    if a.imports:
        for mod in ("harness.cli", "harness.collector", "harness.nightly", "harness.history"):
            code = (f"import sys, {mod}; print(' '.join(m for m in {HEAVY!r} "
                    f"if m in sys.modules))")
            got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            print(f"import {mod:20s} loads: {got.stdout.strip() or '-'}{got.stderr[-200:]}")


if __name__ == "__main__":
    main()
