"""The locked post-training quantization (SPEC.md "The model under test"), via ONNX Runtime.

One fp32 ONNX in, one INT8 QDQ ONNX out, plus `onnx_int8_md5.txt` and a JSON record of the
recipe. Calibration reads images through the evaluator's own preprocessing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from .fileio import md5_file, sha256_file
from .envinfo import library_versions
from .errors import QParityError
from .letterbox import read_input
from .md5record import write_record
from .protocol import Protocol, locked_protocol


@dataclass(frozen=True)
class Recipe:
    name: str
    activation_type: str  # "int8" | "uint8"
    activation_symmetric: bool
    quantize_bias: bool  # int32 bias DequantizeLinear (TensorRT refuses it)
    description: str
    # Convolutions whose input is a Concat stay in float: OpenVINO's CPU int8 path miscomputes
    # Concat -> int8 Q/DQ -> int8 Conv (docs/recipes.md, "OpenVINO's trigger").
    float_concat_convs: bool = False
    # Only these op types get Q/DQ (ONNX Runtime's op_types_to_quantize); None: its default set.
    op_types: tuple[str, ...] | None = None


RECIPES = {
    "portable": Recipe("portable", "int8", True, False,
                       "int8 symmetric activations (zero point 0), int8 symmetric per-channel "
                       "weights on axis 0, float biases, decode tail in float; every engine accepts it"),
    "spec-v1": Recipe("spec-v1", "uint8", False, True,
                      "the original text: uint8 asymmetric activations, int8 symmetric per-channel "
                      "weights, int32 biases, decode tail in float; CPU engines only"),
    "concat-safe": Recipe("concat-safe", "int8", True, False,
                          "portable, plus every convolution fed by a Concat kept in float: "
                          "avoids OpenVINO's Concat -> int8 Conv fault; every engine accepts it",
                          float_concat_convs=True),
    "conv-inputs-only": Recipe("conv-inputs-only", "int8", True, False,
                               "portable with Q/DQ on convolution inputs only (Concat, "
                               "LeakyReLU and the other ops left float)", op_types=("Conv",)),
    "portable-int32-bias": Recipe("portable-int32-bias", "int8", True, True,
                                  "portable with int32 biases (ONNX Runtime runs the same "
                                  "convolutions in int8: it makes float biases int32 itself); "
                                  "TensorRT refuses it"),
}
# What `qparity ptq` and the demo use when no recipe is named: SPEC.md's `portable`. Issue 16's
# rule was to make a recipe the default only if it passes ORT and OpenVINO with int8 actually
# running on both and TensorRT's parser accepts it. `concat-safe` passes all three gates, but
# ONNX Runtime runs only 9 of its 42 quantized convolutions in int8 (mostly float; 18 integer
# kernels with 9 float ones it quantizes itself: docs/recipes.md), so it is
# the recommendation for deploying on all three engines (README, docs/recipes.md), not the
# locked default.
DEFAULT_RECIPE = "portable"
CALIB_METHODS = ("percentile", "minmax")
PERCENTILE = 99.99
CALIB_STRIDE = 16  # images per calibration chunk: bounds memory whatever the set size


def tensor_consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def downstream(graph: onnx.GraphProto, start: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Every node reachable from the outputs of `start` (excluding `start`), in graph order."""
    cons = tensor_consumers(graph)
    seen: set[int] = set()
    queue = deque(t for n in start for t in n.output)
    while queue:
        for n in cons.get(queue.popleft(), []):
            if id(n) not in seen:
                seen.add(id(n))
                queue.extend(n.output)
    return [n for n in graph.node if id(n) in seen]


