"""Peak memory of the locked PTQ calibration (percentile histograms) on 512 images.

ONNX Runtime's histogram calibrators keep every intermediate output of every image until
they build the histograms; qparity feeds them 16 images at a time (CalibStridedMinMax), so
memory does not grow with the calibration set. This measures both ways in child processes:

    python bench/ptq_memory.py [--model bench/demo/demo-fp32.onnx] [--images 512] [--unbounded 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.table import Table

from harness.report import wide_console

ROOT = Path(__file__).resolve().parents[1]


def child(model: str, images: str, n: int, stride: int, out: str) -> None:
    import harness.ptq as ptq

    ptq.CALIB_STRIDE = stride
    paths = sorted(Path(images).glob("*.jpg"))[:n]
    t0 = time.perf_counter()
    ptq.quantize(Path(model), paths, Path(out) / "model-int8.onnx")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": n, "stride": stride, "peak_mib": round(peak_mib), "seconds": round(time.perf_counter() - t0, 1)}))


def measure(model: Path, images: Path, n: int, stride: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.run([sys.executable, __file__, "--child", str(model), str(images), str(n), str(stride), out],
                           capture_output=True, text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "bench" / "demo" / "demo-fp32.onnx")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--unbounded", type=int, default=64, help="images for the all-at-once comparison")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "bench" / "demo"))
    import make_data

    with tempfile.TemporaryDirectory() as tmp:
        make_data.generate(Path(tmp), n_images=args.images, seed=3, split="calib")
        imgs = Path(tmp) / "calib"
        rows = [measure(args.model, imgs, args.images, 16),
                measure(args.model, imgs, args.unbounded, 16),
                measure(args.model, imgs, args.unbounded, args.unbounded)]
    t = Table(title=f"PTQ calibration peak memory ({args.model.name})", title_justify="left")
    for c in ("images", "images held at once", "peak RSS MiB", "seconds"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(str(r["images"]), str(r["stride"]), str(r["peak_mib"]), str(r["seconds"]))
    wide_console().print(t)


if __name__ == "__main__":
    main()
