"""`qparity demo`: the whole locked pipeline on the embedded demo, no download, no GPU.

generate data -> lists + manifests -> PTQ (portable) -> check-model -> every engine available
here -> the fp32 model on the golden engine -> collect -> report.html; then `explain` says what
the verdict means and what to run next. The data generator and the fp32 demo model live in the
source tree under bench/demo/, which is why the demo needs a checkout rather than an installed
wheel.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from rich.console import Console

from .engines import EngineConfig, engine_class, engine_names
from .errors import QParityError
from .fileio import write_json_atomic
from .lists import read_list, write_lists
from .preflight import print_check, write_preflight
from .progress import bar as progress_bar
from .protocol import Protocol, locked_protocol
from .ptq import DEFAULT_RECIPE, PERCENTILE, quantize
from .report_html import try_write_html
from .runner import RunRequest, run_isolated

DEMO_DIR = Path(__file__).resolve().parents[1] / "bench" / "demo"
DEMO_MODEL = DEMO_DIR / "demo-fp32.onnx"
DEMO_IMAGES = 300


def load_generator() -> ModuleType:
    src = DEMO_DIR / "make_data.py"
    if not src.is_file() or not DEMO_MODEL.is_file():
        raise QParityError("qparity demo needs the source checkout's bench/demo/ (make_data.py and "
                           "demo-fp32.onnx); run it from a clone installed with pip install -e .",
                           DEMO_DIR)
    spec = importlib.util.spec_from_file_location("qparity_demo_make_data", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def available_engines() -> list[str]:
    return [n for n in engine_names() if engine_class(n).probe() is None]


def run_demo(out: Path, n_images: int = DEMO_IMAGES, protocol: Protocol | None = None,
             engines: list[str] | None = None, threads: int | None = None,
             console: Console | None = None) -> dict[str, Any]:
    """Run the pipeline into `out`; returns the collector's report."""
    from .collector import REPORT_NAME, collect

    console = console or Console(stderr=True)
    protocol = protocol or locked_protocol()
    out = Path(out)
    t0 = time.perf_counter()
    gen = load_generator()
    data = out / "data"
    console.print(f"[bold]1/7[/] generating {n_images} demo images -> {data}", highlight=False)
    gen.generate(data, n_images=n_images, seed=0, split="val2017")
    lists = write_lists(data, out / "lists")
    console.print(f"[bold]2/7[/] lists + manifests -> {lists['val'].parent}", highlight=False)
    calib = read_list(lists["calib"], data)
    model_dir = out / "model"
    model = model_dir / "model-int8.onnx"
    console.print(f"[bold]3/7[/] PTQ ({DEFAULT_RECIPE} recipe, percentile {PERCENTILE}) on {len(calib)} "
                  f"calibration images -> {model}", highlight=False)
    with progress_bar("calibration: images", len(calib),
                      when_full="computing ranges, writing the model") as tick:
        record = quantize(DEMO_MODEL, calib, model, recipe=DEFAULT_RECIPE, protocol=protocol,
                          on_image=tick)
    console.print("[bold]4/7[/] check-model (will each engine accept this file?)")
    results = out / "results"
    print_check(write_preflight(model, results, protocol.size))
    engines = engines or available_engines()
    console.print(f"[bold]5/7[/] the int8 model on every engine here: {', '.join(engines)} "
                  f"(accuracy on {n_images} images, then {protocol.warmup} warm-up + "
                  f"{protocol.runs} timed runs each)", highlight=False)
    cfg = EngineConfig(threads=threads) if threads else EngineConfig()
    images, ann = data / "val2017", data / "annotations" / "instances_val2017.json"
    for name in engines:
        console.print(f"  >> {name}: {model.name}", highlight=False)
        run_isolated(RunRequest(name, model, images, ann, results, protocol, None, cfg))
    # the float model through the golden engine: how much quantization cost, for the reader
    fp32 = out / "fp32"
    console.print(f"[bold]6/7[/] fp32 pass: the float model {DEMO_MODEL.name} on {protocol.golden} "
                  f"(what quantization cost; not gated; cached by model and data) -> {fp32}",
                  highlight=False)
    fp32_res = fp32_reference(RunRequest(protocol.golden, DEMO_MODEL, images, ann, fp32, protocol,
                                         None, cfg), lists["manifest_val"])
    console.print("[bold]7/7[/] collect, gate, write the report")
    report = collect(results)
    report["demo"] = {"fp32_map50_95": (fp32_res.get("metrics") or {}).get("map50_95"),
                      "fp32_status": fp32_res["status"], "ptq": record,
                      "wall_s": round(time.perf_counter() - t0, 1)}
    write_json_atomic(results / REPORT_NAME, report)
    try_write_html(results, report, console)
    return report


