"""What keeps `qparity collect` quick to start (bench/startup.py measures it; no timing here):
collecting a run's folder, the first time or again, loads neither numpy nor an image, metric or
engine library, and the stand-ins that made that possible give exactly what they replaced."""

from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys

import numpy as np
import pytest
from test_records_result import real_run

from harness.envinfo import LIBRARIES, library_versions
from harness.report_html import percentiles

HEAVY = ("numpy", "cv2", "pycocotools", "onnx", "onnxruntime", "openvino")


def test_collecting_a_fresh_run_loads_no_numpy_nor_heavy_library(tmp_path):
    """The first collect after a real run (no report, no page, no cache beside it) takes the
    per-class APs from the results the runner wrote: no numpy, no pycocotools, ever."""
    out = real_run(tmp_path, engines=("ort-cpu", "qdq-ref"))
    assert not (out / "eval_report.json").exists() and not (out / "report.html").exists()
    code = ("import sys, harness.cli as c\n"
            "try:\n    c.main(['collect', sys.argv[1]])\nexcept SystemExit as e:\n    code = e.code\n"
            f"print('LOADED', *[m for m in {HEAVY!r} if m in sys.modules])")
    first = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    loaded = first.stdout.split("LOADED")[-1].split()
    assert "LOADED" in first.stdout and loaded == [], f"qparity collect loads {loaded}"
    page = stamped((out / "report.html").read_text())
    assert "qdq-ref − ort-cpu: AP50-95 per class" in page  # the classes plot, from the results
    assert not list((out / "detections").glob("*.per_class_ap.json"))  # nothing recomputed
    again = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    loaded = again.stdout.split("LOADED")[-1].split()
    assert "LOADED" in again.stdout and loaded == [], f"qparity collect loads {loaded}"
    assert stamped((out / "report.html").read_text()) == page  # the same page, per-class APs too


def stamped(html: str) -> str:
    return re.sub(r"\d{4}-\d\d-\d\dT[\d:]+[+-]\d{4}", "TIME", html)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 200, 201])
def test_percentiles_are_numpys_to_the_bit(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        x = [float(v) for v in rng.lognormal(1.0, 0.5, n)]
        want = [float(v) for v in np.percentile(np.asarray(x), [5, 25, 50, 75, 95])]
        assert percentiles(x, (5, 25, 50, 75, 95)) == want


def test_library_versions_are_importlib_metadatas():
    want = {}
    for name in LIBRARIES:
        try:
            want[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    assert library_versions() == want and "numpy" in want
