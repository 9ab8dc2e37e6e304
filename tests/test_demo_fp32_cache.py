"""The demo's fp32 reference is cached by what it depends on, and only when it succeeded."""

from pathlib import Path

from harness import demo
from harness.engines import EngineConfig
from harness.protocol import locked_protocol
from harness.runner import RunRequest


def make_req(tmp_path: Path, out: str, **proto) -> tuple[RunRequest, Path]:
    (tmp_path / "ann.json").write_text("{}")
    manifest = tmp_path / "manifest_val.sha256"
    if not manifest.exists():
        manifest.write_text("abc  val2017/1.jpg\n")
    p = locked_protocol().with_overrides(**proto) if proto else locked_protocol()
    return RunRequest("ort-cpu", demo.DEMO_MODEL, tmp_path, tmp_path / "ann.json", tmp_path / out, p,
                      None, EngineConfig(threads=1)), manifest


def test_fp32_reference_runs_once_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("QPARITY_CACHE", str(tmp_path / "cache"))
    calls = []

    def fake_run(req):
        calls.append(req.out)
        return {"status": "ok", "metrics": {"map50_95": 50.0}}

    monkeypatch.setattr(demo, "run_isolated", fake_run)
    req, man = make_req(tmp_path, "a")
    assert demo.fp32_reference(req, man)["metrics"]["map50_95"] == 50.0
    again = demo.fp32_reference(make_req(tmp_path, "b")[0], man)
    assert len(calls) == 1 and "cached_from" in again
    assert (tmp_path / "b" / "ort-cpu.json").is_file()  # the run folder still holds the result
    # another protocol, or other images, is another reference
    demo.fp32_reference(make_req(tmp_path, "c", iou_thres=0.5)[0], man)
    man.write_text("def  val2017/1.jpg\n")
    demo.fp32_reference(make_req(tmp_path, "d")[0], man)
    assert len(calls) == 3


def test_failed_fp32_reference_is_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("QPARITY_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(demo, "run_isolated", lambda req: calls.append(1) or {"status": "error"})
    req, man = make_req(tmp_path, "a")
    demo.fp32_reference(req, man)
    demo.fp32_reference(req, man)
    assert len(calls) == 2
