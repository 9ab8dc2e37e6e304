"""The `qparity` command: a thin layer over the library; every command is a function call.

Exit status, for every command: 0 pass, 1 a gate failure (an engine outside the tolerance) and
nothing else, 2 any error, 130 interrupted (Ctrl-C). An error reaching the command line is one
line on stderr naming the file and the problem; `--debug` (anywhere on the line) or
QPARITY_DEBUG=1 shows the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from .engines import engine_class, engine_names
from .errors import QParityError
from .options import (add_data_args, add_engine_args, build_requests, cap_threads,  # noqa: F401
                      data_paths, default_threads, engine_timeout, env_int)
from .protocol import locked_protocol

err_console = Console(stderr=True)
EXIT_CODES = """exit codes:
  run, collect, demo, nightly  0 every engine that ran passes, 1 an engine fails the gate,
                               2 an error (bad input, golden missing, an engine that could
                               not run or was unavailable)
  check-model                  0 every engine would accept the model, 1 one would refuse
                               it, 2 an error
  run-engine                   0 its result file was written (pass or not: the collector
                               judges), 2 an error before that
  every other command          0 done, 2 an error
"""
# Modules that own a group of commands and expose register(subparsers).
COMMAND_MODULES: tuple[str, ...] = ("harness.nightly", "harness.history", "harness.diagnose",
                                     "harness.emulate_cmd", "harness.recipes")


# Numeric options, by argparse name, wherever a command has them: the least (and most) value
# that makes sense. Checked once, after parsing, so every command gets the same one-line error.
MINIMUM = {"threads": 1, "warmup": 0, "runs": 1, "limit": 1, "images": 1, "top": 1, "last": 1,
           "calib_limit": 1, "max_exclude": 1, "block_depth": 1}
MAXIMUM = {"warmup": 100_000, "runs": 100_000}
POSITIVE = ("engine_timeout",)


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the whole usage before its error; we print one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        err_console.print(f"[bold red]{escape(self.prog)}: error:[/] {escape(message)} "
                          f"(see {escape(self.prog)} --help)", highlight=False, soft_wrap=True)
        sys.exit(2)


def check_options(args: argparse.Namespace) -> None:
    """Range checks for numeric options, and threads capped at the CPUs this process may use."""
    for name, value in vars(args).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise QParityError(f"{flag} must be a finite number, got {value}")
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if name in MINIMUM and value < MINIMUM[name]:
            raise QParityError(f"{flag} must be at least {MINIMUM[name]}, got {value}")
        if name in MAXIMUM and value > MAXIMUM[name]:
            raise QParityError(f"{flag} must be at most {MAXIMUM[name]}, got {value}")
        if name in POSITIVE and value <= 0:
            raise QParityError(f"{flag} must be more than 0, got {value}")
    if getattr(args, "threads", None) is not None:
        args.threads = cap_threads(args.threads, "--threads")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the help already names it or there is
    none (a flag, an unset option)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        d = action.default
        if (h == argparse.SUPPRESS or "default" in h.lower() or not action.option_strings
                or d is None or d is False or d == [] or d == argparse.SUPPRESS):
            return h
        return f"{h} (default: %(default)s)"


def parse_engines(text: str) -> list[str]:
    engines = [e.strip() for e in text.split(",") if e.strip()]
    if not engines:
        raise QParityError(f"--engines is empty; give one or more of: {', '.join(engine_names())}")
    dup = sorted({e for e in engines if engines.count(e) > 1})
    if dup:
        raise QParityError(f"--engines names {', '.join(dup)} more than once")
    return engines


def cmd_run(args: argparse.Namespace) -> int:
    from .data import Dataset
    from .modelinfo import inspect_model
    from .preflight import print_check, write_preflight
    from .rundir import RunLock, move_aside, new_run_id, prepare_out, write_run
    from .runner import run_isolated, sigterm_as_interrupt

    engines = parse_engines(args.engines)
    run_id = new_run_id()
    reqs = build_requests(args, engines, run_id)
    # Bad input is reported once, up front, before any engine spends time on it and before the
    # previous run's files are touched.
    info = inspect_model(Path(args.model), locked_protocol().size)
    data = Dataset.load(reqs[0].images_dir, reqs[0].annotations, args.limit)
    data.check_num_classes(info.num_classes, Path(args.model))
    if args.emulate_cpu:  # refused up front when the emulated CPU does not show its class
        from .emulate import check_and_say

        check_and_say(args.emulate_cpu, err_console)
    out = prepare_out(Path(args.out))
    with RunLock(out, run_id), sigterm_as_interrupt():
        moved = move_aside(out)
        if moved:
            err_console.print(f"moved the previous run's {len(moved)} file(s) to "
                              f"{escape(str(out / 'previous'))}/", highlight=False)
        write_run(out, run_id, engines, "running")
        try:
            verdict = write_preflight(Path(args.model), out, locked_protocol().size)
            _stamp(out / "preflight.json", run_id)
            print_check(verdict)
            for req in reqs:
                err_console.print(f"[bold]>> {escape(req.engine)}[/]")
                res = run_isolated(req)
                if res["status"] != "ok":
                    err_console.print(f"[red]{escape(req.engine)}: {escape(res['status'])}: "
                                      f"{escape(res['reason'])}[/]", highlight=False)
        except KeyboardInterrupt:
            write_run(out, run_id, engines, "interrupted")
            try:  # the report then says what was done and that the run is incomplete
                from .collector import collect
                collect(out, run_id=run_id)
            except QParityError:
                pass
            raise
        write_run(out, run_id, engines, "finished")
        return cmd_collect(argparse.Namespace(out=str(out), expect=",".join(engines),
                                              run_id=run_id, wide=args.wide))


def _stamp(path: Path, run_id: str) -> None:
    """Put the run id into a JSON file another module wrote for this run."""
    from .fileio import write_json_atomic

    if path.is_file():
        doc = json.loads(path.read_text())
        if isinstance(doc, dict):
            doc["run_id"] = run_id
            write_json_atomic(path, doc)


def cmd_run_engine(args: argparse.Namespace) -> int:
    from .rundir import RunLock, prepare_out
    from .runner import run_isolated, sigterm_as_interrupt

    run_id = args.run_id or os.environ.get("QPARITY_RUN_ID") or None
    (req,) = build_requests(args, [args.engine], run_id)

    with RunLock(prepare_out(Path(args.out)), run_id), sigterm_as_interrupt():
        res = run_isolated(req)
    if res["status"] != "ok":  # the supervising parent reports it
        err_console.print(f"{escape(req.engine)}: {escape(res['status'])}: {escape(res['reason'])}",
                          highlight=False)
    # The result file is the product; a written file is success for the process (compose's
    # collector waits on it); the verdict is the collector's job.
    return 0


def leave_error_result(argv: list[str], reason: str) -> None:
    """A `run-engine` that cannot even start (unknown or refused engine, a bad option, a plugin
    list that does not load) still leaves `<out>/<engine>.json` saying so: under compose, an
    engine service that exits without a result would otherwise vanish from the collector's
    table, and the verdict could pass. Only --engine and --out are read, by a parser that needs
    nothing else, since the real one may be what failed. A result file already there (the
    engine's own, written after it started) is never replaced."""
    import re

    from .results import new_result, result_path, write_result

    if "run-engine" not in argv:
        return
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--engine")
    ap.add_argument("--out")
    ap.add_argument("--run-id")
    try:
        known, _ = ap.parse_known_args(argv[argv.index("run-engine") + 1:])
    except SystemExit:
        return
    if not known.out or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", known.engine or ""):
        return  # nowhere to write, or not a name a result file may carry
    path = result_path(Path(known.out), known.engine)
    if path.exists():
        return
    run_id = known.run_id or os.environ.get("QPARITY_RUN_ID") or None
    res = new_result(known.engine, locked_protocol(), run_id)
    res["reason"] = f"run-engine could not start: {reason}"
    res["finished"] = res["started"]
    from .rundir import RunLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with RunLock(path.parent, run_id):  # never into a folder another run is writing
            write_result(path, res)
    except (OSError, QParityError):
        pass  # the one-line error on stderr is all that can be left


def cmd_collect(args: argparse.Namespace) -> int:
    from .collector import collect
    from .report import print_report

    expect = [e.strip() for e in args.expect.split(",") if e.strip()] if args.expect else None
    report = collect(Path(args.out), expect=expect, run_id=getattr(args, "run_id", None))
    print_report(report, wide=getattr(args, "wide", None))
    print_collection_notes(report)
    from .report_html import try_write_html

    page = try_write_html(Path(args.out), report, err_console)
    Console(stderr=True).print(f"report: {Path(args.out) / 'eval_report.json'}"
                               + (f", {page}" if page else ""), highlight=False, markup=False,
                               soft_wrap=True)
    return report["exit_code"]


def print_collection_notes(report: dict, console: Console | None = None) -> None:
    """What the collector decided about the folder itself: beside the table, one line each."""
    console = console or Console(stderr=True)
    for line in report.get("errors") or []:
        console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    for line in report.get("warnings") or []:
        console.print(f"[bold yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    for s in report.get("skipped_files") or []:
        console.print(f"[yellow]skipped[/] {escape(s['file'])}: {escape(s['reason'])}",
                      highlight=False, soft_wrap=True)


def cmd_lists(args: argparse.Namespace) -> int:
    from .lists import write_lists

    written = write_lists(Path(args.data), Path(args.out), args.split)
    for k, v in written.items():
        n = len(v.read_text().splitlines())
        Console().print(f"{k:16s} {escape(str(v))}  ({n} lines)", highlight=False)
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
    from .progress import bar

    with bar("calibration: images", len(calib), when_full="computing ranges, writing the model") as tick:
        rec = quantize(Path(args.model), calib, Path(args.out), args.recipe, args.method, exclude,
                       args.keep_first_conv, args.quantize_tail, args.per_tensor_weights,
                       on_image=tick)
    Console().print(f"wrote {escape(args.out)} (md5 {rec['model']['md5']}, recipe {args.recipe}, "
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
    from .demo import explain, run_demo
    from .report import print_report, wide_console

    proto = locked_protocol().with_overrides(warmup=args.warmup, runs=args.runs)
    report = run_demo(Path(args.out), args.images, proto, threads=args.threads)
    console = wide_console()
    print_report(report, console, wide=args.wide)
    d = report["demo"]
    fp32 = d["fp32_map50_95"]
    console.print(f"fp32 model on {report['golden']}: mAP50-95 "
                  f"{'-' if fp32 is None else f'{fp32:.2f}'} (against the int8 golden above: what "
                  f"quantization cost); demo wall time {d['wall_s']} s", highlight=False)
    results = Path(args.out) / "results"
    page = results / "report.html"
    console.print(f"report: {results / 'eval_report.json'}", highlight=False, markup=False,
                  soft_wrap=True)
    if page.is_file():
        console.print(f"page:   {page}", highlight=False, markup=False, soft_wrap=True)
    for line in explain(report, Path(args.out)):
        # commands are never broken across lines, so they copy and paste whole
        console.print(line, highlight=False, markup=False, soft_wrap=line.startswith("  qparity"))
    return report["exit_code"]


def cmd_engines(args: argparse.Namespace) -> int:
    from rich.table import Table

    t = Table("engine", "available here", title="qparity engines")
    for name in engine_names():
        reason = engine_class(name).probe()
        t.add_row(escape(name), "[green]yes[/]" if reason is None else f"[yellow]no[/]: {escape(reason)}")
    Console().print(t)
    return 0


def parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="qparity", description=__doc__, epilog=EXIT_CODES,
                       formatter_class=HelpFormatter)
    ap.add_argument("--debug", action="store_true",
                    help="on an error, show the traceback too (also QPARITY_DEBUG=1; the flag "
                         "may stand anywhere on the line)")
    sub = ap.add_subparsers(dest="command", required=True)
    wide_help = ("the wide table (adds mAP50/75, S/M/L, P95, spread); default: wide only when "
                 "the terminal has room for it")

    p = sub.add_parser("run", help="run engines on a model and data, then collect "
                                   "(exit 0 pass, 1 a gate failed, 2 error)")
    p.add_argument("--engines", default=locked_protocol().golden,
                   help=f"comma-separated, from: {', '.join(engine_names())}")
    p.add_argument("--wide", action="store_true", default=None, help=wide_help)
    add_engine_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("run-engine", help="run one engine (in a child process) and write its result")
    p.add_argument("--engine", required=True, help=f"one of: {', '.join(engine_names())}")
    p.add_argument("--run-id", help="the run this result belongs to, written into it (default: "
                                    "QPARITY_RUN_ID, else none)")
    add_engine_args(p)
    p.set_defaults(func=cmd_run_engine)

    p = sub.add_parser("collect", help="merge the results in a folder, gate, write "
                                       "eval_report.json and report.html")
    p.add_argument("out", help="results folder holding <engine>.json files")
    p.add_argument("--expect", help="comma-separated engines that must have results; others are "
                                    "ignored (files left by an earlier run); default: every "
                                    "result file in the folder")
    p.add_argument("--wide", action="store_true", default=None, help=wide_help)
    p.add_argument("--run-id", help="gather this run's files (default: the run run.json names, "
                                    "else the newest)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("lists", help="val.txt, calib.txt and sha256 manifests for a COCO folder")
    p.add_argument("--data", required=True, help="COCO-layout folder")
    p.add_argument("--out", required=True, help="folder for val.txt, calib.txt and the manifests")
    p.add_argument("--split", default="val2017", help="image folder under --data")
    p.set_defaults(func=cmd_lists)

    p = sub.add_parser("ptq", help="quantize an fp32 ONNX model with the locked recipe")
    p.add_argument("--model", required=True, help="fp32 ONNX model")
    p.add_argument("--calib", required=True, help="calib.txt from `qparity lists`")
    p.add_argument("--data", help="folder the list's relative paths start from (default: the list's)")
    p.add_argument("--out", required=True, help="output model, e.g. model-int8.onnx; its md5 goes "
                                                "to <out>.md5 and a line of onnx_int8_md5.txt")
    # literal, so `--help` does not import ptq (cv2, onnx); a test holds them equal to ptq's
    p.add_argument("--recipe", default="portable",
                   choices=["portable", "spec-v1", "concat-safe", "conv-inputs-only",
                            "portable-int32-bias"],
                   help="portable (SPEC's default): int8 symmetric activations, every engine "
                        "accepts it; spec-v1: the SPEC's uint8 asymmetric activations, CPU "
                        "engines only; concat-safe: portable with the Concat-fed convolutions in "
                        "float (passes ORT, OpenVINO and TensorRT's parser); portable-int32-bias, "
                        "conv-inputs-only: variants for the recipe matrix (docs/recipes.md)")
    p.add_argument("--method", default="percentile", choices=["percentile", "minmax"],
                   help="calibration: percentile 99.99 of each activation, or its min/max")
    p.add_argument("--exclude", action="append", default=[], metavar="NODE",
                   help="keep this node in float (repeatable)")
    p.add_argument("--exclude-from", help="JSON with an 'exclude' list (from qparity sensitivity)")
    p.add_argument("--keep-first-conv", action="store_true", help="keep the first convolution in float")
    p.add_argument("--quantize-tail", action="store_true",
                   help="also quantize the box-decoding tail (the known trap; for comparison only)")
    p.add_argument("--per-tensor-weights", action="store_true",
                   help="one weight scale per tensor instead of per output channel")
    p.add_argument("--limit", type=int, help="use only the first N calibration images (default: all)")
    p.set_defaults(func=cmd_ptq)

    p = sub.add_parser("check-model", help="preflight: will each engine accept this model? "
                                           "(exit 0 all accept, 1 one would refuse, 2 error)")
    p.add_argument("model", help="the INT8 QDQ ONNX model")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON instead of a table")
    p.set_defaults(func=cmd_check_model)

    p = sub.add_parser("demo", help="the whole pipeline on the embedded demo (no download, no GPU)")
    p.add_argument("--out", default="results/demo", help="folder for data, model and results")
    p.add_argument("--num-images", dest="images", type=int, default=300,
                   help="number of demo validation images to generate")
    p.add_argument("--images", dest="images", type=int, help=argparse.SUPPRESS)  # old name
    p.add_argument("--threads", type=int, help="CPU threads per engine (default: QPARITY_THREADS or "
                                               "the CPUs this process may use)")
    p.add_argument("--warmup", type=int, help="latency warm-up runs (default: the locked 50)")
    p.add_argument("--runs", type=int, help="latency timed runs (default: the locked 200)")
    p.add_argument("--wide", action="store_true", default=None, help=wide_help)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("engines", help="list engines and whether they can run here")
    p.set_defaults(func=cmd_engines)
    for module in COMMAND_MODULES:  # each adds its sub-commands; heavy imports stay lazy
        importlib.import_module(module).register(sub)
    for command in sub.choices.values():  # every command shows its defaults the same way
        command.formatter_class = HelpFormatter
    return ap


def debug_wanted(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("QPARITY_DEBUG", "") not in ("", "0")


def fail(message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    err_console.print(f"[bold red]qparity: error:[/] {escape(' '.join(message.split()))}",
                      highlight=False, soft_wrap=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_wanted(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        args = parser().parse_args(argv)
        check_options(args)
        return args.func(args)
    except QParityError as e:
        leave_error_result(argv, str(e))
        return fail(str(e), debug)
    except KeyboardInterrupt:
        err_console.print("qparity: interrupted", highlight=False)
        return 130
    except OSError as e:  # disk full, permissions, a path that is a file: the OS names both
        where = f"{e.filename}: " if e.filename else ""
        return fail(f"{where}{e.strerror or e}", debug)
    except Exception as e:  # a bug: still one line and exit 2, never a 1 that reads as a gate
        hint = "" if debug else " (run with --debug or QPARITY_DEBUG=1 for the traceback)"
        return fail(f"internal error: {type(e).__name__}: {e}{hint}", debug)


if __name__ == "__main__":
    sys.exit(main())
