"""What a real NVIDIA machine would get wrong, checked without one (issue 12).

- the pins: pyproject's `tensorrt` extra, docker/constraints.txt and the Dockerfile agree on
  TensorRT's CUDA 12 build (no network: bench/trt_pins_resolve.py asks PyPI itself);
- the probe tells a TensorRT built for a newer CUDA than the driver before TensorRT runs;
- the Dockerfile's version check really stops a build (its own command, run here);
- one logger: a real tensorrt-rtx Runtime + two builds in one process, no "logger differs";
- TF32 cleared in a real builder config; NVTX verbosity lowered on the context before timing;
- three labelled latency figures; both inspector JSON schemas; the PCI bus id's NUL;
- a TypeError from TensorRT's factories is an EngineFailure with a hint, not a crash;
- the plan cache key follows external-data files.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from harness.engines import EngineConfig, EngineFailure
from harness.engines.tensorrt import TensorRtEngine, external_data_hashes
from harness.engines.trt import status
from harness.engines.trt.census import census_from_inspector, tensor_precision
from harness.engines.trt.gpuinfo import cuda_device_identity
from harness.engines.trt.gputime import FIGURES
from harness.engines.trt.settings import (BuildSettings, OptionError, RuntimeSettings,
                                          parse_options)
from harness.engines.trt.status import (DriverFacts, ProbeFacts, tensorrt_cuda_build,
                                        unavailable_reason)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from builders import install_fake_gpu_modules  # noqa: E402
from test_tensorrt_engine import FakeCudart, FakeTrt, fake_engine, sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "tensorrt.Dockerfile"


# ---------------------------------------------------------------------------- 1. the pins
def extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {k: [Requirement(r) for r in v] for k, v in project["optional-dependencies"].items()}


def pins() -> dict[str, Version]:
    out = {}
    for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[name.strip().lower().replace("_", "-")] = Version(version.strip())
    return out


def by_name(reqs: list[Requirement]) -> dict[str, Requirement]:
    return {r.name.lower().replace("_", "-"): r for r in reqs}


def test_tensorrt_extra_is_the_cuda12_build():
    reqs = by_name(extras()["tensorrt"])
    # the bare metapackage resolves to tensorrt_cu13 from 10.13.2 on: never ask for it
    assert "tensorrt" not in reqs
    trt = reqs["tensorrt-cu12"]
    assert not trt.specifier.contains("11.0.0.114") and trt.specifier.contains("10.8.0.43")
    cuda = reqs["cuda-bindings"]  # what the engine imports; cuda-python 12.6.0 had none
    assert cuda.specifier.contains("12.8.0") and not cuda.specifier.contains("13.0.0")
    assert "cuda-python" not in reqs


def test_container_extra_is_the_tensorrt_extra_without_tensorrt():
    ex = extras()
    full, container = by_name(ex["tensorrt"]), by_name(ex["tensorrt-container"])
    assert set(full) - set(container) == {"tensorrt-cu12"}
    assert all(str(container[n]) == str(full[n]) for n in container)
    assert "tensorrt-container" in DOCKERFILE.read_text()


def test_dev_extra_installs_cuda12_bindings():
    dev = by_name(extras()["dev"])
    assert "cuda-python" not in dev
    assert dev["cuda-bindings"].specifier.contains("12.8.0")
    assert not dev["cuda-bindings"].specifier.contains("13.0.0")


def test_constraints_pin_one_cuda12_tensorrt_everywhere():
    p = pins()
    trt_version = re.search(r"^ARG TRT_VERSION=(\S+)$", DOCKERFILE.read_text(), re.M).group(1)
    assert str(p["tensorrt"]) == str(p["tensorrt-cu12"]) == trt_version
    assert p["cuda-bindings"].major == 12 and p["cuda-python"].major == 12
    assert str(p["cuda-python"]) == str(p["cuda-bindings"])
    for name, req in by_name(extras()["tensorrt"]).items():
        assert req.specifier.contains(p[name]), f"{name}: pin {p[name]} outside {req}"
    assert "CUDA 12" in DOCKERFILE.read_text()


# ---------------------------------------------------------------------------- 2. the probe
def test_cuda_build_read_from_real_pip_metadata():
    """tensorrt-rtx is installed here as its CUDA 13 build: the same naming scheme."""
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed")
    major, source = tensorrt_cuda_build("tensorrt_rtx")
    assert major == 13 and "tensorrt_rtx_cu13" in source


@pytest.mark.parametrize("dists, env, expected", [
    ({"tensorrt": ["tensorrt_cu12"], "tensorrt_bindings": ["tensorrt_cu12_bindings"]}, {}, 12),
    ({"tensorrt": ["tensorrt-cu13"]}, {}, 13),
    ({"tensorrt_bindings": ["tensorrt_cu13_bindings"]}, {}, 13),
    ({"tensorrt": ["tensorrt"]}, {"CUDA_VERSION": "12.8.0.038"}, 12),  # NVIDIA's container
    ({"tensorrt": ["tensorrt"]}, {}, None),
    ({}, {"CUDA_VERSION": "12.8.0"}, None),  # no TensorRT at all
])
def test_cuda_build_sources(dists, env, expected):
    assert tensorrt_cuda_build("tensorrt", dists, env)[0] == expected


def facts(driver_cuda: int, trt_cuda: int | None, version: str = "10.16.1.11") -> ProbeFacts:
    return ProbeFacts(driver=DriverFacts(library="libcuda.so.1", device_count=1,
                                         cuda_version=driver_cuda),
                      tensorrt_version=version, tensorrt_cuda_major=trt_cuda,
                      tensorrt_cuda_source="pip distribution tensorrt_cu13")


def test_probe_refuses_a_cuda13_tensorrt_on_a_cuda12_driver():
    reason = unavailable_reason(facts(12040, 13))
    assert reason and "CUDA 13 build" in reason and "supports CUDA 12.4" in reason
    assert "tensorrt-cu12" in reason and "error 35" in reason


@pytest.mark.parametrize("driver, trt", [(12040, 12), (13000, 12), (13000, 13), (12040, None)])
def test_probe_accepts_a_driver_at_least_as_new(driver, trt):
    assert unavailable_reason(facts(driver, trt, "10.8.0.43")) is None


@pytest.mark.parametrize("version, ok", [("10.8.0.43", True), ("11.4.0.106", True),
                                         ("12.0.0.1", False), ("8.6.1", False)])
def test_probe_knows_tensorrt_10_and_11_only(version, ok):
    assert (unavailable_reason(facts(12080, 12, version)) is None) == ok


def test_probe_names_cuda_bindings_when_missing():
    f = ProbeFacts(driver=DriverFacts(library="libcuda.so.1", device_count=1),
                   missing_packages=("cuda-bindings",))
    assert "cuda-bindings is not installed" in unavailable_reason(f)
    assert set(status.REQUIRED_PACKAGES) == {"tensorrt", "cuda-bindings"}


# ---------------------------------------------------------------------------- 3. the Dockerfile
def dockerfile_checks() -> list[str]:
    """The Dockerfile's `python -c "..." "${TRT_VERSION}"` checks, as shell words."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    return re.findall(r'python -c ("[^"]*tensorrt\.__version__[^"]*") "\$\{TRT_VERSION\}"', text)


