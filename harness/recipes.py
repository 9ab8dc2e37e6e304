"""`qparity recipes`: which quantization recipe to ship, measured on every engine.

For one fp32 model and data set, each recipe variant is quantized with `qparity ptq`'s code,
checked with `check-model`, run on every engine available here through the runner (one child
process per engine, as `qparity run` does) and gated by the collector. TensorRT, where it cannot
run, is asked through its ONNX parser (TensorRT proper or the GPU-less TensorRT-RTX parser):
a refusal there is evidence, an acceptance only says "the parser accepts".

The answer is a matrix (variant x engine: accepted, mAP50-95, delta to the golden engine,
int8 compute ops that ran / quantized in the file, latency) and one recommendation per
deployment set. Nothing here re-implements PTQ, evaluation or gating.
"""

from __future__ import annotations

import argparse
import html
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from .errors import QParityError

RUN_ENGINES = ("ort-cpu", "openvino", "qdq-ref")
DEPLOYMENTS = {"ORT+OpenVINO": ("ort-cpu", "openvino"), "ORT+TensorRT": ("ort-cpu", "tensorrt"),
               "all three": ("ort-cpu", "openvino", "tensorrt")}
COLLAPSE = 0.5  # a file whose golden mAP lost half of fp32's serves no deployment
ENGINE_LABEL = {"ort-cpu": "ORT", "openvino": "OpenVINO", "tensorrt": "TensorRT", "qdq-ref": "qdq-ref"}


@dataclass(frozen=True)
class Variant:
    name: str
    recipe: str | None  # None: the fp32 model itself, through the golden engine
    options: dict[str, Any] = field(default_factory=dict)  # extra `ptq.quantize` arguments
    note: str = ""


VARIANTS: tuple[Variant, ...] = (
    Variant("fp32", None, note="the float model through the golden engine: what quantization costs"),
    Variant("spec-v1", "spec-v1", note="uint8 asymmetric activations, int32 biases"),
    Variant("portable", "portable", note="int8 symmetric activations, float biases"),
    Variant("portable-int32-bias", "portable-int32-bias", note="portable with int32 biases"),
    Variant("portable-per-tensor", "portable", {"per_tensor_weights": True},
            note="portable with per-tensor weights"),
    Variant("conv-inputs-only", "conv-inputs-only",
            note="portable, Q/DQ on convolution inputs only (Concat left float)"),
    Variant("concat-safe", "concat-safe", note="portable, convolutions fed by a Concat float in the "
            "file (ONNX Runtime quantizes some of them itself)"),
    Variant("portable+tail", "portable", {"quantize_tail": True},
            note="portable with the decode tail quantized (the known trap)"),
)


def variant_names() -> list[str]:
    return [v.name for v in VARIANTS]


# ----------------------------------------------------------------------------- TensorRT
def tensorrt_parser_verdict(model: Path) -> dict[str, Any]:
    """Ask TensorRT's ONNX parser (strongly typed network, no GPU needed) about the file."""
    from .engines.trt.build import ParserRefusal, make_logger, parse_onnx

    trt = None
    for name in ("tensorrt", "tensorrt_rtx"):
        try:
            trt = __import__(name)
            break
        except Exception:  # not installed, or no usable library behind it
            continue
    if trt is None:
        return {"accepted": None, "how": "no TensorRT ONNX parser installed (pip install tensorrt-rtx)",
                "reason": ""}
    how = f"{trt.__name__} {getattr(trt, '__version__', '?')} ONNX parser, strongly typed, no GPU"
    try:
        parsed = parse_onnx(trt, model, make_logger(trt))
    except ParserRefusal as e:
        return {"accepted": False, "how": how, "reason": str(e)}
    except Exception as e:  # the parser library itself failed: no verdict
        return {"accepted": None, "how": how, "reason": f"{type(e).__name__}: {e}"}
    del parsed
    return {"accepted": True, "how": how, "reason": "parser accepts (accuracy not measured here)"}