def detection_convs(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The last convolution of each detection branch: Convs with no Conv anywhere downstream."""
    convs = [n for n in graph.node if n.op_type == "Conv"]
    return [c for c in convs if not any(d.op_type == "Conv" for d in downstream(graph, [c]))]


def decode_tail(graph: onnx.GraphProto) -> list[str]:
    """Names of the box-decoding tail: everything after the detection convolutions. Found from
    the graph, not a list of names, so it holds for any YOLO-style export."""
    heads = detection_convs(graph)
    if not heads:
        raise QParityError("model has no Conv node: cannot locate the detection head")
    return [n.name for n in downstream(graph, heads)]


def concat_fed_convs(graph: onnx.GraphProto) -> list[str]:
    """Convolutions whose activation input is produced by a Concat (with two or more inputs)."""
    producer = {o: n for n in graph.node for o in n.output}
    out = []
    for n in graph.node:
        p = producer.get(n.input[0]) if n.op_type == "Conv" and n.input else None
        if p is not None and p.op_type == "Concat" and len([i for i in p.input if i]) > 1:
            out.append(n.name)
    return out


def name_nodes(model: onnx.ModelProto) -> None:
    """nodes_to_exclude works by name; give anonymous nodes stable ones."""
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"{n.op_type}_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)


class CalibrationImages:
    """ONNX Runtime CalibrationDataReader over image files, with the evaluation preprocessing.

    `set_range` is what ONNX Runtime's CalibStridedMinMax uses to feed the calibrator one chunk
    at a time, so the histogram calibrator never holds every image's activations at once.
    """

    def __init__(self, paths: list[Path], input_name: str, protocol: Protocol,
                 chunk: int | None = None, on_image: Callable[[], None] | None = None):
        self.paths, self.input_name, self.protocol = paths, input_name, protocol
        self.on_image = on_image  # a progress tick per image read
        self.start, self.end = 0, len(paths)
        self.pos = 0
        # with `chunk`, ONNX Runtime's stride-sized ranges are mapped onto `calib_chunks`
        self.bounds = calib_chunks(len(paths), chunk) if chunk else None

    def __len__(self) -> int:
        if self.bounds is None:
            return len(self.paths)
        return stride_for(len(self.paths), self.bounds) * (len(self.bounds) - 1)

    def set_range(self, start_index: int, end_index: int) -> None:
        if self.bounds is None:
            self.start, self.end = start_index, min(end_index, len(self.paths))
        else:
            k = start_index // stride_for(len(self.paths), self.bounds)
            self.start, self.end = self.bounds[k], self.bounds[k + 1]
        self.pos = self.start

    def rewind(self) -> None:
        self.pos = self.start

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.pos >= self.end:
            return None
        path = self.paths[self.pos]
        self.pos += 1
        x = read_input(path, self.protocol, "calibration image")
        if self.on_image:
            self.on_image()
        return {self.input_name: x}


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantizer prints progress and a pre-processing advice on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def calib_chunks(n: int, preferred: int = CALIB_STRIDE) -> list[int]:
    """Boundaries of the calibration chunks: ceil(n / preferred) chunks, in list order, of
    sizes differing by at most one (512 images: 32 x 16; 30: 2 x 15; 31: 16 + 15).

    The histogram calibrator's result depends on how the set is chunked, so the chunking must
    depend on the count alone, never on its divisors: a prime count used to fall back to
    chunks of one image, a different model from the same images.
    """
    k = max(1, -(-n // preferred))
    return [(i * n) // k for i in range(k + 1)]


def stride_for(n: int, chunks: int | list[int] = CALIB_STRIDE) -> int:
    """The CalibStridedMinMax stride given to ONNX Runtime: the largest chunk. ONNX Runtime
    wants it to divide the set size, so the reader reports stride x chunks images and maps
    each stride-sized range onto the real chunk (see CalibrationImages)."""
    bounds = chunks if isinstance(chunks, list) else calib_chunks(n, chunks)
    return max(b - a for a, b in zip(bounds, bounds[1:]))


def quantize(model_in: Path, calib: list[Path], out: Path, recipe: str = "portable",
             method: str = "percentile", exclude: list[str] | None = None,
             keep_first_conv: bool = False, quantize_tail: bool = False,
             per_tensor_weights: bool = False, protocol: Protocol | None = None,
             on_image: Callable[[], None] | None = None) -> dict[str, Any]:
    """Quantize `model_in` into `out`; returns (and writes beside `out`) the recipe record."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    protocol = protocol or locked_protocol()
    if recipe not in RECIPES:
        raise QParityError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
    if method not in CALIB_METHODS:
        raise QParityError(f"unknown calibration method {method!r}; known: {', '.join(CALIB_METHODS)}")
    if not calib:
        raise QParityError("no calibration images")
    r = RECIPES[recipe]
    model_in, out = Path(model_in), Path(out)
    try:
        model = onnx.load(str(model_in))
    except Exception as e:
        raise QParityError(f"not a valid ONNX model ({e})", model_in) from e
    name_nodes(model)
    graph = model.graph
    tail = [] if quantize_tail else decode_tail(graph)
    excluded = list(tail)
    if keep_first_conv:
        excluded += [next(n.name for n in graph.node if n.op_type == "Conv")]
    unknown = sorted(set(exclude or []) - {n.name for n in graph.node})
    if unknown:
        raise QParityError(f"--exclude names nodes not in the model: {', '.join(unknown[:5])}", model_in)
    excluded += [n for n in exclude or [] if n not in excluded]
    if r.float_concat_convs:
        excluded += [n for n in concat_fed_convs(graph) if n not in excluded]
    inits = {i.name for i in graph.initializer}
    input_name = next(i.name for i in graph.input if i.name not in inits)

    extra = {
        "ActivationSymmetric": r.activation_symmetric,
        "WeightSymmetric": True,
        "QuantizeBias": r.quantize_bias,
        "CalibStridedMinMax": stride_for(len(calib), CALIB_STRIDE),
    }
    if method == "percentile":
        extra["CalibPercentile"] = PERCENTILE
    reader = CalibrationImages(list(calib), input_name, protocol, chunk=CALIB_STRIDE,
                               on_image=on_image)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qparity-ptq-") as tmp, _quiet():
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        quantize_static(
            str(named), str(out), reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if r.activation_type == "int8" else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=not per_tensor_weights,
            calibrate_method=CalibrationMethod.Percentile if method == "percentile"
            else CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            op_types_to_quantize=list(r.op_types) if r.op_types else None,
            extra_options=extra,
        )
    md5 = md5_file(out)
    write_record(out, md5)  # <model>.md5 + its line in onnx_int8_md5.txt; other models kept
    calib_list = "".join(f"{p.name}\n" for p in calib)
    record = {
        "model": {"path": out.name, "md5": md5, "sha256": sha256_file(out)},
        "source_model": {"path": model_in.name, "sha256": sha256_file(model_in)},
        "recipe": asdict(r),
        "calibration": {"method": method, "percentile": PERCENTILE if method == "percentile" else None,
                        "images": len(calib), "stride": extra["CalibStridedMinMax"],
                        "chunks": len(calib_chunks(len(calib), CALIB_STRIDE)) - 1,
                        "image_list_sha256": hashlib.sha256(calib_list.encode()).hexdigest()},
        "options": {"keep_first_conv": keep_first_conv, "quantize_tail": quantize_tail,
                    "per_tensor_weights": per_tensor_weights, "exclude": exclude or []},
        "kept_in_float": excluded,
        "decode_tail": tail,
        "libraries": {k: v for k, v in library_versions().items() if k in ("onnx", "onnxruntime", "numpy")},
        "protocol_version": protocol.version,
    }
    record_path = out.with_suffix(".json")
    record_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record
