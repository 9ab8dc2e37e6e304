"""The census split by name: the file's quantized compute ops that ran in int8, the float ones
an engine quantized on its own, and what cannot be matched (counted, never guessed). Real
ONNX Runtime and OpenVINO runs of bench/ort_int8_cause.py's tiny net; the expected counts are
read from ONNX Runtime's optimized graph by tensor names, independently of the census's node
names."""

from __future__ import annotations

import importlib.util
import logging
import sys
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from harness.census import ExecutedOp, FileOps, ratio_text, summarize
from harness.engines.base import EngineConfig
from harness.engines.openvino import OpenVinoEngine
from harness.engines.ort_cpu import INT8_OPS, OrtCpuEngine
from harness.engines.qdq_ref import QdqReferenceEngine
from harness.engines.trt.census import census_from_inspector
from harness.modelinfo import split_compute_ops


def _bench_module():
    path = Path(__file__).parents[1] / "bench" / "ort_int8_cause.py"
    spec = importlib.util.spec_from_file_location("ort_int8_cause", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = _bench_module()
VARIANTS = {v.name: v for v in bench.TINY}
# the concat-safe pattern on the tiny net: c1 kept in float (float weights) between Q/DQ pairs
# ONNX Runtime can fuse (uint8 activations), so ORT quantizes c1 itself; and the portable file
KEPT_FLOAT = "u8 asymmetric, c1 kept float"
PORTABLE = "s8 symmetric, float bias (portable)"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    logging.getLogger().setLevel(logging.ERROR)
    root = tmp_path_factory.mktemp("census-split")
    fp32 = bench.tiny_net(root / "tiny-fp32.onnx")
    return {name: bench.quantize_tiny(fp32, root / f"tiny-{i}.onnx", VARIANTS[name])
            for i, name in enumerate((KEPT_FLOAT, PORTABLE))}


def census_of(cls, path):
    eng = cls(EngineConfig(threads=1))
    eng.load(path)
    try:
        return eng.census()
    finally:
        eng.close()


def ort_int8_by_weight(path: Path) -> tuple[list[str], int]:
    """What ONNX Runtime's optimized graph runs in int8, read from the integer kernels' weights,
    not their node names: a weight that is a quantized initializer of the file names the file
    conv its DequantizeLinear feeds; any other weight ONNX Runtime quantized itself. Returns the
    file's quantized convs run in int8, and how many int8 kernels carry ORT's own weights."""
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        optimized = onnx.load(so.optimized_model_filepath).graph
    file = onnx.load(str(path)).graph
    inits = {i.name for i in file.initializer}
    dq_of = {n.input[0]: n.output[0] for n in file.node if n.op_type == "DequantizeLinear"}
    conv_of = {n.input[1]: n.name for n in file.node if n.op_type == "Conv"}
    kernels = [n for n in optimized.node if n.op_type in INT8_OPS]
    assert all(n.op_type == "QLinearConv" for n in kernels)  # its weight is input 3
    files = sorted(conv_of[dq_of[n.input[3]]] for n in kernels if n.input[3] in inits)
    return files, len(kernels) - len(files)


def file_split(path: Path) -> tuple[set[str], set[str]]:
    g = onnx.load(str(path)).graph
    dq = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in g.node if n.op_type == "Conv"]
    return {n.name for n in convs if n.input[1] in dq}, {n.name for n in convs if n.input[1] not in dq}


@pytest.mark.parametrize("variant", [KEPT_FLOAT, PORTABLE])
def test_ort_census_splits_as_its_optimized_graph_says(tiny, variant):
    path = tiny[variant]
    quantized, kept_float = file_split(path)
    files, own = ort_int8_by_weight(path)
    assert set(files) <= quantized
    c = census_of(OrtCpuEngine, path)
    assert c["quantized_in_file"] == len(quantized)
    # the census's names and modelinfo's count (quantized_compute_ops) are one split
    assert c["quantized_in_file"] == len(split_compute_ops(onnx.load(str(path)).graph)[0])
    assert c["int8_of_quantized"] == len(files)
    assert c["float_of_quantized_ops"] == sorted(quantized - set(files))
    assert c["int8_added_by_engine"] == own
    assert set(c["added_by_engine_ops"]) <= kept_float and len(c["added_by_engine_ops"]) == own
    assert c["int8_compute_ops"] == len(files) + own  # the old key keeps its meaning
    assert c["unmatched"] == 0 and c["quantized_not_seen"] == 0
    assert (c["int8_of_quantized"] + c["float_of_quantized"] + c["int8_added_by_engine"]
            + c["float_of_float"]) == c["compute_ops"]
    if variant == KEPT_FLOAT:  # what makes the figure matter: ORT ran arithmetic the file lacks
        assert own > 0
        assert ratio_text(c, c["quantized_in_file"]) == (
            f"{c['int8_of_quantized']}/{len(quantized)} +{c['int8_added_by_engine']}")
    else:  # the demo-recipe-like file: nothing added, the cell reads as before the split
        assert c["int8_added_by_engine"] == 0
        assert ratio_text(c, len(quantized)) == f"{c['int8_compute_ops']}/{len(quantized)}"


