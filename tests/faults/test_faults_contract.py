"""One exit-code contract: 0 pass, 1 a gate failure and nothing else, 2 any error, as one line
naming the file and the problem; --debug / QPARITY_DEBUG shows the traceback; user strings in
console text print as they are."""

import os
import resource
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import env, qparity, read
from builders import coco_folder


def test_empty_engine_list(run, tmp_path):
    line = run(tmp_path / "o", "").one_line()  # one case in a real process, the others in this one
    assert "--engines is empty" in line
    assert not (tmp_path / "o").exists()  # nothing was created for a run that never started


def test_engine_named_twice(run_here, tmp_path):
    line = run_here(tmp_path / "o", "ort-cpu,ort-cpu").one_line()
    assert "--engines names ort-cpu more than once" in line


def test_out_is_a_file(run, tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("mine\n")
    line = run(f).one_line()
    assert str(f) in line and "is a file, not a folder" in line
    assert f.read_text() == "mine\n"


def test_out_cannot_be_created(run, tmp_path):
    (tmp_path / "file").write_text("x")
    line = run(tmp_path / "file" / "sub").one_line()
    assert "file/sub" in line and "cannot create the results folder" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
def test_out_not_writable(run, tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        line = run(out).one_line()
    finally:
        out.chmod(0o700)
    assert "not writable" in line and list(out.iterdir()) == []


def test_disk_full_while_writing_the_report(run, tmp_path):
    """Writes past a size limit fail like a full disk (EFBIG instead of ENOSPC): one line, exit
    2, and the result files already on disk are intact (writes are atomic)."""
    assert run(tmp_path).code == 0
    before = (tmp_path / "ort-cpu.json").read_bytes()
    (tmp_path / "eval_report.json").unlink()

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

    p = subprocess.run([sys.executable, "-m", "harness.cli", "collect", str(tmp_path)],
                       capture_output=True, text=True, env=env(), preexec_fn=small_files, timeout=120)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert lines[-1].startswith("qparity: error:") and "File too large" in lines[-1]
    assert (tmp_path / "ort-cpu.json").read_bytes() == before
    assert not (tmp_path / "eval_report.json").exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".eval_report")]


def test_brackets_in_paths_print_as_they_are(run, tmp_path):
    """Console text is rich markup; a path with [..] must neither vanish nor break it."""
    data = coco_folder(tmp_path / "coco[red]", n=3)
    out = tmp_path / "out[bold]"
    p = run(out, data=data)
    assert p.code == 0, p.stderr
    assert f"report: {out / 'eval_report.json'}" in " ".join(p.stderr.split())
    line = run(tmp_path / "o", model=tmp_path / "m[1].onnx").one_line()
    assert "m[1].onnx: model file does not exist" in line


def test_markup_in_a_reason_prints_as_it_is(run, assets, tmp_path):
    """A reason naming a path `d[/]x` (folder `d[`, sub-folder `]x`): to rich a closing tag with
    nothing open, which raised MarkupError while printing the table's reasons."""
    data = coco_folder(tmp_path / "d[" / "]x", n=3)
    img = data / "val2017" / "000000000001.jpg"
    img.write_bytes(img.read_bytes()[:200])
    p = run(tmp_path / "o", data=data)
    assert p.code == 2 and "Traceback" not in p.stderr + p.stdout
    assert f"ort-cpu: {img}: image" in " ".join(p.stdout.split())
    model = tmp_path / "m[" / "]x" / "model.onnx"  # the check-model table's title names it
    model.parent.mkdir(parents=True)
    shutil.copy(assets[0], model)
    p = run(tmp_path / "o2", model=model)
    assert p.code == 0, p.stderr + p.stdout


def test_malformed_extra_engines(run, tmp_path):
    line = run(tmp_path / "o", QPARITY_EXTRA_ENGINES="nonsense").one_line()
    assert "QPARITY_EXTRA_ENGINES entry 'nonsense' is not name=module:Class" in line
    assert "QPARITY_EXTRA_ENGINES" in qparity("engines", QPARITY_EXTRA_ENGINES="x=y").one_line()


