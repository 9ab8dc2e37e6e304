"""One run per results folder: a lock, a run id in every file, only one run's files gathered,
the previous run moved aside, Ctrl-C and hung engines leaving a result that says so."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import FAST, env, qparity, read

from harness.fileio import write_json_atomic
from harness.rundir import RunLock


def test_second_run_into_a_locked_folder_fails_at_once(run, tmp_path):
    with RunLock(tmp_path, "other-run"):
        t0 = time.monotonic()
        line = run(tmp_path).one_line()
        assert time.monotonic() - t0 < 60
    assert "another qparity run is writing into this folder" in line and "other-run" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == [".qparity.lock"]  # nothing touched


def test_run_id_in_every_file(run, tmp_path):
    assert run(tmp_path, "ort-cpu,openvino").code == 0
    run_id = read(tmp_path / "run.json")["run_id"]
    assert read(tmp_path / "run.json")["status"] == "finished"
    for name in ("ort-cpu.json", "openvino.json", "eval_report.json", "preflight.json"):
        assert read(tmp_path / name)["run_id"] == run_id, name
    for name in ("ort-cpu", "openvino"):
        assert str(np.load(tmp_path / "detections" / f"{name}.npz")["run_id"]) == run_id
    # the folder re-collected alone gives the same run's verdict
    again = qparity("collect", tmp_path)
    assert again.code == 0 and read(tmp_path / "eval_report.json")["run_id"] == run_id


def test_previous_run_moved_aside_before_the_next_starts(run, tmp_path):
    assert run(tmp_path, "ort-cpu,openvino").code == 0
    first = read(tmp_path / "run.json")["run_id"]
    (tmp_path / "notes.json").write_text('{"mine": true}')  # --out may hold the user's files
    p = run(tmp_path, "ort-cpu")
    assert p.code == 0 and "moved the previous run's" in p.stderr
    prev = tmp_path / "previous"
    assert read(prev / "eval_report.json")["run_id"] == first
    assert (prev / "openvino.json").is_file() and (prev / "detections" / "openvino.npz").is_file()
    assert not (tmp_path / "openvino.json").exists()  # no stale engine beside the new run
    assert read(tmp_path / "notes.json") == {"mine": True}
    rep = read(tmp_path / "eval_report.json")
    assert set(rep["engines"]) == {"ort-cpu"} and rep["run_id"] != first


def test_collector_gathers_one_run_and_says_what_it_skipped(run, tmp_path):
    """A result file of another run copied in (or left by a compose run) is not this run's."""
    assert run(tmp_path / "a", "ort-cpu,openvino").code == 0
    assert run(tmp_path / "b", "ort-cpu").code == 0
    shutil.copy2(tmp_path / "a" / "openvino.json", tmp_path / "b" / "openvino.json")
    p = qparity("collect", tmp_path / "b")
    rep = read(tmp_path / "b" / "eval_report.json")
    assert p.code == 0 and set(rep["engines"]) == {"ort-cpu"}
    (skipped,) = rep["skipped_files"]
    assert skipped["file"] == "openvino.json" and skipped["run_id"] == read(tmp_path / "a" / "run.json")["run_id"]
    assert "skipped openvino.json: from run" in " ".join(p.stderr.split())


def test_without_run_record_the_newest_run_is_gathered(tmp_path):
    from test_faults_collector import result

    old = result("openvino", 10.0, run_id="r1")
    old["started"] = old["finished"] = "2026-01-01T00:00:00+0000"
    write_json_atomic(tmp_path / "openvino.json", old)
    write_json_atomic(tmp_path / "ort-cpu.json", result("ort-cpu", 33.0, run_id="r2"))
    p = qparity("collect", tmp_path)
    rep = read(tmp_path / "eval_report.json")
    assert p.code == 0 and rep["run_id"] == "r2" and set(rep["engines"]) == {"ort-cpu"}
    assert rep["skipped_files"][0]["file"] == "openvino.json"
    # asked for explicitly, the older run is judged (and fails: its golden is not there)
    assert qparity("collect", tmp_path, "--run-id", "r1").code == 2


