"""What `repro`'s reduction and the folder it writes share: each engine's self-contained native
runner (the same source runs here and is written into repro.py), the disagreement measure in
quantization steps, and the reduced subgraph."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import QParityError

STEP_TOL = 1.0 + 1e-3

# ----------------------------------------------------------------------------- native runners
# Each engine's runner is one self-contained function using only that engine's own Python API.
# The same source is executed here (to reduce) and written into repro.py (to reproduce).
_ORT = '''
def {fn}(model_path, feeds, options):
    """{doc}"""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.{level}
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]
'''
RUNNERS: dict[str, str] = {
    "qdq-ref": _ORT.format(fn="run_qdq_ref", level="ORT_DISABLE_ALL",
                           doc="ONNX Runtime, graph optimizations off: each node by its ONNX "
                               "definition (the model's\n    own Q/DQ arithmetic, in float32)."),
    "ort-cpu": _ORT.format(fn="run_ort_cpu", level="ORT_ENABLE_ALL",
                           doc="ONNX Runtime on CPU, all graph optimizations (its int8 kernels)."),
    "openvino": '''
def run_openvino(model_path, feeds, options):
    """OpenVINO on CPU; f32 inference precision so that only the int8 path differs."""
    import openvino as ov
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", **options}
    compiled = core.compile_model(core.read_model(str(model_path)), "CPU", config)
    return compiled(feeds)[compiled.outputs[0]].copy()
''',
}
VERSION_OF = {"qdq-ref": "onnxruntime", "ort-cpu": "onnxruntime", "openvino": "openvino"}
# An engine option that turns its low-precision path off: run once on the reduced model, it
# shows whether the disagreement is that path (a control the maintainers can re-run).
CONTROLS = {"openvino": {"LP_TRANSFORMS_MODE": "NO"}}


def runner(engine: str) -> Callable[[Path, dict[str, np.ndarray], dict[str, str]], np.ndarray]:
    if engine not in RUNNERS:
        raise QParityError(f"repro has native runners for {', '.join(RUNNERS)}; not for {engine!r}")
    ns: dict[str, Any] = {}
    exec(textwrap.dedent(RUNNERS[engine]), ns)  # noqa: S102 - our own constant source
    return ns[_fn(engine)]


def _fn(engine: str) -> str:
    return "run_" + engine.replace("-", "_")



# ----------------------------------------------------------------------------- disagreement
def disagreement(a: np.ndarray, b: np.ndarray, scale: np.ndarray, axis: int | None) -> dict[str, Any]:
    """a (engine) vs b (reference) in quantization steps of the target tensor."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        a = a.reshape(b.shape)
    s = np.asarray(scale, np.float64)
    if s.size > 1:
        shape = [1] * b.ndim
        shape[axis if axis is not None else 1] = s.size
        s = s.reshape(shape)
    steps = np.abs(a - b) / s
    return {"frac_off": float((steps > STEP_TOL).mean()) if steps.size else 0.0,
            "max_steps": float(steps.max()) if steps.size else 0.0,
            "mean_steps": float(steps.mean()) if steps.size else 0.0,
            "elements": int(steps.size)}


@dataclass
class Reduced:
    model: Any
    feeds: dict[str, np.ndarray]
    result: dict[str, Any]
    steps: list[dict[str, Any]]
    output: str
