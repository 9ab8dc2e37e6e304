"""Which compute layers of a built engine really run in int8, from the engine inspector.

The inspector's JSON (engine built with ProfilingVerbosity.DETAILED) lists the fused layers
TensorRT executes, each with its inputs' formats. TensorRT 10 writes a tensor's type inside
"Format/Datatype" ("Thirty-two wide channel vectorized row major Int8 format"); TensorRT 11
splits it into "Format" and "DataType". Both are read. A convolution or matrix multiply whose
first input is int8 runs an int8 kernel. Myelin ("ForeignNode") layers hide their contents;
they are counted separately, not guessed.
"""

from __future__ import annotations

import json
import re
from typing import Any

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


def tensor_precision(tensor: dict[str, Any]) -> str:
    text = " ".join(str(tensor.get(k, "")) for k in ("DataType", "Format/Datatype", "Format"))
    for name, pattern in _PRECISIONS:
        if re.search(pattern, text, re.IGNORECASE):
            return name
    return "unknown"


def is_compute_layer(layer: dict[str, Any]) -> bool:
    if layer.get("ParameterType") in COMPUTE_PARAMETER_TYPES:
        return True
    kind = str(layer.get("LayerType", ""))
    return bool(_COMPUTE_LAYER_TYPE.search(kind)) and "reformat" not in kind.lower()


def is_opaque_layer(layer: dict[str, Any]) -> bool:
    return (str(layer.get("LayerType", "")).lower() == "myelin"
            or "ForeignNode" in str(layer.get("Name", "")))


def census_from_inspector(info: str | dict[str, Any]) -> dict[str, Any]:
    data = json.loads(info) if isinstance(info, str) else info
    layers = data.get("Layers") if isinstance(data, dict) else None
    if not isinstance(layers, list):
        raise CensusUnavailable("inspector output has no layer list")
    if layers and not isinstance(layers[0], dict):
        raise CensusUnavailable("inspector gave layer names only: the engine was not built "
                                "with ProfilingVerbosity.DETAILED")
    compute, int8, other = 0, 0, []
    opaque = []
    for layer in layers:
        name = str(layer.get("Name", "?"))
        if is_opaque_layer(layer):
            opaque.append(name)
            continue
        if not is_compute_layer(layer):
            continue
        compute += 1
        inputs = layer.get("Inputs") or []
        precision = tensor_precision(inputs[0]) if inputs else "unknown"
        if precision == "int8":
            int8 += 1
        else:
            other.append({"name": name, "precision": precision})
    return {
        "source": SOURCE,
        "compute_ops": compute,
        "int8_compute_ops": int8,
        "float_compute_ops": [o["name"] for o in other if o["precision"] in
                              ("fp32", "fp16", "bf16")],
        "non_int8_compute_ops": other,
        "opaque_layers": opaque,  # Myelin subgraphs: their precisions are not visible
        "layers": len(layers),
    }
