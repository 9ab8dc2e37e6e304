"""The latency protocol's timed call, the engines' measurement hooks, and the threaded pass."""

from __future__ import annotations

import numpy as np
import pytest

from builders import coco_folder, tiny_detector
from harness.data import Dataset
from harness.engines import EngineConfig, engine_class
from harness.evaluate import prefetch_workers, run_dataset, to_coco_rows
from harness.latency import measure
from harness.postprocess import decode
from harness.protocol import locked_protocol


def test_measure_stages_each_input_and_keeps_engine_timings():
    inputs = [np.full((1, 3, 4, 4), i, np.float32) for i in range(3)]
    seen, ids = [], set()

    def run(x):
        seen.append(float(x[0, 0, 0, 0]))
        ids.add(id(x))

    own = iter(range(100, 1000))
    stats = measure(run, inputs, warmup=2, runs=7, engine_ms=lambda: float(next(own)))
    # cycled in order, through one reused buffer (never the caller's arrays)
    assert seen == [0, 1, 0, 1, 2, 0, 1, 2, 0]
    assert len(ids) == 1 and not any(id(x) in ids for x in inputs)
    assert stats["n"] == 7 and len(stats["samples_ms"]) == 7
    assert stats["engine_reported"]["n"] == 7
    assert stats["engine_reported"]["min"] == 100.0 and stats["engine_reported"]["max"] == 106.0


def test_measure_without_engine_timings_has_no_engine_section():
    stats = measure(lambda x: None, [np.zeros(3, np.float32)], warmup=0, runs=3,
                    engine_ms=lambda: None)
    assert "engine_reported" not in stats


@pytest.mark.parametrize("name", ["ort-cpu", "openvino"])
def test_infer_is_the_same_inference_as_run(tmp_path, name):
    cls = engine_class(name)
    if cls.probe():
        pytest.skip(cls.probe())
    model = tiny_detector(tmp_path / "m.onnx", nc=3)
    eng = cls(EngineConfig(threads=1))
    eng.load(model)
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 320, 320)).astype(np.float32)
    ref = eng.run(x).copy()
    assert eng.infer(x) is None
    np.testing.assert_array_equal(eng.run(x), ref)
    lat = eng.reported_latency_ms()
    if name == "openvino":
        assert lat is not None and lat > 0  # OpenVINO's own request latency
    assert "one " in cls.timed  # every engine says what one sample covers
    eng.close()


def test_ort_spinning_off_for_the_pass_and_as_configured_for_latency(tmp_path):
    model = tiny_detector(tmp_path / "m.onnx", nc=3)
    eng = engine_class("ort-cpu")(EngineConfig(threads=2))
    eng.load(model)
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 320, 320)).astype(np.float32)
    on = eng.run(x)
    assert eng.set_spinning(False) == "session.intra_op.allow_spinning=0"
    assert eng.spinning is False
    np.testing.assert_array_equal(eng.run(x), on)  # spinning never changes the numbers
    assert eng.set_spinning(True) == "session.intra_op.allow_spinning=1"
    # --engine-opt allow_spinning=0 keeps it off in the latency protocol too
    off = engine_class("ort-cpu")(EngineConfig(threads=2, options={"allow_spinning": "0"}))
    off.load(model)
    assert off.set_spinning(True) == "session.intra_op.allow_spinning=0"
    assert off.describe()["settings"]["intra_op_allow_spinning"] == 0


def test_threaded_pass_gives_the_serial_detections_in_order(tmp_path):
    data_dir = coco_folder(tmp_path / "data", n=9, nc=3)
    data = Dataset.load(data_dir / "val2017", data_dir / "annotations" / "instances_val2017.json")
    p = locked_protocol()
    rng = np.random.default_rng(2)
    outputs = {}

    def run(x):  # a fake engine: a different random output per image
        key = x.tobytes()[:4096]
        if key not in outputs:
            pred = rng.uniform(0, 1, (1, 300, 8)).astype(np.float32)
            pred[..., :2] *= 320
            pred[..., 2:4] *= 80
            outputs[key] = pred
        return outputs[key]

    out = run_dataset(run, data, p, "fake", engine_threads=1, max_pending=2)
    from harness.evaluate import prepare
    want = []
    for i in range(len(data.files)):
        prep = prepare(data, p, i)
        dets = decode(run(prep.x)[0], p.conf_thres, p.iou_thres, p.max_nms, p.max_det)
        want.append(to_coco_rows(dets, prep.info, data.image_ids[i], data.category_ids))
    np.testing.assert_array_equal(out.detections, np.concatenate(want))
    assert out.timing_s["wall_over_inference"] > 0


def test_prefetch_uses_the_cores_the_engine_leaves():
    from harness.engines.base import visible_cpus

    n = visible_cpus()
    assert prefetch_workers(n) == 1  # the engine takes every core: one reader still
    assert prefetch_workers(None) == 2
    assert 1 <= prefetch_workers(1) <= 2


def test_report_says_what_each_latency_covers():
    from harness.report import latency_notes

    rep = {"schema": 1, "created": "", "run_id": None, "golden": "ort-cpu",
           "tolerance_map50_95": 0.5, "verdict": "error", "exit_code": 2, "engines": {
               "ort-cpu": {"status": "pass", "latency_ms": {"median": 3.0, "p95": 3.1,
                                                            "timed": "one InferenceSession.run"}},
               "openvino": {"status": "pass", "latency_ms": {
                   "median": 3.1, "p95": 3.2, "timed": "one infer request",
                   "engine_reported": {"median": 2.95, "p95": 3.0}}},
               "tensorrt": {"status": "unavailable", "latency_ms": None}}}
    assert latency_notes(rep) == [
        "latency ort-cpu: one InferenceSession.run",
        "latency openvino: one infer request (engine's own median 2.950 ms)"]


def test_staging_buffer_is_page_aligned():
    from harness.latency import aligned_empty_like

    for shape in [(1, 3, 320, 320), (7,), (2, 5)]:
        x = np.ones(shape, np.float32)
        b = aligned_empty_like(x)
        assert b.shape == x.shape and b.dtype == x.dtype and b.flags["C_CONTIGUOUS"]
        assert b.ctypes.data % 4096 == 0
        b[...] = x  # writable, the whole extent
        np.testing.assert_array_equal(b, x)
