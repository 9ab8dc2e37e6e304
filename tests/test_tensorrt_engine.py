"""The TensorRT engine's GPU-free logic, on any machine.

Everything here runs without a GPU, a driver or TensorRT: the status decisions, the engine
cache, the I/O planning from engine metadata, the CUDA error translation, the latency
statistics of GPU event times, the inspector census and the NVML snapshot. The engine's own
load/run/close wiring is driven with fakes of its dependencies (a cuda-python runtime that
copies between ctypes buffers, a TensorRT engine that reports metadata and computes a known
function): that proves which buffer is copied where and when, not CUDA or TensorRT behaviour.
What needs a real GPU is listed in docs/tensorrt.md.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from harness.engines import EngineConfig, EngineFailure, EngineUnavailable, engine_class
from harness.engines.tensorrt import TensorRtEngine
from harness.engines.trt import status
from harness.engines.trt.build import ParserMessage, ParserRefusal, parser_messages
from harness.engines.trt.cache import (CacheKeyFields, PlanCache, TimingCacheFile, cache_key,
                                       timing_cache_key)
from harness.engines.trt.census import (CensusUnavailable, census_from_inspector,
                                        tensor_precision)
from harness.engines.trt.cuda import CudaError, CudaSession, check_cuda, host_view
from harness.engines.trt.gpuinfo import driver_version, nvml_snapshot
from harness.engines.trt.gputime import GpuTimes
from harness.engines.trt.io_plan import (IoPlanError, TensorPlan, TensorSpec, plan_io,
                                         specs_from_engine)
from harness.engines.trt.settings import (BuildSettings, OptionError, RuntimeSettings,
                                          parse_options)
from harness.latency import summarize

ROOT = Path(__file__).resolve().parents[1]


def driver_present() -> bool:
    return status.probe_driver().library is not None


no_driver_only = pytest.mark.skipif(driver_present(), reason="this machine has an NVIDIA driver")


# ------------------------------------------------------------------ status / probe
@no_driver_only
def test_probe_on_this_machine_names_the_missing_driver():
    reason = TensorRtEngine.probe()
    assert reason is not None
    assert reason.startswith("no NVIDIA driver (libcuda.so.1 not found)")


@no_driver_only
def test_load_without_driver_is_unavailable_not_a_crash(tmp_path):
    with pytest.raises(EngineUnavailable, match="no NVIDIA driver"):
        TensorRtEngine(EngineConfig(cache_dir=tmp_path)).load(tmp_path / "model.onnx")


@no_driver_only
def test_runner_reports_tensorrt_unavailable(tmp_path):
    """`--engines tensorrt` on a CPU machine: a result file with status unavailable."""
    from harness.protocol import locked_protocol
    from harness.runner import RunRequest, execute

    req = RunRequest(engine="tensorrt", model=tmp_path / "m.onnx", images_dir=tmp_path,
                     annotations=tmp_path / "a.json", out=tmp_path / "out",
                     protocol=locked_protocol(), config=EngineConfig(cache_dir=tmp_path / "c"))
    res = execute(req, show_progress=False)
    assert res["status"] == "unavailable"
    assert "no NVIDIA driver" in res["reason"]
    assert json.loads((tmp_path / "out" / "tensorrt.json").read_text())["status"] == "unavailable"


def test_registry_selects_the_engine():
    assert engine_class("tensorrt") is TensorRtEngine
    assert TensorRtEngine.timed.startswith("end-to-end host wall time")


def test_importing_the_engine_imports_nothing_gpu_related():
    code = ("import sys, harness.engines, harness.engines.tensorrt as t\n"
            "t.TensorRtEngine\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('tensorrt', 'tensorrt_rtx', 'pynvml') or m == 'cuda' or m.startswith('cuda.')]\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


@no_driver_only
def test_probe_imports_no_tensorrt_when_the_driver_is_missing():
    code = ("import sys\nfrom harness.engines.tensorrt import TensorRtEngine\n"
            "TensorRtEngine.probe()\n"
            "print(any(m.split('.')[0] in ('tensorrt', 'tensorrt_rtx') for m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"


def test_probe_driver_missing_library():
    facts = status.probe_driver(("libdefinitely-not-cuda.so.9",))
    assert facts.library is None and "libdefinitely-not-cuda" in facts.load_error


def test_probe_driver_library_without_cuda_api():
    """A library that loads but is no CUDA driver: reported, not a crash."""
    facts = status.probe_driver(("libc.so.6",))
    assert facts.library == "libc.so.6"
    assert facts.init_error and "not a usable CUDA driver" in facts.init_error


GOOD_DRIVER = status.DriverFacts(library="libcuda.so.1", device_count=1, cuda_version=12040)


@pytest.mark.parametrize("facts, expected", [
    (status.ProbeFacts(driver=GOOD_DRIVER, tensorrt_version="10.3.0"), None),
    (status.ProbeFacts(driver=status.DriverFacts(load_error="x")),
     "no NVIDIA driver (libcuda.so.1 not found)"),
    (status.ProbeFacts(driver=status.DriverFacts(library="libcuda.so.1",
                                                 init_error="CUDA_ERROR_NO_DEVICE (100)")),
     "cuInit failed: CUDA_ERROR_NO_DEVICE (100) (no GPU visible"),
    (status.ProbeFacts(driver=status.DriverFacts(library="libcuda.so.1", device_count=0)),
     "reports no CUDA device"),
    (status.ProbeFacts(driver=GOOD_DRIVER, missing_packages=("tensorrt",)),
     "tensorrt is not installed (pip install 'qparity[tensorrt]')"),
    (status.ProbeFacts(driver=GOOD_DRIVER, missing_packages=("tensorrt", "cuda-bindings")),
     "tensorrt and cuda-bindings are not installed"),
    (status.ProbeFacts(driver=GOOD_DRIVER, tensorrt_version="8.6.1"),
     "tensorrt 8.6.1 is older than 10.0"),
    (status.ProbeFacts(driver=GOOD_DRIVER, tensorrt_import_error="OSError: libnvinfer.so.10"),
     "tensorrt cannot be imported: OSError: libnvinfer.so.10"),
    (status.ProbeFacts(driver=GOOD_DRIVER, tensorrt_version="10.3.0",
                       cuda_python_error="cudaErrorInsufficientDriver"),
     "cuda-bindings cannot use this driver (driver supports CUDA 12.4): "
     "cudaErrorInsufficientDriver"),
])
def test_unavailable_reason_decisions(facts, expected):
    reason = status.unavailable_reason(facts)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and expected in reason


def test_unavailable_reason_lists_every_problem_driver_first():
    facts = status.ProbeFacts(driver=status.DriverFacts(load_error="x"),
                              missing_packages=("tensorrt",))
    reason = status.unavailable_reason(facts)
    assert reason.index("no NVIDIA driver") < reason.index("tensorrt is not installed")


def test_missing_packages_uses_find_spec_only():
    seen = []

    def find_spec(name):
        seen.append(name)
        return None if name == "tensorrt" else object()

    assert status.missing_packages(find_spec) == ("tensorrt",)
    assert seen == ["tensorrt", "cuda.bindings"]


# ------------------------------------------------------------------ options
def test_default_options():
    build, run = parse_options({})
    assert build == BuildSettings() and build.strongly_typed and build.workspace_mb is None
    assert run == RuntimeSettings() and run.cuda_graph is False


def test_options_parsed():
    build, run = parse_options({"workspace_mb": "2048", "opt_level": "5", "cuda_graph": "1",
                                "device": "1", "rebuild": "yes"})
    assert (build.workspace_mb, build.optimization_level) == (2048, 5)
    assert (run.cuda_graph, run.device, run.rebuild) == (True, 1, True)


@pytest.mark.parametrize("options, message", [
    ({"cuda_graphs": "1"}, "unknown tensorrt option(s) cuda_graphs"),
    ({"opt_level": "9"}, "expected 0..5"),
    ({"workspace_mb": "lots"}, "expected an integer"),
    ({"cuda_graph": "maybe"}, "expected 0 or 1"),
])
def test_bad_options_are_errors(options, message):
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_options(options)


# ------------------------------------------------------------------ engine cache
def fields(**change) -> CacheKeyFields:
    base = dict(tensorrt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability="9.0", driver_version="550.54.15", model_sha256="ab" * 32,
                builder_settings=BuildSettings().to_dict())
    base.update(change)
    return CacheKeyFields(**base)


def test_cache_key_is_stable_and_order_independent():
    a = fields(builder_settings={"x": 1, "y": 2})
    b = fields(builder_settings={"y": 2, "x": 1})
    assert cache_key(a) == cache_key(b)


def test_cache_key_format_is_pinned():
    """The key is sha256 of the facts as canonical JSON (sorted keys, no spaces). Pinned,
    because changing how keys are computed silently orphans every cached engine."""
    canonical = ('{"builder_settings":{"optimization_level":3},"compute_capability":"9.0",'
                 '"driver_version":"550.54.15","external_data_sha256":{},'
                 '"gpu_name":"NVIDIA H100 80GB HBM3",'
                 '"model_sha256":"' + "ab" * 32 + '","schema":2,"sm_count":null,'
                 '"tensorrt_cuda_major":null,"tensorrt_version":"10.3.0"}')
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert cache_key(fields(builder_settings={"optimization_level": 3})) == expected


@pytest.mark.parametrize("change", [
    {"tensorrt_version": "10.4.0"}, {"gpu_name": "NVIDIA L4"}, {"compute_capability": "8.9"},
    {"driver_version": "555.42.02"}, {"model_sha256": "cd" * 32},
    {"builder_settings": BuildSettings(optimization_level=5).to_dict()},
    {"builder_settings": BuildSettings(workspace_mb=512).to_dict()},
    {"builder_settings": BuildSettings(tf32=True).to_dict()},
    {"external_data_sha256": {"model.onnx.data": "ef" * 32}},
    {"sm_count": 14},  # e.g. a MIG slice of the same GPU
    {"tensorrt_cuda_major": 13},
])
def test_every_fact_changes_the_key(change):
    assert cache_key(fields(**change)) != cache_key(fields())


def test_timing_cache_key_ignores_model_and_settings_but_not_gpu():
    assert timing_cache_key(fields(model_sha256="cd" * 32)) == timing_cache_key(fields())
    assert timing_cache_key(fields(builder_settings={})) == timing_cache_key(fields())
    assert timing_cache_key(fields(gpu_name="NVIDIA L4")) != timing_cache_key(fields())


def test_cache_disabled_without_dir():
    cache = PlanCache(None, "model-int8.onnx")
    assert cache.lookup(fields()).status == "disabled"
    assert cache.store(fields(), b"plan") is None


def test_cache_miss_store_hit(tmp_path):
    cache = PlanCache(tmp_path, "model-int8.onnx")
    first = cache.lookup(fields())
    assert first.status == "miss"
    path = cache.store(fields(), b"PLAN-BYTES")
    assert path == first.plan_path and path.name.startswith("model-int8.")
    assert path.suffix == ".plan" and path.with_suffix(".json").is_file()
    hit = cache.lookup(fields())
    assert hit.status == "hit" and cache.read(hit) == b"PLAN-BYTES"


def test_cache_miss_explains_other_entries(tmp_path):
    cache = PlanCache(tmp_path, "model-int8.onnx")
    cache.store(fields(driver_version="535.104.05"), b"old")
    d = cache.lookup(fields())
    assert d.status == "miss" and "differs in driver_version" in d.reason


def test_tampered_plan_is_stale(tmp_path):
    cache = PlanCache(tmp_path, "model-int8.onnx")
    path = cache.store(fields(), b"PLAN-BYTES")
    path.write_bytes(b"PLAN-BYTEZ")
    d = cache.lookup(fields())
    assert d.status == "stale" and "sha256" in d.reason


def test_plan_without_sidecar_is_stale(tmp_path):
    cache = PlanCache(tmp_path, "model-int8.onnx")
    path = cache.store(fields(), b"PLAN-BYTES")
    path.with_suffix(".json").unlink()
    assert "without sidecar" in cache.lookup(fields()).reason


def test_foreign_entry_under_our_name_is_stale(tmp_path):
    """A plan copied from another machine into our slot (or a hash-prefix collision): the
    sidecar's facts are compared, not just the file name."""
    cache = PlanCache(tmp_path, "model-int8.onnx")
    path = cache.store(fields(), b"PLAN-BYTES")
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    meta["fields"]["gpu_name"] = "NVIDIA L4"
    sidecar.write_text(json.dumps(meta))
    d = cache.lookup(fields())
    assert d.status == "stale" and "gpu_name" in d.reason


