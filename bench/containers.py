"""What the container path costs: image sizes, build times (cold, warm, after a code change),
`docker compose up` wall time per CPU profile, and container-versus-host latency per engine.

    python bench/containers.py --out results/bench-containers.json
    python bench/containers.py --skip-cold --rounds 5      # no --no-cache rebuilds

Needs a Docker engine with Compose v2 (docker/start-engine.sh) and the base image the images
are built on (--base; where no registry is reachable, docker/build-base.sh's
qparity/base:bookworm). Model and data: the embedded demo detector quantized with the locked
`portable` recipe on generated demo images (as the tests do), so nothing is downloaded.

Latency, container versus host: the same engine, model, images, thread count and CPU set
(`taskset` on the host, compose's `cpuset` in the container), measured side by side: rounds
alternate host and container runs (ABAB...) so that drift of the machine hits both alike. One
figure is the median latency of one `run-engine` (the locked protocol: 50 warm-up, 200 timed
runs, model execution only); the result is the median over rounds of each, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TAG = "0.1.0"
# The CPU images, all from docker/cpu.Dockerfile: image -> its EXTRAS build argument (as in
# compose.yaml; "" is the core, ONNX Runtime alone).
DOCKERFILE = "docker/cpu.Dockerfile"
IMAGES = {"ort-cpu": "", "openvino": "openvino"}
ENGINES = ("ort-cpu", "qdq-ref", "openvino")
UP_ARGS = ["up", "--attach-dependencies", "--exit-code-from", "collector",
           "--abort-on-container-failure", "collector"]


def sh(cmd: list[str], env: dict | None = None, check: bool = True,
       timeout: float = 3600) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - t0
    if check and p.returncode != 0:
        sys.exit(f"`{' '.join(cmd)}` exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p, wall


def workspace(root: Path, n_images: int) -> tuple[Path, Path, Path]:
    """models/, coco/, results/ under root, readable by the containers' user."""
    from harness.demo import DEMO_MODEL, load_generator
    from harness.lists import read_list, write_lists
    from harness.ptq import quantize

    data = root / "coco"
    load_generator().generate(data, n_images=n_images, seed=0, split="val2017")
    lists = write_lists(data, root / "lists")
    calib = read_list(lists["calib"], data) + read_list(lists["val"], data)[1:6]
    quantize(DEMO_MODEL, calib, root / "models" / "model-int8.onnx")
    results = root / "results"
    results.mkdir()
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    if os.getuid() == 0:
        os.chown(results, 10001, 10001)
    return root / "models", data, results


def run_as() -> tuple[int, int]:
    return (10001, 10001) if os.getuid() == 0 else (os.getuid(), os.getgid())


def build(name: str, base: str, no_cache: bool) -> float:
    cmd = ["docker", "build", "-q", "-f", str(ROOT / DOCKERFILE), "--build-arg",
           f"PYTHON_IMAGE={base}", "--build-arg", f"IMAGE={name}", "--build-arg",
           f"EXTRAS={IMAGES[name]}", "-t", f"qparity/{name}:{TAG}", str(ROOT)]
    return sh(cmd + (["--no-cache"] if no_cache else []))[1]


def image_size_mb(ref: str) -> float:
    p, _ = sh(["docker", "image", "inspect", "--format", "{{.Size}}", ref])
    return round(int(p.stdout.strip()) / 1e6, 1)


def compose_env(ws: tuple[Path, Path, Path], run_id: str, cpus: str, base: str,
                limit: int | None, extra: dict | None = None) -> dict[str, str]:
    models, data, results = ws
    uid, gid = run_as()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QPARITY_")}
    env.update(QPARITY_MODEL_DIR=str(models), QPARITY_DATA_DIR=str(data),
               QPARITY_RESULTS_DIR=str(results), QPARITY_RUN_ID=run_id, QPARITY_CPUSET=cpus,
               QPARITY_UID=str(uid), QPARITY_GID=str(gid), QPARITY_BASE_IMAGE=base,
               QPARITY_LIMIT=str(limit) if limit else "", **(extra or {}))
    return env


def compose(*args: str, env: dict) -> list[str]:
    return ["docker", "compose", "-p", "qparity-bench", "--project-directory", str(ROOT),
            "-f", str(ROOT / "compose.yaml"), "--env-file", os.devnull, *args]


