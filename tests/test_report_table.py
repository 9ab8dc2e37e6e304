"""The terminal table: compact at 80 columns with nothing cut, wide when asked or when it fits,
a legend for what needs one, the engine settings away from their defaults (all of them in the
HTML page); the latency stability rule."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from harness.records.base import RecordError
from harness.records.report import EvalReport
from harness.records.result import LatencyStats
from harness.report import choose_table, engine_table, print_report
from harness.stability import SPREAD_THRESHOLD, annotate, is_stable, speedup_confidence, spread


def entry(status, m, delta, dref, median, p95, int8=18, in_file=59, settings=None, reason=""):
    return {"status": status, "reason": reason,
            "metrics": None if m is None else {"map50_95": m, "map50": 95.12, "map75": 80.34,
                                               "map_small": 60.5, "map_medium": 70.25,
                                               "map_large": 88.75},
            "delta_map50_95": delta, "delta_vs_qdq_ref": dref,
            "latency_ms": None if median is None else {"median": median, "p95": p95},
            "speedup_vs_golden": None,
            "census": None if int8 is None else {"int8_compute_ops": int8, "compute_ops": in_file},
            "quantized_in_file": in_file,
            "engine": {"settings": settings or {}}}


def annotated(rep):
    """`rep` with the latency stability the collector adds (stability.annotate, on the record)."""
    rec = EvalReport.from_json(rep)
    annotate(rec.engines, "ort-cpu")
    return rec.to_json(omit_absent=True)


def lat(median, p95):
    return LatencyStats(median=median, p95=p95)


def report_of(engines, **fields):
    """A valid eval_report.json (what the collector writes) around these engine entries: the
    table reads it through the EvalReport record, which refuses a partial one."""
    return {"schema": 1, "created": "2026-12-02T10:00:00+0000", "run_id": None,
            "golden": "ort-cpu", "tolerance_map50_95": 0.5, "verdict": "pass", "exit_code": 0,
            "protocol": {"baseline": True}, "engines": engines, **fields}


def report(noisy=False):
    engines = {
        "ort-cpu": entry("pass", 75.04, 0.0, -0.13, 123.456, 131.2,
                         settings={"intra_op_num_threads": 2, "graph_optimization_level": "ORT_ENABLE_ALL"}),
        "openvino": entry("fail", 49.21, -25.83, -25.96, 45.678, 99.1 if noisy else 47.0, 59,
                          settings={"requested": {"INFERENCE_NUM_THREADS": "2",
                                                  "LP_TRANSFORMS_MODE": "NO"}, "effective": {}},
                          reason="mAP50-95 -25.83 points from ort-cpu, tolerance 0.5"),
        "qdq-ref": entry("reference", 75.17, 0.13, None, 140.5, 150.0 if not noisy else 190.0, 0),
        "tensorrt": entry("unavailable", None, None, None, None, None, None,
                          reason="no NVIDIA driver; pip install 'qparity[tensorrt]'"),
    }
    for e in engines.values():
        if e["latency_ms"]:
            e["speedup_vs_golden"] = round(123.456 / e["latency_ms"]["median"], 3)
    rep = report_of(engines, verdict="error", exit_code=2, data={"images_evaluated": 300},
                    reference={"engine": "qdq-ref", "map50_95": 75.17, "golden_delta": 0.13,
                               "golden_drift": False})
    return annotated(rep)


def render(rep, width, wide=None):
    c = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    print_report(rep, c, wide=wide)
    return c.export_text()


def test_compact_table_fits_80_columns_with_nothing_cut():
    text = render(report(), 80)
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    for cell in ("ort-cpu (golden)", "openvino", "qdq-ref", "tensorrt", "unavailable",
                 "reference", "75.04", "-25.83", "-25.96", "123.5", "45.68", "2.70x", "18/59",
                 "59/59", "0/59"):
        assert cell in text, cell
    assert "mAP50" not in text.replace("mAP50-95", "")  # the compact form: no mAP50 column


def test_wide_form_when_forced_or_when_the_terminal_has_room():
    assert "…" not in render(report(), 80, wide=False)
    wide = render(report(), 200)
    for cell in ("mAP50", "mAP75", "95.12", "80.34", "60.50", "70.25", "88.75", "131.200", "P95",
                 "spread"):
        assert cell in wide, cell
    assert "…" not in wide
    c = Console(width=80, file=io.StringIO())
    assert not any(col.header == "mAP50" for col in choose_table(report(), c).columns)
    assert any(col.header == "mAP50" for col in engine_table(report(), wide=True).columns)


def test_legend_options_and_install_hints_are_printed_whole():
    text = render(report(), 80)
    assert "int8 ran: compute ops that really ran in int8" in text
    assert "speed-up: golden median / engine median" in text
    assert "LP_TRANSFORMS_MODE=NO" in text and "intra_op_num_threads=2" in text
    assert "pip install 'qparity[tensorrt]'" in text  # rich markup did not swallow [tensorrt]


def test_noisy_latency_replaces_a_speed_up_a_rerun_could_flip():
    rep = report(noisy=True)
    ov, ref = rep["engines"]["openvino"], rep["engines"]["qdq-ref"]
    assert ov["latency_ms"]["stable"] is False and ov["speedup_confidence"] == "indicative"
    assert ref["latency_ms"]["stable"] is False and ref["speedup_confidence"] == "noisy"
    text = render(rep, 80)
    assert "~2.70x" in text and "noisy" in text and "0.88x" not in text
    assert "a rerun able to flip" in text


def test_the_table_reads_the_report_through_its_record():
    rep = report()
    assert render(EvalReport.from_json(rep), 80) == render(rep, 80)
    # a report that is not one is refused where it is read, naming the field
    bad = {**rep, "engines": {**rep["engines"], "openvino": {**rep["engines"]["openvino"],
                                                             "status": "meh"}}}
    with pytest.raises(RecordError, match=r"engines\.openvino\.status"):
        render(bad, 80)


def test_emulated_rows_are_labelled_from_the_entry_environment():
    rep = report()
    em = {"spec": "x86-64-v2", "qemu_model": "Nehalem", "flags_seen": ["SSE41", "SSE42"],
          "label": "emulated Nehalem: accuracy only"}
    rep["engines"]["qdq-ref"]["env"] = {"cpu": {"model": "emulated Nehalem", "emulated": em}}
    text = render(rep, 200)
    row = next(line for line in text.splitlines() if line.lstrip().startswith("qdq-ref"))
    assert "[emulated Nehalem: accuracy only]" in row
    assert "emulated Nehalem (flags seen: SSE41, SSE42): accuracy only, no latency measured" in text
    assert "emulated" not in render(report(), 200)


@pytest.mark.parametrize("median,p95,stable", [(10, 10 * (1 + SPREAD_THRESHOLD), True),
                                               (10, 10 * (1 + SPREAD_THRESHOLD) + 0.01, False),
                                               (10, 10.4, True)])
def test_spread_threshold_edges(median, p95, stable):
    assert is_stable(lat(median, p95)) is stable


def test_speedup_confidence():
    calm, loud = lat(10, 10.5), lat(10, 14)
    assert speedup_confidence(1.1, calm, calm) == "stable"
    assert speedup_confidence(1.1, loud, calm) == "noisy"      # 1.1 within 1/1.47 .. 1.47
    # both medians may move, in opposite directions: the band is the product of the spreads
    # (a run under load: qdq-ref 1.55x with spreads 30 % and 45 %; 0.95x on a quiet machine)
    assert speedup_confidence(1.546, lat(59.51, 77.19), lat(92.02, 133.41)) == "noisy"
    assert speedup_confidence(6.06, lat(15.18, 21.81), lat(92.02, 133.41)) == "indicative"
    assert speedup_confidence(3.0, loud, calm) == "indicative"
    assert speedup_confidence(0.5, calm, loud) == "indicative"
    assert speedup_confidence(None, calm, calm) is None
    assert spread(None) is None and spread(lat(10, 12)) == 0.2


def test_html_page_renders_engines_that_did_not_run():
    from harness.report_html import render as render_html

    rep = report(noisy=True)
    page = render_html(rep, samples={}, aps={}, class_note="data not readable here")
    assert "unavailable" in page and "pip install &#x27;qparity[tensorrt]&#x27;" in page
    assert "Per-class AP not available: data not readable here" in page
    assert "No latency samples" in page and "noisy" in page


def test_compact_table_fits_the_worst_case_too():
    """Golden drift (the longest label), slow latencies, a wide speed-up, every status."""
    rep = report()
    rep["engines"]["ort-cpu"]["golden_drift"] = True
    rep["engines"]["ort-cpu"]["latency_ms"].update(median=1234.567, p95=1300.0)
    rep["engines"]["openvino"]["speedup_vs_golden"] = 27.03
    rep["engines"]["openvino"]["census"]["int8_compute_ops"] = 123
    rep["engines"]["openvino"]["quantized_in_file"] = 130
    text = render(annotated(rep), 80)
    assert "…" not in text
    assert max(len(line.rstrip()) for line in text.splitlines()) <= 80
    for cell in ("DRIFT", "1235", "27.03x", "123/130", "unavailable", "-25.96"):
        assert cell in text, cell


# ----------------------------------------------------------------------------- settings
def described(tmp_path, cls, options=None):
    """A report entry carrying what the real engine's describe() says after a real load."""
    from builders import tiny_detector

    from harness.engines.base import EngineConfig

    eng = cls(EngineConfig(options=dict(options or {})))
    eng.load(tiny_detector(tmp_path / "tiny.onnx", size=64))
    try:
        info = eng.describe()
    finally:
        eng.close()
    e = entry("pass", 75.0, 0.0, 0.0, 1.0, 1.1)
    e["engine"], e["latency_ms"]["timed"] = info, cls.timed
    return e


