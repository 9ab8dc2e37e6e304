"""The engine's knobs (`--engine-opt k=v`), parsed strictly: a typo is an error, not a default."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


class OptionError(ValueError):
    pass


@dataclass(frozen=True)
class BuildSettings:
    """Everything handed to the builder. All of it is part of the engine cache key."""

    # Fixed, not an option: explicit quantization. The Q/DQ nodes carry the precision; no
    # calibrator, no precision flags (TensorRT 11 keeps only this mode).
    strongly_typed: bool = True
    # Builder workspace limit in MiB; None leaves TensorRT's default (the device's memory),
    # since a smaller limit can rule out the fastest tactics.
    workspace_mb: int | None = None
    # TensorRT's builder_optimization_level (0-5); 3 is its default.
    optimization_level: int = 3
    # DETAILED keeps per-layer formats in the plan, which the inspector (census) needs;
    # it does not change kernel selection.
    profiling_verbosity: str = "DETAILED"
    # TF32 for the float convolutions/matrix multiplies (TensorRT's default is on); off keeps
    # them fp32 like the CPU engines they are compared with (see build.builder_config).
    tf32: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RuntimeSettings:
    """Choices that do not change the built engine, so not part of the cache key."""

    device: int = 0
    cuda_graph: bool = False  # replay execute_async_v3 from a captured CUDA graph
    rebuild: bool = False  # build even when a valid cache entry exists (and replace it)
    # NVTX markers the execution context emits while timed. The plan is built DETAILED (the
    # census needs it) and a context inherits that, which TensorRT documents adds enqueue
    # overhead; LAYER_NAMES_ONLY is TensorRT's own default verbosity. The inspector is unaffected.
    nvtx: str = "LAYER_NAMES_ONLY"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OPTIONS = {
    "workspace_mb": "builder workspace limit in MiB (default: TensorRT's own)",
    "opt_level": "builder optimization level 0-5 (default 3)",
    "cuda_graph": "1 to launch the inference as a captured CUDA graph (default 0)",
    "device": "CUDA device index (default 0)",
    "rebuild": "1 to ignore a valid cached engine and build again (default 0)",
    "tf32": "1 to let float layers run in TF32 (TensorRT's default; qparity's default 0: fp32)",
    "nvtx": "NVTX verbosity while timed: none, layer_names_only (default) or detailed",
}
NVTX_LEVELS = ("NONE", "LAYER_NAMES_ONLY", "DETAILED")


def _flag(key: str, value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise OptionError(f"tensorrt option {key}={value!r}: expected 0 or 1")


def _int(key: str, value: str, lo: int, hi: int | None = None) -> int:
    try:
        n = int(value)
    except ValueError:
        raise OptionError(f"tensorrt option {key}={value!r}: expected an integer") from None
    if n < lo or (hi is not None and n > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise OptionError(f"tensorrt option {key}={n}: expected {bound}")
    return n


def parse_options(options: dict[str, str]) -> tuple[BuildSettings, RuntimeSettings]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        known = "; ".join(f"{k}: {v}" for k, v in OPTIONS.items())
        raise OptionError(f"unknown tensorrt option(s) {', '.join(unknown)}; known: {known}")
    build = BuildSettings(
        workspace_mb=_int("workspace_mb", options["workspace_mb"], 1)
        if "workspace_mb" in options else None,
        optimization_level=_int("opt_level", options.get("opt_level", "3"), 0, 5),
        tf32=_flag("tf32", options.get("tf32", "0")),
    )
    nvtx = options.get("nvtx", "layer_names_only").strip().upper()
    if nvtx not in NVTX_LEVELS:
        raise OptionError(f"tensorrt option nvtx={options['nvtx']!r}: expected one of "
                          f"{', '.join(v.lower() for v in NVTX_LEVELS)}")
    run = RuntimeSettings(
        device=_int("device", options.get("device", "0"), 0),
        cuda_graph=_flag("cuda_graph", options.get("cuda_graph", "0")),
        rebuild=_flag("rebuild", options.get("rebuild", "0")),
        nvtx=nvtx,
    )
    return build, run
