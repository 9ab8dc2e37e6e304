"""One request across the process boundary: the engine child receives the whole RunRequest as a
record, so every protocol override and engine setting reaches it (issue 13)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from harness.engines import EngineConfig
from harness.errors import QParityError
from harness.protocol import locked_protocol
from harness.runner import REQUEST_SCHEMA, RunRequest, run_isolated

TESTS = Path(__file__).parent
# Every field a run may override, each away from its locked value.
OVERRIDES = {"conf_thres": 0.3, "iou_thres": 0.5, "max_det": 50, "max_nms": 2000, "warmup": 1,
             "runs": 2, "pad_color": 100, "multi_label": False, "class_agnostic": True,
             "tolerance_map50_95": 0.7}


def _request(demo_assets, out: Path) -> RunRequest:
    model_dir, data = demo_assets
    proto = locked_protocol().with_overrides(**OVERRIDES)
    cfg = EngineConfig(threads=1, options={"A_KEY": "1", "OTHER": "x=y"},
                       cache_dir=out.parent / "cache")
    return RunRequest("echoconfig", model_dir / "model-int8.onnx", data / "val2017",
                      data / "annotations" / "instances_val2017.json", out, proto, limit=3,
                      config=cfg, run_id="run-42", timeout_s=600.0)


def test_request_round_trips_through_json(demo_assets, tmp_path):
    req = _request(demo_assets, tmp_path / "out")
    back = RunRequest.from_json(req.to_json())
    assert back == req
    assert back.protocol.overrides == req.protocol.overrides and not back.protocol.is_baseline


def test_a_foreign_request_is_refused_with_its_schema(tmp_path):
    doc = {"schema": "qparity.run-request/0"}
    with pytest.raises(QParityError, match="run-request/0.*" + REQUEST_SCHEMA.replace(".", r"\.")):
        RunRequest.from_json(json.dumps(doc), tmp_path / "r.json")
    with pytest.raises(QParityError, match="incomplete"):
        RunRequest.from_json(json.dumps({"schema": REQUEST_SCHEMA}))


def test_every_override_and_setting_reaches_the_child(demo_assets, tmp_path, monkeypatch):
    monkeypatch.setenv("QPARITY_EXTRA_ENGINES", "echoconfig=plugin_engines:EchoConfigEngine")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "out"
    out.mkdir()
    req = _request(demo_assets, out)
    res = run_isolated(req)
    assert res["status"] == "ok", res["reason"]
    written = json.loads((out / "echoconfig.json").read_text())
    # the protocol the child ran under is the parent's, override for override
    assert written["protocol"] == req.protocol.to_dict()
    assert set(written["protocol"]["overrides"]) == set(OVERRIDES)
    assert written["run_id"] == "run-42" and written["data"]["images_evaluated"] == 3
    assert written["engine_info"]["config_seen"] == {
        "threads": 1, "options": {"A_KEY": "1", "OTHER": "x=y"}, "cache_dir": str(tmp_path / "cache")}
    assert written["latency_ms"]["n"] == 2  # runs=2 was used, not the locked 200
    # and it was applied, not only recorded: no detection under the overridden threshold
    det = np.load(out / written["detections_file"])["detections"]
    assert len(det) and det[:, 5].min() >= OVERRIDES["conf_thres"]
