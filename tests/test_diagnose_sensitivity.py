"""`qparity sensitivity`: blocks, ranking on a model with one planted fragile block, and the
exclude list `qparity ptq --exclude-from` reads."""

import json

import numpy as np
import onnx
import pytest
from builders import coco_folder, yolo_like
from onnx import TensorProto, helper, numpy_helper

import harness.cli as cli
from harness.data import Dataset
from harness.diagnose.sensitivity import find_blocks
from harness.engines.ort_cpu import OrtCpuEngine
from harness.evaluate import run_dataset
from harness.lists import write_lists
from harness.protocol import locked_protocol


def path_named(n_modules=9):
    """A chain of exporter-style modules: /model.i/conv/Conv -> /model.i/act/Relu, with a
    two-conv module /model.4/m.0/Conv, /model.4/m.1/Conv in the middle."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "images"
    for i in range(n_modules):
        convs = ["m.0", "m.1"] if i == 4 else ["conv"]
        for sub in convs:
            w = f"w{i}{sub}"
            inits.append(numpy_helper.from_array(rng.standard_normal((3, 3, 1, 1)).astype(np.float32), w))
            nodes.append(helper.make_node("Conv", [x, w], [f"c{i}{sub}"], name=f"/model.{i}/{sub}/Conv"))
            x = f"c{i}{sub}"
        nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=f"/model.{i}/act/Relu"))
        x = f"r{i}"
    g = helper.make_graph(nodes, "p", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_blocks_from_exporter_paths():
    blocks, depth = find_blocks(path_named())
    assert depth == 1 and [b.name for b in blocks] == [f"/model.{i}/" for i in range(9)]
    assert blocks[4].compute == ["/model.4/m.0/Conv", "/model.4/m.1/Conv"]
    assert blocks[0].nodes == ["/model.0/conv/Conv", "/model.0/act/Relu"]
    blocks, depth = find_blocks(path_named(), depth=2)
    assert depth == 2 and "/model.4/m.1/" in [b.name for b in blocks]


def test_blocks_per_conv_without_paths(tmp_path):
    blocks, depth = find_blocks(onnx.load(str(yolo_like(tmp_path / "m.onnx"))))
    assert depth is None
    assert [(b.name, b.nodes) for b in blocks] == [
        ("b1", ["b1", "b1.relu"]), ("b2", ["b2", "b2.relu"]), ("b3", ["b3", "b3.relu"]),
        ("det_s8", ["det_s8"]), ("det_s16", ["det_s16"])]  # the decode tail is never a block


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """yolo_like with one fragile block: b1's channel 0 is dead (always 0) and b2 reads it with
    weight 50. In fp32 that changes nothing; with per-channel int8 weights every b2 output
    channel's scale becomes 50/127, which rounds b2's real weights (~0.1) to zero.
    Ground truth = the fp32 model's own 5 best boxes per image, so fp32 scores ~96 mAP50."""
    root = tmp_path_factory.mktemp("sens")
    data = coco_folder(root / "coco", n=24)
    lists = write_lists(data, root / "lists")
    m = onnx.load(str(yolo_like(root / "fp32.onnx")))
    inits = {i.name: i for i in m.graph.initializer}

    def edit(name, fn):
        a = numpy_helper.to_array(inits[name]).copy()
        fn(a)
        inits[name].CopyFrom(numpy_helper.from_array(a, name))
    edit("b1.w", lambda a: a.__setitem__(0, 0))
    edit("b1.b", lambda a: a.__setitem__(0, 0))
    edit("b2.w", lambda a: a.__setitem__((slice(None), 0), 50.0))
    model = root / "planted.onnx"
    onnx.save(m, str(model))
    ds = Dataset.load(data / "val2017", data / "annotations" / "instances_val2017.json")
    eng = OrtCpuEngine()
    eng.load(model)
    det = run_dataset(eng.run, ds, locked_protocol(), "ort-cpu").detections
    coco = json.loads(ds.annotations.read_text())
    coco["annotations"] = []
    for iid in ds.image_ids:
        best = det[det[:, 0] == iid]
        for r in best[np.argsort(-best[:, 5], kind="stable")][:5]:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": int(iid),
                                        "category_id": int(r[6]), "bbox": [float(v) for v in r[1:5]],
                                        "area": float(r[3] * r[4]), "iscrowd": 0})
    ann = root / "pseudo.json"
    ann.write_text(json.dumps(coco))
    return root, model, data, lists["calib"], ann


@pytest.mark.parametrize("mode", ["exclude-one", "only-one"])
def test_sensitivity_ranks_the_planted_block_first_and_ptq_reads_it(planted, mode, monkeypatch, capsys):
    root, model, data, calib, ann = planted
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("harness.diagnose",))
    sens = root / f"sens-{mode}.json"
    assert cli.main(["sensitivity", "--model", str(model), "--calib", str(calib), "--data", str(data),
                     "--annotations", str(ann), "--limit", "12", "--mode", mode, "--metric", "map50",
                     "--target-drop", "20", "--threads", "1", "--out", str(sens)]) == 0
    r = json.loads(sens.read_text())
    assert r["fp32"] > 90 and r["int8_drop"] > 20  # the planted block costs a lot
    assert [e["block"] for e in r["ranking"]][0] == "b2" and len(r["ranking"]) == 5
    top, second = r["ranking"][0]["score"], r["ranking"][1]["score"]
    assert top > 10 and top > 5 * max(second, 0.5)
    assert r["proposal"]["reached"] and r["exclude_blocks"] == ["b2"]
    assert r["exclude"] == ["b2", "b2.relu"] and r["proposal"]["drop"] <= 20
    assert [s["k"] for s in r["proposal"]["steps"]] == [0, 1]
    assert "keep float" in capsys.readouterr().out
    # the ptq command reads the proposal: b2 stays float, the rest is quantized
    out = root / f"ptq-{mode}" / "model-int8.onnx"
    assert cli.main(["ptq", "--model", str(model), "--calib", str(calib), "--data", str(data),
                     "--exclude-from", str(sens), "--out", str(out)]) == 0
    convs = {n.name: n for n in onnx.load(str(out)).graph.node if n.op_type == "Conv"}
    assert convs["b2"].input[1] == "b2.w"  # the float initializer, no DequantizeLinear
    assert all(convs[c].input[1].endswith("_DequantizeLinear_Output") for c in ("b1", "b3", "det_s8"))


def test_sensitivity_refuses_a_quantized_model(planted, tmp_path, monkeypatch, capsys):
    root, model, data, calib, ann = planted
    from harness.lists import read_list
    from harness.ptq import quantize

    q = tmp_path / "q.onnx"
    quantize(model, read_list(calib, data), q)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("harness.diagnose",))
    assert cli.main(["sensitivity", "--model", str(q), "--calib", str(calib), "--data", str(data),
                     "--out", str(tmp_path / "s.json")]) == 2
    assert "already quantized" in capsys.readouterr().err
