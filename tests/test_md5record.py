"""One md5 record per model file: a second `ptq` into a folder leaves the first model runnable;
the SPEC's one-line onnx_int8_md5.txt of older versions is still read."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np

from harness.demo import DEMO_MODEL
from harness.fileio import md5_file
from harness.latency import measure
from harness.md5record import FOLDER_RECORD, check_record, file_record, write_record
from harness.modelinfo import inspect_model


def test_two_models_in_one_folder_keep_their_records(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    a.write_bytes(b"model a")
    b.write_bytes(b"model b")
    write_record(a, md5_file(a))
    write_record(b, md5_file(b))
    assert check_record(a, md5_file(a)) == check_record(b, md5_file(b)) == "ok"
    lines = (tmp_path / FOLDER_RECORD).read_text().splitlines()
    assert lines == [f"{md5_file(a)}  a.onnx", f"{md5_file(b)}  b.onnx"]
    assert file_record(a).read_text() == f"{md5_file(a)}  a.onnx\n"  # md5sum -c format
    write_record(a, md5_file(a))  # rewriting one replaces its line, never duplicates it
    assert len((tmp_path / FOLDER_RECORD).read_text().splitlines()) == 2
    a.write_bytes(b"changed")
    assert check_record(a, md5_file(a)) == "mismatch"
    assert check_record(b, md5_file(b)) == "ok"


def test_old_one_line_records_are_still_read(tmp_path):
    m = tmp_path / "model-int8.onnx"
    m.write_bytes(b"x")
    md5 = hashlib.md5(b"x").hexdigest()
    rec = tmp_path / FOLDER_RECORD
    rec.write_text(f"{md5}  model-int8.onnx\n")
    assert check_record(m, md5) == "ok"
    rec.write_text(f"{md5}\n")  # md5 alone: the single line is this folder's model
    assert check_record(m, md5) == "ok"
    rec.write_text("0" * 32 + "\n")
    assert check_record(m, md5) == "mismatch"
    rec.write_text(f"{'0' * 32}  other.onnx\n")  # another file's record says nothing of this one
    assert check_record(m, md5) == "absent"
    rec.unlink()
    assert check_record(m, md5) == "absent"


def test_second_ptq_into_the_same_folder_leaves_the_first_model_valid(demo_assets, tmp_path):
    from harness.ptq import quantize

    model_dir, data = demo_assets
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    first = folder / "model-int8.onnx"
    assert inspect_model(first, 320).md5_file_check == "ok"
    calib = sorted((data / "val2017").glob("*.jpg"))[:4]
    ticks = []
    quantize(DEMO_MODEL, calib, folder / "model-b.onnx", method="minmax",
             on_image=lambda: ticks.append(1))
    assert len(ticks) == len(calib)  # the calibration progress saw every image
    assert inspect_model(first, 320).md5_file_check == "ok"
    assert inspect_model(folder / "model-b.onnx", 320).md5_file_check == "ok"


def test_latency_progress_ticks_outside_the_timed_bracket():
    clock = iter(range(0, 10_000_000, 1_000_000))
    calls = []
    stats = measure(lambda x: calls.append("run"), [np.zeros(4, np.float32)], warmup=3, runs=5,
                    clock=lambda: next(clock), on_run=lambda: calls.append("tick"))
    assert calls == ["run", "tick"] * 8
    assert stats["samples_ms"] == [1.0] * 5  # the ticks took no clock readings


def test_sensitivity_bar_total_covers_every_proposal_run():
    """The bar's total includes the proposal's quantize-and-measure runs (it used to reach
    blocks/blocks and then sit there while they ran)."""
    import itertools

    from harness.diagnose.sensitivity import propose, proposal_bound

    class Bench:
        def __init__(self, ok):
            self.ok, self.n = ok, 0

        def quantized(self, exclude):
            self.n += 1
            return 10.0 if self.ok[len(exclude)] else 0.0

    for kmax in range(0, 10):
        ranking = [{"block": f"b{i}", "nodes": [f"n{i}"]} for i in range(kmax)]
        for ok in itertools.product([False, True], repeat=kmax + 1):
            b = Bench(ok)
            propose(b, ranking, 10.0, 10.0 if ok[0] else 0.0, 0.5, kmax)
            assert b.n <= proposal_bound(kmax), (kmax, ok)
