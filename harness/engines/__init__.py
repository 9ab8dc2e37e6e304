"""Engine registry: adding an engine means writing its module and adding one line here."""

from __future__ import annotations

import importlib
import os

from ..errors import QParityError
from .base import Engine, EngineConfig, EngineFailure, EngineUnavailable

REGISTRY: dict[str, str] = {
    "ort-cpu": "harness.engines.ort_cpu:OrtCpuEngine",
    "openvino": "harness.engines.openvino:OpenVinoEngine",
    "tensorrt": "harness.engines.tensorrt:TensorRtEngine",
    "qdq-ref": "harness.engines.qdq_ref:QdqReferenceEngine",
}



def _registry() -> dict[str, str]:
    """The built-in engines plus any from QPARITY_EXTRA_ENGINES ("name=module:Class,..."), so an
    out-of-tree engine plugs in without editing qparity, and child processes inherit it."""
    reg = dict(REGISTRY)
    for item in filter(None, os.environ.get("QPARITY_EXTRA_ENGINES", "").split(",")):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target or not name.strip():
            raise QParityError(f"QPARITY_EXTRA_ENGINES entry {item!r} is not name=module:Class")
        if name.strip() in REGISTRY:  # a plugin may add an engine, never stand in for one
            raise QParityError(f"QPARITY_EXTRA_ENGINES entry {item!r} would replace the built-in "
                               f"engine {name.strip()!r}; give the plugin another name")
        reg[name.strip()] = target.strip()
    return reg


def engine_names() -> list[str]:
    return list(_registry())


def engine_class(name: str) -> type[Engine]:
    reg = _registry()
    if name not in reg:
        raise QParityError(f"unknown engine {name!r}; known: {', '.join(reg)}")
    module, _, cls = reg[name].partition(":")
    try:
        found = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as e:
        if name in REGISTRY:  # a built-in that cannot import is a broken install: show it all
            raise
        raise QParityError(f"engine {name!r} from QPARITY_EXTRA_ENGINES cannot be loaded "
                           f"({reg[name]}: {type(e).__name__}: {e})") from e
    return found


__all__ = ["REGISTRY", "engine_names", "Engine", "EngineConfig", "EngineFailure", "EngineUnavailable",
           "engine_class"]