def test_openvino_and_qdq_ref_split_by_name(tiny):
    path = tiny[KEPT_FLOAT]
    quantized, kept_float = file_split(path)
    ov = census_of(OpenVinoEngine, path)
    # every OpenVINO runtime conv is matched through originalLayersNames (its friendly name is
    # OpenVINO's own, "<conv>/WithoutBiases"; the graph-output conv is named by its tensor)
    assert ov["unmatched"] == 0 and ov["quantized_not_seen"] == 0
    assert ov["int8_of_quantized"] + ov["float_of_quantized"] == len(quantized)
    assert ov["int8_added_by_engine"] + ov["float_of_float"] == len(kept_float)
    assert ov["int8_of_quantized"] == ov["int8_compute_ops"] - ov["int8_added_by_engine"]
    ref = census_of(QdqReferenceEngine, path)
    assert (ref["int8_of_quantized"], ref["float_of_quantized"], ref["float_of_float"],
            ref["unmatched"]) == (0, len(quantized), len(kept_float), 0)


def _file(quantized: list[str], kept_float: list[str]) -> FileOps:
    def conv(name):
        return helper.make_node("Conv", ["x", "w"], [f"{name}.out"], name=name)
    return FileOps.from_nodes([conv(n) for n in quantized], [conv(n) for n in kept_float])


def test_what_cannot_be_matched_is_counted_not_guessed():
    file = _file(["a", "b", "dup", "dup"], ["f"])
    ops = [ExecutedOp("a_fused", "QLinearConv", True, ("a",)),
           ExecutedOp("x", "QLinearConv", True, ("b", "f")),     # names two file ops
           ExecutedOp("dup", "QLinearConv", True),              # a name the file uses twice
           ExecutedOp("f.out_nchwc", "Conv", True, ("f.out",)),  # by the tensor f writes
           ExecutedOp("mystery", "Conv", False)]
    c = summarize(ops, "test", file)
    assert c["quantized_in_file"] == 4
    assert (c["int8_of_quantized"], c["int8_added_by_engine"], c["added_by_engine_ops"]) == (1, 1, ["f"])
    assert (c["unmatched"], c["unmatched_int8"]) == (3, 2)
    assert c["unmatched_ops"] == ["x", "dup", "mystery"]
    assert c["quantized_not_seen"] == 3  # b (ambiguous claim) and both "dup"
    assert ratio_text(c, 4) == "1/4 +1 ?2"
    # two executed ops claiming one file op: neither is counted as it
    twice = summarize([ExecutedOp("a1", "Conv", True, ("a",)), ExecutedOp("a2", "Conv", False, ("a",))],
                      "test", file)
    assert (twice["int8_of_quantized"], twice["unmatched"]) == (0, 2)


def test_tensorrt_layers_match_by_name_parts_and_onnx_metadata():
    file = _file(["c0", "c1", "c2"], ["c3"])

    def layer(name, fmt, metadata=""):
        return {"Name": name, "ParameterType": "Convolution", "LayerType": "CaskConvolution",
                "Metadata": metadata, "Inputs": [{"Format/Datatype": fmt}]}
    c = census_from_inspector({"Layers": [
        layer("w0 + QuantizeLinear_3 + c0 + a0.act", "Int8"),
        layer("fused_1", "Int8", "[ONNX Layer: c1]\x1f[ONNX Layer: a1.act]"),
        layer("c2", "Row major linear FP32"),
        layer("c3 + a3.act", "Int8"),
        {"Name": "{ForeignNode[cat...]}", "LayerType": "Myelin"}], "Bindings": []}, file)
    assert (c["int8_of_quantized"], c["float_of_quantized"], c["int8_added_by_engine"]) == (2, 1, 1)
    assert c["added_by_engine_ops"] == ["c3"] and c["unmatched"] == 0
    assert census_from_inspector({"Layers": [layer("c0", "Int8")], "Bindings": []}).get(
        "int8_of_quantized") is None  # no file given: the census as before


def test_an_older_census_reads_as_before():
    assert ratio_text({"int8_compute_ops": 18, "compute_ops": 59}, 42) == "18/42"
    assert ratio_text(None, 42) == "-"


def test_the_recipe_matrix_cell_shows_the_split():
    from harness.recipes import cell_texts

    base = {"ran": True, "status": "pass", "map50_95": 75.04, "delta_map50_95": 0.0,
            "quantized_in_file": 42, "latency_median_ms": 12.3, "int8_ran": 18}
    split = {**base, "int8_of_quantized": 9, "int8_added_by_engine": 9}
    assert "9/42 +9" in cell_texts({"cells": {"ort-cpu": split}}, "ort-cpu")[0]
    assert "18/42" in cell_texts({"cells": {"ort-cpu": base}}, "ort-cpu")[0]  # an older result