def test_unreadable_sidecar_is_stale(tmp_path):
    cache = PlanCache(tmp_path, "model-int8.onnx")
    path = cache.store(fields(), b"PLAN-BYTES")
    path.with_suffix(".json").write_text("{not json")
    assert cache.lookup(fields()).status == "stale"


def test_store_replaces_a_stale_entry(tmp_path):
    cache = PlanCache(tmp_path, "model-int8.onnx")
    path = cache.store(fields(), b"OLD")
    path.write_bytes(b"CORRUPT")
    assert cache.lookup(fields()).status == "stale"
    cache.store(fields(), b"NEW")
    hit = cache.lookup(fields())
    assert hit.status == "hit" and cache.read(hit) == b"NEW"


def test_timing_cache_round_trip(tmp_path):
    tc = TimingCacheFile(tmp_path, fields())
    assert tc.load() is None
    tc.save(b"TIMINGS")
    assert TimingCacheFile(tmp_path, fields(model_sha256="cd" * 32)).load() == b"TIMINGS"
    assert TimingCacheFile(tmp_path, fields(gpu_name="NVIDIA L4")).load() is None
    assert TimingCacheFile(None, fields()).load() is None


# ------------------------------------------------------------------ I/O planning
def spec(name, is_input, shape, dtype="float32", on_device=True):
    return TensorSpec(name, is_input, tuple(shape), dtype, on_device)


