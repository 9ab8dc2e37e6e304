"""Engine registry: adding an engine means writing its module and adding one line here."""

from __future__ import annotations

import importlib

from ..errors import QParityError
from .base import Engine, EngineConfig, EngineFailure, EngineUnavailable

REGISTRY: dict[str, str] = {
    "ort-cpu": "harness.engines.ort_cpu:OrtCpuEngine",
    "openvino": "harness.engines.openvino:OpenVinoEngine",
    "tensorrt": "harness.engines.tensorrt:TensorRtEngine",
}


def engine_class(name: str) -> type[Engine]:
    if name not in REGISTRY:
        raise QParityError(f"unknown engine {name!r}; known: {', '.join(REGISTRY)}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)


__all__ = ["REGISTRY", "Engine", "EngineConfig", "EngineFailure", "EngineUnavailable",
           "engine_class"]
