"""The history store, `qparity history` and its page, on real nightly results.

Five nightlies are built from real engine runs (see test_nightly.Lab): cpu-x86 runs the golden
ort-cpu and `sleepy` (ORT timed by a clock of its own that moves `sleep_ms` per inference, a
stand-in for a slower build: its latency is exactly what the test sets, whatever the load of
the machine), 1.0, 1.1, 0.9 and 1.0 ms on the first four nights and 2 ms on the fifth; intel runs
`sleepy` at 2 ms every night (one real run, appended five times). On the fifth night cpu-x86's
golden result is a copy of the real one with its mAP lowered by hand by 1.7 points (the golden
moving with the hardware cannot be made on one machine).
"""

from __future__ import annotations

import json
import re
import sqlite3
import statistics
from pathlib import Path

import pytest
from test_nightly import Lab, edited_copy, lab, qparity_main  # noqa: F401  (lab: fixture)

from harness.errors import QParityError
from harness.history.ingest import append_nightly, ingest_folder
from harness.history.store import HistoryStore
from harness.history.trend import TrendPolicy, analyse, analyse_series, news
from harness.nightly.judge import nightly

DATES = [f"2026-01-0{d}T02:17:00Z" for d in range(1, 6)]
SLEEPY_MS = ["1", "1.1", "0.9", "1", "2"]  # cpu-x86's sleepy per night: night 5 twice as slow


