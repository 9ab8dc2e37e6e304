"""qdq-ref is the model's own arithmetic; the census reports what really ran in int8."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.engines.base import EngineConfig
from harness.engines.ort_cpu import OrtCpuEngine
from harness.engines.openvino import OpenVinoEngine
from harness.engines.qdq_ref import QdqReferenceEngine

S_X, S_Y = np.float32(0.02), np.float32(0.05)


def qdq_conv_model(path, w_q, s_w, bias, bias_int32=False, quantize_output=True):
    """x -> Q/DQ -> Conv(DQ(w), bias) -> [Q/DQ] -> y, per-channel int8 weights on axis 0."""
    cout = w_q.shape[0]
    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("s_x", S_X), ("zp", np.int8(0)), ("w_q", w_q), ("s_w", s_w),
        ("zp_w", np.zeros(cout, np.int8)), ("s_y", S_Y))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_x", "zp"], ["xq"], name="q_x"),
             helper.make_node("DequantizeLinear", ["xq", "s_x", "zp"], ["xd"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w_q", "s_w", "zp_w"], ["wd"], name="dq_w", axis=0)]
    if bias_int32:
        s_b = (S_X * s_w).astype(np.float32)
        inits += [numpy_helper.from_array(np.round(bias / s_b).astype(np.int32), "b_q"),
                  numpy_helper.from_array(s_b, "s_b"), numpy_helper.from_array(np.zeros(cout, np.int32), "zp_b")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "s_b", "zp_b"], ["b"], name="dq_b", axis=0))
    else:
        inits.append(numpy_helper.from_array(bias, "b"))
    conv_out = "conv" if quantize_output else "y"
    nodes.append(helper.make_node("Conv", ["xd", "wd", "b"], [conv_out], name="conv0", pads=[1, 1, 1, 1]))
    if quantize_output:
        nodes += [helper.make_node("QuantizeLinear", ["conv", "s_y", "zp"], ["yq"], name="q_y"),
                  helper.make_node("DequantizeLinear", ["yq", "s_y", "zp"], ["y"], name="dq_y")]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 16, 16])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


def fake_quant(x, s):
    return np.clip(np.rint(x / s), -128, 127) * s  # np.rint: round half to even, as ONNX


def numpy_reference(x, w_q, s_w, bias):
    xd = fake_quant(x.astype(np.float64), np.float64(S_X))
    wd = w_q.astype(np.float64) * s_w.astype(np.float64)[:, None, None, None]
    xp = np.pad(xd, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # [1, C, H, W, 3, 3]
    y = np.einsum("bchwij,ocij->bohw", win, wd) + bias[None, :, None, None]
    return fake_quant(y, np.float64(S_Y))


@pytest.fixture
def weights():
    rng = np.random.default_rng(0)
    return (rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8),
            rng.uniform(0.001, 0.004, 4).astype(np.float32), rng.normal(0, 0.2, 4).astype(np.float32))


def test_qdq_ref_equals_numpy_fake_quant(tmp_path, weights):
    path = qdq_conv_model(tmp_path / "m.onnx", *weights)
    eng = QdqReferenceEngine()
    eng.load(path)
    x = np.random.default_rng(1).uniform(-3, 3, (1, 3, 16, 16)).astype(np.float32)
    got = eng.run(x).astype(np.float64)
    want = numpy_reference(x, *weights)
    steps = np.abs(got - want) / float(S_Y)
    assert steps.max() <= 1.0 + 1e-6  # never more than one step, and only on rounding ties
    assert (steps < 1e-3).mean() >= 0.995
    assert eng.census()["int8_compute_ops"] == 0


def census_of(cls, path, **options):
    eng = cls(EngineConfig(threads=1, options=options))
    eng.load(path)
    return eng.census()


def test_census_engines_differ_on_a_conv_without_output_quantization(tmp_path, weights):
    """ONNX Runtime fuses only DQ->Conv->Q and runs this conv in float; OpenVINO runs int8
    inputs through an integer kernel and dequantizes after it. The census must tell them apart."""
    path = qdq_conv_model(tmp_path / "m.onnx", *weights, quantize_output=False)
    ort_c = census_of(OrtCpuEngine, path)
    assert ort_c["compute_ops"] == 1 and ort_c["int8_compute_ops"] == 0 and ort_c["float_ops"] == ["conv0"]
    ov = census_of(OpenVinoEngine, path)
    assert ov["compute_ops"] == 1 and ov["int8_compute_ops"] == 1


def test_census_sees_openvino_low_precision_path_switched_off(tmp_path, weights):
    path = qdq_conv_model(tmp_path / "m.onnx", *weights)
    assert census_of(OpenVinoEngine, path)["int8_compute_ops"] == 1
    assert census_of(OpenVinoEngine, path, LP_TRANSFORMS_MODE="NO")["int8_compute_ops"] == 0


def test_census_counts_a_fully_quantized_conv_as_int8_in_onnxruntime(tmp_path, weights):
    path = qdq_conv_model(tmp_path / "m.onnx", *weights, bias_int32=True)
    eng = OrtCpuEngine()
    eng.load(path)
    c = eng.census()
    assert c["int8_compute_ops"] == 1 and c["by_type"] == {"QLinearConv/int8": 1}


# ----------------------------------------------------------------------------- capabilities
PLUGINS = "plugref=plugin_engines:PluginReferenceEngine,noconcat=plugin_engines:NoConcatEngine"


def test_capabilities_live_on_the_engine_classes():
    from harness.engines import engine_class
    from harness.engines.tensorrt import TensorRtEngine

    assert QdqReferenceEngine.REFERENCE and not OrtCpuEngine.REFERENCE
    assert not OpenVinoEngine.REFERENCE and not TensorRtEngine.REFERENCE
    assert engine_class("qdq-ref").EXTRA_OUTPUTS_EXACT and not engine_class("ort-cpu").EXTRA_OUTPUTS_EXACT
    assert OrtCpuEngine.RUNS_SUBGRAPHS and OpenVinoEngine.RUNS_SUBGRAPHS
    assert not TensorRtEngine.RUNS_SUBGRAPHS  # one input, one output (trt/io_plan.py)


def test_a_plugin_flagged_reference_is_recorded_as_one(demo_assets, tmp_path, monkeypatch):
    from harness.engines import EngineConfig as Config
    from harness.protocol import locked_protocol
    from dataclasses import replace

    from harness.records.report import EngineEntry
    from harness.report import mostly_float
    from harness.runner import RunRequest, execute

    monkeypatch.setenv("QPARITY_EXTRA_ENGINES", PLUGINS)
    model_dir, data = demo_assets
    proto = locked_protocol().with_overrides(warmup=1, runs=2)
    results = {}
    for name in ("plugref", "noconcat", "qdq-ref"):
        req = RunRequest(name, model_dir / "model-int8.onnx", data / "val2017",
                         data / "annotations" / "instances_val2017.json", tmp_path, proto,
                         limit=2, config=Config(threads=1))
        results[name] = execute(req, show_progress=False)
        assert results[name]["status"] == "ok", results[name]["reason"]
    assert results["plugref"]["reference"] is True and results["qdq-ref"]["reference"] is True
    assert results["noconcat"]["reference"] is False
    # a reference runs what it runs by design: never flagged "mostly float", whatever its name
    # (the report marks a reference engine's entry with status "reference")
    entry = EngineEntry(status="reference", census={"int8_compute_ops": 0}, quantized_in_file=10)
    assert not mostly_float("plugref", entry)
    assert mostly_float("plugref", replace(entry, status="pass"))


def test_a_plugin_preflight_rule_is_in_check_model(demo_assets, monkeypatch, capsys):
    import harness.cli as cli
    from harness.preflight import check_model

    monkeypatch.setenv("QPARITY_EXTRA_ENGINES", PLUGINS)
    model = demo_assets[0] / "model-int8.onnx"
    v = check_model(model, cpu_flags=["avx512_vnni"])
    assert v["engines"]["noconcat"]["accepts"] is False
    f = next(f for f in v["findings"] if f["code"] == "no-concat")
    assert f["engines"] == ["noconcat"] and f["nodes"]
    assert v["engines"]["plugref"]["accepts"] and v["engines"]["ort-cpu"]["accepts"]
    # the built-in rules stay each engine's own: qdq-ref gets no integer-kernel warning
    v = check_model(model, cpu_flags=["avx2"])
    signed = [f for f in v["findings"] if f["code"] == "signed-int8-no-vnni"]
    # (noconcat replaces ONNX Runtime's rules with its own; plugref inherits them)
    assert sorted(e for f in signed for e in f["engines"]) == ["openvino", "ort-cpu", "plugref"]
    assert cli.main(["check-model", str(model)]) == 1  # one engine refuses: exit 1
    out = capsys.readouterr().out
    assert "noconcat" in out and "no Concat kernel" in out
