"""The nightly on one machine: native plus emulated CPU classes, judged like real platforms.

`qparity emulate nightly` runs the engines natively (one platform) and under user-mode QEMU on
each named CPU class (one platform each, accuracy only), writes every platform's results folder
with its `platform.json` exactly as the platform jobs of the real nightly do, and hands them to
`qparity nightly`: each engine gated against its own platform's golden engine, each platform's
golden engine against the native one (a golden drift between CPU classes fails it), the
executed-precision census per platform, and the history append (no latency for an emulated
platform is ever stored: its results have none).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from .errors import QParityError
from .fileio import write_json_atomic


def native_name() -> str:
    from .emulate import cpu_class_of, features_here

    return f"native-{cpu_class_of(features_here())}"


def run_platform(args: argparse.Namespace, engines: list[str], folder: Path,
                 name: str, spec: str | None, console) -> dict[str, Any]:
    """Run `engines` into `folder` (natively, or emulated on `spec`) and describe the platform."""
    from .options import build_requests
    from .collector import collect
    from .emulate import label
    from .runner import run_isolated

    folder.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(**{**vars(args), "out": str(folder), "emulate_cpu": spec})
    t0 = time.perf_counter()
    for req in build_requests(ns, engines):
        console.print(f"[bold]>> {name}: {req.engine}[/]"
                      + (f" ({label(spec)})" if spec else ""), highlight=False)
        res = run_isolated(req)
        if res["status"] != "ok":
            console.print(f"[red]{name}/{req.engine}: {res['status']}: {res['reason']}[/]",
                          highlight=False)
    wall = round(time.perf_counter() - t0, 1)
    meta = {"platform": name, "label": "local", "profile": "emulated" if spec else "native",
            "runner": "qparity emulate nightly", "compose_exit": None, "job_status": "success",
            "engines": engines, "emulate_cpu": spec, "wall_s": wall}
    write_json_atomic(folder / "platform.json", meta)
    collect(folder, expect=engines)  # the platform's own eval_report.json, as a platform job leaves
    return meta


def cmd_emulate_nightly(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .emulate import check_and_say
    from .nightly.command import cmd_nightly
    from .nightly.judge import NIGHTLY_REPORT
    from .records.nightly import Emulation, read_nightly_report

    console = Console(stderr=True)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not classes:
        raise QParityError("--classes needs at least one CPU class")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    emu_engines = [e.strip() for e in (args.emulated_engines or args.engines).split(",") if e.strip()]
    for spec in classes:  # refused before anything runs when a class cannot be emulated here
        check_and_say(spec, console)
    out = Path(args.out)
    runs = out / "runs"
    native = native_name()
    plats = [(native, None, engines)] + [(f"emulated-{s}", s, emu_engines) for s in classes]
    timing = {}
    for name, spec, engs in plats:
        timing[name] = run_platform(args, engs, runs / name, name, spec, console)["wall_s"]
    ns = argparse.Namespace(platforms=[f"{n}={runs / n}" for n, _, _ in plats],
                            expected=",".join(n for n, _, _ in plats), reference=native,
                            golden_drift=args.golden_drift, out=str(out / "nightly"),
                            history=args.history, no_history=args.no_history,
                            run_id=args.run_id, date=None)
    code = cmd_nightly(ns)
    report_path = out / "nightly" / NIGHTLY_REPORT
    report = read_nightly_report(report_path)
    report.emulation = Emulation(native=native, classes=classes, platform_wall_s=timing,
                                 note="emulated platforms: accuracy only, no latency measured")
    write_json_atomic(report_path, report.to_json())
    return code


def cmd_emulate_drift(args: argparse.Namespace) -> int:
    """Preflight with emulation: does the golden engine's accuracy on this model change with the
    CPU class, and by how much? The golden natively and on each class, qdq-ref (the model's own
    Q/DQ arithmetic) natively as the yardstick that says which class is right."""
    from rich.console import Console
    from rich.table import Table

    from .emulate import check_and_say, features_here
    from .protocol import locked_protocol
    from .report import wide_console

    console = Console(stderr=True)
    proto = locked_protocol()
    golden, tol = proto.golden, proto.tolerance_map50_95
    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    seen = {c: check_and_say(c, console) for c in classes}
    out = Path(args.out)
    args = argparse.Namespace(**{**vars(args), "warmup": 1, "runs": 1, "engine_opt": [],
                                 "cache_dir": None})
    native = native_name()
    run_platform(args, [golden, "qdq-ref"], out / native, native, None, console)

    def m(folder: Path, engine: str) -> float | None:
        r = json.loads((folder / f"{engine}.json").read_text())
        if r["status"] != "ok":
            raise QParityError(f"{engine}: {r['status']}: {r['reason']}", folder)
        return r["metrics"]["map50_95"]

    base, ref = m(out / native, golden), m(out / native, "qdq-ref")
    rows = {native: {"flags": features_here(), "map50_95": base, "delta_native": 0.0,
                     "delta_qdq_ref": round(base - ref, 4)}}
    for c in classes:
        folder = out / f"emulated-{c}"
        run_platform(args, [golden], folder, f"emulated-{c}", c, console)
        v = m(folder, golden)
        rows[f"emulated-{c}"] = {"flags": seen[c]["flags_seen"], "map50_95": v,
                                 "delta_native": round(v - base, 4),
                                 "delta_qdq_ref": round(v - ref, 4)}
    t = Table("CPU class", "flags seen", f"{golden} mAP50-95", "Δ native", "Δ qdq-ref", "moves?",
              title=f"golden {golden} on {Path(args.model).name} per CPU class (first "
                    f"{args.limit or 'all'} images; qdq-ref {ref:.2f}; tolerance {tol}); "
                    f"emulated: accuracy only", title_justify="left")
    for name, r in rows.items():
        moves = abs(r["delta_native"]) > tol
        r["moves"] = moves
        t.add_row(name, " ".join(r["flags"]), f"{r['map50_95']:.2f}", f"{r['delta_native']:+.2f}",
                  f"{r['delta_qdq_ref']:+.2f}", "[bold red]yes[/]" if moves else "no")
    wide_console().print(t)
    write_json_atomic(out / "drift.json", {"model": str(args.model), "golden": golden,
                                           "qdq_ref": ref, "tolerance_map50_95": tol,
                                           "limit": args.limit, "platforms": rows})
    return 0


def register_nightly(sub: argparse._SubParsersAction) -> None:
    from .options import add_data_args

    p = sub.add_parser("drift", help="preflight with emulation: how much the golden engine's "
                                     "accuracy on this model changes per CPU class (slow: "
                                     "use --limit)")
    p.add_argument("--model", required=True, help="the INT8 QDQ ONNX model")
    p.add_argument("--out", required=True, help="folder for each class's results and drift.json")
    p.add_argument("--classes", default="avx2,sse4",
                   help="comma-separated CPU classes or QEMU models to emulate")
    p.add_argument("--threads", type=int, help="CPU threads (default: the CPUs this process may "
                                               "use)")
    add_data_args(p)
    p.set_defaults(func=cmd_emulate_drift)

    p = sub.add_parser("nightly", help="the cross-platform nightly on this machine: native plus "
                                       "emulated CPU classes, one verdict (accuracy only for the "
                                       "emulated ones)")
    p.add_argument("--model", required=True, help="the INT8 QDQ ONNX model")
    p.add_argument("--out", required=True, help="folder for every platform's results and the "
                                                "nightly report (OUT/runs/<platform>, OUT/nightly)")
    p.add_argument("--classes", default="avx2,sse4",
                   help="comma-separated CPU classes or QEMU models to emulate (default avx2,sse4)")
    p.add_argument("--engines", default="ort-cpu", help="engines of every platform (default ort-cpu)")
    p.add_argument("--emulated-engines", help="engines of the emulated platforms (default: --engines)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the CPUs this process may "
                                               "use)")
    p.add_argument("--warmup", type=int, help="native latency warm-up runs (locked: 50)")
    p.add_argument("--runs", type=int, help="native latency timed runs (locked: 200)")
    p.add_argument("--cache-dir")
    p.add_argument("--engine-opt", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--golden-drift", choices=["fail", "warn"], default="fail",
                   help="a golden engine that moves between CPU classes fails (default) or is noted")
    p.add_argument("--history", metavar="PATH", help="history store to append to")
    p.add_argument("--no-history", action="store_true", help="do not append to the history")
    p.add_argument("--run-id")
    add_data_args(p)
    p.set_defaults(func=cmd_emulate_nightly)
