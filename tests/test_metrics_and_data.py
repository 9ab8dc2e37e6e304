import json

import numpy as np
import pytest
from builders import coco_folder, gt_detections

from harness.data import COCO80_TO_91, Dataset, category_ids_for
from harness.errors import QParityError
from harness.metrics import evaluate


@pytest.fixture
def coco(tmp_path):
    return coco_folder(tmp_path / "coco", n=8, nc=3)


def load(root, **kw):
    return Dataset.load(root / "val2017", root / "annotations" / "instances_val2017.json", **kw)


def test_ground_truth_fed_back_scores_100(coco):
    ds = load(coco)
    m = evaluate(ds.coco_json, gt_detections(ds), ds.image_ids)
    assert m["map50_95"] == pytest.approx(100.0) and m["map50"] == pytest.approx(100.0)
    assert m["images"] == 8 and m["detections"] == len(ds.coco_json["annotations"])


def test_a_known_shift_lowers_map(coco):
    ds = load(coco)
    exact = evaluate(ds.coco_json, gt_detections(ds), ds.image_ids)["map50_95"]
    shifted = evaluate(ds.coco_json, gt_detections(ds, shift_px=6.0), ds.image_ids)["map50_95"]
    assert shifted < exact - 5


def test_no_detections_scores_zero(coco):
    ds = load(coco)
    assert evaluate(ds.coco_json, np.zeros((0, 7)), ds.image_ids)["map50_95"] == 0.0


def test_limit_scores_only_the_evaluated_images(coco):
    ds = load(coco, limit=3)
    assert len(ds.files) == 3 and ds.manifest()["limit"] == 3
    dets = gt_detections(ds)
    dets = dets[np.isin(dets[:, 0], ds.image_ids)]
    assert evaluate(ds.coco_json, dets, ds.image_ids)["map50_95"] == pytest.approx(100.0)


def test_class_mapping_coco80_and_custom():
    coco80 = [{"id": i} for i in reversed(COCO80_TO_91)]
    assert category_ids_for(coco80) == COCO80_TO_91
    assert category_ids_for([{"id": 9}, {"id": 2}, {"id": 5}]) == [2, 5, 9]


def test_model_class_count_must_match(coco):
    with pytest.raises(QParityError, match="predicts 80 classes.*3 categories"):
        load(coco).check_num_classes(80, "m.onnx")


def test_images_sorted_and_manifest_stable(coco):
    a, b = load(coco).manifest(), load(coco).manifest()
    assert a == b and a["images_evaluated"] == 8
    assert [f.name for f in load(coco).files] == sorted(f.name for f in load(coco).files)


def test_image_not_in_annotations(coco):
    (coco / "val2017" / "000000000099.jpg").write_bytes(b"x")
    with pytest.raises(QParityError, match="not in the annotations.*000000000099.jpg"):
        load(coco)


def test_annotated_image_missing_from_folder(coco):
    (coco / "val2017" / "000000000002.jpg").unlink()
    with pytest.raises(QParityError, match="missing from.*000000000002.jpg"):
        load(coco)


def test_unreadable_image_names_the_file(coco):
    (coco / "val2017" / "000000000003.jpg").write_bytes(b"not a jpeg")
    ds = load(coco)
    with pytest.raises(QParityError, match="000000000003.jpg: image cannot be decoded"):
        ds.read_image(2)


def test_image_size_must_match_annotations(coco):
    ann = coco / "annotations" / "instances_val2017.json"
    d = json.loads(ann.read_text())
    d["images"][0]["width"] += 1
    ann.write_text(json.dumps(d))
    with pytest.raises(QParityError, match="000000000001.jpg: image is .* annotations do not match"):
        load(coco).read_image(0)


def test_bad_annotation_file(coco):
    ann = coco / "annotations" / "instances_val2017.json"
    ann.write_text("{broken")
    with pytest.raises(QParityError, match="instances_val2017.json: not a readable JSON"):
        load(coco)
    ann.write_text(json.dumps({"images": []}))
    with pytest.raises(QParityError, match="not COCO format"):
        load(coco)