def run_check(code: str, tmp_path: Path, installed: str, cuda: str, wanted: str):
    fake = tmp_path / "site"
    (fake / "tensorrt").mkdir(parents=True, exist_ok=True)
    (fake / "tensorrt" / "__init__.py").write_text(f"__version__ = {installed!r}\n")
    env = {**os.environ, "PYTHONPATH": str(fake), "CUDA_VERSION": cuda}
    return subprocess.run([sys.executable, "-c", shlex.split(code)[0], wanted],
                          env=env, capture_output=True, text=True, timeout=60)


def test_dockerfile_checks_the_base_images_tensorrt_twice():
    assert len(dockerfile_checks()) == 2  # before the install and after it


@pytest.mark.parametrize("installed, cuda, ok", [
    ("10.8.0.43", "12.8.0.038", True), ("10.9.0.34", "12.8.0.038", False),
    ("10.8.0.43", "13.0.0", False),
])
def test_dockerfile_version_check_fails_the_build_loudly(tmp_path, installed, cuda, ok):
    """The first check, executed as the build runs it (with a stand-in tensorrt module)."""
    out = run_check(dockerfile_checks()[0], tmp_path, installed, cuda, "10.8.0.43")
    assert (out.returncode == 0) == ok, out.stderr
    if not ok:
        assert f"TensorRT {installed} for CUDA {cuda}, expected TensorRT 10.8.0.43" in out.stderr


def test_dockerfile_second_check_fails_on_another_version(tmp_path):
    out = run_check(dockerfile_checks()[1], tmp_path, "10.16.1.11", "12.8.0", "10.8.0.43")
    assert out.returncode == 1 and "TensorRT 10.16.1.11 in the image" in out.stderr


