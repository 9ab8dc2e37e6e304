"""Which compute layers of a built engine really run in int8, from the engine inspector.

The inspector's JSON (engine built with ProfilingVerbosity.DETAILED) lists the fused layers
TensorRT executes, each with its inputs' formats. TensorRT 10 writes a tensor's type inside
"Format/Datatype" ("Thirty-two wide channel vectorized row major Int8 format"); TensorRT 11
splits it into a data-type field ("Datatype": "Int8"; NVIDIA's migration page spells it
"DataType" for the I/O tensors) and "Format". Keys are matched without regard to case, and
the data-type field wins over a format text when both are present. A convolution or matrix
multiply whose first input is int8 runs an int8 kernel. Myelin ("ForeignNode") layers hide
their contents; they are counted separately, not guessed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...census import ExecutedOp, FileOps, summarize

SOURCE = "tensorrt engine inspector"
COMPUTE_PARAMETER_TYPES = {"Convolution", "Deconvolution", "MatrixMultiply", "FullyConnected",
                           "Gemm"}
_COMPUTE_LAYER_TYPE = re.compile(r"conv|gemm|matmul|matrixmultiply", re.IGNORECASE)
# Order matters: "BFloat16" contains "Float", "UInt8" contains "Int8".
_PRECISIONS = (("bf16", r"bfloat16|\bbf16\b"), ("fp8", r"\bfp8\b"), ("uint8", r"uint8"),
               ("int8", r"int8"), ("int32", r"int32"), ("int64", r"int64"),
               ("fp16", r"fp16|half"), ("fp32", r"fp32|float"))


class CensusUnavailable(ValueError):
    pass


#: Where a tensor's type is written, most specific first (compared in lower case).
_TYPE_KEYS = ("datatype", "format/datatype", "format")


def _precision_of(text: str) -> str:
    for name, pattern in _PRECISIONS:
        if re.search(pattern, text, re.IGNORECASE):
            return name
    return "unknown"


def tensor_precision(tensor: dict[str, Any]) -> str:
    fields = {str(k).lower(): v for k, v in tensor.items()}
    for key in _TYPE_KEYS:
        if key in fields:
            found = _precision_of(str(fields[key]))
            if found != "unknown":
                return found
    return "unknown"


def schema_of(data: dict[str, Any]) -> str:
    """Which inspector JSON this is: TensorRT 11 replaced "Bindings" by "I/O Tensors"."""
    if "I/O Tensors" in data:
        return "tensorrt-11"
    if "Bindings" in data:
        return "tensorrt-10"
    return "unknown"


def is_compute_layer(layer: dict[str, Any]) -> bool:
    if layer.get("ParameterType") in COMPUTE_PARAMETER_TYPES:
        return True
    kind = str(layer.get("LayerType", ""))
    return bool(_COMPUTE_LAYER_TYPE.search(kind)) and "reformat" not in kind.lower()


def is_opaque_layer(layer: dict[str, Any]) -> bool:
    return (str(layer.get("LayerType", "")).lower() == "myelin"
            or "ForeignNode" in str(layer.get("Name", "")))


_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]*)\]")


def source_names(layer: dict[str, Any]) -> tuple[str, ...]:
    """The ONNX nodes a fused layer came from, as the inspector names them: the parts of its
    name joined by " + ", and the "[ONNX Layer: <node>]" entries of its "Metadata"."""
    parts = [p for p in str(layer.get("Name", "")).split(" + ") if p]
    parts += _ONNX_LAYER.findall(str(layer.get("Metadata", "")))
    return tuple(dict.fromkeys(parts))


def executed_ops(layers: list[dict[str, Any]]) -> list[ExecutedOp]:
    """The compute layers TensorRT runs, each marked int8 when its first input is int8."""
    ops = []
    for layer in layers:
        if is_opaque_layer(layer) or not is_compute_layer(layer):
            continue
        inputs = layer.get("Inputs") or []
        precision = tensor_precision(inputs[0]) if inputs else "unknown"
        op_type = str(layer.get("ParameterType") or layer.get("LayerType") or "?")
        ops.append(ExecutedOp(str(layer.get("Name", "?")), op_type, precision == "int8",
                              source_names(layer)))
    return ops


def census_from_inspector(info: str | dict[str, Any], file: FileOps | None = None) -> dict[str, Any]:
    """The shared census summary (harness.census; matched against the file's compute ops when
    `file` is given) plus what only TensorRT reports: the opaque Myelin layers, whose contents
    cannot be counted (the file's ops inside them are `quantized_not_seen`)."""
    data = json.loads(info) if isinstance(info, str) else info
    layers = data.get("Layers") if isinstance(data, dict) else None
    if not isinstance(layers, list):
        raise CensusUnavailable("inspector output has no layer list")
    if layers and not isinstance(layers[0], dict):
        raise CensusUnavailable("inspector gave layer names only: the engine was not built "
                                "with ProfilingVerbosity.DETAILED")
    census = summarize(executed_ops(layers), SOURCE, file)
    census["opaque_layers"] = [str(ly.get("Name", "?")) for ly in layers if is_opaque_layer(ly)]
    census["engine_layers"] = len(layers)
    census["inspector_schema"] = schema_of(data)
    return census