# ----------------------------------------------------------------------------- one variant
def _cell(report: dict[str, Any], engine: str) -> dict[str, Any]:
    e = report["engines"].get(engine)
    if e is None:
        return {"engine": engine, "ran": False}
    census = e.get("census") or {}
    lat = e.get("latency_ms") or {}
    return {
        "engine": engine, "ran": True, "status": e["status"], "reason": e.get("reason", ""),
        "accepted": e["status"] in ("pass", "fail", "reference"),
        "map50_95": (e.get("metrics") or {}).get("map50_95"),
        "delta_map50_95": e.get("delta_map50_95"), "delta_vs_qdq_ref": e.get("delta_vs_qdq_ref"),
        "int8_ran": census.get("int8_compute_ops"), "compute_ops": census.get("compute_ops"),
        # the file's quantized ops run in int8, and float ones the engine quantized itself
        # (harness/census.py; absent from a census without the split)
        "int8_of_quantized": census.get("int8_of_quantized"),
        "int8_added_by_engine": census.get("int8_added_by_engine"),
        "quantized_in_file": e.get("quantized_in_file"),
        "latency_median_ms": lat.get("median"), "latency_p95_ms": lat.get("p95"),
    }


def run_variant(v: Variant, fp32: Path, calib: list[Path], images: Path, annotations: Path,
                out: Path, protocol: Any, limit: int | None, threads: int,
                engines: list[str], console: Console) -> dict[str, Any]:
    from .collector import collect
    from .engines import EngineConfig
    from .preflight import write_preflight
    from .ptq import quantize
    from .runner import RunRequest, run_isolated

    vdir = out / v.name
    results = vdir / "results"
    row: dict[str, Any] = {"variant": v.name, "recipe": v.recipe, "options": v.options, "note": v.note}
    t0 = time.perf_counter()
    if v.recipe is None:
        model, run_engines = fp32, [protocol.golden]
    else:
        model = vdir / "model-int8.onnx"
        record = quantize(fp32, calib, model, recipe=v.recipe, protocol=protocol, **v.options)
        row["ptq"] = {"recipe": record["recipe"], "options": record["options"], "md5": record["model"]["md5"],
                      "kept_in_float": len(record["kept_in_float"])}
        run_engines = list(engines)
    row["model"] = str(model)
    if results.exists():  # a stale result must never stand in for this run
        for f in results.glob("*.json"):
            f.unlink()
    pre = write_preflight(model, results, protocol.size)
    row["preflight"] = {e: pre["engines"][e] for e in pre["engines"]}
    cfg = EngineConfig(threads=threads)
    for name in run_engines:
        console.print(f"  [bold]{v.name}[/] -> {name}", highlight=False)
        run_isolated(RunRequest(name, model, images, annotations, results, protocol, limit, cfg))
    report = collect(results, protocol, expect=run_engines)
    row["cells"] = {e: _cell(report, e) for e in run_engines}
    if v.recipe is not None and "tensorrt" not in run_engines:
        trt = tensorrt_parser_verdict(model)
        static = pre["engines"].get("tensorrt", {})
        row["cells"]["tensorrt"] = {"engine": "tensorrt", "ran": False, "accepted": trt["accepted"],
                                    "how": trt["how"], "reason": trt["reason"],
                                    "check_model": static,
                                    # what the file asks TensorRT to run in int8 (not measured)
                                    "quantized_in_file": pre.get("quantized_compute_ops"),
                                    "compute_ops": pre.get("compute_ops")}
    row["verdict"] = report["verdict"]
    row["report"] = str(results / "eval_report.json")
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    return row


# ----------------------------------------------------------------------------- recommendation
def engine_ok(cell: dict[str, Any] | None) -> tuple[bool, str]:
    """Does this engine serve this file: accepted, within tolerance, int8 really ran?"""
    if not cell:
        return False, "not measured"
    if not cell.get("ran"):
        acc = cell.get("accepted")
        if acc is True:
            return True, "parser accepts (accuracy not measured here)"
        return False, "refused by its parser" if acc is False else "unknown (no parser here)"
    if cell["status"] not in ("pass",):
        d = cell.get("delta_map50_95")
        return False, (f"mAP {d:+.2f} vs golden" if cell["status"] == "fail" and d is not None
                       else f"{cell['status']}: {cell.get('reason', '')[:80]}")
    if not cell.get("int8_ran"):
        return False, "no compute op ran in int8"
    return True, f"{cell['int8_ran']}/{cell.get('compute_ops') or '?'} int8"


