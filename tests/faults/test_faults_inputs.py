"""Inputs that used to change mAP silently: bad annotations, truncated images, a float model
given as the INT8 one, external-data models, the md5 record of two models in one folder."""

import json
import shutil

import onnx
import pytest
from builders import coco_folder, tiny_detector
from conftest import read

ANN = ("annotations", "instances_val2017.json")


def broken_coco(tmp_path, edit):
    data = coco_folder(tmp_path / "coco", n=3)
    path = data.joinpath(*ANN)
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))
    return data, path


def drop(key, section="images"):
    def edit(coco):
        del coco[section][0][key]
    return edit


def set_box(value):
    def edit(coco):
        coco["annotations"][0]["bbox"] = value
    return edit


def duplicate(section, key, value):
    def edit(coco):
        coco[section][1][key] = coco[section][0][key] if value is None else value
    return edit


@pytest.mark.parametrize("edit,message", [
    (drop("file_name"), "1 image entry are invalid (first: id 1 has no 'file_name')"),
    (drop("height"), "has no positive integer 'height'"),
    (drop("bbox", "annotations"), "has a 'bbox' that is not 4 finite numbers"),
    (drop("area", "annotations"), "has no finite, non-negative 'area'"),
    (drop("iscrowd", "annotations"), "has no 'iscrowd' of 0 or 1"),
    (set_box([10, 10, -5, 20]), "a 'bbox' with a negative width or height"),
    (set_box([10, 10, float("nan"), 20]), "a 'bbox' that is not 4 finite numbers"),
    (set_box([10, 10, "5", 20]), "a 'bbox' that is not 4 finite numbers"),
    (duplicate("images", "id", None), "duplicate image id(s) (first: 1)"),
    (duplicate("images", "file_name", None), "duplicate image file name(s)"),
    (duplicate("annotations", "id", None), "duplicate annotation id(s)"),
    (duplicate("categories", "id", None), "duplicate category id(s)"),
    (lambda c: c.update(images={}), "'images' is not a list"),
    (lambda c: c["annotations"][0].update(category_id=99), "refers to unknown category id 99"),
])
def test_bad_annotations_are_one_line_naming_the_file(run_here, tmp_path, edit, message):
    data, path = broken_coco(tmp_path, edit)
    line = run_here(tmp_path / "o", data=data).one_line()
    assert str(path) in line and message in line
    assert not (tmp_path / "o").exists()  # refused before anything ran


def test_truncated_jpeg_is_an_error_naming_it(run, tmp_path):
    data = coco_folder(tmp_path / "coco", n=3)
    img = data / "val2017" / "000000000002.jpg"
    img.write_bytes(img.read_bytes()[: img.stat().st_size * 2 // 3])  # decodes, half grey
    p = run(tmp_path / "o", "ort-cpu", data=data)
    assert p.code == 2
    r = read(tmp_path / "o" / "ort-cpu.json")
    assert r["status"] == "error" and "000000000002.jpg: image is a truncated JPEG" in r["reason"]
    assert "metrics" not in r


def test_float_model_is_flagged_not_int8(run, tmp_path):
    p = run(tmp_path, "ort-cpu,openvino")
    assert p.code == 0  # flagged, not failed: the engines did agree
    rep = read(tmp_path / "eval_report.json")
    assert rep["warnings"] == [rep["engines"]["ort-cpu"]["model_note"]]
    assert rep["warnings"][0].startswith("not an INT8 QDQ model")
    assert "warning: not an INT8 QDQ model" in " ".join(p.stderr.split())
    rows = [ln for ln in p.stdout.splitlines() if "no QDQ" in ln and ("ort-cpu" in ln or "openvino" in ln)]
    assert len(rows) == 2  # and in the table, on each engine's row
    assert read(tmp_path / "ort-cpu.json")["model"]["is_int8_qdq"] is False


def test_int8_model_is_not_flagged(demo_assets, tmp_path):
    from harness.modelinfo import inspect_model

    info = inspect_model(demo_assets[0] / "model-int8.onnx", 320)
    assert info.is_int8_qdq and info.quantized_compute_ops > 0


def external(src, dest_dir, name="ext.onnx", data="ext.data"):
    dest_dir.mkdir(parents=True, exist_ok=True)
    onnx.save_model(onnx.load(str(src)), str(dest_dir / name), save_as_external_data=True,
                    all_tensors_to_one_file=True, location=data, size_threshold=1024)
    return dest_dir / name


def test_external_data_model_from_another_folder(run, assets, tmp_path):
    model = external(assets[0], tmp_path / "m")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = run(tmp_path / "o", "ort-cpu,openvino", model=model, cwd=elsewhere)
    assert p.code == 0, p.stderr
    info = read(tmp_path / "o" / "ort-cpu.json")["model"]
    (ext,) = info["external_data"]
    assert ext["location"] == "ext.data" and ext["size_bytes"] > 0
    # the data file is part of the model hash: other weights, another sha256
    from harness.modelinfo import inspect_model

    data = (tmp_path / "m" / "ext.data").read_bytes()
    (tmp_path / "m" / "ext.data").write_bytes(data[:-4] + b"\0\0\0\1")
    assert inspect_model(model, 320).sha256 != info["sha256"]


def test_external_data_file_missing(run_here, assets, tmp_path):
    model = external(assets[0], tmp_path / "m")
    (tmp_path / "m" / "ext.data").unlink()
    line = run_here(tmp_path / "o", model=model).one_line()
    assert str(model) in line and "external data file 'ext.data'" in line and "does not exist" in line


def test_md5_record_belongs_to_one_model_file(run, assets, tmp_path):
    """A second model quantized into the same folder must not make the first one 'mismatch'."""
    from harness.fileio import md5_file
    from harness.modelinfo import inspect_model

    d = tmp_path / "models"
    d.mkdir()
    a = shutil.copy(assets[0], d / "a.onnx")
    b = tiny_detector(d / "b.onnx", seed=1)
    (d / "onnx_int8_md5.txt").write_text(f"{md5_file(b)}  b.onnx\n")  # written for b only
    assert inspect_model(a, 320).md5_file_check == "absent"
    assert inspect_model(b, 320).md5_file_check == "ok"
    (d / "onnx_int8_md5.txt").write_text(f"{md5_file(a)}  a.onnx\n{md5_file(a)}  b.onnx\n")
    assert inspect_model(a, 320).md5_file_check == "ok"
    assert inspect_model(b, 320).md5_file_check == "mismatch"
    p = run(tmp_path / "o", model=b)
    assert p.code == 2 and "md5 differs" in read(tmp_path / "o" / "ort-cpu.json")["reason"]
