"""`qparity demo`: the whole locked pipeline on the embedded demo, no download, no GPU.

generate data -> lists + manifests -> PTQ (the default recipe) -> check-model -> every engine available
here -> collect. The data generator and the fp32 demo model live in the source tree under
bench/demo/, which is why the demo needs a checkout rather than an installed wheel.
"""

from __future__ import annotations

import importlib.util
import json
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
from .protocol import Protocol, locked_protocol
from .ptq import DEFAULT_RECIPE, quantize
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
    console.print(f"[bold]1/6[/] generating {n_images} demo images -> {data}")
    gen.generate(data, n_images=n_images, seed=0, split="val2017")
    lists = write_lists(data, out / "lists")
    console.print(f"[bold]2/6[/] lists + manifests -> {lists['val'].parent}")
    calib = read_list(lists["calib"], data)
    model_dir = out / "model"
    model = model_dir / "model-int8.onnx"
    console.print(f"[bold]3/6[/] PTQ ({DEFAULT_RECIPE}, percentile {99.99}) on {len(calib)} calibration images")
    record = quantize(DEMO_MODEL, calib, model, recipe=DEFAULT_RECIPE, protocol=protocol)
    console.print("[bold]4/6[/] check-model")
    results = out / "results"
    print_check(write_preflight(model, results, protocol.size))
    engines = engines or available_engines()
    console.print(f"[bold]5/6[/] engines: {', '.join(engines)}")
    cfg = EngineConfig(threads=threads) if threads else EngineConfig()
    images, ann = data / "val2017", data / "annotations" / "instances_val2017.json"
    for name in engines:
        run_isolated(RunRequest(name, model, images, ann, results, protocol, None, cfg))
    # the float model through the golden engine: how much quantization cost, for the reader
    fp32 = out / "fp32"
    run_isolated(RunRequest(protocol.golden, DEMO_MODEL, images, ann, fp32, protocol, None, cfg))
    console.print("[bold]6/6[/] collect")
    report = collect(results)
    fp32_res = json.loads((fp32 / f"{protocol.golden}.json").read_text())
    report["demo"] = {"fp32_map50_95": (fp32_res.get("metrics") or {}).get("map50_95"),
                      "fp32_status": fp32_res["status"], "ptq": record,
                      "wall_s": round(time.perf_counter() - t0, 1)}
    write_json_atomic(results / REPORT_NAME, report)
    return report