def _int8_share(row: dict[str, Any], engines: tuple[str, ...]) -> float:
    """Mean share of compute ops in int8: measured where the engine ran; where only its parser
    was asked, the share the file quantizes (what a strongly typed engine is asked to run)."""
    shares = []
    for e in engines:
        c = row["cells"].get(e) or {}
        if c.get("ran") and c.get("compute_ops"):
            shares.append((c.get("int8_ran") or 0) / c["compute_ops"])
        elif c.get("accepted") and c.get("compute_ops"):
            shares.append((c.get("quantized_in_file") or 0) / c["compute_ops"])
    return sum(shares) / len(shares) if shares else 0.0


def recommend(rows: list[dict[str, Any]], golden: str = "ort-cpu") -> dict[str, dict[str, Any]]:
    """Per deployment set: the variant every engine of the set serves, the most int8 first;
    else the best compromise (most engines served, then the smallest gap)."""
    out = {}
    quantized = [r for r in rows if r.get("recipe") and "cells" in r]
    fp32 = next(((r["cells"].get(golden) or {}).get("map50_95") for r in rows
                 if not r.get("recipe") and "cells" in r), None)
    for label, engines in DEPLOYMENTS.items():
        scored = []
        for r in quantized:
            verdicts = {e: engine_ok(r["cells"].get(e)) for e in engines}
            gmap = (r["cells"].get(golden) or {}).get("map50_95")
            if fp32 and gmap is not None and gmap < COLLAPSE * fp32:
                # every engine may agree on a file that lost the accuracy itself (the tail trap)
                verdicts = {e: (False, f"collapsed: golden mAP {gmap:.2f} vs fp32 {fp32:.2f}")
                            for e in engines}
            served = [e for e, (ok, _) in verdicts.items() if ok]
            gcell = r["cells"].get(golden) or {}
            worst = max((abs(c["delta_map50_95"]) for e in engines if (c := r["cells"].get(e))
                         and c.get("ran") and c.get("delta_map50_95") is not None), default=0.0)
            scored.append((len(served), _int8_share(r, engines), gcell.get("map50_95") or 0.0,
                           -worst, r["variant"], verdicts))
        if not scored:
            continue
        scored.sort(key=lambda s: (s[0], s[1], s[2], s[3]), reverse=True)
        n, share, _, _, name, verdicts = scored[0]
        why = "; ".join(f"{ENGINE_LABEL[e]} {text}" for e, (_, text) in verdicts.items())
        if n == len(engines):
            out[label] = {"variant": name, "serves_all": True, "text": f"{name} ({why})",
                          "int8_share": round(share, 3)}
        else:
            out[label] = {"variant": None, "serves_all": False, "best_compromise": name,
                          "int8_share": round(share, 3),
                          "text": f"none passes; best compromise: {name} ({why})"}
    return out


# ----------------------------------------------------------------------------- output
def _fmt(v: Any, f: str = "{:.2f}") -> str:
    return "-" if v is None else f.format(v)


def cell_texts(row: dict[str, Any], engine: str) -> tuple[str, str]:
    """(short text, style) of one matrix cell."""
    c = row.get("cells", {}).get(engine)
    if not c:
        return "-", "dim"
    if not c.get("ran"):
        acc = c.get("accepted")
        return ({True: "parser accepts", False: "refused", None: "unknown"}[acc],
                {True: "green", False: "bold red", None: "yellow"}[acc])
    if c["status"] in ("error", "unavailable"):
        return c["status"], "bold red"
    lat = c.get("latency_median_ms")
    if c.get("int8_of_quantized") is not None:
        added = c.get("int8_added_by_engine")
        ran = f"{c['int8_of_quantized']}/{c.get('quantized_in_file', '-')}" + (f" +{added}" if added else "")
    else:
        ran = f"{c.get('int8_ran', '-')}/{c.get('quantized_in_file', '-')}"
    text = (f"{_fmt(c['map50_95'])} ({_fmt(c['delta_map50_95'], '{:+.2f}')}) "
            f"{ran} {_fmt(lat, '{:.1f}')}ms")
    style = {"pass": "green", "fail": "bold red", "reference": "cyan"}.get(c["status"], "")
    return text, style