# ---------------------------------------------------------------------------- 4. one logger
LOGGER_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
import tensorrt_rtx as trt
from harness.engines.trt.build import build_plan, make_logger, parse_onnx
from harness.engines.trt.settings import BuildSettings
logger = make_logger(trt)
if sys.argv[2] == "native-runtime-first":  # what the engine did before issue 12
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
else:  # what it does now: the one recording logger for the runtime too
    runtime = trt.Runtime(logger)
for _ in range(2):
    mark = len(logger.records)
    build_plan(trt, parse_onnx(trt, sys.argv[1], logger), BuildSettings(), logger)
    assert make_logger(trt) is logger
print("RECORDED " + repr(logger.records))
"""


def run_logger_script(model: Path, mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", LOGGER_SCRIPT, str(model), mode], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout + out.stderr


@pytest.fixture
def rtx_model(tmp_path):
    pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed")
    from test_tensorrt_rtx import qdq_conv_model

    return qdq_conv_model(tmp_path / "standin.onnx")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_one_logger_runtime_and_builds_no_logger_differs(rtx_model):
    text = run_logger_script(rtx_model, "shared")
    assert "differs from one already registered" not in text
    assert "RECORDED" in text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_old_order_reproduces_the_escaped_logger(rtx_model):
    """The control: a native logger registered first makes TensorRT ignore ours."""
    assert "differs from one already registered" in run_logger_script(rtx_model,
                                                                      "native-runtime-first")


# ---------------------------------------------------------------------------- 5. TF32 and NVTX
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("tf32", [False, True])
def test_builder_config_sets_tf32_as_asked_on_a_real_builder(tf32):
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed")
    from harness.engines.trt.build import builder_config, make_logger

    builder = trt.Builder(make_logger(trt))
    assert builder.create_builder_config().get_flag(trt.BuilderFlag.TF32)  # TensorRT's default
    config = builder_config(trt, builder, BuildSettings(tf32=tf32))
    assert config.get_flag(trt.BuilderFlag.TF32) is tf32
    assert config.profiling_verbosity == trt.ProfilingVerbosity.DETAILED


def test_real_bindings_have_the_nvtx_knob():
    trt = pytest.importorskip("tensorrt_rtx", reason="tensorrt-rtx is not installed")
    assert isinstance(trt.IExecutionContext.nvtx_verbosity, property)
    assert {"NONE", "LAYER_NAMES_ONLY", "DETAILED"} <= set(trt.ProfilingVerbosity.__members__)


@pytest.mark.parametrize("option, level", [(None, "LAYER_NAMES_ONLY"), ("none", "NONE"),
                                           ("detailed", "DETAILED")])
def test_context_nvtx_verbosity_is_set_before_timing(option, level):
    options = {"nvtx": option} if option else {}
    eng = fake_engine(FakeCudart(), parse_options(options)[1])
    assert eng.context.nvtx_verbosity == getattr(FakeTrt.ProfilingVerbosity, level)
    settings = eng.describe()["settings"]
    assert settings["nvtx_verbosity_while_timed"] == level
    assert settings["tf32"] is False and settings["float_math"].startswith("fp32")


def test_bad_nvtx_and_tf32_options():
    with pytest.raises(OptionError, match="nvtx"):
        parse_options({"nvtx": "verbose"})
    with pytest.raises(OptionError, match="tf32"):
        parse_options({"tf32": "maybe"})
    assert parse_options({"tf32": "1"})[0].tf32 is True


# ---------------------------------------------------------------------------- 6. three figures
def test_three_latency_figures_each_labelled():
    eng = fake_engine(FakeCudart())
    for k in range(4):
        eng.run(sample(k))
    eng.timed_runs = 3
    info = eng.describe()
    gpu, copies = (info["extra_latency_ms"][k] for k in ("gpu_compute", "h2d_compute_d2h"))
    assert gpu["median"] == pytest.approx(1.5)  # the fake execute takes 1.5 ms
    assert copies["median"] == pytest.approx(2.0)  # + 0.25 ms per copy, each way
    assert gpu["n"] == copies["n"] == 3
    assert "GPU Compute Time" in gpu["what"] and "'Latency'" in copies["what"]
    assert info["latency_figures"] == FIGURES
    assert FIGURES["latency_ms"] == TensorRtEngine.timed
    assert "host wall time" in TensorRtEngine.timed and "compared on" in TensorRtEngine.timed


# ---------------------------------------------------------------------------- 7. census schemas
def io(name, key, text, **extra):
    return {"Name": name, "Location": "Device", "Dimensions": [1, 32, 40, 40], key: text, **extra}


def conv(name, tensors_in, tensors_out):
    return {"Name": name, "LayerType": "CaskConvolution", "ParameterType": "Convolution",
            "Inputs": tensors_in, "Outputs": tensors_out}


# TensorRT 10: one combined field per tensor and a "Bindings" name list.
TRT10 = {"Layers": [
    conv("/model.0/conv/Conv", [io("images_q", "Format/Datatype",
                                   "Thirty-two wide channel vectorized row major Int8 format")],
         [io("c0", "Format/Datatype", "Thirty-two wide channel vectorized row major Int8 format")]),
    conv("/model.77/m.0/Conv", [io("c1", "Format/Datatype", "Row major linear FP32 format")],
         [io("c2", "Format/Datatype", "Row major linear FP32 format")]),
], "Bindings": ["images", "output"]}

# TensorRT 11: the type in its own field, the layout in "Format"; "I/O Tensors" objects.
TRT11 = {"Layers": [
    conv("/model.0/conv/Conv",
         [io("images_q", "Datatype", "Int8", Format="Thirty-two wide channel vectorized row "
             "major format (kCHW32)")],
         [io("c0", "Datatype", "Int8", Format="Thirty-two wide channel vectorized row major "
             "format (kCHW32)")]),
    conv("/model.77/m.0/Conv", [io("c1", "Datatype", "Float", Format="Row major linear format "
                                   "(kLINEAR)")],
         [io("c2", "Datatype", "Float", Format="Row major linear format (kLINEAR)")]),
], "I/O Tensors": [{"Name": "images", "IOMode": "Input", "DataType": "Float"},
                   {"Name": "output", "IOMode": "Output", "DataType": "Float"}]}


@pytest.mark.parametrize("data, schema", [(TRT10, "tensorrt-10"), (TRT11, "tensorrt-11")])
def test_census_reads_both_inspector_schemas_alike(data, schema):
    c = census_from_inspector(json.dumps(data))
    assert (c["compute_ops"], c["int8_compute_ops"]) == (2, 1)
    assert c["float_ops"] == ["/model.77/m.0/Conv"]
    assert c["inspector_schema"] == schema


def test_data_type_field_wins_over_the_format_text():
    # a layout name mentioning Int8 must not make a float tensor int8
    assert tensor_precision({"Datatype": "Float", "Format": "CHW4 Int8-compatible"}) == "fp32"
    assert tensor_precision({"DataType": "Int8"}) == "int8"
    assert tensor_precision({"datatype": "Half"}) == "fp16"


# ---------------------------------------------------------------------------- 8. small ones
class PaddedCudart(FakeCudart):
    def cudaDeviceGetPCIBusId(self, length, d):
        return (self.ok, b"0000:65:00.0\x00\x00\x00\xfe\xca" + b"\x00" * (length - 17))

    def cudaGetDeviceProperties(self, d):
        return (self.ok, types.SimpleNamespace(name=b"NVIDIA L4\x00\x00junk", major=8, minor=9,
                                               totalGlobalMem=24 << 30, multiProcessorCount=58))


def test_pci_bus_id_and_name_end_at_the_first_nul():
    ident = cuda_device_identity(PaddedCudart(), 0)
    assert ident.pci_bus_id == "0000:65:00.0" and ident.name == "NVIDIA L4"
    assert ident.sm_count == 58


def test_external_data_files_are_part_of_the_cache_key(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
                              [w])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(model), save_as_external_data=True,
              location="m.onnx.data", size_threshold=0)
    first = external_data_hashes(model)
    assert list(first) == ["m.onnx.data"]
    data = tmp_path / "m.onnx.data"
    data.write_bytes(data.read_bytes()[::-1])  # other weights, same .onnx bytes
    assert external_data_hashes(model) != first


class RaisingRuntimeTrt(types.ModuleType):
    """A TensorRT whose Runtime cannot be created: what a CUDA 13 build does on a CUDA 12
    driver (pybind11's words for the null object TensorRT returns)."""

    def __init__(self):
        super().__init__("tensorrt")
        self.__version__ = "10.16.1.11"

        class ILogger:  # a logger base class of its own, as a separate library has
            def __init__(self):
                pass

        self.ILogger = ILogger

        def runtime(logger):
            raise TypeError("pybind11::init(): factory function returned nullptr")

        self.Runtime = runtime


def test_runtime_creation_typeerror_is_an_engine_failure_with_a_hint(monkeypatch, tmp_path):
    cudart = FakeCudart()
    install_fake_gpu_modules(monkeypatch, RaisingRuntimeTrt(), cudart)
    monkeypatch.setattr(TensorRtEngine, "probe", classmethod(lambda cls: None))
    monkeypatch.setattr("harness.engines.tensorrt.tensorrt_cuda_build",
                        lambda: (13, "pip distribution tensorrt_cu13"))
    eng = TensorRtEngine(EngineConfig(cache_dir=tmp_path))
    with pytest.raises(EngineFailure) as e:
        eng.load(tmp_path / "unused.onnx")
    text = str(e.value)
    assert "TypeError: pybind11::init(): factory function returned nullptr" in text
    assert "CUDA 13 build" in text and "driver supports CUDA 12.4" in text
    assert "tensorrt-cu12" in text
    assert cudart.dev == {} and cudart.host == {} and cudart.live_events == set()


def test_cuda_graph_capture_failure_is_an_engine_failure():
    from harness.engines.trt.build import BuildError

    class NoCapture(FakeCudart):
        def cudaStreamBeginCapture(self, stream, mode):
            from test_tensorrt_engine import FakeErr
            return (FakeErr.cudaErrorMemoryAllocation,)

    with pytest.raises(BuildError, match="CUDA graph capture failed"):
        fake_engine(NoCapture(), RuntimeSettings(cuda_graph=True))


@pytest.mark.skipif(os.environ.get("QPARITY_NETWORK_TESTS") != "1",
                    reason="asks PyPI (about a minute); set QPARITY_NETWORK_TESTS=1 to run "
                           "bench/trt_pins_resolve.py here")
def test_the_extra_resolves_to_cuda12_on_pypi():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "trt_pins_resolve.py")],
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "-> tensorrt_cu12 10." in out.stdout
    assert "tensorrt_cu13" in out.stdout  # the old requirement, shown for comparison


