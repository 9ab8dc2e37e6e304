"""ort-cpu's check-model rule predicts which convolutions ONNX Runtime runs in int8 on this
machine, and names the measured cause (shared signed Q/DQ pairs on non-ARM builds), never float
biases. The variants are bench/ort_int8_cause.py's tiny net, quantized by ONNX Runtime's PTQ."""

import importlib.util
import platform
import sys
from pathlib import Path

import onnx
import pytest

from harness.engines.ort_cpu import OrtCpuEngine, int8_activations_allowed, predicted_float_convs
from harness.preflight import check_model, model_facts


def _bench_module():
    """bench/ort_int8_cause.py by its path: putting bench/ on sys.path would shadow other
    modules for the whole session (bench/containers.py hides tests/containers)."""
    path = Path(__file__).parents[1] / "bench" / "ort_int8_cause.py"
    spec = importlib.util.spec_from_file_location("ort_int8_cause", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


bench = _bench_module()

MEASURED = [v for v in bench.TINY if not v.session]
X86_ONLY = pytest.mark.skipif(int8_activations_allowed(platform.machine()),
                              reason="measured on x86-64; ONNX Runtime's ARM builds take signed int8")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ort-int8")
    fp32 = bench.tiny_net(root / "tiny-fp32.onnx")
    return {v.name: bench.quantize_tiny(fp32, root / f"tiny-{i}.onnx", v) for i, v in enumerate(bench.TINY)}


@pytest.mark.parametrize("variant", MEASURED, ids=[v.name for v in MEASURED])
def test_the_rule_predicts_the_census(tiny, variant):
    """Same int8 count as ONNX Runtime's census, and the same quantized convolutions in float."""
    row = bench.measure(tiny[variant.name])
    assert row["match"], row
    assert row["predicted_int8"] == row["ran_int8"]


@X86_ONLY
def test_signed_activations_block_fusion_whatever_the_bias(tiny):
    by = {v.name: bench.measure(tiny[v.name], v.session) for v in bench.TINY}
    float_bias = by["s8 symmetric, float bias (portable)"]
    int32_bias = by["s8 symmetric, int32 bias"]
    # the convolutions reading or writing a tensor with two consumers, and only those
    assert float_bias["quantized_ran_float"] == int32_bias["quantized_ran_float"] == ["c1", "c2", "c3"]
    assert by["u8 asymmetric, float bias"]["ran_int8"] == 5  # float biases, every conv int8
    # the cause is ONNX Runtime's x86 policy: allowing signed int8 (as its ARM builds do) fuses all
    assert by["s8 symmetric, float bias, session.qdqisint8allowed=1"]["ran_int8"] == 5
    # a float-weight conv between a DQ and a Q is quantized by ONNX Runtime itself
    assert by["u8 asymmetric, c1 kept float"]["quantized_convs"] == 4
    assert by["u8 asymmetric, c1 kept float"]["ran_int8"] == 5


# the codes of ONNX Runtime's precision rules ("float-bias" is the old, wrong cause); the tiny net
# is no detector, so check-model also refuses its output shape (io-contract), not asserted here
PRECISION = {"float-bias", "unquantized-conv-io", "shared-signed-qdq", "float-conv-quantized-by-ort"}


def _ort_findings(verdict):
    return {f["code"]: f for f in verdict["findings"] if "ort-cpu" in f["engines"] and f["code"] in PRECISION}


@X86_ONLY
def test_check_model_names_the_measured_cause_not_float_biases(tiny):
    portable = _ort_findings(check_model(tiny["s8 symmetric, float bias (portable)"], size=16,
                                         cpu_flags=["avx512_vnni"]))
    assert "float-bias" not in portable
    shared = portable["shared-signed-qdq"]
    assert shared["nodes"] == ["c1", "c2", "c3"] and shared["message"].startswith("3 of 5 ")
    assert "Biases do not matter" in shared["message"]
    assert "shared-signed-qdq" in _ort_findings(check_model(tiny["s8 symmetric, int32 bias"], size=16,
                                                            cpu_flags=["avx512_vnni"]))
    # uint8 activations with float biases: nothing runs in float, nothing to warn about
    spec = _ort_findings(check_model(tiny["u8 asymmetric, float bias"], size=16, cpu_flags=["avx512_vnni"]))
    assert not spec
    kept = _ort_findings(check_model(tiny["u8 asymmetric, c1 kept float"], size=16, cpu_flags=["avx512_vnni"]))
    assert kept["float-conv-quantized-by-ort"]["nodes"] == ["c1"]


def test_the_cause_depends_on_the_build_architecture_not_cpu_flags(tiny):
    path = tiny["s8 symmetric, float bias (portable)"]
    model = onnx.load(str(path))
    for flags in (["avx2"], ["avx512_vnni"], ["avx512_vnni", "amx_int8"]):
        assert predicted_float_convs(model_facts(path, model, flags, machine="x86_64")) == ["c1", "c2", "c3"]
    # ONNX Runtime's ARM builds take signed int8 convolutions (QDQIsInt8Allowed): from its source,
    # not measured here (no ARM machine)
    arm = model_facts(path, model, [], machine="aarch64")
    assert predicted_float_convs(arm) == []
    assert "shared-signed-qdq" not in {f.code for f in OrtCpuEngine.preflight(arm)}


def test_a_conv_without_output_quantization_is_predicted_float(tiny, tmp_path):
    """Drop c4's output Q/DQ (u8 variant, so only this rule is at stake): ONNX Runtime fuses only
    DQ -> Conv -> Q, so c4 runs in float on every build, and check-model says so."""
    model = onnx.load(str(tiny["u8 asymmetric, float bias"]))
    g = model.graph
    drop = [n for n in g.node if n.name in ("c4.out_QuantizeLinear", "c4.out_DequantizeLinear")]
    assert len(drop) == 2
    for n in drop:
        g.node.remove(n)
    next(n for n in g.node if n.name == "c4").output[0] = "c4.out"
    path = tmp_path / "no-output-q.onnx"
    onnx.save(model, str(path))
    row = bench.measure(path)
    assert row["match"] and row["ran_int8"] == 4 and row["quantized_ran_float"] == ["c4"]
    arm = model_facts(path, model, [], machine="aarch64")
    assert predicted_float_convs(arm) == ["c4"]  # not a matter of the build
    found = {f.code: f for f in OrtCpuEngine.preflight(arm)}
    assert found["unquantized-conv-io"].nodes == ["c4"]
