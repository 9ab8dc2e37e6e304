"""Option helpers shared by every command module, below the CLI: how many threads, where the
data is, KEY=VALUE options, the engine-run options and the requests they make. Library modules import these from here, never from `harness.cli`."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from .engines import EngineConfig, engine_class
from .engines.base import visible_cpus
from .errors import QParityError
from .protocol import locked_protocol


def warn(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]qparity: warning:[/] {message}", highlight=False,
                               soft_wrap=True)


def cap_threads(n: int, what: str) -> int:
    """More threads than CPUs only makes the engines fight over them (and 99,999 threads took
    16 GB): use at most the CPUs this process may run on, and say so."""
    cpus = visible_cpus()
    if n > cpus:
        warn(f"{what} {n} is more than the {cpus} CPU(s) this process may use; using {cpus}")
        return cpus
    return n


def default_threads() -> int:
    """QPARITY_THREADS wins (compose sets it from the cpuset); else the CPUs we may use."""
    env = os.environ.get("QPARITY_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise QParityError(f"QPARITY_THREADS must be a positive integer, got {env!r}")
        return cap_threads(int(env), "QPARITY_THREADS")
    return visible_cpus()


def env_int(name: str) -> int | None:
    """An optional positive integer from the environment (compose passes settings this way);
    unset or empty means not set."""
    env = os.environ.get(name, "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise QParityError(f"{name} must be a positive integer, got {env!r}")
    return int(env)


def data_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """--data DIR means COCO layout; --images/--annotations override either part."""
    base = Path(args.data) if args.data else None
    images = Path(args.images) if args.images else (base / "val2017" if base else None)
    ann = Path(args.annotations) if args.annotations else (
        base / "annotations" / "instances_val2017.json" if base else None)
    if images is None or ann is None:
        raise QParityError("give --data DIR (COCO layout) or both --images and --annotations")
    return images, ann


def split_kv(item: str, what: str, form: str = "KEY=VALUE") -> tuple[str, str]:
    """'KEY=VALUE' -> (KEY, VALUE), split at the first '=' (a value may hold more); an item
    without '=' or with an empty key is one error naming the flag."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise QParityError(f"{what} expects {form}, got {item!r}")
    return key.strip(), value


def parse_kv(items: list[str], what: str, form: str = "KEY=VALUE") -> dict[str, str]:
    """Repeated KEY=VALUE options as a dict; the last of a repeated key wins."""
    return dict(split_kv(item, what, form) for item in items)


def engine_timeout(args: argparse.Namespace) -> float:
    from .runner import DEFAULT_ENGINE_TIMEOUT_S

    if getattr(args, "engine_timeout", None) is not None:
        return float(args.engine_timeout)
    env = os.environ.get("QPARITY_ENGINE_TIMEOUT")
    if not env:
        return DEFAULT_ENGINE_TIMEOUT_S
    try:
        value = float(env)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise QParityError(f"QPARITY_ENGINE_TIMEOUT must be a positive number of seconds, "
                           f"got {env!r}")
    return value


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="COCO-layout folder: val2017/*.jpg, annotations/instances_val2017.json")
    p.add_argument("--images", help="image folder (overrides --data's val2017/)")
    p.add_argument("--annotations", help="COCO annotation JSON (overrides --data's "
                                         "annotations/instances_val2017.json)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images of the sorted list "
                                             "(default: all; the report says so)")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the INT8 QDQ ONNX model")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--threads", type=int, help="CPU threads (default: QPARITY_THREADS or the "
                                               "CPUs this process may use)")
    p.add_argument("--warmup", type=int, help="latency warm-up runs (default: the locked 50; "
                                              "another value makes it a non-baseline run)")
    p.add_argument("--runs", type=int, help="latency timed runs (default: the locked 200; "
                                            "another value makes it a non-baseline run)")
    p.add_argument("--cache-dir", help="where engines may cache built artefacts (TensorRT plans; "
                                       "default: none)")
    p.add_argument("--engine-opt", action="append", default=[], metavar="[ENGINE:]KEY=VALUE",
                   help="engine option, repeatable, recorded in the result and shown under the "
                        "table: ENGINE:KEY=VALUE for one engine; a plain KEY=VALUE goes to every "
                        "engine of the run that takes it, and an option no engine takes is an "
                        "error (OpenVINO: any compile property, e.g. LP_TRANSFORMS_MODE=NO; "
                        "ort-cpu: allow_spinning=0; TensorRT: see docs/tensorrt.md)")
    p.add_argument("--engine-timeout", type=float, metavar="SECONDS",
                   help="end an engine's process (and all it started) after this long, leaving "
                        "an 'error: timed out' result (default: QPARITY_ENGINE_TIMEOUT or 6 h)")
    add_data_args(p)
    from .emulate import add_run_option

    add_run_option(p)


