"""Accuracy per CPU class and engine, native vs emulated (qemu-user), and what emulation costs.

    python bench/emulate_accuracy.py --model M --data D --limit 20 \
        --classes avx2,avx,sse4 --engines ort-cpu,openvino --out results/emulate-bench

Runs every engine natively and under each emulated class through the harness's own runner (the
same child process `qparity run --emulate-cpu` starts), one thread each so that the CPU time of
the child is comparable across runs on a shared machine. Writes `bench.json` and prints a
markdown table: mAP50-95 per class and engine, delta against the native run, the model's own
Q/DQ arithmetic (qdq-ref, native) as the yardstick, and the slowdown: inference wall time per
image and the child's CPU seconds per image (user+sys, from getrusage) against native.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import emulate  # noqa: E402
from harness.engines import EngineConfig  # noqa: E402
from harness.protocol import locked_protocol  # noqa: E402
from harness.runner import RunRequest, run_isolated  # noqa: E402


def child_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one(engine: str, spec: str | None, args, out: Path) -> dict:
    data = Path(args.data)
    proto = locked_protocol().with_overrides(warmup=1, runs=2)
    req = RunRequest(engine, Path(args.model), data / "val2017",
                     data / "annotations" / "instances_val2017.json", out, proto, args.limit,
                     EngineConfig(threads=args.threads), emulate_cpu=spec)
    c0, t0 = child_cpu_s(), time.perf_counter()
    res = run_isolated(req)
    cpu, wall = child_cpu_s() - c0, time.perf_counter() - t0
    t = res.get("eval_timing") or {}
    n = t.get("images") or args.limit
    row = {"engine": engine, "platform": f"emulated-{spec}" if spec else "native",
           "status": res["status"], "reason": res.get("reason", "")[:200],
           "map50_95": (res.get("metrics") or {}).get("map50_95"),
           "inference_s_per_image": round(t["inference_s"] / n, 4) if t.get("inference_s") else None,
           "child_cpu_s_per_image": round(cpu / n, 3), "child_wall_s": round(wall, 1),
           "load_s": res.get("load_s"), "census": (res.get("census") or {}).get("int8_compute_ops"),
           "flags_seen": (res.get("emulated") or {}).get("flags_seen")}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="COCO-layout folder")
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--classes", default="avx2,avx,sse4")
    ap.add_argument("--engines", default="ort-cpu,openvino")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="results/emulate-bench")
    args = ap.parse_args()
    out = Path(args.out)
    engines = [e for e in args.engines.split(",") if e]
    classes = [c for c in args.classes.split(",") if c]
    for c in classes:
        emulate.check(c)
    rows = [one("qdq-ref", None, args, out / "native")]
    rows += [one(e, None, args, out / "native") for e in engines]
    for c in classes:
        rows += [one(e, c, args, out / f"emulated-{c}") for e in engines]
    native = {r["engine"]: r for r in rows if r["platform"] == "native"}
    ref = native["qdq-ref"]["map50_95"]
    lines = [f"model {args.model}, first {args.limit} images, {args.threads} thread(s); "
             f"qdq-ref (native, the model's own Q/DQ arithmetic): {ref}", "",
             "| platform | engine | mAP50-95 | Δ native | Δ qdq-ref | int8 ops | inference s/img | "
             "slowdown (wall) | CPU s/img | slowdown (CPU) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["engine"] == "qdq-ref":
            continue
        nat = native[r["engine"]]
        m = r["map50_95"]
        d = None if m is None or nat["map50_95"] is None else round(m - nat["map50_95"], 2)
        dr = None if m is None or ref is None else round(m - ref, 2)
        sw = (round(r["inference_s_per_image"] / nat["inference_s_per_image"], 1)
              if r["inference_s_per_image"] and nat["inference_s_per_image"] else None)
        sc = round(r["child_cpu_s_per_image"] / nat["child_cpu_s_per_image"], 1)
        r.update(delta_native=d, delta_qdq_ref=dr, slowdown_wall=sw, slowdown_cpu=sc)
        lines.append(f"| {r['platform']} | {r['engine']} | {m} | {d} | {dr} | {r['census']} | "
                     f"{r['inference_s_per_image']} | {sw} | {r['child_cpu_s_per_image']} | {sc} |")
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps({"rows": rows, "table": table, "args": vars(args)},
                                               indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
