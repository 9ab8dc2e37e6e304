"""qparity's latency figure against the engines' own tools, on the same model and inputs.

    python bench/latency_native.py --model M --images DIR [--engine openvino|ort-cpu|both]
                                   [--pairs 1000] [--repeats 5] [--threads N]

Two ways, both printing qparity / native ratios of median and P95:
- per call, in one process: qparity's timed call (`engine.infer`, the exact code the latency
  protocol brackets) and the native call alternate A B A B on the same inputs, each timed with
  the same clock; per-call alternation means a change in machine load hits both alike.
  Native for ONNX Runtime: a bare `session.run(None, {name: x})` on the engine's own session.
  Native for OpenVINO: `start_async(); wait()` on a second request of the same compiled model with
  its input tensor preallocated, as benchmark_app does (the same image written into it before
  the pair, outside the timing); OpenVINO's own `request.latency` is shown for both.
- whole commands, alternating: `benchmark_app` (with qparity's exact compile properties
  through -load_config, -ip f32, async API, one request) against this script's `--qparity-once`
  (load the engine, run the locked protocol's warm-up and timed runs through
  `harness.latency.measure`, print median and P95). For ONNX Runtime, against a minimal
  session.run loop in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.engines import EngineConfig, engine_class
from harness.latency import aligned_empty_like, measure
from harness.letterbox import read_input
from harness.protocol import locked_protocol

BENCHMARK_APP = Path(sys.executable).with_name("benchmark_app")


def load_inputs(images: Path, n: int = 8) -> list[np.ndarray]:
    p = locked_protocol()
    files = sorted(images.glob("*.jpg"))[:n]
    if not files:
        sys.exit(f"no *.jpg under {images}")
    return [read_input(f, p) for f in files]


def stats(a) -> tuple[float, float]:
    a = np.asarray(a)
    return float(np.median(a)), float(np.percentile(a, 95))


def ratio_line(label: str, q, n) -> str:
    (qm, qp), (nm, np95) = stats(q), stats(n)
    return (f"{label}: qparity median {qm:.3f} ms / P95 {qp:.3f}; native median {nm:.3f} / P95 "
            f"{np95:.3f}; ratio median {qm / nm:.3f}, P95 {qp / np95:.3f}")


def per_call(engine_name: str, model: Path, inputs, pairs: int, threads: int | None) -> None:
    eng = engine_class(engine_name)(EngineConfig(threads=threads) if threads else None)
    eng.load(model)
    if engine_name == "ort-cpu":
        sess, name = eng.session, eng.input_name

        def native(x):
            sess.run(None, {name: x})
        native_ms = None
    else:
        req = eng.compiled.create_infer_request()
        tensor = req.get_input_tensor(0).data

        def native(x):  # benchmark_app's loop: a preallocated, already filled input
            req.start_async()
            req.wait()
        native_ms = lambda: float(req.latency)  # noqa: E731
    n_in = len(inputs)
    buf = aligned_empty_like(inputs[0])  # as harness.latency.measure stages inputs
    for k in range(50):
        eng.infer(inputs[k % n_in])
        native(inputs[k % n_in])
    q, n, q_own, n_own = [], [], [], []
    clock = time.perf_counter_ns
    for k in range(pairs):
        np.copyto(buf, inputs[k % n_in])  # as harness.latency.measure stages each input
        x = buf
        first_q = k % 2 == 0  # alternate which goes first within the pair too
        if engine_name == "openvino":  # the same image, written outside the timing
            tensor[...] = x
        for which in ((0, 1) if first_q else (1, 0)):
            t0 = clock()
            (eng.infer if which == 0 else native)(x)
            dt = (clock() - t0) / 1e6
            if which == 0:
                q.append(dt)
                if eng.reported_latency_ms() is not None:
                    q_own.append(eng.reported_latency_ms())
            else:
                n.append(dt)
                if native_ms:
                    n_own.append(native_ms())
    print(ratio_line(f"{engine_name} per call ({pairs} pairs, wall clock)", q, n))
    if q_own and n_own:
        print(ratio_line(f"{engine_name} per call, OpenVINO's own request.latency", q_own, n_own))
        print(f"  qparity wall - own latency: median {np.median(np.subtract(q, q_own)):.3f} ms "
              f"(the Python call around the request)")
    eng.close()


def qparity_once(engine_name: str, model: Path, images: Path, threads: int | None) -> None:
    """What the runner does for latency, alone: print median and P95 as JSON."""
    p = locked_protocol()
    eng = engine_class(engine_name)(EngineConfig(threads=threads) if threads else None)
    eng.load(model)
    eng.set_spinning(True)
    lat = measure(eng.infer, load_inputs(images), p.warmup, p.runs, engine_ms=eng.reported_latency_ms)
    print(json.dumps({"median": lat["median"], "p95": lat["p95"]}))


def ort_native_once(model: Path, images: Path, threads: int | None) -> None:
    """A minimal session.run loop with the same session options, timed the plain way."""
    import onnxruntime as ort

    from harness.engines.ort_cpu import OrtCpuEngine

    p = locked_protocol()
    so = OrtCpuEngine(EngineConfig(threads=threads) if threads else None).session_options()
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    xs = load_inputs(images)
    buf = aligned_empty_like(xs[0])
    for k in range(p.warmup):
        sess.run(None, {name: xs[k % len(xs)]})
    s = []
    for k in range(p.runs):
        np.copyto(buf, xs[k % len(xs)])
        t0 = time.perf_counter()
        sess.run(None, {name: buf})
        s.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"median": float(np.median(s)), "p95": float(np.percentile(s, 95))}))


def benchmark_app(model: Path, threads: int | None, tmp: Path) -> dict[str, float]:
    from harness.engines.openvino import OpenVinoEngine

    cfg = OpenVinoEngine(EngineConfig(threads=threads) if threads else None).compile_config()
    cfg_path = tmp / "ov_config.json"
    cfg_path.write_text(json.dumps({"CPU": cfg}))
    p = locked_protocol()
    out = {}
    for pct in (50, 95):
        cmd = [str(BENCHMARK_APP), "-m", str(model), "-d", "CPU", "-load_config", str(cfg_path),
               "-ip", "f32", "-api", "async", "-nireq", "1", "-hint", "latency",
               "-niter", str(p.warmup + p.runs), "-latency_percentile", str(pct)]
        text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        key = "Median" if pct == 50 else f"{pct} percentile"
        m = re.search(rf"{key}:\s+([\d.]+) ms", text)
        if not m:
            sys.exit(f"could not read '{key}' from benchmark_app output:\n{text[-2000:]}")
        out["median" if pct == 50 else "p95"] = float(m.group(1))
    return out


def run_json(cmd: list[str]) -> dict[str, float]:
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
                      .splitlines()[-1])


def command_line(engine_name: str, model: Path, images: Path, repeats: int,
                 threads: int | None) -> None:
    me = [sys.executable, __file__, "--model", str(model), "--images", str(images),
          "--engine", engine_name] + (["--threads", str(threads)] if threads else [])
    q, n = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            for which in order:
                if which == 0:
                    q.append(run_json(me + ["--qparity-once"]))
                elif engine_name == "openvino":
                    n.append(benchmark_app(model, threads, Path(tmp)))
                else:
                    n.append(run_json(me + ["--ort-native-once"]))
    native = "benchmark_app" if engine_name == "openvino" else "session.run loop"
    for key in ("median", "p95"):
        ratios = [a[key] / b[key] for a, b in zip(q, n)]
        print(f"{engine_name} command line vs {native} ({repeats} alternating repeats), {key}: "
              f"qparity {[round(a[key], 3) for a in q]} native {[round(b[key], 3) for b in n]}; "
              f"ratio per pair min {min(ratios):.3f} median {np.median(ratios):.3f} max {max(ratios):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True, help="folder of .jpg (the first 8 are used)")
    ap.add_argument("--engine", default="both", choices=["openvino", "ort-cpu", "both"])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--skip-command-line", action="store_true")
    ap.add_argument("--qparity-once", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ort-native-once", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.qparity_once:
        return qparity_once(args.engine, args.model, args.images, args.threads)
    if args.ort_native_once:
        return ort_native_once(args.model, args.images, args.threads)
    engines = ["ort-cpu", "openvino"] if args.engine == "both" else [args.engine]
    inputs = load_inputs(args.images)
    for e in engines:
        print(f"== {e}: timed = {engine_class(e).timed}", flush=True)
        per_call(e, args.model, inputs, args.pairs, args.threads)
        if not args.skip_command_line:
            command_line(e, args.model, args.images, args.repeats, args.threads)


if __name__ == "__main__":
    main()