def matrix_table(result: dict[str, Any]):
    from rich.table import Table

    engines = result["engines"]
    t = Table(title=f"qparity recipes: {result['data']['images']} images, golden "
                    f"{result['golden']} (cell: mAP50-95 (Δ golden) int8 ran/quantized in file "
                    f"+ float ops the engine quantized itself, "
                    f"median latency)", title_justify="left", header_style="bold")
    t.add_column("variant", no_wrap=True)
    for e in engines:
        t.add_column(e, no_wrap=True)
    t.add_column("gate (engines run)")
    for row in result["rows"]:
        cells = []
        for e in engines:
            text, style = cell_texts(row, e)
            cells.append(f"[{style}]{text}[/]" if style else text)
        t.add_row(row["variant"], *cells, row.get("verdict", "-"))
    return t


def print_result(result: dict[str, Any], console: Console | None = None) -> None:
    from .report import wide_console

    console = console or wide_console()
    console.print(matrix_table(result))
    for label, rec in result["recommendations"].items():
        style = "green" if rec["serves_all"] else "yellow"
        console.print(f"[bold]{label}[/]: [{style}]{rec['text']}[/]", highlight=False)
    if result.get("baseline") is False:
        console.print(f"[yellow]NOT a baseline run: {result['not_baseline']}[/]", highlight=False)