def settings_report(engines):
    rep = report_of(engines, data={"images_evaluated": 10})
    return annotated(rep)


@pytest.mark.skipif(__import__("harness.engines.openvino", fromlist=["x"]).OpenVinoEngine.probe()
                    is not None, reason="openvino not installed")
def test_the_caption_lists_only_settings_away_from_their_default(tmp_path):
    from harness.engines.openvino import OpenVinoEngine
    from harness.engines.ort_cpu import OrtCpuEngine
    from harness.engines.qdq_ref import QdqReferenceEngine
    from harness.report_html import render as render_html

    plain = {"ort-cpu": described(tmp_path, OrtCpuEngine), "openvino": described(tmp_path, OpenVinoEngine),
             "qdq-ref": described(tmp_path, QdqReferenceEngine)}
    text = render(settings_report(plain), 200)
    assert "not at their default" not in text and "PERFORMANCE_HINT" not in text
    assert "intra_op_num_threads" not in text and "ORT_DISABLE_ALL" not in text  # qdq-ref's own default
    for name, e in plain.items():  # what a latency sample covers is always there
        assert f"latency {name}: {e['latency_ms']['timed'][:40]}" in text.replace("\n", " ")
    changed = {**plain, "openvino": described(tmp_path, OpenVinoEngine, {"LP_TRANSFORMS_MODE": "NO"}),
               "ort-cpu": described(tmp_path, OrtCpuEngine, {"allow_spinning": "0"})}
    text = render(settings_report(changed), 200)
    assert "not at their default" in text
    assert "LP_TRANSFORMS_MODE=NO" in text and "intra_op_allow_spinning=0" in text
    assert "PERFORMANCE_HINT" not in text and "INFERENCE_NUM_THREADS" not in text
    # the HTML page keeps every setting, defaults included, and names the changed ones
    page = render_html(settings_report(changed), samples={}, aps={}, class_note="-")
    assert "PERFORMANCE_HINT=LATENCY" in page and "LP_TRANSFORMS_MODE=NO" in page
    assert "openvino not at default" in page and "graph_optimization_level=ORT_ENABLE_ALL" in page