def latency_pair(engine: str, ws, cpus: str, base: str, limit: int, rnd: int) -> tuple[float, float]:
    """(host median ms, container median ms) of one run-engine each, same everything."""
    models, data, results = ws
    n = len(cpus.split(","))
    host_out = results.parent / "host" / f"{engine}-{rnd}"
    qparity = Path(sys.executable).parent / "qparity"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QPARITY_")}
    sh(["taskset", "-c", cpus, str(qparity), "run-engine", "--engine", engine, "--model",
        str(models / "model-int8.onnx"), "--data", str(data), "--out", str(host_out),
        "--limit", str(limit), "--threads", str(n)], env=env)
    host = json.loads((host_out / f"{engine}.json").read_text())
    run_id = f"lat-{engine}-{rnd}"
    cenv = compose_env(ws, run_id, cpus, base, limit)
    sh(compose("--profile", "intel", "run", "--rm", "--no-deps", "-T", engine, env=cenv), env=cenv)
    ctr = json.loads((results / run_id / f"{engine}.json").read_text())
    for r in (host, ctr):
        assert r["status"] == "ok", r.get("reason")
    return host["latency_ms"]["median"], ctr["latency_ms"]["median"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=os.environ.get("QPARITY_BASE_IMAGE", "qparity/base:bookworm"))
    ap.add_argument("--skip-cold", action="store_true", help="no --no-cache builds")
    ap.add_argument("--rounds", type=int, default=3, help="host/container latency pairs per engine")
    ap.add_argument("--engines", default=",".join(ENGINES), help="engines timed side by side")
    ap.add_argument("--skip-builds", action="store_true", help="no build timings at all")
    ap.add_argument("--images", type=int, default=24, help="demo images generated")
    ap.add_argument("--limit", type=int, default=8, help="images evaluated per run (QPARITY_LIMIT)")
    ap.add_argument("--cpus", default=",".join(map(str, sorted(os.sched_getaffinity(0)))))
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    out: dict = {"base": args.base, "cpus": args.cpus, "limit": args.limit,
                 "engine": sh(["docker", "version", "--format", "{{.Server.Version}}"])[0].stdout.strip(),
                 "compose": sh(["docker", "compose", "version", "--short"])[0].stdout.strip(),
                 "nproc": os.cpu_count(), "load_avg_start": os.getloadavg()}
    builds: dict = {}
    if not args.skip_cold and not args.skip_builds:
        # cold = a fresh machine with the base image only: no qparity image, no build cache
        # (`--no-cache` would not do: it leaves look-alike layer chains that confuse the
        # classic builder's cache afterwards)
        for name in IMAGES:
            sh(["docker", "image", "rm", "-f", f"qparity/{name}:{TAG}"], check=False)
        sh(["docker", "image", "prune", "-f"])
        for name in IMAGES:  # compose's order: openvino reuses ort-cpu's dependency layer
            builds[f"{name}_cold_s"] = round(build(name, args.base, no_cache=False), 1)
    if not args.skip_builds:
        for name in IMAGES:
            builds[f"{name}_warm_s"] = round(build(name, args.base, no_cache=False), 1)
        # a code change: only the harness/ layer (and what follows it) is rebuilt
        marker = ROOT / "harness" / "_bench_touch.py"
        marker.write_text("# temporary file written by bench/containers.py\n")
        try:
            for name in IMAGES:
                builds[f"{name}_after_code_change_s"] = round(build(name, args.base, no_cache=False), 1)
        finally:
            marker.unlink()
            for name in IMAGES:  # leave the images as the tree is
                build(name, args.base, no_cache=False)
        out["build_s"] = builds
    out["image_mb"] = {ref: image_size_mb(ref) for ref in
                       [args.base] + [f"qparity/{n}:{TAG}" for n in IMAGES]}

    root = Path(tempfile.mkdtemp(prefix="qparity-bench-containers-"))
    root.chmod(0o755)
    try:
        ws = workspace(root, args.images)
        up: dict = {}
        for profile in ("cpu", "intel"):
            env = compose_env(ws, f"up-{profile}", args.cpus, args.base, args.limit)
            p, wall = sh(compose("--profile", profile, *UP_ARGS, env=env), env=env, check=False)
            sh(compose("--profile", profile, "down", env=env), env=env)
            up[profile] = {"wall_s": round(wall, 1), "exit": p.returncode,
                           "note": f"QPARITY_LIMIT={args.limit}, locked latency protocol (50+200)"}
        out["compose_up"] = up
        lat: dict = {}
        for engine in args.engines.split(","):
            pairs = [latency_pair(engine, ws, args.cpus, args.base, args.limit, r)
                     for r in range(args.rounds)]
            host = statistics.median(h for h, _ in pairs)
            ctr = statistics.median(c for _, c in pairs)
            # the least-disturbed run of each: on a shared, loaded machine the median of a
            # few runs still carries other tenants' load; the minimum carries the least
            hmin, cmin = min(h for h, _ in pairs), min(c for _, c in pairs)
            lat[engine] = {"host_median_ms": round(host, 3), "container_median_ms": round(ctr, 3),
                           "container_over_host": round(ctr / host, 3),
                           "host_min_ms": round(hmin, 3), "container_min_ms": round(cmin, 3),
                           "container_over_host_min": round(cmin / hmin, 3),
                           "pairs_ms": [[round(h, 3), round(c, 3)] for h, c in pairs]}
        out["latency"] = lat
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out["load_avg_end"] = os.getloadavg()
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
