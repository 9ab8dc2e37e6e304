"""Shared fixtures: the embedded demo's model and data, quantized once per test session."""

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
