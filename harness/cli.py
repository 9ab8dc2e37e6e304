"""The `qparity` command: a thin layer over the library; every command is a function call."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from rich.console import Console

from .engines import EngineConfig, engine_class, engine_names
from .engines.base import visible_cpus
from .errors import QParityError
from .protocol import locked_protocol

err_console = Console(stderr=True)
# Modules that own a group of commands and expose register(subparsers).
COMMAND_MODULES: tuple[str, ...] = ("harness.nightly", "harness.history", "harness.diagnose")


def default_threads() -> int:
    """QPARITY_THREADS wins (compose sets it from the cpuset); else the CPUs we may use."""
    env = os.environ.get("QPARITY_THREADS")
    if env:
        if not env.isdigit() or int(env) < 1:
            raise QParityError(f"QPARITY_THREADS must be a positive integer, got {env!r}")
        return int(env)
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


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="COCO-layout folder: val2017/*.jpg, annotations/instances_val2017.json")
    p.add_argument("--images", help="image folder (overrides --data)")
    p.add_argument("--annotations", help="COCO annotation JSON (overrides --data)")
    p.add_argument("--limit", type=int, help="evaluate only the first N images of the sorted list")


def add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="the INT8 QDQ ONNX model")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--threads", type=int, help="CPU threads (default: QPARITY_THREADS or the "
                                               "CPUs this process may use)")
    p.add_argument("--warmup", type=int, help="latency warm-up runs (locked: 50)")
    p.add_argument("--runs", type=int, help="latency timed runs (locked: 200)")
    p.add_argument("--cache-dir", help="where engines may cache built artefacts (TensorRT plans)")
    p.add_argument("--engine-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="engine-specific option, recorded in the result")
    add_data_args(p)


def build_requests(args: argparse.Namespace, engines: list[str]):
    from .runner import RunRequest

    # Options not given on the command line may come from the environment (compose.yaml passes
    # QPARITY_LIMIT, QPARITY_WARMUP, QPARITY_RUNS); either way the report records them.
    for opt, var in (("limit", "QPARITY_LIMIT"), ("warmup", "QPARITY_WARMUP"), ("runs", "QPARITY_RUNS")):
        if getattr(args, opt) is None:
            setattr(args, opt, env_int(var))
    images, ann = data_paths(args)
    proto = locked_protocol().with_overrides(warmup=args.warmup, runs=args.runs)
    options = {}
    for kv in args.engine_opt:
        key, sep, value = kv.partition("=")
        if not sep:
            raise QParityError(f"--engine-opt expects KEY=VALUE, got {kv!r}")
        options[key] = value
    threads = args.threads or default_threads()
    reqs = []
    for name in engines:
        engine_class(name)  # unknown names fail here, before anything runs
        cfg = EngineConfig(threads=threads, options=dict(options),
                           cache_dir=Path(args.cache_dir) if args.cache_dir else None)
        reqs.append(RunRequest(name, Path(args.model), images, ann, Path(args.out), proto,
                               args.limit, cfg))
    return reqs


def cmd_run(args: argparse.Namespace) -> int:
    from .data import Dataset
    from .modelinfo import inspect_model
    from .runner import run_isolated

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    reqs = build_requests(args, engines)
    # Bad input is reported once, up front, before any engine spends time on it.
    info = inspect_model(Path(args.model), locked_protocol().size)
    data = Dataset.load(reqs[0].images_dir, reqs[0].annotations, args.limit)
    data.check_num_classes(info.num_classes, Path(args.model))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    from .preflight import print_check, write_preflight

    print_check(write_preflight(Path(args.model), Path(args.out), locked_protocol().size))
    for req in reqs:
        err_console.print(f"[bold]>> {req.engine}[/]")
        res = run_isolated(req)
        if res["status"] != "ok":
            err_console.print(f"[red]{req.engine}: {res['status']}: {res['reason']}[/]", highlight=False)
    return cmd_collect(argparse.Namespace(out=args.out, expect=",".join(engines)))


def cmd_run_engine(args: argparse.Namespace) -> int:
    from .runner import execute, run_isolated

    (req,) = build_requests(args, [args.engine])
    res = execute(req) if args.in_process else run_isolated(req)
    if res["status"] != "ok" and not args.in_process:  # the supervising parent reports it
        err_console.print(f"{req.engine}: {res['status']}: {res['reason']}", highlight=False)
    # The result file is the product; a written file is success for the process (compose's
    # collector waits on it); the verdict is the collector's job.
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from .collector import collect
    from .report import print_report

    expect = [e.strip() for e in args.expect.split(",") if e.strip()] if args.expect else None
    report = collect(Path(args.out), expect=expect)
    print_report(report)
    Console(stderr=True).print(f"report: {Path(args.out) / 'eval_report.json'}")
    return report["exit_code"]


def cmd_lists(args: argparse.Namespace) -> int:
    from .lists import write_lists

    written = write_lists(Path(args.data), Path(args.out), args.split)
    for k, v in written.items():
        n = len(v.read_text().splitlines())
        Console().print(f"{k:16s} {v}  ({n} lines)")
    return 0


def cmd_ptq(args: argparse.Namespace) -> int:
    from .lists import read_list
    from .ptq import quantize

    calib = read_list(Path(args.calib), Path(args.data) if args.data else None)
    if args.limit:
        calib = calib[: args.limit]
    exclude = list(args.exclude)
    if args.exclude_from:
        exclude += _exclude_list(Path(args.exclude_from))
    rec = quantize(Path(args.model), calib, Path(args.out), args.recipe, args.method, exclude,
                   args.keep_first_conv, args.quantize_tail, args.per_tensor_weights)
    Console().print(f"wrote {args.out} (md5 {rec['model']['md5']}, recipe {args.recipe}, "
                    f"{args.method} on {len(calib)} images, {len(rec['kept_in_float'])} node(s) "
                    f"kept in float)", highlight=False)
    return 0


def _exclude_list(path: Path) -> list[str]:
    """A JSON file with an "exclude" list (what `qparity sensitivity` writes)."""
    try:
        return list(json.loads(path.read_text())["exclude"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise QParityError(f"expected JSON with an 'exclude' list ({e})", path) from e


def cmd_check_model(args: argparse.Namespace) -> int:
    from .preflight import check_model, print_check

    verdict = check_model(Path(args.model), locked_protocol().size)
    if args.json:
        print(json.dumps(verdict, indent=1))
    else:
        print_check(verdict)
    return 0 if all(v["accepts"] for v in verdict["engines"].values()) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .report import print_report

    proto = locked_protocol().with_overrides(warmup=args.warmup, runs=args.runs)
    report = run_demo(Path(args.out), args.images, proto, threads=args.threads)
    print_report(report)
    d = report["demo"]
    Console().print(f"fp32 model on {report['golden']}: mAP50-95 {d['fp32_map50_95']}; "
                    f"demo wall time {d['wall_s']} s", highlight=False)
    Console().print(f"report: {Path(args.out) / 'results' / 'eval_report.json'}", highlight=False)
    return report["exit_code"]


def cmd_engines(args: argparse.Namespace) -> int:
    from rich.table import Table

    t = Table("engine", "available here", title="qparity engines")
    for name in engine_names():
        reason = engine_class(name).probe()
        t.add_row(name, "[green]yes[/]" if reason is None else f"[yellow]no[/]: {reason}")
    Console().print(t)
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qparity", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run engines on a model and data, then collect")
    p.add_argument("--engines", default=locked_protocol().golden,
                   help=f"comma-separated, from: {', '.join(engine_names())}")
    add_engine_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("run-engine", help="run one engine (in a child process) and write its result")
    p.add_argument("--engine", required=True, help=f"one of: {', '.join(engine_names())}")
    p.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    add_engine_args(p)
    p.set_defaults(func=cmd_run_engine)

    p = sub.add_parser("collect", help="merge the results in a folder, gate, write eval_report.json")
    p.add_argument("out")
    p.add_argument("--expect", help="comma-separated engines that must have results; others are "
                                    "ignored (files left by an earlier run)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("lists", help="val.txt, calib.txt and sha256 manifests for a COCO folder")
    p.add_argument("--data", required=True, help="COCO-layout folder")
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="val2017")
    p.set_defaults(func=cmd_lists)

    p = sub.add_parser("ptq", help="quantize an fp32 ONNX model with the locked recipe")
    p.add_argument("--model", required=True, help="fp32 ONNX model")
    p.add_argument("--calib", required=True, help="calib.txt from `qparity lists`")
    p.add_argument("--data", help="folder the list's relative paths start from (default: the list's)")
    p.add_argument("--out", required=True, help="output model, e.g. model-int8.onnx")
    p.add_argument("--recipe", default="portable", choices=["portable", "spec-v1"])
    p.add_argument("--method", default="percentile", choices=["percentile", "minmax"])
    p.add_argument("--exclude", action="append", default=[], metavar="NODE",
                   help="keep this node in float (repeatable)")
    p.add_argument("--exclude-from", help="JSON with an 'exclude' list (from qparity sensitivity)")
    p.add_argument("--keep-first-conv", action="store_true", help="keep the first convolution in float")
    p.add_argument("--quantize-tail", action="store_true",
                   help="also quantize the box-decoding tail (the known trap; for comparison only)")
    p.add_argument("--per-tensor-weights", action="store_true")
    p.add_argument("--limit", type=int, help="use only the first N calibration images")
    p.set_defaults(func=cmd_ptq)

    p = sub.add_parser("check-model", help="preflight: will each engine accept this model?")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check_model)

    p = sub.add_parser("demo", help="the whole pipeline on the embedded demo (no download, no GPU)")
    p.add_argument("--out", default="results/demo")
    p.add_argument("--images", type=int, default=300, help="demo validation images")
    p.add_argument("--threads", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--runs", type=int)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("engines", help="list engines and whether they can run here")
    p.set_defaults(func=cmd_engines)
    for module in COMMAND_MODULES:  # each adds its sub-commands; heavy imports stay lazy
        importlib.import_module(module).register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except QParityError as e:
        err_console.print(f"[bold red]qparity: error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
