"""TensorRT 10+ on an NVIDIA GPU: strongly typed QDQ build, engine cache, honest timing.

The model's Q/DQ nodes decide what runs in int8 (explicit quantization, STRONGLY_TYPED
network: no calibrator, no precision flags). Built plans are cached beside the results,
keyed by everything that makes a plan valid (see trt/cache.py). CUDA memory goes through
cuda-python: page-locked host buffers, one non-blocking stream, asynchronous copies.

Three latency figures, each labelled with what it covers (trt/gputime.py): the runner's
sample (`timed` below) is the end-to-end host wall time of `run()`, what the CPU engines are
compared on; CUDA events add the GPU compute alone (trtexec's "GPU Compute Time") and H2D +
compute + D2H (trtexec's "Latency") under describe()'s "extra_latency_ms".

Import hygiene: this module imports nothing GPU-related. `probe` checks the driver through
ctypes before TensorRT is imported, because creating a TensorRT runtime without a usable
GPU can crash the process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .base import Engine, EngineConfig, EngineFailure, EngineUnavailable
from .rules import Finding, ModelFacts
from .trt.build import (BuildError, ParserRefusal, build_plan, gc_paused, make_logger,
                        parse_onnx)
from ..census import FileOps
from ..fileio import sha256_file
from .trt.cache import CacheDecision, CacheKeyFields, PlanCache, TimingCacheFile
from .trt.census import CensusUnavailable, census_from_inspector
from .trt.cuda import CudaError, CudaGraph, CudaSession, StagedTensor
from .trt.gpuinfo import (DeviceIdentity, cuda_device_identity, driver_version, import_nvml,
                          nvml_snapshot)
from .trt.gputime import FIGURES, GPU_COMPUTE, H2D_COMPUTE_D2H, HOST_WALL, GpuTimes
from .trt.io_plan import IoPlan, IoPlanError, plan_io, specs_from_engine
from .trt.settings import OPTIONS, BuildSettings, OptionError, RuntimeSettings, parse_options
from .trt.status import collect_facts, tensorrt_cuda_build, unavailable_reason


def check_model_verdict(model: Path) -> str:
    """`qparity check-model`'s verdict for TensorRT, to stand beside the parser's refusal:
    the parser says what failed, the preflight says which recipe rule the file breaks."""
    try:
        from ..preflight import check_model
        from ..protocol import locked_protocol

        verdict = check_model(model, locked_protocol().size)["engines"]["tensorrt"]
    except Exception as e:  # the refusal itself is the result; the preflight is extra
        return f"check-model could not run: {type(e).__name__}: {e}"
    if verdict["accepts"]:
        return "check-model expected tensorrt to accept this file (a parser limit it does not know)"
    return "check-model: " + "; ".join(verdict["reasons"])


def _protocol_runs() -> int:
    """How many timed runs the protocol makes: the window of GPU times to summarize."""
    from ..protocol import locked_protocol

    return locked_protocol().runs


# What TensorRT's ONNX parser refuses in a Q/DQ file (ModelFacts.qdq keys).
REFUSED_QDQ = {
    "uint8-activations": "activation Q/DQ node(s) use uint8 (asymmetric) activations; TensorRT "
                         "supports only int8 with zero point 0",
    "nonzero-zero-point": "Q/DQ node(s) have a non-zero zero point; TensorRT rejects any non-zero "
                          "zero point",
    "int32-bias": "DequantizeLinear node(s) dequantize int32 biases; TensorRT's parser needs int8 "
                  "inputs to DequantizeLinear",
    "per-channel-activation": "activation Q/DQ node(s) are per-channel; TensorRT takes per-tensor "
                              "activations only",
    "weight-axis": "per-channel weight scale(s) on an axis other than 0",
}


class TensorRtEngine(Engine):
    name = "tensorrt"
    timed = HOST_WALL
    OPTIONS = OPTIONS
    # One input [1, C, H, W] and one output [1, N, K] (trt/io_plan.py): a cut subgraph with its
    # own named inputs and outputs does not fit, so localize and the in-context check refuse it.
    RUNS_SUBGRAPHS = False

    @classmethod
    def preflight(cls, facts: ModelFacts) -> list[Finding]:
        return [Finding(code, "refuse", [cls.name], f"{len(nodes)} {REFUSED_QDQ[code]}", nodes)
                for code, nodes in facts.qdq.items() if nodes and code in REFUSED_QDQ]

    @classmethod
    def option_problem(cls, key: str, value: str) -> str | None:
        try:  # the key and its value: a bad value is refused before the run, too
            parse_options({key: value})
        except OptionError as e:
            return str(e)
        return None

    def __init__(self, config: EngineConfig | None = None):
        super().__init__(config)
        self.trt: Any = None
        self.cudart: Any = None
        self.runtime: Any = None
        self.engine: Any = None
        self.context: Any = None
        self.session: CudaSession | None = None
        self.graph: CudaGraph | None = None
        self.io: IoPlan | None = None
        self.inp: StagedTensor | None = None
        self.out: StagedTensor | None = None
        self.build_settings = BuildSettings()
        self.run_settings = RuntimeSettings()
        self.identity: DeviceIdentity | None = None
        self.driver: tuple[str, str] = ("unknown", "unknown")
        self.cache: CacheDecision | None = None
        self.build_info: dict[str, Any] = {}
        self.nvml_at_load: dict[str, Any] = {}
        self.gpu_times = GpuTimes(GPU_COMPUTE)
        self.copy_times = GpuTimes(H2D_COMPUTE_D2H)
        self.logger: Any = None
        self.nvtx_applied: str | None = None
        self.tensorrt_cuda: tuple[int | None, str] = (None, "unknown")

    @classmethod
    def probe(cls) -> str | None:
        return unavailable_reason(collect_facts())

    # ---------------------------------------------------------------- load
    def load(self, model: Path) -> None:
        reason = self.probe()
        if reason:
            raise EngineUnavailable(reason)
        try:
            self.build_settings, self.run_settings = parse_options(self.config.options)
        except OptionError as e:
            raise EngineFailure(str(e)) from e
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self.trt, self.cudart = trt, cudart
        model = self.model_path = Path(model)
        try:
            self.session = CudaSession(cudart, self.run_settings.device)
            self.identity = cuda_device_identity(cudart, self.run_settings.device)
            nvml = import_nvml()
            self.driver = driver_version(nvml, self.identity.cuda_driver_version)
            self.nvml_at_load = (nvml_snapshot(nvml, self.identity.pci_bus_id) if nvml
                                 else {"nvml": "unavailable: nvidia-ml-py is not installed"})
            self.tensorrt_cuda = tensorrt_cuda_build()
            # One logger for runtime, builder and parser: TensorRT keeps the first one it is
            # given for the whole process (see trt/build.make_logger).
            self.logger = make_logger(trt)
            self.runtime = self._create("trt.Runtime", lambda: trt.Runtime(self.logger))
            self.engine = self._engine_from_cache_or_build(trt, model)
            self._bind()
        except (CudaError, IoPlanError, BuildError, OSError) as e:  # OSError: model or cache I/O
            self.close()
            raise EngineFailure(f"tensorrt: {e}") from e
        except (TypeError, RuntimeError) as e:  # pybind11's words for a null TensorRT object
            self.close()
            raise EngineFailure(f"tensorrt: {type(e).__name__}: {e}; {self._cuda_hint()}") from e
        except ParserRefusal as e:
            self.close()
            raise EngineFailure(f"{e} || {check_model_verdict(model)}") from e
        except BaseException:
            self.close()
            raise

    def _create(self, what: str, make: Any) -> Any:
        """A TensorRT factory call; None (or pybind11's TypeError for a null object) becomes
        an error naming the call, TensorRT's own error lines and the likely cause."""
        mark = len(self.logger.records) if self.logger is not None else 0
        with gc_paused():
            obj = make()
        if obj is None:
            raise BuildError(f"{what} returned None{self._logged(mark)}; {self._cuda_hint()}")
        return obj

    def _logged(self, mark: int) -> str:
        errors = self.logger.errors(mark) if self.logger is not None else []
        return (": " + " | ".join(errors)) if errors else ""

    def _cuda_hint(self) -> str:
        """The usual cause when TensorRT cannot create its objects on a working GPU."""
        major, source = self.tensorrt_cuda
        driver = self.identity.cuda_driver_version if self.identity else None
        built = f"CUDA {major} build ({source})" if major else f"CUDA build unknown ({source})"
        return (f"TensorRT is its {built}, the driver supports CUDA {driver or 'unknown'}; "
                "TensorRT logs CUDA error 35 when its CUDA major is newer than the driver's "
                "(install tensorrt-cu12 for a CUDA 12 driver), else see TensorRT's log above")

    def _cache_fields(self, trt: Any, model: Path) -> CacheKeyFields:
        assert self.identity is not None
        return CacheKeyFields(tensorrt_version=str(trt.__version__), gpu_name=self.identity.name,
                              compute_capability=self.identity.compute_capability,
                              driver_version=self.driver[0], model_sha256=sha256_file(model),
                              builder_settings=self.build_settings.to_dict(),
                              external_data_sha256=external_data_hashes(model),
                              sm_count=self.identity.sm_count,
                              tensorrt_cuda_major=self.tensorrt_cuda[0])

    def _engine_from_cache_or_build(self, trt: Any, model: Path) -> Any:
        fields = self._cache_fields(trt, model)
        cache = PlanCache(self.config.cache_dir, model.name)
        decision = cache.lookup(fields)
        if decision.status == "hit" and self.run_settings.rebuild:
            decision = CacheDecision("stale", "rebuild=1 requested", decision.key,
                                     decision.plan_path)
        if decision.status == "hit":
            mark = len(self.logger.records) if self.logger is not None else 0
            with gc_paused():
                engine = self.runtime.deserialize_cuda_engine(cache.read(decision))
            if engine is not None:
                self.cache = decision
                return engine
            # Same facts, yet TensorRT refuses the bytes: never trust it, rebuild over it.
            decision = CacheDecision("stale", "TensorRT could not deserialize the cached plan"
                                     + (self._logged(mark)[:300] or " (its log says why)"),
                                     decision.key, decision.plan_path)
        self.cache = decision
        plan = self._build(trt, model, fields)
        stored = cache.store(fields, plan)
        self.build_info["stored_as"] = str(stored) if stored else None
        mark = len(self.logger.records) if self.logger is not None else 0
        with gc_paused():
            engine = self.runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise BuildError("the freshly built plan did not deserialize"
                             + (self._logged(mark) or " (TensorRT's log says why)"))
        return engine

    def _build(self, trt: Any, model: Path, fields: CacheKeyFields) -> bytes:
        timing = TimingCacheFile(self.config.cache_dir, fields)
        t0 = time.perf_counter()
        logger = self.logger if self.logger is not None else make_logger(trt)
        parsed = parse_onnx(trt, model, logger)
        result = build_plan(trt, parsed, self.build_settings, logger, timing.load())
        strongly_typed, warnings = parsed.strongly_typed, parsed.warnings
        del parsed  # builder, network and parser go now, not at some garbage collection
        if result.timing_cache:
            timing.save(result.timing_cache)
        self.build_info = {
            "build_s": round(time.perf_counter() - t0, 3),
            "network_strongly_typed": strongly_typed,
            "parser_warnings": warnings,
            "timing_cache": result.timing_cache_status,
            "timing_cache_file": str(timing.path) if timing.path else None,
            "plan_bytes": len(result.plan),
        }
        return result.plan

    def _bind(self) -> None:
        """Plan the I/O from the engine's metadata, allocate, and hand TensorRT the addresses."""
        trt, session = self.trt, self.session
        assert session is not None
        self.io = plan_io(specs_from_engine(trt, self.engine))
        with gc_paused():
            self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BuildError("create_execution_context returned None (out of device memory?)")
        self._set_nvtx_verbosity()
        self.inp = session.stage(self.io.input)
        self.out = session.stage(self.io.output)
        for t in (self.inp, self.out):
            if not self.context.set_tensor_address(t.plan.name, t.device_ptr):
                raise BuildError(f"set_tensor_address({t.plan.name!r}) was refused")
        if self.run_settings.cuda_graph:
            try:
                self.graph = CudaGraph(session, self._enqueue)
            except RuntimeError as e:  # CudaError included: capture refused, or enqueue False
                raise BuildError(f"CUDA graph capture failed ({e}); run without "
                                 "--engine-opt cuda_graph=1") from e

    def _set_nvtx_verbosity(self) -> None:
        """Timed runs emit the NVTX markers asked for (default LAYER_NAMES_ONLY), not the
        DETAILED ones the plan was built with for the census."""
        level = getattr(self.trt.ProfilingVerbosity, self.run_settings.nvtx)
        self.context.nvtx_verbosity = level
        self.nvtx_applied = str(getattr(self.context.nvtx_verbosity, "name", level))

    def _enqueue(self) -> bool:
        assert self.session is not None
        return bool(self.context.execute_async_v3(self.session.stream_handle))

    # ---------------------------------------------------------------- run
    def run(self, x: np.ndarray) -> np.ndarray:
        session, inp, out = self.session, self.inp, self.out
        if session is None or inp is None or out is None:
            raise EngineFailure("tensorrt: run() before load()")
        if x.shape != inp.plan.shape or x.dtype != inp.plan.dtype:
            raise EngineFailure(f"tensorrt: input is {x.dtype}{list(x.shape)}, the engine takes "
                                f"{inp.plan.dtype}{list(inp.plan.shape)}")
        try:
            np.copyto(inp.host, x)  # into page-locked memory: the H2D copy can be async
            session.record(session.copy_start, "copy_start")
            session.to_device(inp)
            session.record(session.start, "start")
            if self.graph is not None:
                self.graph.launch()
            elif not self._enqueue():
                raise EngineFailure("tensorrt: execute_async_v3 returned False (TensorRT's log "
                                    "on stderr says why)")
            session.record(session.end, "end")
            session.to_host(out)
            session.record(session.copy_end, "copy_end")
            session.synchronize()
            self.gpu_times.add(session.elapsed_ms(session.start, session.end))
            self.copy_times.add(session.elapsed_ms(session.copy_start, session.copy_end))
        except CudaError as e:
            raise EngineFailure(f"tensorrt: {e}") from e
        return out.host.copy()  # the staging buffer is overwritten by the next run

    # ---------------------------------------------------------------- reporting
    def describe(self) -> dict[str, Any]:
        trt = self.trt
        identity = self.identity.to_dict() if self.identity else {}
        nvml = import_nvml()
        after = (nvml_snapshot(nvml, self.identity.pci_bus_id) if nvml and self.identity
                 else {"nvml": "unavailable"})
        # The runner may set `timed_runs` (its --runs); else the locked protocol's count.
        window = self.timed_runs or _protocol_runs()
        extra = {name: stats for name, stats in (
            ("gpu_compute", self.gpu_times.summary(window)),
            ("h2d_compute_d2h", self.copy_times.summary(window))) if stats}
        return {
            "library": "tensorrt",
            "version": str(getattr(trt, "__version__", "unknown")),
            "device": f"cuda:{self.run_settings.device}",
            "settings": {
                "builder": self.build_settings.to_dict(),
                "strongly_typed": self.build_settings.strongly_typed,
                "precision_flags": "none (explicit quantization: Q/DQ nodes decide)",
                "tf32": self.build_settings.tf32,
                "float_math": ("TF32 allowed for float convolutions/matmuls"
                               if self.build_settings.tf32 else
                               "fp32 (BuilderFlag.TF32 cleared: float layers compute like the "
                               "CPU engines)"),
                "nvtx_verbosity_while_timed": self.nvtx_applied,
                "cuda_graph": self.run_settings.cuda_graph,
                "runtime": self.run_settings.to_dict(),
                "engine_cache": self.cache.to_dict() if self.cache else None,
                "build": self.build_info,
                "io": self.io.to_dict() if self.io else None,
                "host_buffers": "page-locked (cudaMallocHost)",
                "stream": "one non-blocking stream; async H2D/D2H copies",
            },
            # the builder and runtime settings with no --engine-opt (trt/settings.py)
            "defaults": {"builder": BuildSettings().to_dict(), "runtime": RuntimeSettings().to_dict()},
            "gpu": {
                **identity,
                "driver_version": self.driver[0],
                "driver_version_source": self.driver[1],
                "cuda_bindings": _cuda_python_version(),
                "tensorrt_cuda_major": self.tensorrt_cuda[0],
                "tensorrt_cuda_source": self.tensorrt_cuda[1],
                "nvml_at_load": self.nvml_at_load,
                "nvml_after_timing": after,
            },
            "extra_latency_ms": extra,
            "latency_figures": FIGURES,
        }

    def census(self) -> dict[str, Any] | None:
        if self.engine is None:
            return None
        try:
            inspector = self.engine.create_engine_inspector()
            if self.context is not None:
                inspector.execution_context = self.context
            with gc_paused():
                info = inspector.get_engine_information(self.trt.LayerInformationFormat.JSON)
            return census_from_inspector(info, FileOps.of_model(self.model_path))
        except CensusUnavailable as e:
            return {"source": "tensorrt engine inspector", "unavailable": str(e)}
        except Exception as e:  # best effort: a census failure must not fail the run
            return {"source": "tensorrt engine inspector",
                    "unavailable": f"{type(e).__name__}: {e}"}

    def close(self) -> None:
        # Order: the graph and the context use the buffers, the context belongs to the engine.
        if self.graph is not None:
            self.graph.close()
            self.graph = None
        self.context = None
        self.engine = None
        self.runtime = None
        if self.session is not None:
            self.session.close()
            self.session = None
        self.inp = self.out = None


def external_data_hashes(model: Path) -> dict[str, str]:
    """sha256 of every external-data file the model's initializers point at (weights kept
    beside the .onnx): a plan built from other weights must not be reused."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    files = set()
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            files.update(e.value for e in t.external_data if e.key == "location")
    return {name: sha256_file(Path(model).parent / name) for name in sorted(files)}


def _cuda_python_version() -> str | None:
    try:
        import cuda.bindings

        return str(cuda.bindings.__version__)
    except Exception:
        return None
