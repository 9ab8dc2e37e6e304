"""ONNX Runtime on CPU: the golden engine."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..census import ExecutedOp, summarize
from .base import Engine, EngineConfig, EngineFailure, EngineUnavailable
from .rules import Finding, ModelFacts

# Integer kernels ONNX Runtime fuses Q/DQ patterns into; everything else that multiplies
# matrices runs in float on dequantized values.
INT8_OPS = {"QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul", "QGemm",
            "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QAttention", "NhwcQLinearConv"}
FLOAT_COMPUTE_OPS = {"Conv", "FusedConv", "NchwcConv", "ConvTranspose", "MatMul", "FusedMatMul",
                     "Gemm", "FusedGemm"}

# Pinned, not left to the library default, because the level decides which Q/DQ patterns
# are fused into integer kernels and therefore the golden numbers themselves.
GRAPH_OPT_LEVEL = "ORT_ENABLE_ALL"


SPIN_KEY = "session.intra_op.allow_spinning"


class OrtCpuEngine(Engine):
    name = "ort-cpu"
    graph_opt_level = GRAPH_OPT_LEVEL
    timed = ("one InferenceSession.run, as a minimal session.run loop: the input read from host "
             "memory, the output returned in a new host array")

    OPTIONS = {"allow_spinning": "0: threads never spin, in the latency protocol too (default 1)"}
    RUNS_SUBGRAPHS = True

    @classmethod
    def preflight(cls, facts: ModelFacts) -> list[Finding]:
        out = []
        if facts.ort_error:
            out.append(Finding("unrunnable", "refuse", [cls.name],
                               f"onnxruntime cannot run it: {facts.ort_error}"))
        if facts.float_bias_convs:  # ORT fuses DQ->Conv->Q into an integer kernel only with an int32 bias
            out.append(Finding(
                "float-bias", "warn", [cls.name],
                f"{len(facts.float_bias_convs)} of {len(facts.quantized_convs)} quantized "
                "convolutions have float biases: ONNX Runtime may not fuse those into integer "
                "kernels and then runs them in float (correct, not INT8 speed); the result's "
                "census says what ran", list(facts.float_bias_convs)))
        if facts.signed_activations and not facts.vnni:
            out.append(Finding("signed-int8-no-vnni", "warn", [cls.name],
                               "signed int8 activations on a CPU without VNNI: u8 x s8 integer "
                               "kernels can saturate (SPEC.md); compare against qdq-ref"))
        return out

    @classmethod
    def probe(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as e:
            return f"onnxruntime is not installed ({e})"
        return None

    def session_options(self) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, self.graph_opt_level)
        so.intra_op_num_threads = self.config.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        return so

    @property
    def configured_spinning(self) -> bool:
        """ONNX Runtime's default (threads spin), unless --engine-opt allow_spinning=0."""
        return self.config.options.get("allow_spinning", "1") != "0"

    def _session(self, spinning: bool) -> Any:
        import onnxruntime as ort

        so = self.session_options()
        so.add_session_config_entry(SPIN_KEY, "1" if spinning else "0")
        return ort.InferenceSession(str(self.model_path), so, providers=["CPUExecutionProvider"])

    def load(self, model: Path) -> None:
        try:
            import onnxruntime  # noqa: F401  (here, to name a missing install as unavailable)
        except ImportError as e:
            raise EngineUnavailable(str(e)) from e
        self.model_path = Path(model)
        try:
            self.session = self._session(self.configured_spinning)
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
            raise EngineFailure(f"onnxruntime refused the model: {e}") from e
        # spinning is a session setting: one session per setting, built when first asked for
        self._sessions = {self.configured_spinning: self.session}
        self.spinning = self.configured_spinning
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def run_named(self, inputs: dict[str, np.ndarray],
                  outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        names = outputs or [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, inputs)))

    def set_spinning(self, on: bool) -> str | None:
        want = on and self.configured_spinning
        if want not in self._sessions:
            self._sessions[want] = self._session(want)
        self.session, self.spinning = self._sessions[want], want
        return f"{SPIN_KEY}={int(want)}"

    def session_settings(self, config: EngineConfig) -> dict[str, Any]:
        """The session settings this engine uses under `config` (see session_options)."""
        return {
            "providers": ["CPUExecutionProvider"],
            "graph_optimization_level": self.graph_opt_level,
            "intra_op_num_threads": config.threads,
            "inter_op_num_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "intra_op_allow_spinning": int(config.options.get("allow_spinning", "1") != "0"),
        }

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        settings = self.session_settings(self.config)
        settings["providers"] = self.session.get_providers()  # what the session really got
        return {
            "library": "onnxruntime",
            "version": ort.__version__,
            "settings": settings,
            "defaults": self.session_settings(EngineConfig()),
        }

    def census(self) -> dict[str, Any] | None:
        """Count the compute ops of the graph ONNX Runtime actually executes (its optimized
        graph, written out by a second session with the same options)."""
        import onnx
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="qparity-ort-") as tmp:
            so = self.session_options()
            so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            ort.InferenceSession(str(self.model_path), so, providers=["CPUExecutionProvider"])
            graph = onnx.load(so.optimized_model_filepath, load_external_data=False).graph
        ops = [ExecutedOp(n.name, n.op_type, n.op_type in INT8_OPS) for n in graph.node
               if n.op_type in INT8_OPS | FLOAT_COMPUTE_OPS]
        return summarize(ops, f"onnxruntime optimized graph ({self.graph_opt_level})")

    def close(self) -> None:
        self.session = None
        self._sessions = {}
