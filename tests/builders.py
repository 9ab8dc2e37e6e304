"""Small real artefacts the tests build: ONNX detectors and COCO-format data sets."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_detector(path: Path, nc: int = 3, size: int = 320, seed: int = 0,
                  in_shape: list | None = None) -> Path:
    """A YOLO-contract ONNX detector: [1,3,S,S] -> [1, N, 5+nc], sigmoid-ed, boxes in pixels.

    Conv(k=32, s=32) gives one prediction per 32x32 cell; the tail scales xywh to pixels. Its
    weights are random: it detects nothing useful, but it is a real graph every engine runs.
    """
    rng = np.random.default_rng(seed)
    c = 5 + nc
    g = size // 32
    w = numpy_helper.from_array((rng.standard_normal((c, 3, 32, 32)) * 0.02).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(c).astype(np.float32) * 0.5, "b")
    shape1 = numpy_helper.from_array(np.array([1, c, g * g], np.int64), "shape1")
    scale = numpy_helper.from_array(
        np.array([size] * 4 + [1.0] * (1 + nc), np.float32).reshape(1, 1, c), "scale")
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["conv"], kernel_shape=[32, 32], strides=[32, 32]),
        helper.make_node("Reshape", ["conv", "shape1"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["tr"], perm=[0, 2, 1]),
        helper.make_node("Sigmoid", ["tr"], ["sig"]),
        helper.make_node("Mul", ["sig", "scale"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, in_shape or [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, g * g, c])],
        [w, b, shape1, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def coco_folder(root: Path, n: int = 6, nc: int = 3, seed: int = 0) -> Path:
    """COCO layout (val2017/*.jpg + annotations/instances_val2017.json) with rectangles."""
    rng = np.random.default_rng(seed)
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, anns = [], []
    for i in range(n):
        h, w = int(rng.integers(200, 480)), int(rng.integers(200, 480))
        img = np.full((h, w, 3), 90, np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            bw, bh = int(rng.integers(20, w // 2)), int(rng.integers(20, h // 2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            cat = int(rng.integers(0, nc))
            img[y:y + bh, x:x + bw] = (60 * cat, 200, 255 - 60 * cat)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat + 1,
                         "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
        name = f"{i + 1:012d}.jpg"
        cv2.imwrite(str(root / "val2017" / name), img)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
    cats = [{"id": k + 1, "name": f"class{k}", "supercategory": "x"} for k in range(nc)]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root
