"""ONNX Runtime on CPU: the golden engine."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..census import ExecutedOp, FileOps, summarize
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


def int8_activations_allowed(machine: str) -> bool:
    """Whether ONNX Runtime's CPU build for `machine` (platform.machine()) fuses convolutions on
    signed int8 activations: only its ARM builds do (QDQIsInt8Allowed, fixed when ONNX Runtime
    is compiled: no CPU flag, VNNI or other, changes it; docs/recipes.md)."""
    m = machine.lower()
    return m.startswith(("arm", "aarch64"))


def predicted_int8_convs(facts: ModelFacts) -> list[str]:
    """The convolutions ONNX Runtime's CPU provider (ORT_ENABLE_ALL) runs in integer kernels, as
    the rules of `OrtCpuEngine.preflight` predict them: DequantizeLinear -> Conv ->
    QuantizeLinear, its weights quantized in the file or float constants ONNX Runtime quantizes
    itself (WeightBiasQuantization, which also makes float biases int32), and on non-ARM builds
    no signed activation pair it cannot re-type to uint8. bench/ort_int8_cause.py and
    tests/test_ort_int8_cause.py hold the prediction against the census."""
    blocked = set(facts.unquantized_io_convs)
    if not int8_activations_allowed(facts.machine):
        blocked |= set(facts.shared_signed_convs)
    return [c for c in facts.quantized_convs + facts.float_weight_qdq_convs if c not in blocked]


def predicted_float_convs(facts: ModelFacts) -> list[str]:
    """The convolutions quantized in the file that ONNX Runtime will run in float."""
    int8 = set(predicted_int8_convs(facts))
    return [c for c in facts.quantized_convs if c not in int8]


# How ONNX Runtime's optimizer names a node it puts in place of others (measured on
# bench/ort_int8_cause.py's nets and the demo, onnxruntime 1.31): the QLinearConv of a fused
# DQ -> Conv -> Q is the Conv's name plus "_token_<n>" (Graph::GenerateNodeName); an NCHWc
# convolution is the tensor it replaces plus "_nchwc" (the Conv's output, or its fused
# activation's, which the census leaves unmatched rather than guess).
_RENAMED = re.compile(r"(?:_token_\d+)+$|_nchwc$")


def original_names(name: str) -> tuple[str, ...]:
    """The file node (or tensor) an optimized node replaced, when its name says so."""
    stripped = _RENAMED.sub("", name)
    return (stripped,) if stripped and stripped != name else ()


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
        n = len(facts.quantized_convs)
        if facts.unquantized_io_convs:
            out.append(Finding(
                "unquantized-conv-io", "warn", [cls.name],
                f"{len(facts.unquantized_io_convs)} of {n} quantized convolutions are not between "
                "a per-tensor DequantizeLinear and one QuantizeLinear: ONNX Runtime fuses only "
                "DequantizeLinear -> Conv -> QuantizeLinear into an integer kernel and runs these "
                "in float", list(facts.unquantized_io_convs)))
        shared = [c for c in facts.shared_signed_convs if c in facts.quantized_convs
                  and c not in facts.unquantized_io_convs]
        if shared and not int8_activations_allowed(facts.machine):
            out.append(Finding(
                "shared-signed-qdq", "warn", [cls.name],
                f"{len(shared)} of {n} quantized convolutions will run in float (correct, not "
                "INT8 speed): ONNX Runtime's x86 (every non-ARM) build takes int8 convolutions "
                "only on uint8 activations and re-types a signed activation Q/DQ pair to uint8 "
                "only when its QuantizeLinear feeds a single consumer; these convolutions read or "
                "write a signed pair shared by several consumers (a tensor feeding two branches, "
                "or a branch and a Concat). Biases do not matter (float biases are made int32 by "
                "ONNX Runtime); no CPU flag changes it; uint8 activations (spec-v1) fuse them "
                "all. The result's census says what ran", shared))
        own = [c for c in predicted_int8_convs(facts) if c in facts.float_weight_qdq_convs]
        if own:
            out.append(Finding(
                "float-conv-quantized-by-ort", "warn", [cls.name],
                f"{len(own)} convolutions kept in float in the file (float weights) sit between "
                "a DequantizeLinear and a QuantizeLinear: ONNX Runtime quantizes their weights "
                "itself (int8 per-tensor, its own scale) and runs them in int8, an arithmetic "
                "that is not the file's (qdq-ref runs them in float)", own))
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
        ops = [ExecutedOp(n.name, n.op_type, n.op_type in INT8_OPS, original_names(n.name))
               for n in graph.node if n.op_type in INT8_OPS | FLOAT_COMPUTE_OPS]
        return summarize(ops, f"onnxruntime optimized graph ({self.graph_opt_level})",
                         FileOps.of_model(self.model_path))

    def close(self) -> None:
        self.session = None
        self._sessions = {}
