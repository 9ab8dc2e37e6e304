"""Tests for the demo's synthetic COCO data generator (bench/demo/make_data.py)."""
from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "bench" / "demo"))
import make_data  # noqa: E402

N = 120  # enough images for the coverage checks, small enough to be fast
SPLIT = "val2017"


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_a")
    ann = make_data.generate(root, n_images=N, seed=0, split=SPLIT)
    return root, ann, json.loads(ann.read_text())


def test_layout(data):
    root, ann, d = data
    assert ann == root / "annotations" / f"instances_{SPLIT}.json"
    files = sorted(p.name for p in (root / SPLIT).iterdir())
    assert files == [f"{i:012d}.jpg" for i in range(1, N + 1)]
    assert [im["file_name"] for im in d["images"]] == files


def test_deterministic(data, tmp_path):
    root, _, _ = data
    make_data.generate(tmp_path, n_images=N, seed=0, split=SPLIT)
    assert _tree_digest(root) == _tree_digest(tmp_path)


def test_seed_changes_output(data, tmp_path):
    root, _, _ = data
    make_data.generate(tmp_path, n_images=3, seed=1, split=SPLIT)
    a = (root / SPLIT / "000000000001.jpg").read_bytes()
    b = (tmp_path / SPLIT / "000000000001.jpg").read_bytes()
    assert a != b


def test_coco_valid(data):
    import cv2
    from pycocotools.coco import COCO

    root, ann, d = data
    coco = COCO(str(ann))
    ids = [im["id"] for im in d["images"]]
    assert len(ids) == len(set(ids)) == N
    ann_ids = [a["id"] for a in d["annotations"]]
    assert len(ann_ids) == len(set(ann_ids))
    cat_ids = {c["id"] for c in d["categories"]}
    assert sorted(cat_ids) != list(range(1, len(cat_ids) + 1))  # deliberately non-contiguous
    for c in d["categories"]:
        assert {"id", "name", "supercategory"} <= c.keys()
    by_id = {im["id"]: im for im in d["images"]}
    for im in d["images"][:10]:  # recorded size matches the JPEG
        h, w = cv2.imread(str(root / SPLIT / im["file_name"])).shape[:2]
        assert (im["width"], im["height"]) == (w, h)
    for a in d["annotations"]:
        assert a["iscrowd"] == 0
        assert a["category_id"] in cat_ids
        assert a["image_id"] in by_id
        x, y, w, h = a["bbox"]
        im = by_id[a["image_id"]]
        assert w > 0 and h > 0 and a["area"] > 0
        assert x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
    # pycocotools' result loading (used by COCOeval) works against it
    a0 = d["annotations"][0]
    res = coco.loadRes([{"image_id": a0["image_id"], "category_id": a0["category_id"],
                         "bbox": a0["bbox"], "score": 0.9}])
    assert len(res.getAnnIds()) == 1


def test_coverage(data):
    _, _, d = data
    anns = d["annotations"]
    assert len({a["category_id"] for a in anns}) >= 5
    areas = [a["area"] for a in anns]
    assert any(a < 32 ** 2 for a in areas)
    assert any(32 ** 2 <= a < 96 ** 2 for a in areas)
    assert any(a >= 96 ** 2 for a in areas)
    per_img = Counter(a["image_id"] for a in anns)
    assert any(im["id"] not in per_img for im in d["images"])  # an empty image
    assert max(per_img.values()) >= 15  # a crowded image
    ratios = [im["width"] / im["height"] for im in d["images"]]
    assert min(ratios) < 0.75 and max(ratios) > 1.33  # portrait and landscape
    assert len({round(r, 1) for r in ratios}) >= 5
    sizes = {(im["width"], im["height"]) for im in d["images"]}
    assert len(sizes) >= 10
