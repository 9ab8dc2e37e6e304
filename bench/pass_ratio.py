"""The accuracy pass against its own inference time: wall / (sum of in-pass inference calls).

    python bench/pass_ratio.py --model M --data DIR [--engine ort-cpu] [--limit N] [--repeats 3]
                               [--threads N] [--compare-serial]

Runs `harness.evaluate.run_dataset` as the runner does (intra-op spinning off, prefetch sized
to the cores the engine leaves over, decode + NMS on a thread behind inference) and prints the
pass wall time, the summed inference time inside it, and their ratio (goal <= 1.15).
--compare-serial alternates each repeat with the previous pass (git fd2125b's evaluate.py:
decode + NMS on the inference thread, two prefetch threads, spinning as configured), which
uses today's decode too, so the difference is the pass's structure alone.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from old_code import module_at  # bench/ is on sys.path when a script here runs

from harness.data import Dataset
from harness.engines import EngineConfig, engine_class
from harness.evaluate import run_dataset
from harness.protocol import locked_protocol

OLD_COMMIT = "fd2125b"


def load_old_run_dataset():
    return module_at(OLD_COMMIT, "harness/evaluate.py").run_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="COCO-layout folder")
    ap.add_argument("--engine", default="ort-cpu")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare-serial", action="store_true")
    args = ap.parse_args()
    proto = locked_protocol()
    data = Dataset.load(args.data / "val2017", args.data / "annotations" / "instances_val2017.json",
                        args.limit)
    cfg = EngineConfig(threads=args.threads) if args.threads else EngineConfig()
    eng = engine_class(args.engine)(cfg)
    eng.load(args.model)
    old = load_old_run_dataset() if args.compare_serial else None
    rows: dict[str, list[tuple[float, float]]] = {"new": [], "old": []}
    dets = {}
    for r in range(args.repeats):
        modes = ["new", "old"] if old else ["new"]
        for mode in (modes if r % 2 == 0 else modes[::-1]):
            if mode == "new":
                spin = eng.set_spinning(False)
                out = run_dataset(eng.run, data, proto, args.engine, engine_threads=cfg.threads)
            else:
                spin = eng.set_spinning(True)
                out = old(eng.run, data, proto, args.engine)
            t = out.timing_s
            rows[mode].append((t["wall_s"], t["inference_s"]))
            dets[mode] = out.detections
            print(f"{mode}: wall {t['wall_s']:.2f} s, inference {t['inference_s']:.2f} s, "
                  f"ratio {t['wall_s'] / t['inference_s']:.3f} (spinning: {spin}; "
                  f"{len(data.files)} images, {cfg.threads} engine threads)", flush=True)
    for mode, v in rows.items():
        if v:
            w, i = np.array(v).T
            print(f"{mode} summary: wall median {np.median(w):.2f} s (min {w.min():.2f}), "
                  f"ratio median {np.median(w / i):.3f} (min {(w / i).min():.3f})")
    if old:
        print("identical detections:", np.array_equal(dets["new"], dets["old"]))


if __name__ == "__main__":
    main()