def wait_for(path, seconds=120):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_leaves_an_interrupted_result(assets, tmp_path, sig):
    """Ctrl-C (SIGINT to the foreground process), or SIGTERM (docker stop, a cancelled job)."""
    flag = tmp_path / "started"
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", "--model", str(assets[0]), "--data",
         str(assets[1]), "--engines", "ort-cpu,slow,openvino", "--out", str(out), *FAST],
        env=env(FAULT_STARTED=str(flag)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(flag)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "qparity: interrupted"
    r = read(out / "slow.json")
    assert r["status"] == "interrupted" and "interrupted" in r["reason"]
    assert read(out / "ort-cpu.json")["status"] == "ok"  # what was measured is kept
    assert not (out / "openvino.json").exists()  # the run stopped
    assert read(out / "run.json")["status"] == "interrupted"
    rep = read(out / "eval_report.json")
    assert rep["verdict"] == "error" and "was interrupted" in rep["errors"][0]
    slow = rep["engines"]["slow"]  # in the report an error (nightly, history read it so)
    assert slow["status"] == "error" and slow["reason"].startswith("interrupted")
    assert qparity("collect", out).code == 2  # and stays no verdict when collected again


def test_hung_engine_is_timed_out_with_its_process_group(run, tmp_path):
    pidfile = tmp_path / "pids"
    t0 = time.monotonic()
    p = run(tmp_path / "out", "ort-cpu,hang", "--engine-timeout", "8", FAULT_PIDFILE=str(pidfile))
    assert time.monotonic() - t0 < 120
    assert p.code == 2, p.stderr
    r = read(tmp_path / "out" / "hang.json")
    assert r["status"] == "error" and r["reason"].startswith("timed out after 8 s")
    child, helper = map(int, pidfile.read_text().split())
    for pid in (child, helper):  # the engine and the process it started are both gone
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), pid
    assert read(tmp_path / "out" / "eval_report.json")["engines"]["ort-cpu"]["status"] == "pass"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by init) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_run_engine_takes_the_lock_and_writes_its_run_id(assets, tmp_path):
    """`qparity run-engine` (one compose service) is one step of a run: it locks the folder for
    its engine and writes the run id it is given (--run-id, else QPARITY_RUN_ID)."""
    args = ("run-engine", "--engine", "ort-cpu", "--model", assets[0], "--data", assets[1],
            "--out", tmp_path, *FAST)
    assert qparity(*args, QPARITY_RUN_ID="compose-7").code == 0
    assert read(tmp_path / "ort-cpu.json")["run_id"] == "compose-7"
    with RunLock(tmp_path, "other"):
        line = qparity(*args, "--run-id", "x").one_line()
    assert "another qparity run is writing into this folder" in line
    assert read(tmp_path / "ort-cpu.json")["run_id"] == "compose-7"  # untouched


def test_run_that_never_finished_is_no_verdict(tmp_path):
    """run.json still says running, and its process is gone (killed -9, machine rebooted)."""
    from test_faults_collector import result

    from harness.rundir import write_run

    write_json_atomic(tmp_path / "ort-cpu.json", result("ort-cpu", 33.0, run_id="r9"))
    write_run(tmp_path, "r9", ["ort-cpu"], "running")
    rec = read(tmp_path / "run.json")
    rec["pid"] = 2 ** 22 + 12345  # above pid_max's default: no such process
    write_json_atomic(tmp_path / "run.json", rec)
    p = qparity("collect", tmp_path)
    rep = read(tmp_path / "eval_report.json")
    assert p.code == 2 and rep["verdict"] == "error"
    assert rep["errors"] == ["run r9 never finished (its process is gone)"]
    assert "error: run r9 never finished" in p.stderr
