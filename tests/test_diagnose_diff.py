"""`qparity diff`: detection matching, counts against the detection files, pictures, errors."""

import json

import cv2
import numpy as np
import pytest
from builders import coco_folder, yolo_like

import harness.cli as cli
from harness.diagnose.diff import FLOOR, diff, match_image
from harness.errors import QParityError
from harness.ptq import quantize


@pytest.fixture
def diag_cli(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("harness.diagnose",))
    return cli.main


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real run folders: the int8 yolo_like on ort-cpu and qdq-ref; the fp32 one on ort-cpu;
    the int8 one on 4 images only (a different image list)."""
    root = tmp_path_factory.mktemp("diff")
    data = coco_folder(root / "coco", n=8)
    fp32 = yolo_like(root / "fp32.onnx")
    int8 = root / "q" / "model-int8.onnx"
    quantize(fp32, sorted((data / "val2017").glob("*.jpg"))[:4], int8)
    common = ["--data", str(data), "--runs", "5", "--warmup", "1", "--threads", "1"]
    assert cli.main(["run", "--model", str(int8), "--engines", "ort-cpu,qdq-ref",
                     "--out", str(root / "int8"), *common]) == 0
    assert cli.main(["run", "--model", str(fp32), "--out", str(root / "fp32"), *common]) == 0
    assert cli.main(["run", "--model", str(int8), "--out", str(root / "four"), "--limit", "4",
                     *common]) == 0
    return root


def rows(*boxes):
    """(image, cls, score, x, y, w, h) -> COCO rows (image, x, y, w, h, score, category)."""
    return np.array([[i, x, y, w, h, s, c] for i, c, s, x, y, w, h in boxes], np.float64)


def test_matching_classifies_hand_made_boxes():
    b = rows((1, 1, .90, 10, 10, 50, 50),    # B1 = A1: matched
             (1, 1, .80, 100, 10, 50, 50),   # B2 ~ A2 shifted (IoU ~0.7): moved
             (1, 2, .70, 10, 100, 50, 50),   # B3 = A3 box, score .70 -> .40: moved
             (1, 1, .60, 200, 200, 40, 40),  # no partner: missing
             (1, 2, .30, 300, 10, 30, 30),   # A6 same box at .18 (slid under the floor): moved
             (1, 1, .20, 300, 300, 30, 30),  # both under the floor: ignored
             (1, 1, .90, 400, 400, 50, 50))  # A9 same box, other class: missing + extra
    a = rows((1, 1, .88, 10, 10, 50, 50),
             (1, 1, .80, 110, 10, 50, 50),
             (1, 2, .40, 10, 100, 50, 50),
             (1, 3, .50, 200, 10, 40, 40),   # extra
             (1, 2, .18, 300, 10, 30, 30),
             (1, 1, .15, 300, 300, 30, 30),
             (1, 2, .90, 400, 400, 50, 50),
             (1, 1, .10, 200, 200, 40, 40))  # under half the floor: never a partner
    d = match_image(1, a, b)
    assert d.counts == {"matched": 1, "moved": 3, "missing": 2, "extra": 2}
    assert (d.b_count, d.a_count) == (6, 5)
    assert d.paired() == {"engine_paired": 3, "against_paired": 4}
    assert d.disagreement == 7
    same = match_image(1, b, b)
    assert same.counts == {"matched": 6, "moved": 0, "missing": 0, "extra": 0}


def by_image(det, floor=FLOOR):
    out = {}
    for r in det[det[:, 5] >= floor]:
        out[int(r[0])] = out.get(int(r[0]), 0) + 1
    return out


def test_counts_agree_with_the_detection_files(runs):
    s = diff(runs / "int8", "qdq-ref", pictures=False)
    assert s["against"] == "ort-cpu"  # the golden, from eval_report.json
    a = by_image(np.load(runs / "int8/detections/qdq-ref.npz")["detections"])
    b = by_image(np.load(runs / "int8/detections/ort-cpu.npz")["detections"])
    assert s["images"] == 8 and len(s["per_image"]) == 8
    for e in s["per_image"]:
        assert e["engine_boxes"] == a.get(e["image_id"], 0)
        assert e["against_boxes"] == b.get(e["image_id"], 0)
        assert e["against_boxes"] == e["against_paired"] + e["missing"]
        assert e["engine_boxes"] == e["engine_paired"] + e["extra"]
        assert e["matched"] + e["moved"] >= max(e["engine_paired"], e["against_paired"])
    assert s["boxes"] == {"engine": sum(a.values()), "against": sum(b.values())}
    assert sum(e["moved"] for e in s["per_image"]) == s["totals"]["moved"]


def test_self_diff_matches_everything(runs):
    s = diff(runs / "int8", "ort-cpu", "ort-cpu")
    n = sum(by_image(np.load(runs / "int8/detections/ort-cpu.npz")["detections"]).values())
    assert n > 0 and s["totals"] == {"matched": n, "moved": 0, "missing": 0, "extra": 0}
    assert s["images_differing"] == 0 and s["top"] == []


def test_int8_against_fp32_pictures_table_and_json(runs, diag_cli, capsys):
    code = diag_cli(["diff", str(runs / "int8"), "--engine", "ort-cpu", "--against", "ort-cpu",
                     "--against-run", str(runs / "fp32"), "--top", "3"])
    assert code == 0
    out = runs / "int8" / "diff_ort-cpu_vs_fp32-ort-cpu"
    s = json.loads((out / "summary.json").read_text())
    assert s["images_differing"] > 0 and 0 < len(s["top"]) <= 3
    ranks = [r["disagreement"] for r in s["top"]]
    assert ranks == sorted(ranks, reverse=True)
    assert ranks[0] == max(e["moved"] + e["missing"] + e["extra"] for e in s["per_image"])
    for r in s["top"]:
        img = cv2.imread(str(out / r["picture"]))
        assert img is not None and img.shape[1] > 2 * 200  # two panels side by side
        listed = {k: sum(d["status"] == k for d in r["differences"]) for k in ("moved", "missing", "extra")}
        assert listed == {k: r[k] for k in listed}
        assert set(r["ap50_95"]) == {"engine", "against"}
    text = capsys.readouterr().out
    assert "diff: A = ort-cpu (int8) vs B = ort-cpu (fp32)" in text and "moved" in text


def test_errors_are_one_line(runs, diag_cli, capsys):
    assert diag_cli(["diff", str(runs / "int8"), "--engine", "openvino"]) == 2
    assert "no result for engine 'openvino'" in capsys.readouterr().err
    with pytest.raises(QParityError, match="different images"):
        diff(runs / "int8", "ort-cpu", "ort-cpu", against_run=runs / "four")
    with pytest.raises(QParityError, match="does not exist"):
        diff(runs / "nothing", "ort-cpu")


def test_a_file_that_is_not_a_result_is_refused_in_one_line(runs, tmp_path):
    """Results are read through the EngineResult record and checked as the collector checks
    them: another engine's file, or a field of the wrong type, is never compared."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "int8", run)
    r = json.loads((run / "qdq-ref.json").read_text())
    (run / "qdq-ref.json").write_text(json.dumps({**r, "engine": "ort-cpu"}))
    with pytest.raises(QParityError, match=r"qdq-ref\.json: not a valid result file: names "
                                           r"engine 'ort-cpu'"):
        diff(run, "qdq-ref", "ort-cpu", pictures=False)
    (run / "qdq-ref.json").write_text(json.dumps({**r, "metrics": {**r["metrics"], "map50": "high"}}))
    with pytest.raises(QParityError, match=r"not a valid result file: metrics\.map50"):
        diff(run, "ort-cpu", "qdq-ref", pictures=False)
    (run / "qdq-ref.json").write_text(json.dumps(r))
    assert diff(run, "qdq-ref", "ort-cpu", pictures=False)["images"] == 8
