"""`qdq-ref`: the model's own arithmetic, Q/DQ nodes executed exactly as written, in float.

ONNX Runtime with every graph optimization disabled runs each node by its ONNX definition:
QuantizeLinear rounds half-to-even and saturates, DequantizeLinear multiplies back, and Conv /
MatMul run in float32 on the dequantized values. No pattern is fused into an integer kernel,
so no CPU-specific integer arithmetic (u8 x s8 saturation without VNNI, requantization
shortcuts) can enter. The only difference from exact fake-quant arithmetic is float32
accumulation order inside each Conv, orders of magnitude below one quantization step.
"""

from __future__ import annotations

from typing import Any

from ..census import ExecutedOp, FileOps, summarize
from .ort_cpu import FLOAT_COMPUTE_OPS, OrtCpuEngine
from .rules import Finding, ModelFacts


class QdqReferenceEngine(OrtCpuEngine):
    name = "qdq-ref"
    graph_opt_level = "ORT_DISABLE_ALL"
    REFERENCE = True
    EXTRA_OUTPUTS_EXACT = True  # nothing is fused with optimizations off

    @classmethod
    def preflight(cls, facts: ModelFacts) -> list[Finding]:
        # computes in float by construction: no integer-kernel risk applies, only running at all
        return [f for f in super().preflight(facts) if f.code == "unrunnable"]

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["semantics"] = "Q/DQ as written (ONNX definitions), float32 compute, no fusion"
        return d

    def census(self) -> dict[str, Any] | None:
        import onnx

        graph = onnx.load(str(self.model_path), load_external_data=False).graph
        ops = [ExecutedOp(n.name, n.op_type, False) for n in graph.node if n.op_type in FLOAT_COMPUTE_OPS]
        return summarize(ops, "qdq-ref runs every compute op in float by construction",
                         FileOps.of_model(self.model_path))
