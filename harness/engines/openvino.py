"""OpenVINO on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..census import ExecutedOp, FileOps, summarize
from .base import Engine, EngineConfig, EngineFailure, EngineUnavailable
from .rules import Finding, ModelFacts

COMPUTE_LAYERS = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Gemm"}
INT8_PRECISIONS = {"u8", "i8"}  # runtimePrecision of a layer running an integer kernel


class OpenVinoEngine(Engine):
    name = "openvino"
    timed = ("one infer request (start_async + wait, as benchmark_app's loop with one request), "
             "model execution only: the input is shared with the request (no copy), the output "
             "stays in the request's tensor (no copy out); OpenVINO's own request latency is "
             "recorded beside each sample")

    RUNS_SUBGRAPHS = True

    @classmethod
    def preflight(cls, facts: ModelFacts) -> list[Finding]:
        if facts.signed_activations and not facts.vnni:
            return [Finding("signed-int8-no-vnni", "warn", [cls.name],
                            "signed int8 activations on a CPU without VNNI: OpenVINO's int8 "
                            "kernels were measured wrong on this CPU class (SPEC.md); compare "
                            "against qdq-ref")]
        return []

    @classmethod
    def probe(cls) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError as e:
            return f"openvino is not installed ({e}); pip install 'qparity[openvino]'"
        return None

    @classmethod
    def option_problem(cls, key: str, value: str) -> str | None:
        """Any compile property the CPU plugin takes (LP_TRANSFORMS_MODE too, which it does not
        list in SUPPORTED_PROPERTIES): asked by compiling a one-node model with it (0.1 s), so
        an unknown key is refused as an option, never blamed on the model."""
        try:
            import openvino as ov
            import openvino.opset8 as ops
        except ImportError:
            return None  # the engine is unavailable here anyway, and says so
        p = ops.parameter([1], ov.Type.f32)
        try:
            ov.Core().compile_model(ov.Model([ops.relu(p)], [p]), "CPU", {key.upper(): value})
        except Exception as e:
            return "OpenVINO's CPU plugin refuses it: " + str(e).strip().splitlines()[-1].split(": ", 2)[-1]
        return None

    def compile_config(self, config: EngineConfig | None = None) -> dict[str, str]:
        """The compile properties under `config` (default: this engine's own)."""
        config = config or self.config
        cfg = {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(config.threads),
            # Without this, some CPUs silently run the float parts in bf16/f16.
            "INFERENCE_PRECISION_HINT": "f32",
        }
        cfg.update({k.upper(): v for k, v in config.options.items()})
        return cfg

    def load(self, model: Path) -> None:
        try:
            import openvino as ov
        except ImportError as e:
            raise EngineUnavailable(str(e)) from e
        self.model_path = Path(model)
        self.core = ov.Core()
        try:
            net = self.core.read_model(str(model))
            self.compiled = self.core.compile_model(net, "CPU", self.compile_config())
        except Exception as e:
            raise EngineFailure(f"openvino refused the model: {e}") from e
        self.request = self.compiled.create_infer_request()
        self._shared_src: np.ndarray | None = None  # the array the input tensor wraps

    def run(self, x: np.ndarray) -> np.ndarray:
        self.infer(x)
        # the output tensor is reused by the next inference: copy it out
        return self.request.get_output_tensor(0).data.copy()

    def infer(self, x: np.ndarray) -> None:
        # The request reads the caller's array in place (a Tensor over its memory, set once per
        # array: the latency protocol reuses one buffer), as benchmark_app's preallocated input,
        # instead of copying 1.2 MB in on every call; start_async + wait builds no result dict
        # of output copies. Python around the request: ~0.07 ms, against ~0.33 ms for
        # infer({0: x}, share_inputs=True, share_outputs=True) (measured per call).
        if x is not self._shared_src:
            import openvino as ov

            src = np.ascontiguousarray(x, dtype=np.float32)
            self.request.set_input_tensor(0, ov.Tensor(src, shared_memory=True))
            self._shared_src = x if src is x else None
        self.request.start_async()
        self.request.wait()

    def run_named(self, inputs: dict[str, np.ndarray],
                  outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        ports = {n: p for p in self.compiled.outputs for n in p.get_names()}
        names = outputs or [p.get_any_name() for p in self.compiled.outputs]
        missing = [n for n in names if n not in ports]
        if missing:
            raise EngineFailure(f"openvino: no output named {', '.join(map(repr, missing))} "
                                f"(outputs: {', '.join(sorted(ports))})")
        self._shared_src = None  # the inputs set here replace the tensor `infer` shares
        try:
            self.request.infer({k: np.ascontiguousarray(v) for k, v in inputs.items()})
        except Exception as e:
            raise EngineFailure(f"openvino could not run the named inputs: {e}") from e
        # the request's tensors are reused by the next inference: copy them out
        return {n: self.request.get_tensor(ports[n]).data.copy() for n in names}

    def reported_latency_ms(self) -> float | None:
        return float(self.request.latency)

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        props = {}
        for key in ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
                    "INFERENCE_PRECISION_HINT", "ENABLE_HYPER_THREADING", "ENABLE_CPU_PINNING"):
            try:
                props[key] = str(self.compiled.get_property(key))
            except Exception:  # property not exposed by this OpenVINO version
                continue
        return {
            "library": "openvino",
            "version": ov.get_version(),
            "device": "CPU",
            "device_name": str(self.core.get_property("CPU", "FULL_DEVICE_NAME")),
            "settings": {"requested": self.compile_config(), "effective": props},
            # the properties qparity asks for by default; any other key is the plugin's default
            "defaults": {"requested": self.compile_config(EngineConfig())},
        }

    def runtime_ops(self) -> list[dict[str, str]]:
        """What the CPU plugin really executes: one entry per runtime node."""
        ops = []
        for node in self.compiled.get_runtime_model().get_ordered_ops():
            rt = node.get_rt_info()
            get = lambda k: str(rt[k].astype(str)) if k in rt else ""  # noqa: E731
            ops.append({"name": node.get_friendly_name(), "type": get("layerType"),
                        "precision": get("runtimePrecision"), "original": get("originalLayersNames")})
        return ops

    def census(self) -> dict[str, Any] | None:
        # originalLayersNames: the source model's nodes a runtime node was fused from (its
        # friendly name is OpenVINO's own, e.g. "<conv>/WithoutBiases")
        ops = [ExecutedOp(o["name"], o["type"], o["precision"].lower() in INT8_PRECISIONS,
                          tuple(n for n in o["original"].split(",") if n))
               for o in self.runtime_ops() if o["type"] in COMPUTE_LAYERS]
        return summarize(ops, "openvino runtime model (runtimePrecision)",
                         FileOps.of_model(self.model_path))

    def close(self) -> None:
        self.request = self.compiled = self._shared_src = None