@pytest.fixture(scope="module")
def store(lab: Lab, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("nights")
    path = base / "history.sqlite"
    intel_sleepy = lab.run("sleepy", 1, sleep_ms="2")
    for night, date in enumerate(DATES, 1):
        d = base / f"night{night}"
        last = night == len(DATES)
        golden = edited_copy(lab.run("ort-cpu", 1), d / "edited", map50_95=-1.7) if last \
            else lab.run("ort-cpu", 1)
        sleepy = lab.run("sleepy", 1, sleep_ms=SLEEPY_MS[night - 1])
        plats = {"cpu-x86": lab.platform(d / "cpu-x86", golden, sleepy),
                 "intel": lab.platform(d / "intel", lab.run("ort-cpu", 2), intel_sleepy)}
        rep = nightly(plats, d / "out", ["cpu-x86", "intel"], "cpu-x86", run_id=f"n{night}",
                      date=date)
        append_nightly(path, rep, d / "out", f"n{night}", date)
    return path


def series(path: Path):
    with HistoryStore(path, create=False) as h:
        return analyse(h.rows())


def test_store_keeps_keys_metrics_and_raw_samples(store):
    with HistoryStore(store, create=False) as h:
        rows = h.rows()
        assert len(rows) == 5 * 4 and len(h.nightlies()) == 5
    r = next(r for r in rows if (r["platform"], r["engine"], r["run_id"]) == ("cpu-x86", "sleepy", "n5"))
    assert r["date"] == DATES[-1] and r["model_sha256"] and len(r["harness_commit"] or "x" * 40) == 40
    assert r["engine_library"] == "onnxruntime" and r["engine_version"]
    assert r["lat_n"] == 20 and r["samples_ms"] == [2.0] * 20 and r["lat_median"] == 2.0
    assert r["map50_95"] > 90 and r["host"]
    # gated against night 5's golden, which moved 1.7 points down: outside the tolerance
    assert r["status"] == "fail" and r["delta_map50_95"] == 1.7
    with sqlite3.connect(store) as db:  # plain SQL reads it too, raw samples included
        n, = db.execute("SELECT count(*) FROM results, json_each(results.samples_ms)").fetchone()
        assert n == 20 * 20


def test_same_run_appended_twice_is_replaced_not_doubled(store, lab, tmp_path):
    path = tmp_path / "h.sqlite"
    path.write_bytes(store.read_bytes())
    folder = lab.platform(tmp_path / "cpu", lab.run("ort-cpu", 1))
    for _ in range(2):
        ingest_folder(path, "cpu-x86", folder, run_id="n5", date=DATES[-1])
    with HistoryStore(path, create=False) as h:  # n5 on cpu-x86 was 2 engines, now 1
        assert len(h.rows("cpu-x86")) == 5 * 2 - 1
        assert [r["engine"] for r in h.rows("cpu-x86") if r["run_id"] == "n5"] == ["ort-cpu"]
        assert len(h.rows("intel")) == 5 * 2


def test_accuracy_change_and_latency_regression_are_news(store):
    trend = series(store)
    assert list(trend)[:2] == [("cpu-x86", "ort-cpu"), ("cpu-x86", "sleepy")]  # golden first
    found = {(n["platform"], n["engine"]): n for n in news(trend)}
    assert set(found) == {("cpu-x86", "ort-cpu"), ("cpu-x86", "sleepy")}
    acc = found[("cpu-x86", "ort-cpu")]
    assert acc["marks"] == ["accuracy-change"] and acc["golden"] and acc["accuracy_change"] == -1.7
    reg = found[("cpu-x86", "sleepy")]
    assert reg["marks"] == ["latency-regression"] and reg["latency_ratio"] == 2.0
    p = trend[("cpu-x86", "sleepy")][-1]
    before = [q.row["lat_median"] for q in trend[("cpu-x86", "sleepy")][:4]]
    assert before == [1.0, 1.1, 0.9, 1.0] and p.rolling_median == statistics.median(before) == 1.0
    assert p.row["lat_median"] == 2.0
    # intel's sleepy is as slow as cpu-x86's last run, but always was: judged only against itself
    assert all(not q.marks for q in trend[("intel", "sleepy")])
    # the golden's latency did not move (the same real result each night), and the sleepy
    # nights 1-4 stay within 10 % of the median before them
    assert all(q.regression is None for q in trend[("cpu-x86", "ort-cpu")])
    assert [q.regression for q in trend[("cpu-x86", "sleepy")]] == [None] * 4 + [2.0]
    assert trend[("cpu-x86", "sleepy")][3].rolling_median == 1.0  # night 4: median of 1.0, 1.1, 0.9


def test_policy_edges_on_real_rows(store):
    """Copies of one real row with the median set by hand: the threshold is strict, too little
    history judges nothing, a new machine or model file starts a new baseline."""
    with HistoryStore(store, create=False) as h:
        base = h.rows("intel", "sleepy")[0]
    pol = TrendPolicy(window=7, latency_threshold=0.10, min_history=3)

    def rows(*medians, **last):
        out = [dict(base, date=f"2026-02-{i + 1:02d}", lat_median=m) for i, m in enumerate(medians)]
        out[-1].update(last)
        return out

    assert analyse_series(rows(2, 2, 2, 2.2), pol)[-1].regression is None         # exactly +10 %
    assert analyse_series(rows(2, 2, 2, 2.21), pol)[-1].regression == pytest.approx(1.105)
    assert analyse_series(rows(2, 2, 3), pol)[-1].regression is None              # 2 runs before
    assert analyse_series(rows(2, 2, 2, 3, host="other"), pol)[-1].regression is None
    assert analyse_series(rows(2, 2, 2, 3, model_sha256="b"), pol)[-1].regression is None
    # rolling median of the last 7 only: an old slow period does not hide a new regression
    long = rows(9, 9, 9, 1, 1, 1, 1, 1, 1, 1, 1.5)
    assert analyse_series(long, pol)[-1].rolling_median == 1
    # mAP: any change for the same model and data, none across model files
    assert analyse_series(rows(2, 2, map50_95=base["map50_95"] - 0.01), pol)[-1].accuracy_change == -0.01
    assert analyse_series(rows(2, 2, map50_95=5.0, model_sha256="b"), pol)[-1].accuracy_change is None


def test_history_command_marks_the_news(store, monkeypatch, capsys, tmp_path):
    code = qparity_main(monkeypatch, "history", "--store", str(store), "--last", "5",
                        "--json", str(tmp_path / "h.json"))
    out = capsys.readouterr().out
    assert code == 0
    for text in ("cpu-x86 / ort-cpu (golden)", "cpu-x86 / sleepy", "intel / sleepy", "ACC -1.70",
                 "SLOWER x", "rolling median", "mAP50-95 -1.7 since 2026-01-04"):
        assert text in out, text
    assert out.count("ACC ") == 1
    assert len(re.findall(r"cpu-x86/sleepy 2026-01-05: latency median .* over the rolling median", out)) == 1
    assert "intel/sleepy 2026-01-05" not in out
    data = json.loads((tmp_path / "h.json").read_text())
    assert {(n["platform"], n["engine"]) for n in data["news"]} == {("cpu-x86", "ort-cpu"),
                                                                    ("cpu-x86", "sleepy")}
    assert data["policy"] == {"window": 7, "latency_threshold": 0.1, "min_history": 3}
    qparity_main(monkeypatch, "history", "--store", str(store), "--platform", "intel", "--last", "2")
    out = capsys.readouterr().out
    assert "intel / sleepy" in out and "cpu-x86" not in out


def test_history_page_is_self_contained_with_the_expected_series(store, monkeypatch, tmp_path):
    page = tmp_path / "history.html"
    assert qparity_main(monkeypatch, "history", "--store", str(store), "--html", str(page)) == 0
    text = page.read_text()
    assert len(text) > 3_000_000  # plotly.js itself is in the page
    assert not re.search(r"<script[^>]+src=", text)  # nothing fetched when opened
    # plotly writes each figure as JSON in the page ("/" as \u002f): read the strings back
    names = [json.loads(m) for m in re.findall(r'"name":("(?:[^"\\]|\\.)*")', text)]
    texts = {json.loads(m) for m in re.findall(r'"text":("(?:[^"\\]|\\.)*")', text)}
    for name in ("cpu-x86/sleepy median", "cpu-x86/sleepy P95", "cpu-x86/sleepy latency regression",
                 "cpu-x86/sleepy regression line", "intel/sleepy median", "intel/sleepy P95",
                 "cpu-x86/ort-cpu accuracy change", "cpu-x86/sleepy Δ golden",
                 "intel/sleepy Δ golden", "intel/ort-cpu golden Δ ref cpu-x86"):
        assert name in names, name
    # per series: its mAP trend line, its latest-run violin and its per-run boxes
    assert names.count("cpu-x86/sleepy") == names.count("intel/ort-cpu") == 3
    assert '"type":"violin"' in text and '"type":"box"' in text
    assert "tolerance ±0.5" in texts
    assert any(t.startswith("cpu-x86: latency distribution of the latest run") for t in texts)
    hovers = [h for m in re.findall(r'"text":(\[[^\]]*\])', text) for h in json.loads(m)]
    assert any(h.startswith("latency median") and "over the rolling median" in h for h in hovers)
    assert "mAP50-95 -1.7 since 2026-01-04 with nothing else recorded as changed" in hovers
    assert "Nightly verdicts" in text and ">n5<" in text
    from harness.palette import engine_colour  # ort-cpu's colour is the one report.html uses
    assert f'"color":"{engine_colour("ort-cpu")}"' in text


def test_an_engine_that_left_no_result_still_has_its_row(lab, tmp_path):
    folder = lab.platform(tmp_path / "cpu", lab.run("ort-cpu", 1),
                          meta={"platform": "cpu", "engines": ["ort-cpu", "openvino"]})
    rep = nightly({"cpu": folder}, tmp_path / "out", ["cpu"], "cpu", run_id="m1", date=DATES[0])
    path = tmp_path / "h.sqlite"
    append_nightly(path, rep, tmp_path / "out", "m1", DATES[0])
    with HistoryStore(path, create=False) as h:
        rows = {r["engine"]: r for r in h.rows()}
    assert rows["openvino"]["status"] == "missing" and "no result file" in rows["openvino"]["reason"]
    assert rows["openvino"]["model_sha256"] is None and rows["openvino"]["is_golden"] == 0
    assert rows["openvino"]["golden"] == "ort-cpu" and rows["openvino"]["protocol_overrides"] == {}
    assert rows["ort-cpu"]["status"] == "pass" and rows["ort-cpu"]["is_golden"] == 1


def test_result_row_reads_a_result_file_or_its_record_alike(lab):
    from harness.history.store import result_row
    from harness.records.result import EngineResult

    raw = json.loads(lab.run("ort-cpu", 1).read_text())
    row = result_row("r", DATES[0], "cpu", "ort-cpu", raw, None)
    assert row == result_row("r", DATES[0], "cpu", "ort-cpu", EngineResult.from_json(raw), None)
    assert row["samples_ms"] == json.dumps(raw["latency_ms"]["samples_ms"])
    assert row["lat_n"] == raw["latency_ms"]["n"] and isinstance(row["lat_n"], int)
    assert row["status"] == "ok" and row["golden"] == "ort-cpu" and row["delta_map50_95"] is None


def test_missing_or_foreign_store(tmp_path, monkeypatch):
    with pytest.raises(QParityError, match="no history store"):
        HistoryStore(tmp_path / "none.sqlite", create=False)
    bad = tmp_path / "bad.sqlite"
    bad.write_text("not sqlite at all" * 100)
    with pytest.raises(QParityError, match="not a readable history store"):
        HistoryStore(bad)
    assert qparity_main(monkeypatch, "history", "--store", str(tmp_path / "none.sqlite")) == 2