@pytest.mark.parametrize("dist, ok", [(None, True), ("tensorrt_cu12", False),
                                      ("nvidia_ml_py", True)])
def test_dockerfile_refuses_a_pip_tensorrt_in_the_venv(tmp_path, dist, ok):
    """The Dockerfile's last check of layer 1, run against a stand-in venv."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    code = shlex.split(re.search(r'python -c ("[^"]*would shadow[^"]*")', text).group(1))[0]
    site = tmp_path / "venv" / "lib" / "python3.12" / "site-packages"
    site.mkdir(parents=True)
    if dist:
        info = site / f"{dist}-10.8.0.43.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 10.8.0.43\n")
    out = subprocess.run([sys.executable, "-c", code.replace("/opt/venv", str(tmp_path / "venv"))],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode == 0) == ok, out.stderr
    if not ok:
        assert "tensorrt_cu12" in out.stderr and "would shadow" in out.stderr


def test_report_carries_the_three_labelled_figures(tmp_path):
    """The runner's way (harness.latency.measure around run(), then describe()) with the fake
    GPU, through the real collector: eval_report.json says what each figure covers."""
    from harness.collector import collect
    from harness.fileio import write_json_atomic
    from harness.latency import measure
    from harness.protocol import locked_protocol
    from harness.runner import new_result

    eng = fake_engine(FakeCudart())
    inputs = [sample(k) for k in range(3)]
    lat = measure(eng.run, inputs, warmup=2, runs=5)
    eng.timed_runs = 5
    lat["timed"] = TensorRtEngine.timed
    for name in ("ort-cpu", "tensorrt"):
        r = new_result(name, locked_protocol())
        r.update(status="ok", model={"sha256": "m"},
                 data={"image_list_sha256": "L", "annotations_sha256": "A",
                       "images_evaluated": 3},
                 metrics={"map50_95": 30.0, "map50": 50.0, "map75": 30.0, "map_small": 1.0,
                          "map_medium": 2.0, "map_large": 3.0, "images": 3, "detections": 9},
                 latency_ms=lat if name == "tensorrt" else {"median": 9.0, "p95": 9.5,
                                                            "timed": "CPU"})
        if name == "tensorrt":
            r["engine_info"] = eng.describe()
        write_json_atomic(tmp_path / f"{name}.json", r)
    entry = json.loads(json.dumps(collect(tmp_path)))["engines"]["tensorrt"]
    assert entry["latency_ms"]["timed"].startswith("end-to-end host wall time")
    extra = entry["engine"]["extra_latency_ms"]
    assert extra["gpu_compute"]["n"] == extra["h2d_compute_d2h"]["n"] == 5
    assert extra["gpu_compute"]["median"] < extra["h2d_compute_d2h"]["median"]
    assert set(entry["engine"]["latency_figures"]) == {
        "latency_ms", "engine_info.extra_latency_ms.h2d_compute_d2h",
        "engine_info.extra_latency_ms.gpu_compute"}