def write_html(result: dict[str, Any], path: Path) -> None:
    """A small self-contained page: the matrix and the recommendations."""
    engines = result["engines"]
    color = {"green": "#d9f2d9", "bold red": "#f7d4d4", "yellow": "#fff3c4", "cyan": "#d8eef7",
             "dim": "#f0f0f0", "": "#ffffff"}
    head = "".join(f"<th>{html.escape(e)}</th>" for e in engines)
    body = []
    for row in result["rows"]:
        tds = []
        for e in engines:
            text, style = cell_texts(row, e)
            c = row.get("cells", {}).get(e) or {}
            tip = html.escape(c.get("reason") or c.get("how") or "")
            tds.append(f'<td style="background:{color.get(style, "#fff")}" title="{tip}">'
                       f"{html.escape(text)}</td>")
        body.append(f"<tr><td><b>{html.escape(row['variant'])}</b><br><small>"
                    f"{html.escape(row.get('note', ''))}</small></td>{''.join(tds)}"
                    f"<td>{html.escape(str(row.get('verdict', '-')))}</td></tr>")
    recs = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v['text'])}</li>"
                   for k, v in result["recommendations"].items())
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>qparity recipes</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 8px;vertical-align:top;font-size:14px}}</style></head>
<body><h1>qparity recipes</h1>
<p>{result['data']['images']} images; golden {html.escape(result['golden'])}; tolerance
{result['tolerance_map50_95']} mAP points. Cell: mAP50-95 (delta to golden) int8 compute ops that ran /
quantized in the file, median latency. TensorRT without a GPU: its ONNX parser's verdict only.
{'' if result.get('baseline') else '<b>Not a baseline run</b>: ' + html.escape(str(result.get('not_baseline')))}</p>
<table><tr><th>variant</th>{head}<th>gate (engines run)</th></tr>{''.join(body)}</table>
<h2>Recommendation</h2><ul>{recs}</ul></body></html>
"""
    path.write_text(page)


# ----------------------------------------------------------------------------- entry point
def run_matrix(fp32: Path, calib: list[Path], images: Path, annotations: Path, out: Path,
               protocol: Any = None, limit: int | None = None, threads: int | None = None,
               variants: list[str] | None = None, engines: list[str] | None = None,
               console: Console | None = None) -> dict[str, Any]:
    from .engines import engine_class
    from .engines.base import visible_cpus
    from .fileio import write_json_atomic
    from .protocol import locked_protocol

    console = console or Console(stderr=True)
    protocol = protocol or locked_protocol()
    threads = threads or visible_cpus()
    chosen = variants or variant_names()
    unknown = [v for v in chosen if v not in variant_names()]
    if unknown:
        raise QParityError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(variant_names())}")
    if not calib:
        raise QParityError("no calibration images")
    engines = list(engines or RUN_ENGINES)
    if protocol.golden not in engines:
        engines.insert(0, protocol.golden)
    for e in engines:
        engine_class(e)
    available = [e for e in engines if engine_class(e).probe() is None]
    missing = [e for e in engines if e not in available]
    if protocol.golden in missing:
        raise QParityError(f"golden engine {protocol.golden} cannot run here")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.perf_counter()
    for v in VARIANTS:
        if v.name in chosen:
            console.print(f"[bold]variant {v.name}[/] ({v.note})", highlight=False)
            rows.append(run_variant(v, Path(fp32), calib, Path(images), Path(annotations), out,
                                    protocol, limit, threads, available, console))
    shown = [e for e in engines if e in available] + (["tensorrt"] if "tensorrt" not in available else [])
    first = next((r for r in rows if r.get("report")), None)
    rep = json.loads(Path(first["report"]).read_text()) if first else {}
    result = {
        "schema": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "golden": protocol.golden, "tolerance_map50_95": protocol.tolerance_map50_95,
        "engines": shown, "not_run_here": missing,
        "data": {"images": (rep.get("data") or {}).get("images_evaluated"), "limit": limit,
                 "images_dir": str(images), "calibration_images": len(calib)},
        "baseline": not protocol.overrides and limit is None,
        "not_baseline": {k: v for k, v in {"overrides": protocol.overrides, "limit": limit}.items() if v},
        "protocol": rep.get("protocol"), "env": rep.get("collector_env"),
        "rows": rows, "recommendations": recommend(rows, protocol.golden),
        "variants": {v.name: asdict(v) for v in VARIANTS if v.name in chosen},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_json_atomic(out / "recipes.json", result)
    write_html(result, out / "recipes.html")
    return result


def demo_inputs(out: Path, n_images: int) -> tuple[Path, list[Path], Path, Path]:
    """The embedded demo: its fp32 model, and its data generated into OUT/data."""
    from .demo import DEMO_MODEL, load_generator
    from .lists import read_list, write_lists

    data = out / "data"
    load_generator().generate(data, n_images=n_images, seed=0, split="val2017")
    lists = write_lists(data, out / "lists")
    return DEMO_MODEL, read_list(lists["calib"], data), data / "val2017", \
        data / "annotations" / "instances_val2017.json"


def cmd_recipes(args: argparse.Namespace) -> int:
    from .options import data_paths, default_threads
    from .lists import read_list
    from .protocol import locked_protocol

    out = Path(args.out)
    if args.demo:
        fp32, calib, images, ann = demo_inputs(out, args.demo_images)
    else:
        if not (args.model and args.calib):
            raise QParityError("give --model and --calib (and the data), or --demo")
        fp32 = Path(args.model)
        calib = read_list(Path(args.calib), Path(args.data) if args.data else None)
        images, ann = data_paths(args)
    if args.calib_limit:
        calib = calib[: args.calib_limit]
    proto = locked_protocol().with_overrides(warmup=args.warmup, runs=args.runs)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    engines = [e.strip() for e in args.engines.split(",") if e.strip()] if args.engines else None
    result = run_matrix(fp32, calib, images, ann, out, proto, args.limit,
                        args.threads or default_threads(), variants, engines)
    print_result(result)
    Console(stderr=True).print(f"matrix: {out / 'recipes.json'}, {out / 'recipes.html'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from .options import add_data_args

    p = sub.add_parser("recipes", help="quantize with every recipe variant and run every engine: "
                                       "which file to ship for which engines")
    p.add_argument("--demo", action="store_true", help="the embedded demo model and data")
    p.add_argument("--demo-images", type=int, default=300, help="demo images to generate (300)")
    p.add_argument("--model", help="fp32 ONNX model")
    p.add_argument("--calib", help="calib.txt from `qparity lists`")
    p.add_argument("--calib-limit", type=int, help="use only the first N calibration images")
    p.add_argument("--variants", help=f"comma-separated subset of: {', '.join(variant_names())}")
    p.add_argument("--engines", help=f"engines to run (default: {', '.join(RUN_ENGINES)}; "
                                     "TensorRT is asked through its parser when it cannot run)")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--threads", type=int, help="CPU threads (default: the CPUs this process may "
                                               "use)")
    p.add_argument("--warmup", type=int, help="latency warm-up runs (locked: 50)")
    p.add_argument("--runs", type=int, help="latency timed runs (locked: 200)")
    add_data_args(p)
    p.set_defaults(func=cmd_recipes)