def fp32_cache_key(req: RunRequest, manifest: Path) -> str:
    """What the fp32 reference depends on: the model's bytes, the images' (their sha256
    manifest), the annotations, the protocol, the engine and its settings."""
    from .fileio import md5_file, sha256_file

    from importlib.metadata import version

    here = Path(__file__).parent  # the code that turns outputs into the metric
    code = hashlib.sha256(b"".join((here / f).read_bytes() for f in (
        "data.py", "letterbox.py", "evaluate.py", "postprocess.py", "metrics.py"))).hexdigest()
    parts = {"model_md5": md5_file(req.model), "manifest": sha256_file(manifest),
             "annotations": sha256_file(req.annotations), "protocol": req.protocol.to_dict(),
             "engine": req.engine, "threads": req.config.threads, "options": req.config.options,
             "code": code, "libraries": [version(p) for p in ("onnxruntime", "pycocotools", "numpy",
                                                              "opencv-python-headless")]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def fp32_reference(req: RunRequest, manifest: Path) -> dict[str, Any]:
    """The float model through the golden engine, cached by what it depends on
    (QPARITY_CACHE or ~/.cache/qparity): the same fp32 model on the same data is not
    re-evaluated on every demo run. Only a successful result is cached."""
    cache = Path(os.environ.get("QPARITY_CACHE", Path.home() / ".cache" / "qparity")) / "demo-fp32"
    hit = cache / f"{fp32_cache_key(req, manifest)}.json"
    if hit.is_file():
        res = json.loads(hit.read_text())
        res["cached_from"] = str(hit)
        write_json_atomic(Path(req.out) / f"{req.engine}.json", res)
        return res
    res = run_isolated(req)
    if res.get("status") == "ok":
        try:
            hit.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(hit, res)
        except OSError:  # a read-only home only costs the next run its time
            pass
    return res


def explain(report: dict[str, Any], out: Path) -> list[str]:
    """The demo's closing paragraph: what its verdict means and what to run next, on this very
    result (paths as the user gave --out). Built from the report, so it stays true on a CPU
    where OpenVINO happens to agree."""
    out = Path(out)
    results, model, data = out / "results", out / "model" / "model-int8.onnx", out / "data"
    golden, tol = report["golden"], report["tolerance_map50_95"]
    engines = report["engines"]
    g = (engines.get(golden, {}).get("metrics") or {}).get("map50_95")
    ov = engines.get("openvino") or {}
    ref = engines.get("qdq-ref") or {}
    lines = [""]
    v, code = report["verdict"], report["exit_code"]
    if v == "fail":
        failed = [n for n, e in engines.items() if e["status"] == "fail"]
        lines.append(f"Verdict fail, exit {code}: {', '.join(failed)} scored outside the "
                     f"±{tol}-point mAP50-95 tolerance of the golden engine {golden}. Exit 1 "
                     f"always means exactly that, a gate failed; an error (bad input, an engine "
                     f"that could not run) would be exit 2, and 0 is a pass.")
    elif v == "pass":
        lines.append(f"Verdict pass, exit 0: every engine that ran is within ±{tol} mAP50-95 "
                     f"points of the golden engine {golden}. (1 would mean a gate failed, 2 an "
                     f"error.)")
    else:
        lines.append(f"Verdict error, exit {code}: an engine could not run or could not be "
                     f"judged (the reasons are printed above); that is not a gate failure "
                     f"(exit 1).")
    if ov.get("status") == "fail" and g is not None:
        om = (ov.get("metrics") or {}).get("map50_95")
        rd = ref.get("delta_map50_95")
        which = (f" qdq-ref, the model's own Q/DQ arithmetic, agrees with {golden} "
                 f"({rd:+.2f}), so OpenVINO is the engine that moved." if rd is not None
                 and abs(rd) <= tol else "")
        lines.append("")
        lines.append(f"That is the expected result: OpenVINO's failure ({om:.2f} against "
                     f"{g:.2f}) is the finding this demo exists to show, not a fault of "
                     f"qparity or of your install.{which} OpenVINO's int8 path mis-computes "
                     f"this portable (signed, symmetric activation) file on many CPUs; with "
                     f"--engine-opt LP_TRANSFORMS_MODE=NO it agrees with the golden engine. "
                 "To ship one file to all three engines, see the README's 'Which recipe to "
                 "ship' (`qparity recipes`; `--recipe concat-safe` passes them all).")
    elif ov.get("status") == "pass":
        lines.append("")
        lines.append("OpenVINO agreed with the golden engine on this CPU; on the CPUs the demo "
                     "was written on, its int8 path fails this file, which is the finding the "
                     "demo usually shows.")
    lines += ["", "Next, on this very result:"]
    target = "openvino" if "openvino" in engines else next(
        (n for n in engines if n not in (golden, "qdq-ref")), golden)
    lines.append(f"  qparity diff {results} --engine {target} --against qdq-ref")
    lines.append("      which images and boxes moved (with pictures)")
    lines.append(f"  qparity localize --model {model} --engine {target} --data {data} --num-images 4")
    lines.append("      the first tensor where the engine leaves the model's arithmetic")
    return lines
