"""Shared fixtures: the embedded demo's model and data, quantized once per test session; a
calibration set for the small two-scale detector of tests/builders.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.demo import DEMO_MODEL, load_generator
from harness.lists import read_list, write_lists
from harness.ptq import quantize


@pytest.fixture(scope="session")
def demo_assets(tmp_path_factory) -> tuple[Path, Path]:
    """(model_dir with model-int8.onnx + onnx_int8_md5.txt, COCO-layout data dir): the demo
    detector quantized with the portable recipe on a small generated demo set."""
    root = tmp_path_factory.mktemp("demo_assets")
    data = root / "data"
    load_generator().generate(data, n_images=24, seed=0, split="val2017")
    lists = write_lists(data, root / "lists")
    model_dir = root / "models"
    calib = read_list(lists["calib"], data) + read_list(lists["val"], data)[1:6]
    quantize(DEMO_MODEL, calib, model_dir / "model-int8.onnx")
    return model_dir, data


@pytest.fixture(scope="session")
def yolo_calibration(tmp_path_factory) -> tuple[Path, dict[str, Path], list[Path], Path]:
    """(COCO folder of 20 synthetic images, its lists as write_lists made them, the calibration
    images, builders.yolo_like's float model): what `qparity ptq` needs, on a small model.
    Shared by the session: quantize into your own folder."""
    from builders import coco_folder, yolo_like

    root = tmp_path_factory.mktemp("yolo_calibration")
    data = coco_folder(root / "coco", n=20)
    lists = write_lists(data, root / "lists")
    return data, lists, read_list(lists["calib"], data), yolo_like(root / "fp32.onnx")