def test_plugin_cannot_replace_a_builtin(run_here, tmp_path):
    line = run_here(tmp_path / "o", QPARITY_EXTRA_ENGINES="ort-cpu=fault_engines:NanEngine").one_line()
    assert "would replace the built-in engine 'ort-cpu'" in line


def test_plugin_that_does_not_import(run_here, tmp_path):
    line = run_here(tmp_path / "o", "ghost", QPARITY_EXTRA_ENGINES="ghost=no_such_module:X").one_line()
    assert "engine 'ghost' from QPARITY_EXTRA_ENGINES cannot be loaded" in line


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(run, tmp_path):
    plug = "broken=broken_plugin:Engine"
    line = run(tmp_path / "o", "broken", QPARITY_EXTRA_ENGINES=plug).one_line()
    assert "internal error: RuntimeError: plugin module is broken on purpose" in line
    assert "--debug" in line
    p = run(tmp_path / "o", "broken", "--debug", QPARITY_EXTRA_ENGINES=plug)
    assert p.code == 2 and "Traceback" in p.stderr and "broken_plugin.py" in p.stderr
    p = run(tmp_path / "o", "broken", QPARITY_EXTRA_ENGINES=plug, QPARITY_DEBUG="1")
    assert p.code == 2 and "Traceback" in p.stderr


def test_usage_error_is_one_line(tmp_path):
    line = qparity("run", "--out", tmp_path).one_line()
    assert "required: --model" in line and "qparity run --help" in line
    assert "invalid choice" in qparity("nosuchcommand").one_line()


@pytest.mark.parametrize("option,value,message", [
    ("--threads", "-3", "--threads must be at least 1, got -3"),
    ("--threads", "0", "--threads must be at least 1, got 0"),
    ("--runs", "0", "--runs must be at least 1, got 0"),
    ("--runs", "1000000000", "--runs must be at most 100000"),
    ("--warmup", "-1", "--warmup must be at least 0, got -1"),
    ("--limit", "0", "--limit must be at least 1, got 0"),
    ("--engine-timeout", "0", "--engine-timeout must be more than 0"),
    ("--engine-timeout", "nan", "--engine-timeout must be a finite number"),
    ("--threads", "many", "argument --threads: invalid int value: 'many'"),
])
def test_numeric_options_are_range_checked(run_here, tmp_path, option, value, message):
    assert message in run_here(tmp_path / "o", "ort-cpu", option, value).one_line()
    assert not (tmp_path / "o").exists()


def test_bad_environment_numbers(run_here, tmp_path):
    assert "QPARITY_THREADS must be a positive integer" in run_here(
        tmp_path / "o", QPARITY_THREADS="-3").one_line()
    assert "QPARITY_ENGINE_TIMEOUT must be a positive number" in run_here(
        tmp_path / "o", QPARITY_ENGINE_TIMEOUT="soon", QPARITY_THREADS="").one_line()


def test_threads_capped_at_visible_cpus(run, tmp_path):
    cpus = len(os.sched_getaffinity(0))
    p = run(tmp_path, "ort-cpu", "--threads", "99999")
    assert p.code == 0, p.stderr
    assert f"--threads 99999 is more than the {cpus} CPU(s)" in " ".join(p.stderr.split())
    settings = read(tmp_path / "ort-cpu.json")["engine_info"]["settings"]
    assert settings["intra_op_num_threads"] == cpus


def test_gate_failure_is_exit_1_and_nothing_else(tmp_path):
    """The only path to exit 1: a valid, comparable result outside the tolerance."""
    from harness.fileio import write_json_atomic
    from test_faults_collector import result

    write_json_atomic(tmp_path / "ort-cpu.json", result("ort-cpu", 30.0))
    write_json_atomic(tmp_path / "openvino.json", result("openvino", 29.0))
    p = qparity("collect", tmp_path)
    assert p.code == 1 and read(tmp_path / "eval_report.json")["verdict"] == "fail"