def test_tensorrt_defaults_are_its_settings_module_defaults():
    """TensorRT's caption entry: only the builder/runtime settings an --engine-opt changed."""
    from harness.engines.trt.settings import BuildSettings, RuntimeSettings, parse_options
    from harness.report import changed_settings

    build, run = parse_options({"tf32": "1", "opt_level": "3"})
    info = {"settings": {"builder": build.to_dict(), "runtime": run.to_dict(), "engine_cache": {"x": 1}},
            "defaults": {"builder": BuildSettings().to_dict(), "runtime": RuntimeSettings().to_dict()}}
    assert changed_settings(info) == {"tf32": True}  # opt_level 3 is the default


@pytest.mark.skipif(__import__("harness.engines.openvino", fromlist=["x"]).OpenVinoEngine.probe()
                    is not None, reason="openvino not installed")
def test_a_real_run_with_an_engine_option_shows_it_and_only_it(tmp_path, monkeypatch):
    import json
    import subprocess
    import sys

    from builders import coco_folder, tiny_detector

    model, data = tiny_detector(tmp_path / "m.onnx"), coco_folder(tmp_path / "coco", n=2)
    monkeypatch.setenv("COLUMNS", "200")
    base = [sys.executable, "-m", "harness.cli", "run", "--model", str(model), "--data", str(data),
            "--engines", "ort-cpu,openvino", "--warmup", "1", "--runs", "3", "--threads", "1"]
    plain = subprocess.run([*base, "--out", str(tmp_path / "a")], capture_output=True, text=True,
                           timeout=600)
    opt = subprocess.run([*base, "--out", str(tmp_path / "b"), "--engine-opt",
                          "openvino:LP_TRANSFORMS_MODE=NO"], capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0 and opt.returncode == 0, plain.stderr + opt.stderr
    rep = json.loads((tmp_path / "b" / "eval_report.json").read_text())
    assert rep["engines"]["openvino"]["engine"]["settings"]["requested"]["LP_TRANSFORMS_MODE"] == "NO"
    assert "LP_TRANSFORMS_MODE=NO" in opt.stdout and "PERFORMANCE_HINT" not in opt.stdout
    assert "latency openvino:" in opt.stdout
    # --threads 1 is off the default on a machine with more CPUs, and then listed as such
    assert "not at their default" in plain.stdout or len(__import__("os").sched_getaffinity(0)) == 1
    assert "LP_TRANSFORMS_MODE" not in plain.stdout and "PERFORMANCE_HINT" not in plain.stdout


# ----------------------------------------------------------------------------- census split
def split_census(int8_q, float_q, added, quantized=42, unmatched_int8=0):
    """A census matched against the file (harness/census.py split_by_file's keys)."""
    return {"source": "test", "compute_ops": 59, "int8_compute_ops": int8_q + added + unmatched_int8,
            "float_compute_ops": 59 - int8_q - added - unmatched_int8, "float_ops": [],
            "quantized_in_file": quantized, "int8_of_quantized": int8_q,
            "float_of_quantized": float_q, "float_of_quantized_ops": ["/f4/cv1/conv/Conv"],
            "int8_added_by_engine": added, "added_by_engine_ops": ["/f4/out/conv/Conv"][:added],
            "float_of_float": 17 - added, "unmatched": unmatched_int8,
            "unmatched_int8": unmatched_int8, "unmatched_ops": ["x_token_9"][:unmatched_int8],
            "quantized_not_seen": quantized - int8_q - float_q}


def split_report(unmatched_int8=0):
    rep = report()
    e = rep["engines"]
    e["ort-cpu"]["census"] = split_census(9, 33, 9, unmatched_int8=unmatched_int8)
    e["openvino"]["census"] = split_census(42, 0, 0)
    e["qdq-ref"]["census"] = split_census(0, 42, 0)
    for v in e.values():
        v["quantized_in_file"] = 42
    return rep


def test_int8_ran_counts_the_files_ops_and_marks_what_the_engine_added():
    text = render(split_report(), 80)
    assert "…" not in text and max(len(line.rstrip()) for line in text.splitlines()) <= 80
    for cell in ("9/42 +9", "42/42", "0/42"):
        assert cell in text, cell
    assert "18/42" not in text  # the old figure mixed the file's ops with ORT's own
    flat = " ".join(text.split())
    assert "int8 ran: the file's quantized compute ops that ran in int8 / ops quantized" in flat
    assert "+N: N compute ops float in the file that the engine quantized itself" in flat
    assert "yellow: under half ran in int8" in flat  # 9 of 42
    assert "?N" not in flat


def test_unmatched_int8_ops_are_shown_and_never_make_a_row_mostly_float_on_a_guess():
    rep = split_report(unmatched_int8=14)
    text = render(rep, 80)
    assert "9/42 +9 ?14" in text and max(len(line.rstrip()) for line in text.splitlines()) <= 80
    assert "?N: N int8 ops the census could not match" in " ".join(text.split())
    from harness.report import mostly_float

    rec = EvalReport.from_json(rep)
    assert not mostly_float("ort-cpu", rec.engines["ort-cpu"])  # 9 + 14 unmatched >= 21
    assert mostly_float("ort-cpu", EvalReport.from_json(split_report()).engines["ort-cpu"])


def test_older_results_read_as_before_beside_new_ones():
    rep = split_report()
    rep["engines"]["openvino"]["census"] = {"int8_compute_ops": 42, "compute_ops": 59}
    flat = " ".join(render(rep, 80).split())
    assert "42/42" in flat and "9/42 +9" in flat
    assert "a result without the split (older) shows every int8 op it ran" in flat
    old = " ".join(render(report(), 80).split())  # no split anywhere: today's legend, cells
    assert "int8 ran: compute ops that really ran in int8 / ops quantized in the file" in old
    assert "18/59" in old and "+N" not in old


def test_report_html_census_table_shows_the_split():
    from harness.report_html import census_table

    rep = split_report()
    rep["engines"]["openvino"]["census"] = {"source": "old", "int8_compute_ops": 42, "compute_ops": 59,
                                            "float_compute_ops": 17, "float_ops": ["a", "b"]}
    html = census_table(EvalReport.from_json(rep))
    assert "float in the file, int8 as run (quantized by the engine)" in html
    row = html.split("<tr><td>ort-cpu</td>")[1].split("</tr>")[0]
    assert "<td>9 / 42</td>" in row and "9: /f4/out/conv/Conv" in row and "33: /f4/cv1/conv/Conv" in row
    old = html.split("<tr><td>openvino</td>")[1].split("</tr>")[0]
    assert "42 / 42 (every int8 op; recorded before the split)" in old and "a, b … and 15 more" in old
