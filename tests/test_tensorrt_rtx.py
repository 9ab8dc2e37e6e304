"""The engine's parse and build code against a real NVIDIA builder and ONNX parser, no GPU.

Full TensorRT cannot be installed on these machines (its wheels come from NVIDIA's own
index) and no lent GPU has it. PyPI's `tensorrt-rtx` (import `tensorrt_rtx`, an optional
test-only dependency: `pip install tensorrt-rtx`) ships a builder and NVIDIA's ONNX parser
that run without a GPU. The engine's functions take the TensorRT module as an argument, so
the very same `parse_onnx` / `build_plan` / cache code runs here with `tensorrt_rtx`.

What this proves:
- The engine's parse/build path is written against a real TensorRT-family Python API (the
  calls and enums it uses exist and behave: Builder, create_network with STRONGLY_TYPED,
  OnnxParser.parse_from_file, the parser's error objects, create_builder_config,
  builder_optimization_level, profiling_verbosity, set_memory_pool_limit, the timing-cache
  calls, build_serialized_network, an ILogger subclass).
- NVIDIA's ONNX importer accepts what `qparity ptq --recipe portable` writes (int8
  activations with zero point 0, per-channel int8 weights on axis 0, float biases, float
  decode tail; here on a small two-scale detector) in a strongly typed network, with every
  Quantize layer producing INT8 tensors, and the RTX builder turns it into a plan.
- The same importer refuses `ptq --recipe spec-v1` output with the message SPEC.md records
  (int32 bias DequantizeLinear), and, in isolation, uint8 activations with zero point 128;
  the refusal reaches the user as the parser's own words plus check-model's verdict.
- load() orchestration (probe -> options -> device facts -> cache -> build -> bind -> run ->
  describe -> census -> close), with the RTX builder doing the real parse and build and
  fakes standing in for the runtime and cuda-python; a stale cache entry is rebuilt and
  never handed to deserialize.

What it does NOT prove about TensorRT proper:
- TensorRT-RTX is a different product (libtensorrt_rtx, not libnvinfer) with its own
  builder: it compiles ahead of time and specialises kernels on the GPU at run time, its
  timing cache calls are no-ops, and its parser release may differ from the one shipped
  with a given TensorRT 10/11. Whether TensorRT proper builds the real model, which kernels
  (int8 or not) it picks, and what numbers they compute is only known on a GPU.
- Nothing here deserializes or executes an engine: without a driver, RTX's deserialize
  returns None (CUDA "driver version is insufficient"). Real CUDA memory, timing, CUDA
  graphs, the inspector's JSON and NVML are not exercised by this file.

The model: `portable_model` is the one switch point for the accept/build checks. By default
it is `qparity ptq`'s portable output of tests/builders.yolo_like; set
QPARITY_PORTABLE_MODEL=/path/to/model-int8.onnx to run the same checks on the real model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed (optional "
                          "test-only dependency: pip install tensorrt-rtx)")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from harness.engines.tensorrt import TensorRtEngine  # noqa: E402
from harness.engines.trt.build import (ParserRefusal, build_plan, make_logger,  # noqa: E402
                                       parse_onnx)
from harness.engines.trt.cache import CacheKeyFields, PlanCache  # noqa: E402
from harness.fileio import sha256_file  # noqa: E402
from harness.engines.trt.gpuinfo import DeviceIdentity  # noqa: E402
from harness.engines.trt.settings import BuildSettings  # noqa: E402

# RTX marks its (no-op) timing cache calls deprecated; the engine targets TensorRT proper,
# where they are not.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


IN_SHAPE, OUT_SHAPE = [1, 3, 32, 32], [1, 1024, 8]


def qdq_conv_model(path: Path, activations: str = "int8", bias: str = "float") -> Path:
    """x -> QuantizeLinear/DequantizeLinear -> Conv(DequantizeLinear(int8 weights, axis 0),
    bias) -> y, the pattern each convolution of a QDQ detector has."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(8, 3, 3, 3)).astype(np.float32)
    w_scale = (np.abs(w).reshape(8, -1).max(axis=1) / 127).astype(np.float32)
    w_q = np.clip(np.round(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    zero = np.array(0, np.int8) if activations == "int8" else np.array(128, np.uint8)
    x_scale = np.array(1 / 255, np.float32)
    inits = [numpy_helper.from_array(x_scale, "x_scale"), numpy_helper.from_array(zero, "x_zp"),
             numpy_helper.from_array(w_q, "w_q"), numpy_helper.from_array(w_scale, "w_scale"),
             numpy_helper.from_array(np.zeros(8, np.int8), "w_zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"], name="x_quant"),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"],
                              name="x_dequant"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_dq"], axis=0,
                              name="w_dequant")]
    b = rng.normal(size=8).astype(np.float32)
    if bias == "float":
        inits.append(numpy_helper.from_array(b, "b"))
    else:  # ONNX Runtime's spec-v1 output: int32 bias at scale x_scale * w_scale
        b_scale = (x_scale * w_scale).astype(np.float32)
        inits += [numpy_helper.from_array(np.round(b / b_scale).astype(np.int32), "b_q"),
                  numpy_helper.from_array(b_scale, "b_scale"),
                  numpy_helper.from_array(np.zeros(8, np.int32), "b_zp")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zp"], ["b"],
                                      axis=0, name="b_dequant"))
    nodes.append(helper.make_node("Conv", ["x_dq", "w_dq", "b"], ["conv_out"],
                                  pads=[1, 1, 1, 1], name="conv"))
    # [1, 8, 32, 32] -> [1, N, K]: the detector output layout the harness contract wants
    inits.append(numpy_helper.from_array(np.array(OUT_SHAPE, np.int64), "out_shape"))
    nodes.append(helper.make_node("Reshape", ["conv_out", "out_shape"], ["y"], name="to_nk"))
    graph = helper.make_graph(nodes, "qdq_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, IN_SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, OUT_SHAPE)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def ptq_models(tmp_path_factory, yolo_calibration) -> dict[str, Path]:
    """`qparity ptq`'s two recipes applied to tests/builders.yolo_like (a two-scale detector
    with a real decode tail), calibrated on 20 synthetic images: the pipeline's real output,
    on a small model."""
    from harness.ptq import quantize

    root = tmp_path_factory.mktemp("trt-ptq")
    _, _, calib, fp32 = yolo_calibration
    out = {}
    for recipe in ("portable", "spec-v1"):
        out[recipe] = root / recipe / "model-int8.onnx"
        quantize(fp32, calib, out[recipe], recipe=recipe)
    return out


@pytest.fixture
def portable_model(ptq_models) -> Path:
    """THE model the accept/build checks run on: `qparity ptq --recipe portable` output of the
    small detector. QPARITY_PORTABLE_MODEL=/path/to/model-int8.onnx switches to another file
    (the real YOLOv7-tiny one) without editing the tests."""
    real = os.environ.get("QPARITY_PORTABLE_MODEL")
    return Path(real) if real else ptq_models["portable"]


@pytest.fixture
def spec_v1_model(ptq_models) -> Path:
    return ptq_models["spec-v1"]


@pytest.fixture
def standin_model(tmp_path) -> Path:
    """One QDQ Conv with the portable pattern and known I/O ([1,3,32,32] -> [1,1024,8])."""
    return qdq_conv_model(tmp_path / "portable-standin.onnx")


@pytest.fixture
def uint8_activation_model(tmp_path) -> Path:
    """spec-v1's activation recipe alone: uint8, zero point 128; bias left in float."""
    return qdq_conv_model(tmp_path / "uint8-act.onnx", activations="uint8")


@pytest.fixture
def int32_bias_model(tmp_path) -> Path:
    """spec-v1's bias as ONNX Runtime writes it: int32 through DequantizeLinear."""
    return qdq_conv_model(tmp_path / "int32-bias.onnx", bias="int32")


def layers(network):
    return [network.get_layer(i) for i in range(network.num_layers)]


def assert_strongly_typed_qdq(parsed) -> None:
    assert parsed.strongly_typed
    kinds = [ly.type for ly in layers(parsed.network)]
    assert trt.LayerType.QUANTIZE in kinds and trt.LayerType.DEQUANTIZE in kinds
    assert trt.LayerType.CONVOLUTION in kinds
    # In a strongly typed network the types come from the graph: the Q node makes int8.
    quantized = [ly for ly in layers(parsed.network) if ly.type == trt.LayerType.QUANTIZE]
    assert quantized and all(ly.get_output(0).dtype == trt.DataType.INT8 for ly in quantized)
    assert parsed.network.get_input(0).dtype == trt.DataType.FLOAT


def test_standin_parses_in_a_strongly_typed_network(standin_model):
    assert_strongly_typed_qdq(parse_onnx(trt, standin_model, make_logger(trt)))


def test_portable_model_parses_in_a_strongly_typed_network(portable_model):
    assert_strongly_typed_qdq(parse_onnx(trt, portable_model, make_logger(trt)))


def test_portable_model_builds(portable_model):
    logger = make_logger(trt)
    parsed = parse_onnx(trt, portable_model, logger)
    result = build_plan(trt, parsed, BuildSettings(workspace_mb=256), logger)
    assert len(result.plan) > 1000
    assert result.timing_cache_status == "new"


def test_spec_v1_model_is_refused(spec_v1_model):
    """ONNX Runtime's spec-v1 output: the first thing the parser trips on is the int32 bias
    DequantizeLinear (the SPEC's recorded message); uint8 activations are refused too, below."""
    with pytest.raises(ParserRefusal) as e:
        parse_onnx(trt, spec_v1_model, make_logger(trt))
    assert "DequantizeLinear" in str(e.value) and "Int32" in str(e.value)


def test_uint8_activations_are_refused_with_the_parsers_words(uint8_activation_model):
    with pytest.raises(ParserRefusal) as e:
        parse_onnx(trt, uint8_activation_model, make_logger(trt))
    text = str(e.value)
    assert text.startswith("tensorrt's ONNX parser refused uint8-act.onnx: node 0 "
                           "(QuantizeLinear 'x_quant')")
    assert "zero point" in text.lower()


def test_int32_bias_dequantize_is_refused(int32_bias_model):
    with pytest.raises(ParserRefusal) as e:
        parse_onnx(trt, int32_bias_model, make_logger(trt))
    assert "Int32" in str(e.value)


def test_refusal_is_one_line_with_every_parser_message(uint8_activation_model):
    """load() raises EngineFailure(str(refusal)); the runner writes it as the one-line reason.
    Checked without load(), which needs a GPU before it reaches the parser."""
    with pytest.raises(ParserRefusal) as e:
        parse_onnx(trt, uint8_activation_model, make_logger(trt))
    assert e.value.messages and "\n" not in str(e.value)
    assert all(" ".join(m.split()) in str(e.value) for m in e.value.messages)


class FakeRuntime:
    """Records what would be deserialized; no GPU, so no real ICudaEngine."""

    def __init__(self):
        self.deserialized: list[bytes] = []

    def deserialize_cuda_engine(self, data: bytes):
        self.deserialized.append(bytes(data))
        return object()


def engine_for_cache_test(cache_dir: Path) -> TensorRtEngine:
    eng = TensorRtEngine()
    eng.config.cache_dir = cache_dir
    eng.runtime = FakeRuntime()
    eng.identity = DeviceIdentity(0, "NVIDIA Test GPU", "8.9", 24 << 30, 58, "00000000:01:00.0",
                                  "12.4", "12.4")
    eng.driver = ("550.54.15", "nvml")
    return eng


def test_stale_cache_entry_is_rebuilt_not_loaded(standin_model, tmp_path):
    eng = engine_for_cache_test(tmp_path)
    fields = eng._cache_fields(trt, standin_model)
    assert fields.model_sha256 == sha256_file(standin_model)
    cache = PlanCache(tmp_path, standin_model.name)
    plan_path = cache.store(fields, b"FOREIGN PLAN")
    plan_path.write_bytes(b"FOREIGN PLAN, TAMPERED")  # sidecar's sha256 no longer matches

    eng._engine_from_cache_or_build(trt, standin_model)
    assert eng.cache.status == "stale" and "sha256" in eng.cache.reason
    assert b"FOREIGN" not in b"".join(eng.runtime.deserialized)
    built = eng.runtime.deserialized[-1]
    assert plan_path.read_bytes() == built  # the rebuilt plan replaced the stale one
    assert eng.build_info["network_strongly_typed"] is True

    # Next load: a hit, nothing built, the cached bytes are what gets deserialized.
    again = engine_for_cache_test(tmp_path)
    again._engine_from_cache_or_build(trt, standin_model)
    assert again.cache.status == "hit" and again.build_info == {}
    assert again.runtime.deserialized == [built]


def test_other_gpu_gets_its_own_entry(standin_model, tmp_path):
    eng = engine_for_cache_test(tmp_path)
    eng._engine_from_cache_or_build(trt, standin_model)
    other = engine_for_cache_test(tmp_path)
    other.identity = DeviceIdentity(0, "NVIDIA Other GPU", "9.0", 80 << 30, 132, None, "12.4",
                                    "12.4")
    other._engine_from_cache_or_build(trt, standin_model)
    assert other.cache.status == "miss" and "gpu_name" in other.cache.reason
    assert len(list((tmp_path / "tensorrt").glob("*.plan"))) == 2


def test_fields_record_the_builder_settings(standin_model, tmp_path):
    eng = engine_for_cache_test(tmp_path)
    eng.build_settings = BuildSettings(optimization_level=5)
    assert isinstance(eng._cache_fields(trt, standin_model), CacheKeyFields)
    assert eng._cache_fields(trt, standin_model).builder_settings["optimization_level"] == 5


DESERIALIZE_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
import tensorrt_rtx as trt
from harness.engines.trt.build import build_plan, make_logger, parse_onnx
from harness.engines.trt.settings import BuildSettings
logger = make_logger(trt)
plan = build_plan(trt, parse_onnx(trt, sys.argv[1], logger), BuildSettings(), logger).plan
engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
print("engine" if engine is not None else "none:" + " | ".join(logger.errors()))
"""


def test_rtx_cannot_deserialize_without_a_gpu(standin_model):
    """Documents the limit of this file: the plan exists, but no engine can be made here.
    In a child process, since a runtime without a GPU is exactly what may crash."""
    out = subprocess.run([sys.executable, "-c", DESERIALIZE_SCRIPT, str(standin_model)],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True,
                         text=True, timeout=300)
    if out.stdout.startswith("engine"):
        pytest.skip("this machine has a GPU: RTX deserialized the plan")
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("none:") and "CUDA" in out.stdout.upper()


# ---------------------------------------------------------------------------- load() end to end
# The engine's load/run/describe/census/close with TensorRT played by tensorrt_rtx (real
# parse and build) except for the runtime, and cuda-python played by the ctypes fake from
# test_tensorrt_engine.py. This proves the orchestration (probe -> options -> device facts ->
# cache -> build -> bind -> run -> describe), not what a GPU would do.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from builders import install_fake_gpu_modules  # noqa: E402
from test_tensorrt_engine import (FakeCudaEngine, FakeContext, FakeCudart,  # noqa: E402
                                  TRT10_JSON, expected)

from harness.engines import EngineConfig, EngineFailure  # noqa: E402


class RtxAsTensorrt(types.ModuleType):
    """`import tensorrt` answered by tensorrt_rtx, with a runtime that hands out engines
    reporting the stand-in model's I/O (RTX cannot deserialize without a GPU)."""

    def __init__(self, cudart):
        super().__init__("tensorrt")
        self.__version__ = "10.99.0-rtx-standin"
        self.plans: list[bytes] = []
        self.refuse_plans = False
        outer = self

        class Runtime:
            def __init__(self, logger):
                self.logger = logger

            def deserialize_cuda_engine(self, plan):
                outer.plans.append(bytes(plan))
                if outer.refuse_plans:
                    return None
                dev, f32 = trt.TensorLocation.DEVICE, trt.DataType.FLOAT
                return FakeCudaEngine(
                    [("x", trt.TensorIOMode.INPUT, tuple(IN_SHAPE), f32, dev),
                     ("y", trt.TensorIOMode.OUTPUT, tuple(OUT_SHAPE), f32, dev)],
                    context_factory=lambda e: FakeContext(cudart, e),
                    inspector_json=json.dumps(TRT10_JSON))

        self.Runtime = Runtime

    def __getattr__(self, name):
        return getattr(trt, name)


@pytest.fixture
def fake_gpu(monkeypatch):
    """A machine where probe() passes, `tensorrt` is RTX-backed and CUDA is the fake."""
    cudart = FakeCudart()
    fake_trt = RtxAsTensorrt(cudart)
    install_fake_gpu_modules(monkeypatch, fake_trt, cudart)
    monkeypatch.setattr(TensorRtEngine, "probe", classmethod(lambda cls: None))
    return SimpleNamespace(cudart=cudart, trt=fake_trt)


def test_load_run_describe_census_close(fake_gpu, standin_model, tmp_path):
    eng = TensorRtEngine(EngineConfig(cache_dir=tmp_path))
    eng.load(standin_model)
    assert eng.cache.status == "miss" and eng.build_info["network_strongly_typed"]
    assert len(fake_gpu.trt.plans) == 1 and len(fake_gpu.trt.plans[0]) > 1000
    x = np.random.default_rng(0).random(IN_SHAPE, dtype=np.float32)
    np.testing.assert_array_equal(eng.run(x), expected(x, tuple(OUT_SHAPE)))
    info = eng.describe()
    assert info["gpu"]["name"] == "Fake GPU" and info["gpu"]["compute_capability"] == "8.9"
    assert info["settings"]["engine_cache"]["status"] == "miss"
    assert info["settings"]["io"]["output"]["shape"] == OUT_SHAPE
    assert info["extra_latency_ms"]["gpu_compute"]["n"] == 1
    census = eng.census()
    assert (census["compute_ops"], census["int8_compute_ops"]) == (3, 2)
    eng.close()
    assert fake_gpu.cudart.dev == {} and fake_gpu.cudart.host == {}

    again = TensorRtEngine(EngineConfig(cache_dir=tmp_path))
    again.load(standin_model)
    assert again.cache.status == "hit" and again.build_info == {}
    assert fake_gpu.trt.plans[1] == fake_gpu.trt.plans[0]
    again.close()


def test_load_rebuilds_when_tensorrt_refuses_the_cached_plan(fake_gpu, standin_model, tmp_path):
    first = TensorRtEngine(EngineConfig(cache_dir=tmp_path))
    first.load(standin_model)
    first.close()
    fake_gpu.trt.refuse_plans = True  # e.g. the plan no longer matches the installed TensorRT
    eng = TensorRtEngine(EngineConfig(cache_dir=tmp_path))
    with pytest.raises(EngineFailure, match="freshly built plan did not deserialize"):
        eng.load(standin_model)
    assert eng.cache.status == "stale" and "could not deserialize" in eng.cache.reason
    assert len(fake_gpu.trt.plans) == 3  # cached one refused, rebuilt one tried
    assert fake_gpu.cudart.dev == {} and fake_gpu.cudart.host == {}  # load cleaned up


def test_load_turns_a_parser_refusal_into_an_engine_error(fake_gpu, uint8_activation_model,
                                                          tmp_path):
    eng = TensorRtEngine(EngineConfig(cache_dir=tmp_path))
    with pytest.raises(EngineFailure, match="ONNX parser refused uint8-act.onnx: node 0 "
                                            r"\(QuantizeLinear 'x_quant'\)") as e:
        eng.load(uint8_activation_model)
    # the preflight's verdict stands beside the parser's words
    assert "|| check-model: " in str(e.value) and "uint8 (asymmetric)" in str(e.value)
    assert fake_gpu.trt.plans == []  # nothing built, nothing cached
    assert not list((tmp_path / "tensorrt").glob("*.plan"))


def test_load_rejects_unknown_options(fake_gpu, standin_model):
    eng = TensorRtEngine(EngineConfig(options={"cudagraph": "1"}))
    with pytest.raises(EngineFailure, match="unknown tensorrt option"):
        eng.load(standin_model)


def test_load_with_cuda_graph_option(fake_gpu, standin_model):
    eng = TensorRtEngine(EngineConfig(options={"cuda_graph": "1"}))  # no cache dir: disabled
    eng.load(standin_model)
    x = np.random.default_rng(1).random(IN_SHAPE, dtype=np.float32)
    np.testing.assert_array_equal(eng.run(x), expected(x, tuple(OUT_SHAPE)))
    assert fake_gpu.cudart.graph_launches == 1
    assert eng.describe()["settings"]["engine_cache"]["status"] == "disabled"
    eng.close()
