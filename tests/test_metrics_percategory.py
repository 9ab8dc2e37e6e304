"""The per-category pycocotools run gives exactly the statistics of one joint pycocotools run."""

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from harness.metrics import coco_eval, coco_from_dict, evaluate


def joint_stats(coco_json, dets, image_ids):
    """pycocotools exactly as its README runs it: one COCOeval over everything."""
    gt = COCO()
    gt.dataset = copy.deepcopy(coco_json)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(np.asarray(dets, np.float64)), "bbox")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def ours(coco_json, dets, image_ids):
    with contextlib.redirect_stdout(io.StringIO()):
        ev = coco_eval(coco_from_dict(coco_json), dets, image_ids)
        ev.summarize()
    return ev.stats


def crafted(seed):
    """Crowd boxes, empty images, a category with no ground truth, one with no detections,
    an image with 150 detections (above maxDets 100), tied scores, every size range."""
    rng = np.random.default_rng(seed)
    cats = [{"id": i, "name": f"c{i}"} for i in (1, 2, 3, 5, 7, 9)]
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(1, 41)]
    anns, dets, aid = [], [], 1
    for img in images:
        if img["id"] % 7 == 0:
            continue  # empty image: no ground truth
        for _ in range(rng.integers(1, 8)):
            w, h = rng.choice([8, 20, 60, 150]) * rng.uniform(0.7, 1.4, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            cat = int(rng.choice([1, 2, 3, 5, 7]))  # 9: never in ground truth
            crowd = int(rng.uniform() < 0.1)
            anns.append({"id": aid, "image_id": img["id"], "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": crowd})
            aid += 1
            for _ in range(rng.integers(0, 4)):
                j = rng.normal(0, 0.1 * min(w, h), 4)
                dets.append([img["id"], x + j[0], y + j[1], w + j[2], h + j[3],
                             round(rng.uniform(), 1), cat])  # rounded: many tied scores
        for _ in range(rng.integers(0, 5)):  # false positives, some in category 9
            dets.append([img["id"], *rng.uniform(0, 300, 2), *rng.uniform(5, 100, 2),
                         rng.uniform(), int(rng.choice([1, 9]))])
    for _ in range(150):  # beyond maxDets on one image
        dets.append([3, *rng.uniform(0, 300, 2), *rng.uniform(5, 100, 2), rng.uniform(), 1])
    coco = {"images": images, "annotations": anns, "categories": cats}
    return coco, np.array(dets, np.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_category_equals_joint_on_crafted_cases(seed):
    coco, dets = crafted(seed)
    ids = [im["id"] for im in coco["images"]]
    want = joint_stats(coco, dets, ids)
    got = ours(coco, dets, ids)
    np.testing.assert_array_equal(got, want)  # all 12 statistics, bit for bit
    # a subset of the images (a --limit run), and detections in a shuffled order
    sub = ids[:17]
    perm = np.random.default_rng(seed).permutation(len(dets))
    np.testing.assert_array_equal(ours(coco, dets[perm], sub), joint_stats(coco, dets[perm], sub))


def test_per_category_equals_joint_on_demo_data(tmp_path):
    from harness.demo import load_generator

    gen = load_generator()
    gen.generate(tmp_path, n_images=40, seed=3, split="val2017")
    import json
    coco = json.loads((tmp_path / "annotations" / "instances_val2017.json").read_text())
    rng = np.random.default_rng(0)
    rows = []
    for a in coco["annotations"]:  # noisy copies of the truth plus misses and false positives
        if rng.uniform() < 0.85:
            x, y, w, h = a["bbox"]
            j = rng.normal(0, 0.08 * max(1.0, min(w, h)), 4)
            rows.append([a["image_id"], x + j[0], y + j[1], w + j[2], h + j[3], rng.uniform(), a["category_id"]])
    for im in coco["images"]:
        for _ in range(3):
            rows.append([im["id"], *rng.uniform(0, 150, 2), *rng.uniform(4, 80, 2), rng.uniform(0, 0.3),
                         rng.choice([c["id"] for c in coco["categories"]])])
    dets = np.array(rows, np.float64)
    ids = [im["id"] for im in coco["images"]]
    np.testing.assert_array_equal(ours(coco, dets, ids), joint_stats(coco, dets, ids))


def test_evaluate_leaves_the_callers_annotations_untouched():
    coco, dets = crafted(0)
    before = copy.deepcopy(coco)
    evaluate(coco, dets, [im["id"] for im in coco["images"]])
    assert coco == before
