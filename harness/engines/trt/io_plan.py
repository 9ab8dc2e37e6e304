"""Which buffers to allocate, decided from the engine's own I/O metadata.

The harness contract is one float32 input [1, 3, S, S] and one float32 output [1, N, 5+nc];
the engine is asked for names, modes, shapes and dtypes (never assumed), and anything outside
the contract is refused here with a message that says what the engine reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class IoPlanError(ValueError):
    """The engine's I/O does not fit the harness contract."""


@dataclass(frozen=True)
class TensorSpec:
    """One I/O tensor as the engine reports it."""

    name: str
    is_input: bool
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name, or TensorRT's name for a type numpy lacks (e.g. "FP8")
    on_device: bool = True


@dataclass(frozen=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.name,
                "nbytes": self.nbytes}


@dataclass(frozen=True)
class IoPlan:
    input: TensorPlan
    output: TensorPlan

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input.to_dict(), "output": self.output.to_dict()}


def _plan(spec: TensorSpec, role: str, rank: int) -> TensorPlan:
    if any(d < 0 for d in spec.shape):
        raise IoPlanError(f"{role} {spec.name!r} has a dynamic shape {list(spec.shape)}: this "
                          "harness builds static batch-1 engines; export the model with fixed "
                          "dimensions")
    if len(spec.shape) != rank or spec.shape[0] != 1:
        raise IoPlanError(f"{role} {spec.name!r} has shape {list(spec.shape)}; expected rank "
                          f"{rank} with batch 1")
    if spec.dtype != "float32":
        raise IoPlanError(f"{role} {spec.name!r} is {spec.dtype}; the harness exchanges float32 "
                          "(a quantized model keeps float32 I/O, its Q/DQ nodes are inside)")
    if not spec.on_device:
        raise IoPlanError(f"{role} {spec.name!r} lives in host memory (a shape tensor); "
                          "expected a device tensor")
    return TensorPlan(spec.name, tuple(int(d) for d in spec.shape), np.dtype(spec.dtype))


def plan_io(specs: list[TensorSpec]) -> IoPlan:
    """Exactly one input [1, C, H, W] and one output [1, N, K], both float32 and static."""
    inputs = [s for s in specs if s.is_input]
    outputs = [s for s in specs if not s.is_input]
    if len(inputs) != 1 or len(outputs) != 1:
        listing = ", ".join(f"{s.name} ({'in' if s.is_input else 'out'})" for s in specs)
        raise IoPlanError(f"expected 1 input and 1 output, the engine has {len(inputs)} and "
                          f"{len(outputs)}: {listing or 'none'}")
    return IoPlan(input=_plan(inputs[0], "input", 4), output=_plan(outputs[0], "output", 3))


def _dtype_name(trt: Any, dtype: Any) -> str:
    try:
        return np.dtype(trt.nptype(dtype)).name
    except TypeError:  # FP8, INT4, ... have no numpy type
        return str(getattr(dtype, "name", dtype))


def specs_from_engine(trt: Any, engine: Any) -> list[TensorSpec]:
    """Read the I/O tensors of a deserialized ICudaEngine (TensorRT >= 10 named-tensor API)."""
    specs = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        if mode == trt.TensorIOMode.NONE:
            continue
        specs.append(TensorSpec(
            name=name,
            is_input=mode == trt.TensorIOMode.INPUT,
            shape=tuple(int(d) for d in engine.get_tensor_shape(name)),
            dtype=_dtype_name(trt, engine.get_tensor_dtype(name)),
            on_device=engine.get_tensor_location(name) == trt.TensorLocation.DEVICE,
        ))
    return specs