GOOD_IO = [spec("images", True, (1, 3, 320, 320)), spec("output", False, (1, 6300, 85))]


def test_plan_io_for_the_contract():
    plan = plan_io(GOOD_IO)
    assert plan.input.name == "images" and plan.input.nbytes == 3 * 320 * 320 * 4
    assert plan.output.shape == (1, 6300, 85) and plan.output.dtype == np.float32
    assert plan.to_dict()["output"]["nbytes"] == 6300 * 85 * 4


def test_plan_io_order_of_tensors_does_not_matter():
    assert plan_io(GOOD_IO[::-1]) == plan_io(GOOD_IO)


@pytest.mark.parametrize("specs, message", [
    ([spec("images", True, (1, 3, -1, -1)), GOOD_IO[1]], "dynamic shape"),
    ([spec("images", True, (-1, 3, 320, 320)), GOOD_IO[1]], "dynamic shape"),
    ([GOOD_IO[0], GOOD_IO[1], spec("aux", False, (1, 10, 85))], "1 input and 1 output"),
    ([GOOD_IO[1]], "the engine has 0 and 1"),
    ([], "none"),
    ([GOOD_IO[0], spec("output", False, (1, 6300, 85), "float16")], "is float16"),
    ([spec("images", True, (1, 3, 320, 320), "FP8"), GOOD_IO[1]], "is FP8"),
    ([spec("images", True, (2, 3, 320, 320)), GOOD_IO[1]], "batch 1"),
    ([GOOD_IO[0], spec("output", False, (6300, 85))], "rank 3"),
    ([GOOD_IO[0], spec("output", False, (1, 6300, 85), on_device=False)], "host memory"),
])
def test_plan_io_rejects_what_the_harness_cannot_feed(specs, message):
    with pytest.raises(IoPlanError, match=message):
        plan_io(specs)


