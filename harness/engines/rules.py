"""What an engine's preflight rule reads and returns (`Engine.preflight`).

`qparity check-model` (harness/preflight.py) analyses the model once into `ModelFacts`; each
registered engine, built-in or plugin, then turns those facts into its own `Finding`s in its own
module. Standard library only: engine modules import this at no cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Finding:
    code: str
    severity: str  # "refuse": the engine will not take the model; "warn": it will, with a risk
    engines: list[str]
    message: str
    nodes: list[str] = field(default_factory=list)


@dataclass
class ModelFacts:
    """The shared analysis of one model file: what the engines' rules decide from."""

    path: Path
    model: Any  # onnx.ModelProto
    cpu_flags: list[str]
    #: Q/DQ nodes by property: "uint8-activations", "nonzero-zero-point", "int32-bias",
    #: "per-channel-activation", "weight-axis" (per-channel weights on an axis other than 0)
    qdq: dict[str, list[str]] = field(default_factory=dict)
    machine: str = ""  # platform.machine() of the host: x86_64, aarch64, ...
    quantized_convs: list[str] = field(default_factory=list)  # Conv nodes with a DQ weight
    float_bias_convs: list[str] = field(default_factory=list)  # ... of which a float bias
    #: ... whose input is not a per-tensor DequantizeLinear or whose output is not consumed by
    #: one QuantizeLinear alone
    unquantized_io_convs: list[str] = field(default_factory=list)
    #: Conv nodes with float constant weights between such a DequantizeLinear and QuantizeLinear
    float_weight_qdq_convs: list[str] = field(default_factory=list)
    #: quantized or float-weight-qdq convs with a signed (int8) activation Q/DQ pair, on the input
    #: or the output, that cannot be re-typed to uint8 as a pair: its QuantizeLinear reaches more
    #: than one consumer (once every DequantizeLinear is made unique per consumer), or its zero
    #: point is not one scalar shared by the Q and the DQ
    shared_signed_convs: list[str] = field(default_factory=list)
    signed_activations: bool = False  # some activation QuantizeLinear has an int8 zero point
    ort_error: str | None = None  # why onnxruntime (optimizations off) could not run it

    @property
    def vnni(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(self.cpu_flags))
