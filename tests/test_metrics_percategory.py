"""The per-category pycocotools run gives exactly the statistics of one joint pycocotools run,
and the per-class AP50-95 it records is pycocotools' own, per category."""

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from harness.metrics import coco_eval, coco_from_dict, evaluate, per_class_ap


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


def per_category_summaries(coco_json, dets, image_ids):
    """pycocotools' own `summarize` of a joint COCOeval restricted to one category, per
    category id (-1 where it cannot define one): the figure per-class AP must be."""
    out = {}
    for cat in [c["id"] for c in coco_json["categories"]]:
        gt = COCO()
        gt.dataset = copy.deepcopy(coco_json)
        with contextlib.redirect_stdout(io.StringIO()):
            gt.createIndex()
            ev = COCOeval(gt, gt.loadRes(np.asarray(dets, np.float64)), "bbox")
            ev.params.imgIds, ev.params.catIds = list(image_ids), [cat]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        out[cat] = ev.stats[0]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_class_ap_comes_from_the_evaluation_itself(seed):
    coco, dets = crafted(seed)
    ids = [im["id"] for im in coco["images"]]
    for images in (ids, ids[:17]):  # the whole set and a --limit subset
        m = evaluate(coco, dets, images)
        got = m["per_class_ap50_95"]
        name = {c["id"]: c["name"] for c in coco["categories"]}
        # the independent computation the HTML report used (a second evaluation), by name
        assert got == {name[c]: v for c, v in per_class_ap(coco, dets, images).items()}
        assert list(got) == ["c1", "c2", "c3", "c5", "c7", "c9"]  # category id order
        assert got["c9"] is None  # false positives only, no ground truth: undefined, not 0
        # and pycocotools' own summarize of each category alone, as stored (points, 4 places)
        for cat, ap in per_category_summaries(coco, dets, images).items():
            assert got[name[cat]] == (None if ap < 0 else round(float(ap) * 100, 4))
        # the overall mAP is the mean of the classes with ground truth; stored values are
        # rounded to 4 places each, so their mean is within 1e-4 of the stored overall figure
        present = [v for v in got.values() if v is not None]
        assert abs(sum(present) / len(present) - m["map50_95"]) <= 1e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overall_map_is_the_mean_of_per_class_means_up_to_float_rounding(seed):
    """Before rounding: summarize averages every valid entry of precision[:, :, :, all, 100]
    at once; a category with ground truth fills its whole [IoU, recall] slice, so that is the
    mean of the per-category means. Mathematically equal; in floating point the two orders of
    summation agree to the last bit or two (seed 1 differs by one unit in the last place)."""
    coco, dets = crafted(seed)
    ids = [im["id"] for im in coco["images"]]
    with contextlib.redirect_stdout(io.StringIO()):
        ev = coco_eval(coco_from_dict(coco), dets, ids)
        ev.summarize()
    p = ev.eval["precision"][:, :, :, 0, -1]
    means = [p[:, :, k].mean() for k in range(p.shape[2]) if (p[:, :, k] > -1).all()]
    assert all((p[:, :, k] == -1).all() or (p[:, :, k] > -1).all() for k in range(p.shape[2]))
    assert len(means) == 5  # c9 has no ground truth
    assert float(np.mean(means)) == pytest.approx(float(ev.stats[0]), rel=1e-14, abs=0)


def test_per_class_ap_of_an_engine_that_found_nothing():
    """No detection: every class with ground truth scores 0 (pycocotools' own answer), the
    class without ground truth stays undefined."""
    coco, _ = crafted(0)
    m = evaluate(coco, np.zeros((0, 7)), [im["id"] for im in coco["images"]])
    assert m["map50_95"] == 0.0
    assert m["per_class_ap50_95"] == {"c1": 0.0, "c2": 0.0, "c3": 0.0, "c5": 0.0, "c7": 0.0,
                                      "c9": None}


def test_class_keys_keep_every_class_apart():
    from harness.metrics import class_keys

    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cat"},
            {"id": 4}]
    assert class_keys(cats) == ["cat #1", "dog", "cat #3", "4"]
