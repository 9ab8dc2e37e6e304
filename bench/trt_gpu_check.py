"""The TensorRT engine on a real NVIDIA machine, in one command, with what a reviewer needs.

    pip install -c docker/constraints.txt -e ".[tensorrt]"     # or inside the TensorRT image
    python bench/trt_gpu_check.py --out /tmp/trt-check [--images 200]

1. the facts: driver, GPU, TensorRT version and CUDA build, cuda-bindings, the probe's verdict;
2. the demo (`qparity demo`: synthetic data, PTQ with the portable recipe, every available
   engine, tensorrt included when the probe passes);
3. `qparity run --engines ort-cpu,tensorrt` on the demo's model and images with a plan cache,
   so the built plan is a file: mAP vs golden, census, cache/TF32/NVTX settings and the three
   latency figures (GPU compute, H2D+compute+D2H, host wall);
4. trtexec on that same plan (when trtexec is on PATH or in /usr/src/tensorrt/bin), with the
   same warm-up and run count, so its "GPU Compute Time" and "Latency" stand beside ours;
5. a second `qparity run` (cache hit: nothing rebuilt) to show the plan is reused.

Everything is also written to <out>/trt_gpu_check.json. Exit 0 when tensorrt ran, else 1.
Nothing here downloads anything.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QPARITY = [sys.executable, "-m", "harness.cli"]
TRTEXEC_LINE = re.compile(
    r"(?P<what>GPU Compute Time|Latency|H2D Latency|D2H Latency|Enqueue Time|Host Latency): "
    r"min = (?P<min>[\d.]+) ms, max = (?P<max>[\d.]+) ms, mean = (?P<mean>[\d.]+) ms, "
    r"median = (?P<median>[\d.]+) ms, percentile\(95%\) = (?P<p95>[\d.]+) ms")


def sh(cmd: list[str], log: Path, timeout: int = 3600) -> subprocess.CompletedProcess:
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    log.write_text(out.stdout + "\n--- stderr ---\n" + out.stderr)
    print(f"  exit {out.returncode} in {time.perf_counter() - t0:.1f} s (log: {log})", flush=True)
    return out


def facts() -> dict[str, Any]:
    from harness.engines.trt.status import collect_facts, tensorrt_cuda_build, unavailable_reason

    f = collect_facts()
    smi = shutil.which("nvidia-smi")
    gpu = (subprocess.run([smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
                           "persistence_mode", "--format=csv,noheader"], capture_output=True,
                          text=True).stdout.strip() if smi else "nvidia-smi not found")
    return {"nvidia_smi": gpu, "driver_cuda": f.driver.cuda_version,
            "tensorrt": f.tensorrt_version, "tensorrt_cuda_build": tensorrt_cuda_build(),
            "probe": unavailable_reason(f) or "ok"}


def trtexec_path() -> str | None:
    return shutil.which("trtexec") or next(
        (p for p in ("/usr/src/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec")
         if os.access(p, os.X_OK)), None)


def run_trtexec(exe: str, plan: Path, warmup_runs: int, runs: int, log: Path) -> dict[str, Any]:
    """trtexec on the plan qparity built. trtexec's warm-up is in milliseconds, so it gets a
    fixed 500 ms (at least the protocol's warm-up runs on any GPU); runs are counted alike."""
    cmd = [exe, f"--loadEngine={plan}", f"--iterations={runs}", "--duration=0",
           "--warmUp=500", "--avgRuns=1", "--percentile=95",
           "--profilingVerbosity=layer_names_only"]  # the NVTX level qparity times with
    out = sh(cmd, log)
    figures = {m["what"]: {k: float(m[k]) for k in ("median", "p95", "mean", "min", "max")}
               for m in TRTEXEC_LINE.finditer(out.stdout)}
    return {"command": " ".join(cmd), "exit": out.returncode, "figures": figures,
            "note": f"protocol warm-up is {warmup_runs} runs; trtexec warms up by time (500 ms)"}


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    info = result.get("engine_info") or {}
    lat = result.get("latency_ms") or {}
    extra = info.get("extra_latency_ms") or {}
    settings = info.get("settings") or {}
    census = result.get("census") or {}

    def fig(d: dict[str, Any] | None) -> dict[str, Any] | None:
        return {k: d.get(k) for k in ("median", "p95", "n")} if d else None

    return {
        "status": result.get("status"), "reason": result.get("reason"),
        "map50_95": (result.get("metrics") or {}).get("map50_95"),
        "load_s": result.get("load_s"),
        "gpu": {k: (info.get("gpu") or {}).get(k) for k in (
            "name", "compute_capability", "sm_count", "pci_bus_id", "driver_version",
            "cuda_driver_version", "cuda_bindings", "tensorrt_cuda_major")},
        "tensorrt": info.get("version"),
        "engine_cache": (settings.get("engine_cache") or {}).get("status"),
        "build": settings.get("build"),
        "tf32": settings.get("tf32"), "nvtx": settings.get("nvtx_verbosity_while_timed"),
        "census": {k: census.get(k) for k in ("compute_ops", "int8_compute_ops",
                                             "inspector_schema", "opaque_layers", "unavailable")},
        "latency": {"host_wall (latency_ms)": fig(lat),
                    "h2d_compute_d2h": fig(extra.get("h2d_compute_d2h")),
                    "gpu_compute": fig(extra.get("gpu_compute"))},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("results/trt-gpu-check"))
    ap.add_argument("--images", type=int, default=200, help="demo images (default 200)")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"facts": facts()}
    print(json.dumps(report["facts"], indent=1))

    demo = out / "demo"
    d = sh(QPARITY + ["demo", "--out", str(demo), "--images", str(args.images),
                      "--warmup", str(args.warmup), "--runs", str(args.runs)], out / "demo.log")
    report["demo_exit"] = d.returncode
    demo_trt = demo / "results" / "tensorrt.json"
    if demo_trt.is_file():
        report["demo_tensorrt"] = summarize(json.loads(demo_trt.read_text()))

    model = demo / "model" / "model-int8.onnx"
    data = demo / "data"
    cache = out / "cache"
    runs = []
    for k in (1, 2):  # the second run must reuse the cached plan
        res_dir = out / f"run{k}"
        r = sh(QPARITY + ["run", "--engines", "ort-cpu,tensorrt", "--model", str(model),
                          "--images", str(data / "val2017"), "--annotations",
                          str(data / "annotations" / "instances_val2017.json"),
                          "--out", str(res_dir), "--cache-dir", str(cache),
                          "--warmup", str(args.warmup), "--runs", str(args.runs)],
               out / f"run{k}.log")
        trt_json = res_dir / "tensorrt.json"
        golden = res_dir / "ort-cpu.json"
        entry = {"exit": r.returncode}
        if trt_json.is_file():
            entry["tensorrt"] = summarize(json.loads(trt_json.read_text()))
        if golden.is_file():
            g = json.loads(golden.read_text())
            entry["golden_map50_95"] = (g.get("metrics") or {}).get("map50_95")
            entry["golden_latency_median_ms"] = (g.get("latency_ms") or {}).get("median")
        runs.append(entry)
    report["runs"] = runs

    plans = sorted((cache / "tensorrt").glob("*.plan"))
    exe = trtexec_path()
    if plans and exe:
        report["trtexec"] = run_trtexec(exe, plans[-1], args.warmup, args.runs,
                                        out / "trtexec.log")
    else:
        report["trtexec"] = {"skipped": "no plan was cached" if not plans else
                             "trtexec not found (PATH, /usr/src/tensorrt/bin)"}

    (out / "trt_gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print("\n===== what a reviewer needs =====")
    print(json.dumps(report, indent=1))
    first = (runs[0].get("tensorrt") or {}) if runs else {}
    ours = first.get("latency") or {}
    theirs = (report["trtexec"].get("figures") or {})
    if ours and theirs:
        print("\nlatency medians (ms), qparity vs trtexec on the same plan:")
        for label, mine, key in (("GPU compute", "gpu_compute", "GPU Compute Time"),
                                 ("H2D+compute+D2H", "h2d_compute_d2h", "Latency"),
                                 ("host wall (qparity only)", "host_wall (latency_ms)", None)):
            m = (ours.get(mine) or {}).get("median")
            t = (theirs.get(key) or {}).get("median") if key else None
            print(f"  {label:26s} qparity {m!s:>10}   trtexec {t!s:>10}")
    ok = first.get("status") == "ok" and ((runs[1].get("tensorrt") or {}).get("engine_cache")
                                          == "hit")
    print("\nRESULT:", "tensorrt ran, second run reused the plan" if ok else
          f"tensorrt did not run cleanly: {first.get('status')}: {first.get('reason')}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
