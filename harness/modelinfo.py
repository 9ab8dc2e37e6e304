"""What the model file is: hashes, I/O contract, and how much of it is quantized."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import QParityError
from .fileio import md5_file, sha256_file


@dataclass
class ModelInfo:
    path: str
    md5: str
    sha256: str
    size_bytes: int
    input_name: str
    input_shape: list[int | str]
    output_name: str
    output_shape: list[int | str]
    num_classes: int
    opset: int
    quantize_nodes: int
    dequantize_nodes: int
    quantized_compute_ops: int  # Conv/MatMul/Gemm whose weight comes through a DequantizeLinear
    compute_ops: int
    md5_file_check: str  # "ok", "mismatch", or "absent" for onnx_int8_md5.txt beside the model
    # Files holding tensors outside the .onnx (ONNX external data), resolved next to the model;
    # when there are any, `sha256` covers the model file and each of them (see model_digest).
    external_data: list[dict[str, Any]] | None = None
    is_int8_qdq: bool = True  # False: no compute op takes a quantized weight (a float model)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The operators whose arithmetic quantization changes: what "int8 ran" counts, and the layers
# sensitivity can keep in float (one list: diagnose reads it from here).
COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def split_compute_ops(graph: Any) -> tuple[list[Any], list[Any]]:
    """The graph's compute ops (COMPUTE_OPS, top level) in two lists, in graph order: those
    whose weight comes through a DequantizeLinear (quantized in the file), and the others."""
    dq_outputs = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    compute = [n for n in graph.node if n.op_type in COMPUTE_OPS]
    quantized = [n for n in compute if len(n.input) > 1 and n.input[1] in dq_outputs]
    return quantized, [n for n in compute if not (len(n.input) > 1 and n.input[1] in dq_outputs)]


def file_compute_ops(path: Path) -> tuple[list[Any], list[Any]]:
    """split_compute_ops of the file at `path` (what the executed-precision census matches an
    engine's executed ops against, by node and output names). Weights are not loaded."""
    import onnx

    return split_compute_ops(onnx.load(str(path), load_external_data=False).graph)


def _dims(value_info: Any) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in value_info.type.tensor_type.shape.dim]


def _md5_sidecar(path: Path, md5: str) -> str:
    """SPEC.md: every engine checks the model against the md5 recorded next to it."""
    from .md5record import check_record  # one record per model file (and the old one-line form)

    return check_record(path, md5)


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def external_files(model: Any, path: Path) -> list[Path]:
    """The external-data files the model's tensors point to, resolved next to the model (as
    ONNX Runtime resolves them), whatever the current folder; a missing one is an error."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    found: dict[str, Path] = {}
    for t in _tensors(model.graph):
        if not uses_external_data(t):
            continue
        location = ExternalDataInfo(t).location
        target = (path.parent / location).resolve()
        if not location or Path(location).is_absolute() or ".." in Path(location).parts:
            raise QParityError(f"tensor {t.name!r} keeps its data in {location!r}, which is not a "
                               f"file name beside the model", path)
        if not target.is_file():
            raise QParityError(f"external data file {location!r} of tensor {t.name!r} does not "
                               f"exist next to the model ({target})", path)
        found[location] = target
    return [found[k] for k in sorted(found)]


def model_digest(path: Path, externals: list[Path]) -> tuple[str, list[dict[str, Any]] | None]:
    """sha256 of the model file alone, or, with external data, of the model file's sha256 and
    each data file's name and sha256: a changed weight file changes the model's hash."""
    own = sha256_file(path)
    if not externals:
        return own, None
    records = [{"location": p.name, "sha256": sha256_file(p), "size_bytes": p.stat().st_size}
               for p in externals]
    h = hashlib.sha256(own.encode())
    for r in records:
        h.update(f"\n{r['location']} {r['sha256']}".encode())
    return h.hexdigest(), records


def inspect_model(path: Path, size: int) -> ModelInfo:
    """Load and check the ONNX file against the contract: 1x3xSxS float in, [1, N, 5+nc] out."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise QParityError("model file does not exist", path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise QParityError(f"not a valid ONNX model ({type(e).__name__}: {str(e)[:200]})", path) from e
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) < 1:
        raise QParityError(f"expected one image input and an output, found {len(inputs)} input(s) "
                           f"and {len(g.output)} output(s)", path)
    in_shape, out_shape = _dims(inputs[0]), _dims(g.output[0])
    if in_shape != [1, 3, size, size]:
        raise QParityError(f"input {inputs[0].name!r} has shape {in_shape}; the protocol needs a "
                           f"static 1x3x{size}x{size}", path)
    if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise QParityError(f"input {inputs[0].name!r} must be float32", path)
    if len(out_shape) != 3 or out_shape[0] != 1 or not isinstance(out_shape[2], int) or out_shape[2] < 6:
        raise QParityError(f"output {g.output[0].name!r} has shape {out_shape}; expected "
                           f"[1, N, 5+nc] raw predictions (no NMS in the graph)", path)
    ops = Counter(n.op_type for n in g.node)
    quantized, kept_float = split_compute_ops(g)
    compute = quantized + kept_float
    md5 = md5_file(path)
    sha256, external = model_digest(path, external_files(model, path))
    return ModelInfo(
        path=str(path.resolve()),
        md5=md5,
        sha256=sha256,
        size_bytes=path.stat().st_size,
        input_name=inputs[0].name,
        input_shape=in_shape,
        output_name=g.output[0].name,
        output_shape=out_shape,
        num_classes=int(out_shape[2]) - 5,
        opset=max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0),
        quantize_nodes=ops.get("QuantizeLinear", 0),
        dequantize_nodes=ops.get("DequantizeLinear", 0),
        quantized_compute_ops=len(quantized),
        compute_ops=len(compute),
        md5_file_check=_md5_sidecar(path, md5),
        external_data=external,
        is_int8_qdq=len(quantized) > 0,
    )
