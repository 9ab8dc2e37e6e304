"""The locked PTQ pipeline: lists, quantization recipes, the decode tail, and the preflight."""

import hashlib

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from harness.errors import QParityError
from harness.lists import calibration_subset, write_lists
from harness.preflight import check_model
from harness.ptq import decode_tail, detection_convs, quantize

TAIL = {"tail_s8_reshape", "tail_s8_transpose", "tail_s8_sigmoid", "tail_s8_split", "tail_s8_xy",
        "tail_s8_wh", "tail_s8_concat", "tail_s16_reshape", "tail_s16_transpose",
        "tail_s16_sigmoid", "tail_s16_split", "tail_s16_xy", "tail_s16_wh", "tail_s16_concat",
        "tail_final_concat"}


@pytest.fixture(scope="module")
def work(tmp_path_factory, yolo_calibration):
    data, _, calib, fp32 = yolo_calibration
    return tmp_path_factory.mktemp("ptq"), data, calib, fp32


def q(work, name, **kw):
    root, _, calib, fp32 = work
    out = root / name / "model-int8.onnx"
    if not out.exists():
        quantize(fp32, calib, out, **kw)
    return out


def test_calibration_subset_is_awk_nr_mod_10_eq_1():
    val = [f"{i:04d}.jpg" for i in range(1, 10001)]
    sub = calibration_subset(val)
    assert sub[:3] == ["0001.jpg", "0011.jpg", "0021.jpg"] and len(sub) == 512
    assert sub[-1] == val[5110]


def test_lists_are_deterministic_and_manifests_verify(yolo_calibration, tmp_path):
    data, first, _, _ = yolo_calibration
    again = write_lists(data, tmp_path)
    for key in ("val", "calib", "manifest_val", "manifest_calib"):
        assert first[key] != again[key] and first[key].read_bytes() == again[key].read_bytes()
    val = again["val"].read_text().splitlines()
    assert val == sorted(val) and len(val) == 20 and again["calib"].read_text().splitlines() == val[::10]
    for line in again["manifest_val"].read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == digest


def test_decode_tail_found_from_the_graph(work):
    m = onnx.load(str(work[3]))
    assert {n.name for n in detection_convs(m.graph)} == {"det_s8", "det_s16"}
    assert set(decode_tail(m.graph)) == TAIL


def zero_points(model):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [(n, inits[n.input[2]]) for n in model.graph.node
            if n.op_type == "QuantizeLinear" and len(n.input) > 2]


def test_portable_recipe(work):
    path = q(work, "portable")
    m = onnx.load(str(path))
    zps = zero_points(m)
    assert zps and all(z.dtype == np.int8 and not z.any() for _, z in zps)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    dq_inputs = [inits[n.input[0]].dtype for n in m.graph.node
                 if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert np.dtype(np.int32) not in dq_inputs  # biases stay float
    consumed_by_q = {n.input[0] for n in m.graph.node if n.op_type == "QuantizeLinear"}
    tail_outputs = {o for n in m.graph.node if n.name in TAIL for o in n.output}
    assert not consumed_by_q & tail_outputs  # nothing in the tail is quantized
    rec = (path.parent / "model-int8.json").read_text()
    assert '"recipe"' in rec and "tail_final_concat" in rec
    md5 = (path.parent / "onnx_int8_md5.txt").read_text().split()[0]
    assert md5 == hashlib.md5(path.read_bytes()).hexdigest()


def test_ptq_is_byte_identical_on_rerun(work, tmp_path):
    first = q(work, "portable")
    _, _, calib, fp32 = work
    quantize(fp32, calib, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == first.read_bytes()


def test_preflight_portable_is_accepted_everywhere(work):
    v = check_model(q(work, "portable"), cpu_flags=["avx512_vnni"])
    assert all(e["accepts"] for e in v["engines"].values())
    assert not any(f["code"] == "concat-range-mismatch" for f in v["findings"])


def test_preflight_spec_v1_is_refused_by_tensorrt_only(work):
    v = check_model(q(work, "specv1", recipe="spec-v1"), cpu_flags=["avx512_vnni"])
    assert v["engines"]["ort-cpu"]["accepts"] and v["engines"]["openvino"]["accepts"]
    assert not v["engines"]["tensorrt"]["accepts"]
    codes = {f["code"] for f in v["findings"]}
    assert {"uint8-activations", "int32-bias"} <= codes


def test_preflight_flags_quantized_tail_concat(work):
    v = check_model(q(work, "fulltail", quantize_tail=True), cpu_flags=["avx512_vnni"])
    bad = [f for f in v["findings"] if f["code"] == "concat-range-mismatch"]
    assert bad and "tail_s8_concat" in bad[0]["nodes"]


def test_preflight_warns_signed_int8_without_vnni(work):
    v = check_model(q(work, "portable"), cpu_flags=["avx2"])
    assert any(f["code"] == "signed-int8-no-vnni" for f in v["findings"])


def test_options_keep_first_conv_and_exclude(work):
    root, _, calib, fp32 = work
    rec = quantize(fp32, calib, root / "opts" / "m.onnx", keep_first_conv=True, exclude=["b3"])
    assert {"b1", "b3"} <= set(rec["kept_in_float"])
    with pytest.raises(QParityError, match="not in the model: nope"):
        quantize(fp32, calib, root / "opts2" / "m.onnx", exclude=["nope"])


def test_minmax_and_per_tensor_are_recorded_and_differ(work):
    a = q(work, "portable")
    b = q(work, "minmax", method="minmax", per_tensor_weights=True)
    assert a.read_bytes() != b.read_bytes()
    assert '"method": "minmax"' in (b.parent / "model-int8.json").read_text()
