"""The diagnose commands' parsers. Each command's module (numpy, onnx, the engines) is imported
only when that command runs, so `qparity --help` stays light."""

from __future__ import annotations

import argparse
import importlib
from typing import Callable

from .defaults import (DEFAULT_CALIB_IMAGES, DEFAULT_EVAL_IMAGES, DEFAULT_FRAC, DEFAULT_TARGET,
                       FLOOR, MODES, REPRO_ENGINES)


def _lazy(module: str, function: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"harness.diagnose.{module}"), function)(args)

    run.__name__ = function
    return run


def _diff(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="per-image detection differences between two engines of a run")
    p.add_argument("run", help="results folder of `qparity run`")
    p.add_argument("--engine", required=True, help="engine A")
    p.add_argument("--against", help="engine B (default: the run's golden engine)")
    p.add_argument("--against-run", help="take B from this other results folder (e.g. another "
                                         "model on the same images)")
    p.add_argument("--top", type=int, default=12, help="images listed and drawn (default 12)")
    p.add_argument("--floor", type=float, default=FLOOR,
                   help="only boxes scored at least this count (default 0.25)")
    p.add_argument("--out", help="output folder (default RUN/diff_<A>_vs_<B>/)")
    p.add_argument("--no-pictures", action="store_true",
                   help="skip drawing both sets of boxes on the top images")
    p.set_defaults(func=_lazy("diff", "cmd_diff"))


def _localize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("localize", help="first quantized tensor where an engine leaves the reference")
    p.add_argument("--model", required=True, help="the INT8 QDQ model the engine runs")
    p.add_argument("--engine", required=True, help="engine under test")
    p.add_argument("--against", default="qdq-ref", help="reference engine (default: qdq-ref)")
    p.add_argument("--against-model", help="model the reference runs (default: --model); tensors "
                                           "are matched by name")
    p.add_argument("--data", required=True, help="COCO-layout folder (uses val2017/) or an image folder")
    p.add_argument("--num-images", dest="images", type=int, default=4,
                   help="run the first N images of the sorted list")
    p.add_argument("--images", dest="images", type=int, help=argparse.SUPPRESS)  # old name
    p.add_argument("--frac", type=float, default=DEFAULT_FRAC,
                   help="a tensor diverges when more than this fraction of its elements is off by "
                        "more than one quantization step (default 0.01)")
    p.add_argument("--engine-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the engine under test, as for `qparity run` (repeatable)")
    p.add_argument("--against-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option for the reference engine (repeatable)")
    p.add_argument("--threads", type=int, help="CPU threads per engine (default: QPARITY_THREADS "
                                               "or the CPUs this process may use)")
    p.add_argument("--exhaustive", action="store_true",
                   help="probe every quantized tensor (one compile each), check every node in "
                        "context and list every fault")
    p.add_argument("--out", help="also write the finding as JSON")
    p.set_defaults(func=_lazy("localize", "cmd_localize"))


def _sensitivity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sensitivity", help="layer-wise PTQ sensitivity and a proposed --exclude list")
    p.add_argument("--model", required=True, help="the fp32 ONNX model")
    p.add_argument("--calib", required=True, help="calib.txt (from `qparity lists`)")
    p.add_argument("--data", help="COCO-layout folder: evaluation data, and the folder the "
                                  "calibration list is relative to")
    p.add_argument("--images", help="evaluation image folder (overrides --data)")
    p.add_argument("--annotations", help="COCO annotation JSON (overrides --data)")
    p.add_argument("--limit", type=int, default=DEFAULT_EVAL_IMAGES,
                   help=f"evaluate on the first N images (default {DEFAULT_EVAL_IMAGES})")
    p.add_argument("--calib-limit", type=int, default=DEFAULT_CALIB_IMAGES,
                   help=f"calibrate on the first N listed images (default {DEFAULT_CALIB_IMAGES})")
    p.add_argument("--mode", default="exclude-one", choices=MODES,
                   help="exclude-one: quantize all but one block; only-one: quantize one block")
    p.add_argument("--target-drop", type=float, default=DEFAULT_TARGET,
                   help="acceptable mAP drop vs fp32, in points (default 0.5)")
    p.add_argument("--metric", default="map50_95", choices=["map50_95", "map50"],
                   help="the mAP blocks are ranked by")
    p.add_argument("--recipe", default="portable", choices=["portable", "spec-v1"],
                   help="PTQ recipe of every candidate (see qparity ptq --help)")
    p.add_argument("--method", default="percentile", choices=["percentile", "minmax"],
                   help="calibration method of every candidate")
    p.add_argument("--block-depth", type=int, help="path depth of a block for /a/b/c node names "
                                                   "(default: automatic)")
    p.add_argument("--max-exclude", type=int, help="never propose more than N blocks (default: "
                                                   "no limit)")
    p.add_argument("--threads", type=int, help="CPU threads for the golden engine (default: "
                                               "QPARITY_THREADS or the CPUs this process may use)")
    p.add_argument("--out", default="sensitivity.json", help="JSON result (default sensitivity.json)")
    p.set_defaults(func=_lazy("sensitivity", "cmd_sensitivity"))


def _repro(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("repro", help="write a minimal, self-contained reproducer of an engine's "
                                     "disagreement (model, input, script) for its maintainers")
    p.add_argument("run", nargs="?", help="a run folder where the engine disagrees (reads its "
                                          "<engine>.json for the model and images)")
    p.add_argument("--engine", required=True, help=f"engine under test ({', '.join(REPRO_ENGINES)})")
    p.add_argument("--against", default="qdq-ref", help="reference (default qdq-ref: the model's "
                                                       "own Q/DQ arithmetic)")
    p.add_argument("--model", help="INT8 QDQ model (default: the run's)")
    p.add_argument("--data", help="COCO folder or image folder (default: the run's images)")
    p.add_argument("--num-images", dest="images", type=int, default=2,
                   help="images tried; the worst one is shipped")
    p.add_argument("--tensor", help="quantized tensor to reproduce (default: localize's first fault)")
    p.add_argument("--frac", type=float, default=DEFAULT_FRAC,
                   help="disagreement: more than this fraction of elements off by > 1 step")
    p.add_argument("--engine-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the engine under test (repeatable), as in qparity run")
    p.add_argument("--against-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the reference engine (repeatable)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the CPUs this process may "
                                               "use)")
    p.add_argument("--out", required=True, help="folder to write the reproducer into")
    p.set_defaults(func=_lazy("repro", "cmd_repro"))


def register(sub: argparse._SubParsersAction) -> None:
    for add in (_diff, _localize, _sensitivity, _repro):
        add(sub)
