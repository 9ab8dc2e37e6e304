"""--engine-opt per engine (issue 13): ENGINE:KEY=VALUE addressing, plain KEY=VALUE to every
engine of the run that takes it, and an option no engine takes is an error for every engine."""

from __future__ import annotations

import pytest

from harness.engines import engine_class
from harness.errors import QParityError
from harness.options import engine_options

ov = pytest.importorskip("openvino")


def test_addressed_options_go_to_their_engine_only():
    got = engine_options(["openvino:LP_TRANSFORMS_MODE=NO", "ort-cpu:allow_spinning=0"],
                         ["ort-cpu", "openvino"])
    assert got == {"ort-cpu": {"allow_spinning": "0"}, "openvino": {"LP_TRANSFORMS_MODE": "NO"}}


def test_a_plain_option_goes_to_every_engine_that_takes_it():
    got = engine_options(["allow_spinning=0", "LP_TRANSFORMS_MODE=NO"],
                         ["ort-cpu", "openvino", "qdq-ref"])
    # allow_spinning is ONNX Runtime's (qdq-ref is ONNX Runtime too); OpenVINO would refuse it
    assert got == {"ort-cpu": {"allow_spinning": "0"}, "qdq-ref": {"allow_spinning": "0"},
                   "openvino": {"LP_TRANSFORMS_MODE": "NO"}}
    # an addressed value wins over a plain one for its engine
    got = engine_options(["NUM_STREAMS=1", "openvino:NUM_STREAMS=2"], ["openvino"])
    assert got == {"openvino": {"NUM_STREAMS": "2"}}


@pytest.mark.parametrize("items,engines,message", [
    (["BOGUS=1"], ["ort-cpu", "openvino"], "no engine of this run takes it"),
    (["ort-cpu:LP_TRANSFORMS_MODE=NO"], ["ort-cpu"], "ort-cpu has no option 'LP_TRANSFORMS_MODE'"),
    (["openvino:BOGUS=1"], ["openvino"], "Unsupported property BOGUS"),
    (["openvino:NUM_STREAMS=abc"], ["openvino"], "OpenVINO's CPU plugin refuses it"),
    (["tensorrt:opt_level=9"], ["tensorrt"], "expected 0..5"),
    (["tensorrt:cudagraph=1"], ["tensorrt"], "unknown tensorrt option"),
    (["openvino:NUM_STREAMS=1"], ["ort-cpu"], "does not run"),
    (["allow_spinning"], ["ort-cpu"], "expects KEY=VALUE or ENGINE:KEY=VALUE"),
])
def test_what_no_engine_takes_is_an_error(items, engines, message):
    with pytest.raises(QParityError, match=message.replace("(", r"\(").replace(".", r"\.")):
        engine_options(items, engines)


def test_every_engine_checks_its_options():
    for name in ("ort-cpu", "qdq-ref", "openvino", "tensorrt"):
        with pytest.raises(QParityError, match=f"{name}:NOT_AN_OPTION=1"):
            engine_class(name).check_options({"NOT_AN_OPTION": "1"})


def test_the_run_command_refuses_an_unknown_option_before_running(tmp_path):
    from harness.cli import main

    code = main(["run", "--engines", "ort-cpu", "--model", str(tmp_path / "m.onnx"),
                 "--data", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--engine-opt", "LP_TRANSFORMS_MODE=NO"])
    assert code == 2 and not (tmp_path / "out").exists()