class FakeTrt:
    """Just enough of the tensorrt module's enums for the metadata code."""

    __version__ = "10.99.0-fake"

    class TensorIOMode(enum.Enum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    class TensorLocation(enum.Enum):
        DEVICE = 0
        HOST = 1

    class ProfilingVerbosity(enum.Enum):
        LAYER_NAMES_ONLY = 0
        NONE = 1
        DETAILED = 2

    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1
        FP8 = 9

    @staticmethod
    def nptype(dt):
        table = {FakeTrt.DataType.FLOAT: np.float32, FakeTrt.DataType.HALF: np.float16}
        if dt not in table:
            raise TypeError(f"no numpy equivalent for {dt}")
        return table[dt]


class FakeCudaEngine:
    """An ICudaEngine's metadata: (name, mode, shape, dtype, location) per I/O tensor."""

    def __init__(self, tensors, context_factory=None, inspector_json="{}"):
        self.tensors = tensors
        self.inspector_json = inspector_json
        self.by_name = {t[0]: t for t in tensors}
        self.context_factory = context_factory

    @property
    def num_io_tensors(self):
        return len(self.tensors)

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        return self.by_name[name][1]

    def get_tensor_shape(self, name):
        return self.by_name[name][2]

    def get_tensor_dtype(self, name):
        return self.by_name[name][3]

    def get_tensor_location(self, name):
        return self.by_name[name][4]

    def create_execution_context(self):
        return self.context_factory(self)

    def create_engine_inspector(self):
        return FakeInspector(self.inspector_json)


class FakeInspector:
    def __init__(self, info):
        self.info = info
        self.execution_context = None

    def get_engine_information(self, fmt):
        return self.info


M, L, D = FakeTrt.TensorIOMode, FakeTrt.TensorLocation, FakeTrt.DataType


def test_specs_from_engine_reads_names_modes_shapes_dtypes():
    eng = FakeCudaEngine([("out", M.OUTPUT, (1, 10, 7), D.FLOAT, L.DEVICE),
                          ("in", M.INPUT, (1, 3, 8, 8), D.FLOAT, L.DEVICE),
                          ("aux", M.OUTPUT, (1, 2), D.FP8, L.HOST)])
    specs = specs_from_engine(FakeTrt, eng)
    assert specs[0] == TensorSpec("out", False, (1, 10, 7), "float32", True)
    assert specs[1] == TensorSpec("in", True, (1, 3, 8, 8), "float32", True)
    assert specs[2] == TensorSpec("aux", False, (1, 2), "FP8", False)
    with pytest.raises(IoPlanError, match="1 input and 1 output"):
        plan_io(specs)


# ------------------------------------------------------------------ CUDA error translation
class FakeErr(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35


@pytest.mark.parametrize("result, value", [
    ((FakeErr.cudaSuccess,), None), ((FakeErr.cudaSuccess, 7), 7),
    ((FakeErr.cudaSuccess, 1, 2), (1, 2)), (FakeErr.cudaSuccess, None), ((0, "x"), "x"),
])
def test_check_cuda_unpacks(result, value):
    assert check_cuda(result, "call") == value


def test_check_cuda_names_call_error_and_hint():
    with pytest.raises(CudaError) as e:
        check_cuda((FakeErr.cudaErrorMemoryAllocation, None), "cudaMalloc(1024)")
    assert str(e.value) == ("cudaMalloc(1024) failed: cudaErrorMemoryAllocation (2): "
                            "out of GPU (or page-locked host) memory")
    assert (e.value.name, e.value.code) == ("cudaErrorMemoryAllocation", 2)


def test_check_cuda_without_enum_names_the_code():
    with pytest.raises(CudaError, match=r"x failed: CUDA error 999 \(999\)"):
        check_cuda((999,), "x")


@no_driver_only
def test_check_cuda_on_real_cuda_python_without_driver():
    """cuda-python's real answer on a machine without a driver becomes a clear error."""
    runtime = pytest.importorskip("cuda.bindings.runtime",
                                  reason="cuda-python not installed (tensorrt extra)")
    try:
        result = runtime.cudaGetDeviceCount()
    except RuntimeError as e:
        # cuda-bindings 12.8 raises when it cannot dlopen the driver instead of returning an
        # error code; the probe (which only asks after the ctypes driver check) names it.
        # (the second call says 'Function "cuInit" not found').
        assert "libcuda" in str(e)
        assert status._cuda_python_error().startswith("RuntimeError: ")
        return
    with pytest.raises(CudaError, match="cudaGetDeviceCount failed: cudaError"):
        check_cuda(result, "cudaGetDeviceCount")


def test_host_view_writes_through_to_the_memory():
    plan = TensorPlan("x", (1, 2, 3), np.dtype(np.float32))
    buf = (ctypes.c_byte * plan.nbytes)()
    view = host_view(ctypes.addressof(buf), plan)
    assert view.shape == (1, 2, 3) and view.flags.writeable
    view[...] = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    assert np.frombuffer(bytes(buf), np.float32).tolist() == [0, 1, 2, 3, 4, 5]


# ------------------------------------------------------------------ the engine with fakes
class FakeStream:
    def __init__(self, handle):
        self.handle = handle

    def __int__(self):
        return self.handle


class FakeCudart:
    """cuda.bindings.runtime's calls, tuples and all, over ctypes buffers. Copies happen at
    enqueue time (a fake stream is synchronous); directions are checked."""

    cudaStreamNonBlocking = 1

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStreamCaptureMode(enum.IntEnum):
        cudaStreamCaptureModeGlobal = 0
        cudaStreamCaptureModeThreadLocal = 1

    def __init__(self, fail_malloc_after: int | None = None):
        self.host, self.dev = {}, {}
        self.stream = None
        self.events = {}
        self.live_events = set()
        self.gpu_clock_ms = 0.0
        self.capturing = False
        self.captured = []
        self.graph_launches = 0
        self.mallocs = 0
        self.fail_malloc_after = fail_malloc_after

    ok = FakeErr.cudaSuccess

    def _alloc(self, table, n):
        buf = (ctypes.c_byte * n)()
        table[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def cudaSetDevice(self, d):
        return (self.ok,)

    def cudaGetDeviceProperties(self, d):
        return (self.ok, SimpleNamespace(name=b"Fake GPU", major=8, minor=9,
                                         totalGlobalMem=24 << 30))

    def cudaDeviceGetPCIBusId(self, length, d):
        return (self.ok, b"00000000:01:00.0")

    def cudaDriverGetVersion(self):
        return (self.ok, 12040)

    def cudaRuntimeGetVersion(self):
        return (self.ok, 12060)

    def cudaStreamCreateWithFlags(self, flags):
        assert flags == self.cudaStreamNonBlocking
        self.stream = FakeStream(0xABC)
        return (self.ok, self.stream)

    def cudaStreamDestroy(self, s):
        assert s is self.stream
        self.stream = None
        return (self.ok,)

    def cudaEventCreate(self):
        ev = object()
        self.live_events.add(ev)
        return (self.ok, ev)

    def cudaEventDestroy(self, ev):
        self.live_events.remove(ev)
        return (self.ok,)

    def cudaEventRecord(self, ev, stream):
        assert stream is self.stream
        self.events[ev] = self.gpu_clock_ms
        return (self.ok,)

    def cudaEventElapsedTime(self, a, b):
        return (self.ok, self.events[b] - self.events[a])

    def cudaMallocHost(self, n):
        return (self.ok, self._alloc(self.host, n))

    def cudaMalloc(self, n):
        self.mallocs += 1
        if self.fail_malloc_after is not None and self.mallocs > self.fail_malloc_after:
            return (FakeErr.cudaErrorMemoryAllocation, 0)
        return (self.ok, self._alloc(self.dev, n))

    def cudaFree(self, p):
        del self.dev[p]
        return (self.ok,)

    def cudaFreeHost(self, p):
        del self.host[p]
        return (self.ok,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        assert stream is self.stream and not self.capturing
        if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice:
            assert src in self.host and dst in self.dev
        else:
            assert src in self.dev and dst in self.host
        ctypes.memmove(dst, src, n)
        self.gpu_clock_ms += 0.25  # a copy takes GPU-stream time too
        return (self.ok,)

    def cudaStreamSynchronize(self, stream):
        assert stream is self.stream
        return (self.ok,)

    def cudaStreamBeginCapture(self, stream, mode):
        assert stream is self.stream
        self.capturing = True
        return (self.ok,)

    def cudaStreamEndCapture(self, stream):
        self.capturing = False
        graph, self.captured = list(self.captured), []
        return (self.ok, graph)

    def cudaGraphInstantiate(self, graph, flags):
        return (self.ok, graph)

    def cudaGraphLaunch(self, graph_exec, stream):
        assert stream is self.stream
        self.graph_launches += 1
        for work in graph_exec:
            work()
        return (self.ok,)

    def cudaGraphExecDestroy(self, g):
        return (self.ok,)

    def cudaGraphDestroy(self, g):
        return (self.ok,)


class FakeContext:
    """execute_async_v3 computes output = 2 * input (cycled to the output's size) from the
    bound device addresses."""

    def __init__(self, cudart, engine):
        self.cudart, self.engine = cudart, engine
        self.addresses = {}
        self.executes = 0
        # a context inherits the plan's profiling verbosity (qparity builds DETAILED)
        self.nvtx_verbosity = FakeTrt.ProfilingVerbosity.DETAILED

    def set_tensor_address(self, name, ptr):
        assert ptr in self.cudart.dev
        self.addresses[name] = ptr
        return True

    def _compute(self):
        (i_name, _, i_shape, *_), (o_name, _, o_shape, *_) = self.engine.tensors
        n_in, n_out = int(np.prod(i_shape)), int(np.prod(o_shape))
        src = np.frombuffer((ctypes.c_float * n_in).from_address(self.addresses[i_name]),
                            np.float32)
        dst = np.frombuffer((ctypes.c_float * n_out).from_address(self.addresses[o_name]),
                            np.float32)
        dst[:] = np.resize(2 * src, n_out)
        self.cudart.gpu_clock_ms += 1.5

    def execute_async_v3(self, stream_handle):
        assert stream_handle == int(self.cudart.stream)
        self.executes += 1
        if self.cudart.capturing:
            self.cudart.captured.append(self._compute)
        else:
            self._compute()
        return True


def fake_engine(cudart, runtime=None, out_shape=(1, 6, 7)):
    eng = TensorRtEngine()
    eng.trt, eng.cudart = FakeTrt, cudart
    eng.run_settings = runtime or RuntimeSettings()
    eng.session = CudaSession(cudart, 0)
    eng.engine = FakeCudaEngine(
        [("images", M.INPUT, (1, 3, 4, 4), D.FLOAT, L.DEVICE),
         ("output", M.OUTPUT, out_shape, D.FLOAT, L.DEVICE)],
        context_factory=lambda e: FakeContext(cudart, e))
    eng._bind()
    return eng


def sample(seed):
    return np.random.default_rng(seed).random((1, 3, 4, 4), dtype=np.float32)


def expected(x, shape=(1, 6, 7)):
    return np.resize(2 * x.reshape(-1), int(np.prod(shape))).reshape(shape)


def test_engine_run_copies_in_executes_copies_out():
    cudart = FakeCudart()
    eng = fake_engine(cudart)
    assert eng.io.input.name == "images" and eng.io.output.shape == (1, 6, 7)
    a, b = sample(0), sample(1)
    ya = eng.run(a)
    yb = eng.run(b)
    np.testing.assert_array_equal(ya, expected(a))  # a copy: not overwritten by the 2nd run
    np.testing.assert_array_equal(yb, expected(b))
    assert ya.dtype == np.float32 and ya.shape == (1, 6, 7)
    assert eng.gpu_times.total == 2


def test_engine_gpu_times_feed_describe():
    cudart = FakeCudart()
    eng = fake_engine(cudart)
    for k in range(5):
        eng.run(sample(k))
    info = eng.describe()
    gpu = info["extra_latency_ms"]["gpu_compute"]
    assert gpu["n"] == 5 and gpu["median"] == pytest.approx(1.5)
    assert info["settings"]["cuda_graph"] is False and info["settings"]["strongly_typed"]
    assert info["settings"]["io"]["input"]["shape"] == [1, 3, 4, 4]
    assert info["library"] == "tensorrt" and info["version"] == "10.99.0-fake"


def test_gpu_compute_window_follows_the_runners_run_count():
    eng = fake_engine(FakeCudart())
    for k in range(5):
        eng.run(sample(k))
    eng.timed_runs = 3  # what a runner with --runs 3 would set
    assert eng.describe()["extra_latency_ms"]["gpu_compute"]["n"] == 3


def test_engine_refuses_wrong_input():
    eng = fake_engine(FakeCudart())
    with pytest.raises(EngineFailure, match="input is float64"):
        eng.run(sample(0).astype(np.float64))
    with pytest.raises(EngineFailure, match="input is float32"):
        eng.run(np.zeros((1, 3, 5, 5), np.float32))


def test_engine_close_frees_everything():
    cudart = FakeCudart()
    eng = fake_engine(cudart)
    eng.run(sample(0))
    eng.close()
    assert cudart.host == {} and cudart.dev == {}
    assert cudart.live_events == set() and cudart.stream is None
    eng.close()  # idempotent
    with pytest.raises(EngineFailure, match="before load"):
        eng.run(sample(0))


def test_engine_with_cuda_graph_replays_the_captured_execution():
    cudart = FakeCudart()
    eng = fake_engine(cudart, RuntimeSettings(cuda_graph=True))
    ctx = eng.context
    assert ctx.executes == 2  # one plain enqueue before capture, one captured
    for k in range(3):
        x = sample(k)
        np.testing.assert_array_equal(eng.run(x), expected(x))
    assert ctx.executes == 2 and cudart.graph_launches == 3
    assert eng.describe()["settings"]["cuda_graph"] is True


def test_allocation_failure_is_a_clear_error_and_leaks_nothing():
    cudart = FakeCudart(fail_malloc_after=1)  # the output's device buffer fails
    with pytest.raises(CudaError, match=r"cudaMalloc\(168\) for 'output' failed: "
                                        r"cudaErrorMemoryAllocation"):
        fake_engine(cudart)
    assert len(cudart.host) == 1  # the input's pair; the output's host buffer was returned


def test_engine_with_dynamic_output_is_refused():
    with pytest.raises(IoPlanError, match="dynamic shape"):
        fake_engine(FakeCudart(), out_shape=(1, -1, 7))


# ------------------------------------------------------------------ parser messages
class FakeParserError:
    def __init__(self, node, name, op, desc):
        self._v = (node, name, op, desc)

    def node(self):
        return self._v[0]

    def node_name(self):
        return self._v[1]

    def node_operator(self):
        return self._v[2]

    def desc(self):
        return self._v[3]

    def code(self):
        return SimpleNamespace(name="INVALID_NODE")


def test_parser_messages_keep_the_parsers_words():
    errors = [FakeParserError(3, "/model.0/conv/Conv_quant", "QuantizeLinear",
                              "Assertion failed: shiftIsAllZeros(zeroPoint)"),
              FakeParserError(-1, "", "", "model has no nodes")]
    parser = SimpleNamespace(num_errors=2, get_error=lambda i: errors[i])
    msgs = [str(m) for m in parser_messages(parser)]
    assert msgs[0] == ("node 3 (QuantizeLinear '/model.0/conv/Conv_quant'): INVALID_NODE: "
                       "Assertion failed: shiftIsAllZeros(zeroPoint)")
    assert msgs[1] == "model: INVALID_NODE: model has no nodes"
    refusal = ParserRefusal(Path("/x/model-int8.onnx"), msgs)
    assert str(refusal).startswith("tensorrt's ONNX parser refused model-int8.onnx: node 3")
    assert isinstance(ParserMessage(0, "", "", "", ""), ParserMessage)


# ------------------------------------------------------------------ GPU event statistics
def test_gpu_times_summarize_the_last_window():
    times = GpuTimes()
    assert times.summary(200) is None
    warm = [9.0] * 50
    timed = [1.0 + 0.01 * k for k in range(200)]
    for ms in warm + timed:
        times.add(ms)
    s = times.summary(200)
    ref = summarize(timed)
    for key in ("n", "median", "p95", "p99", "mean", "stdev", "min", "max", "cv"):
        assert s[key] == pytest.approx(ref[key])
    assert s["samples_from"] == "last 200 of 250 run() calls"
    assert times.summary(1000)["n"] == 250


def test_gpu_times_bounded_memory():
    times = GpuTimes(keep=10)
    for k in range(25):
        times.add(k)
    assert len(times.samples) == 10 and times.total == 25
    assert times.summary(10)["min"] == 15


# ------------------------------------------------------------------ inspector census
def layer(name, ptype, ltype, fmt, key="Format/Datatype"):
    return {"Name": name, "ParameterType": ptype, "LayerType": ltype,
            "Inputs": [{"Name": f"{name}_in", "Dimensions": [1, 8, 4, 4], key: fmt}],
            "Outputs": [{"Name": f"{name}_out", "Dimensions": [1, 8, 4, 4], key: fmt}]}


TRT10_JSON = {"Layers": [
    layer("conv0", "Convolution", "CaskConvolution",
          "Thirty-two wide channel vectorized row major Int8 format"),
    layer("conv1", "Convolution", "CaskGemmConvolution", "Channel major INT8 format where "
          "channel % 16 == 0"),
    layer("head_conv", "Convolution", "CaskConvolution", "Row major linear FP32"),
    layer("reformat", "Reformat", "Reformat", "Row major linear FP32"),
    layer("sigmoid", "PointWise", "PointWiseV2", "Row major linear FP16 format"),
    {"Name": "{ForeignNode[/model.77/Concat...]}", "LayerType": "Myelin", "Inputs": [],
     "Outputs": []},
], "Bindings": ["images", "output"]}


def test_census_trt10_format():
    c = census_from_inspector(json.dumps(TRT10_JSON))
    assert c["source"] == "tensorrt engine inspector"
    assert (c["compute_ops"], c["int8_compute_ops"], c["float_compute_ops"]) == (3, 2, 1)
    assert c["float_ops"] == ["head_conv"]
    assert c["by_type"] == {"Convolution/float": 1, "Convolution/int8": 2}
    assert c["opaque_layers"] == ["{ForeignNode[/model.77/Concat...]}"]
    assert c["engine_layers"] == 6


def test_census_trt11_format():
    data = {"Layers": [layer("c0", "Convolution", "CaskConvolution", "Int8", key="DataType"),
                       layer("c1", "Convolution", "CaskConvolution", "Half", key="DataType"),
                       layer("mm", "MatrixMultiply", "CaskGemmMatrixMultiply", "Float",
                             key="DataType")],
            "I/O Tensors": [{"Name": "images", "IOMode": "Input", "DataType": "Float"}]}
    c = census_from_inspector(data)
    assert (c["compute_ops"], c["int8_compute_ops"]) == (3, 1)
    assert c["float_ops"] == ["c1", "mm"]


def test_census_needs_detailed_verbosity():
    with pytest.raises(CensusUnavailable, match="DETAILED"):
        census_from_inspector({"Layers": ["conv0", "conv1"], "Bindings": []})
    with pytest.raises(CensusUnavailable):
        census_from_inspector("{}")


@pytest.mark.parametrize("text, precision", [
    ("Row major linear BFloat16 format", "bf16"), ("Row major linear UInt8 format", "uint8"),
    ("Half", "fp16"), ("Float", "fp32"), ("Row major linear Int32", "int32"), ("", "unknown"),
])
def test_tensor_precision(text, precision):
    assert tensor_precision({"Format/Datatype": text}) == precision


# ------------------------------------------------------------------ NVML and driver facts
class FakeNvml:
    NVML_CLOCK_GRAPHICS, NVML_CLOCK_SM, NVML_CLOCK_MEM = 0, 1, 2
    NVML_FEATURE_ENABLED = 1
    NVML_TEMPERATURE_GPU = 0

    def __init__(self):
        self.inits = self.shutdowns = 0
        self.bus = None

    def nvmlInit(self):
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        self.bus = bus
        return "h"

    def nvmlSystemGetDriverVersion(self):
        return "550.54.15"

    def nvmlDeviceGetName(self, h):
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetMemoryInfo(self, h):
        return SimpleNamespace(total=80 * 2**30)

    def nvmlDeviceGetPersistenceMode(self, h):
        return 1

    def nvmlDeviceGetPerformanceState(self, h):
        return 0

    def nvmlDeviceGetClockInfo(self, h, kind):
        return {0: 1755, 1: 1755, 2: 2619}[kind]

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetApplicationsClock(self, h, kind):
        raise RuntimeError("Not Supported")

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return 0

    def nvmlDeviceGetPowerManagementLimit(self, h):
        return 700000

    def nvmlDeviceGetTemperature(self, h, kind):
        return 41

    def nvmlDeviceGetComputeMode(self, h):
        return 0

    def nvmlDeviceGetMigMode(self, h):
        return (1, 1)


def test_nvml_snapshot_reads_what_it_can():
    nvml = FakeNvml()
    snap = nvml_snapshot(nvml, "00000000:1B:00.0")
    assert nvml.bus == "00000000:1B:00.0" and nvml.inits == nvml.shutdowns == 1
    assert snap["name"] == "NVIDIA H100 80GB HBM3" and snap["persistence_mode"] is True
    assert snap["clocks_mhz"] == {"sm": 1755, "mem": 2619, "graphics": 1755}
    assert snap["applications_clocks_mhz"]["graphics"] == "unavailable: Not Supported"
    assert snap["power_limit_w"] == 700
    assert snap["mig_mode"] == [1, 1]


def test_nvml_snapshot_without_nvml_does_not_raise():
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py not installed")
    snap = nvml_snapshot(pynvml, "00000000:1B:00.0")
    if driver_present():
        assert isinstance(snap, dict)
    else:
        assert snap["nvml"].startswith("unavailable:")


def test_driver_version_sources(tmp_path):
    assert driver_version(FakeNvml(), "12.4") == ("550.54.15", "nvml")
    proc = tmp_path / "version"
    proc.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19\n"
                    "GCC version:  gcc version 12.2.0\n")
    assert driver_version(None, "12.2", proc) == ("535.104.05", str(proc))
    assert driver_version(None, "12.2", tmp_path / "absent") == ("cuda-12.2",
                                                                  "cudaDriverGetVersion")