def build_requests(args: argparse.Namespace, engines: list[str], run_id: str | None = None):
    from .runner import RunRequest

    # Options not given on the command line may come from the environment (compose.yaml passes
    # QPARITY_LIMIT, QPARITY_WARMUP, QPARITY_RUNS); either way the report records them.
    for opt, var in (("limit", "QPARITY_LIMIT"), ("warmup", "QPARITY_WARMUP"), ("runs", "QPARITY_RUNS")):
        if getattr(args, opt) is None:
            setattr(args, opt, env_int(var))
    images, ann = data_paths(args)
    proto = locked_protocol().with_overrides(warmup=args.warmup, runs=args.runs)
    options = engine_options(args.engine_opt, engines)
    threads = args.threads or default_threads()
    reqs = []
    for name in engines:
        engine_class(name)  # unknown names fail here, before anything runs
        cfg = EngineConfig(threads=threads, options=options[name],
                           cache_dir=Path(args.cache_dir) if args.cache_dir else None)
        reqs.append(RunRequest(name, Path(args.model), images, ann, Path(args.out), proto,
                               args.limit, cfg, run_id=run_id, timeout_s=engine_timeout(args),
                               emulate_cpu=getattr(args, "emulate_cpu", None)))
    return reqs


def engine_options(items: list[str], engines: list[str]) -> dict[str, dict[str, str]]:
    """--engine-opt values -> each engine's options, every one checked by its engine.

    `ENGINE:KEY=VALUE` is that engine's (an engine not in the run is an error). A plain
    `KEY=VALUE` goes to every engine of the run that takes KEY=VALUE (OpenVINO: any compile
    property; ONNX Runtime: allow_spinning; TensorRT: docs/tensorrt.md), and is an error when
    none does: never silently ignored, never handed to an engine that would misread it.
    """
    per: dict[str, dict[str, str]] = {e: {} for e in engines}
    plain: dict[str, str] = {}
    for item in items:
        head, sep, rest = item.partition(":")
        if sep and "=" not in head:
            if head not in per:
                raise QParityError(f"--engine-opt {item!r} names engine {head!r}, which this run "
                                   f"does not run (engines: {', '.join(engines)})")
            key, value = split_kv(rest, "--engine-opt", "ENGINE:KEY=VALUE")
            per[head][key] = value
        else:
            key, value = split_kv(item, "--engine-opt", "KEY=VALUE or ENGINE:KEY=VALUE")
            plain[key] = value
    for key, value in plain.items():
        problems = {e: engine_class(e).option_problem(key, value) for e in engines}
        takers = [e for e, problem in problems.items() if problem is None]
        if not takers:
            raise QParityError(f"--engine-opt {key}={value}: no engine of this run takes it ("
                               + "; ".join(f"{p}" for p in problems.values()) + ")")
        for e in takers:
            per[e].setdefault(key, value)  # an addressed ENGINE:KEY wins
    for e, opts in per.items():
        engine_class(e).check_options(opts)
    return per
