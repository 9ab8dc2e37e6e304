"""The engine interface: load a model, run one input, describe itself. Nothing else.

Everything shared (preprocessing, decode, NMS, metric, timing, reporting) lives outside
`harness/engines/`; an engine only turns a [1, 3, S, S] float32 array into the model's raw
output. Engine modules import their library lazily (in `probe`/`load`), so importing the
package never needs any engine installed.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import QParityError

if TYPE_CHECKING:  # annotations only: importing the package (qparity --help) skips numpy
    import numpy as np

    from .rules import Finding, ModelFacts


class EngineUnavailable(Exception):
    """The engine cannot run on this machine (library, driver or device missing)."""


class EngineFailure(Exception):
    """The engine is installed but could not load or run this model; the message says why."""


def visible_cpus() -> int:
    """CPUs this process may run on: a container's cpuset, not the host's core count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class EngineConfig:
    threads: int = field(default_factory=visible_cpus)
    cache_dir: Path | None = None  # where an engine may keep built artefacts (TensorRT plans)
    options: dict[str, str] = field(default_factory=dict)  # engine-specific --engine-opt k=v


class Engine(ABC):
    name: ClassVar[str]
    #: What one latency sample covers, written into every result.
    timed: ClassVar[str] = "model execution only (host memory in, host memory out)"

    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        #: How many trailing run() calls the latency protocol timed (set by the runner), for
        #: engines that collect their own per-call timings (TensorRT's GPU compute time).
        self.timed_runs: int | None = None

    #: A diagnostic yardstick (qdq-ref: the model's own Q/DQ arithmetic), never a deployment
    #: engine: its result is marked `reference`, compared against, and never gated.
    REFERENCE: ClassVar[bool] = False
    #: Whether the engine can run a cut subgraph of a model (any named float inputs and outputs,
    #: through `run_named`): what `qparity localize` and the in-context check need.
    RUNS_SUBGRAPHS: ClassVar[bool] = False
    #: Whether its arithmetic is the same whichever tensors are graph outputs (nothing is fused
    #: across a tensor, so making it an output changes nothing): `localize` may then read every
    #: tensor from one model with extra outputs instead of compiling one cut per tensor.
    EXTRA_OUTPUTS_EXACT: ClassVar[bool] = False

    #: The --engine-opt keys the engine takes, each with what it does; an engine whose library
    #: names its own settings (OpenVINO's compile properties) overrides `known_option` instead.
    OPTIONS: ClassVar[dict[str, str]] = {}

    @classmethod
    def probe(cls) -> str | None:
        """None when the engine can run here, else the reason it cannot. Must never crash."""
        return None

    @classmethod
    def option_problem(cls, key: str, value: str) -> str | None:
        """None when the engine takes KEY=VALUE, else why not (one line). An engine whose
        library names its own settings (OpenVINO's compile properties) asks the library."""
        if key in cls.OPTIONS:
            return None
        known = "; ".join(f"{k}: {v}" for k, v in cls.OPTIONS.items()) or "no options"
        return f"{cls.name} has no option {key!r} (it takes {known})"

    @classmethod
    def check_options(cls, options: dict[str, str]) -> None:
        """Refuse, before anything runs, an option this engine would ignore or misread."""
        for key, value in options.items():
            problem = cls.option_problem(key, value)
            if problem:
                raise QParityError(f"--engine-opt {cls.name}:{key}={value}: {problem}")

    @classmethod
    def preflight(cls, facts: ModelFacts) -> list[Finding]:
        """This engine's own `check-model` rules: what in the model it would refuse ("refuse")
        or run with a known risk ("warn"), from the shared analysis. Must not import the
        engine's library (check-model runs where the engine is not installed)."""
        return []

    @abstractmethod
    def load(self, model: Path) -> None:
        """Prepare the model; raise EngineFailure with the library's own message on refusal."""

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """One batch-1 inference: [1, 3, S, S] float32 -> raw output [1, N, 5+nc] float32."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Library, version and every setting that could change results or speed.

        "settings": every setting in effect; "defaults": what a run without any --engine-opt
        and with the default thread count would use, for the settings that have a default
        (same keys; a group of settings as a nested dict). The report lists only the settings
        that differ from it; a key in a "defaults" group that is missing from it (an option
        the library names, OpenVINO's LP_TRANSFORMS_MODE) differs by definition.

        Called after the latency measurement, so an engine may add timings it collected
        itself (TensorRT's GPU compute time) under "extra_latency_ms".
        """

    def run_named(self, inputs: dict[str, np.ndarray],
                  outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """One inference of a model with any named float inputs and outputs (a cut subgraph, a
        model with extra outputs): the named outputs (default: all), in their own shapes, as
        arrays the caller owns. For the diagnosis commands; engines flagged RUNS_SUBGRAPHS
        implement it."""
        raise EngineFailure(f"{self.name} cannot run a cut subgraph (named inputs and outputs)")

    def infer(self, x: np.ndarray) -> None:
        """The call the latency protocol times: one inference whose output may stay inside
        the engine (no copy out). Defaults to `run`; `timed` must say what it covers."""
        self.run(x)

    def reported_latency_ms(self) -> float | None:
        """The engine's own measure of the last `infer`, if it keeps one (OpenVINO's request
        latency); read outside the timed region and recorded beside the wall-clock sample."""
        return None

    def set_spinning(self, on: bool) -> str | None:
        """Let intra-op threads spin while waiting for work (latency protocol, as configured)
        or not (accuracy pass, where they would steal the cores preprocessing and decoding
        need). Returns what it did, None when the engine has no such control."""
        return None

    def census(self) -> dict[str, Any] | None:
        """Executed-precision census: which compute ops really ran in int8 (see census.py)."""
        return None

    def close(self) -> None:
        """Release device memory and sessions."""
