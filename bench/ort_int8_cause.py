"""What decides which quantized convolutions ONNX Runtime's CPU provider runs in int8.

Each variant is a QDQ file quantized here by ONNX Runtime's own static PTQ (or `qparity ptq`
for the demo model): a tiny conv net built in this script (random weights, fixed seed, random
calibration inputs), and with --demo the demo's YOLO-style model under the project's recipes
(calibrated on a few synthetic images: the census does not depend on the calibration). For
each: the quantized convolutions in the file, how many ONNX Runtime really ran in int8 (the
census of its optimized graph, ORT_ENABLE_ALL, as ort-cpu records it), and how many ort-cpu's
check-model rule predicts will run in float (`predicted_float_convs`). A row whose prediction
misses the census is marked.

    python bench/ort_int8_cause.py [--demo] [--json out.json]
    qemu-x86_64 -cpu Haswell .venv/bin/python bench/ort_int8_cause.py   # the same on an AVX2 CPU

The tiny net: x -> c0 -> LeakyReLU -> a0; a0 -> c1 -> LeakyReLU -> a1; a0 -> c2 -> a2 (no
activation: its output feeds c3 and the Concat); a2 -> c3 -> LeakyReLU -> a3;
Concat(a1, a2, a3) -> c4 -> y. c0 and c4 read and write tensors with one consumer; c1, c2 and
c3 read or write a tensor with two. Findings (onnxruntime 1.31.1, x86-64) in docs/recipes.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.engines.base import EngineConfig  # noqa: E402
from harness.engines.ort_cpu import OrtCpuEngine, predicted_float_convs, predicted_int8_convs  # noqa: E402
from harness import census as census_module  # noqa: E402
from harness.preflight import model_facts  # noqa: E402

INT8_ALLOWED = "session.qdqisint8allowed"  # ONNX Runtime's switch of its x86/ARM int8 policy


@dataclass(frozen=True)
class Variant:
    name: str
    activations: str = "int8"  # "int8" | "uint8"
    symmetric: bool = True  # activations: zero point 0 (int8) / 128 (uint8)
    int32_bias: bool = False
    per_channel: bool = True
    conv_only: bool = False  # Q/DQ on Conv inputs only (op_types_to_quantize=["Conv"])
    exclude: tuple[str, ...] = ()  # nodes kept in float (float weights), as concat-safe does
    session: tuple[tuple[str, str], ...] = ()  # extra ONNX Runtime session config entries


TINY = (
    Variant("s8 symmetric, float bias (portable)"),
    Variant("s8 symmetric, int32 bias", int32_bias=True),
    Variant("s8 symmetric, float bias, per-tensor weights", per_channel=False),
    Variant("s8 asymmetric, float bias", symmetric=False),
    Variant("s8 symmetric, Q/DQ on Conv inputs only", conv_only=True),
    Variant("u8 asymmetric, int32 bias (spec-v1)", "uint8", False, True),
    Variant("u8 asymmetric, float bias", "uint8", False),
    Variant("u8 symmetric, float bias", "uint8", True),
    Variant("s8 symmetric, c1 kept float", exclude=("c1",)),
    Variant("u8 asymmetric, c1 kept float", "uint8", False, exclude=("c1",)),
    Variant("s8 symmetric, float bias, session.qdqisint8allowed=1", session=((INT8_ALLOWED, "1"),)),
)
DEMO_RECIPES = ("portable", "portable-int32-bias", "conv-inputs-only", "concat-safe", "spec-v1")


def tiny_net(path: Path, size: int = 16, seed: int = 0) -> Path:
    """The float tiny conv net of the module docstring."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def conv(name: str, x: str, cin: int, cout: int, k: int, group: int = 1) -> str:
        w = rng.normal(0, 0.3, (cout, cin // group, k, k)).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{name}.w"),
                      numpy_helper.from_array(rng.normal(0, 0.1, cout).astype(np.float32), f"{name}.b")])
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.out"], name=name,
                                      pads=[k // 2] * 4, group=group))
        return f"{name}.out"

    def leaky(x: str, name: str) -> str:
        nodes.append(helper.make_node("LeakyRelu", [x], [name], name=f"{name}.act", alpha=0.1))
        return name

    a0 = leaky(conv("c0", "x", 3, 8, 3), "a0")
    a1 = leaky(conv("c1", a0, 8, 8, 1), "a1")
    a2 = conv("c2", a0, 8, 8, 3, group=8)
    a3 = leaky(conv("c3", a2, 8, 8, 1), "a3")
    nodes.append(helper.make_node("Concat", [a1, a2, a3], ["cat"], name="cat", axis=1))
    y = conv("c4", "cat", 24, 16, 1)
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])],
                          [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 16, size, size])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path


class _Inputs:
    """ONNX Runtime CalibrationDataReader over a few random inputs."""

    def __init__(self, shape: list[int], n: int = 4, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.data = [{"x": rng.uniform(0, 1, shape).astype(np.float32)} for _ in range(n)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self.data.pop() if self.data else None


def quantize_tiny(fp32: Path, out: Path, v: Variant) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    shape = [d.dim_value for d in onnx.load(str(fp32)).graph.input[0].type.tensor_type.shape.dim]
    quantize_static(
        str(fp32), str(out), _Inputs(shape), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8 if v.activations == "int8" else QuantType.QUInt8,
        weight_type=QuantType.QInt8, per_channel=v.per_channel,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=["Conv"] if v.conv_only else None, nodes_to_exclude=list(v.exclude),
        extra_options={"ActivationSymmetric": v.symmetric, "WeightSymmetric": True,
                       "QuantizeBias": v.int32_bias})
    return out


class _OrtWithEntries(OrtCpuEngine):
    """ort-cpu's session, plus extra config entries (only to show the cause; never the golden)."""

    def __init__(self, entries: tuple[tuple[str, str], ...]):
        super().__init__(EngineConfig(threads=1))
        self.entries = entries

    def session_options(self) -> Any:
        so = super().session_options()
        for k, val in self.entries:
            so.add_session_config_entry(k, val)
        return so


def measure(path: Path, session: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """The convolutions of the file, ONNX Runtime's census of them, and the prediction."""
    facts = model_facts(path, onnx.load(str(path)), [])
    eng = _OrtWithEntries(session)
    eng.load(path)
    listed = census_module.MAX_LISTED
    census_module.MAX_LISTED = 1 << 30  # every float op by name, not the first 25
    try:
        census = eng.census()
    finally:
        census_module.MAX_LISTED = listed
        eng.close()
    quantized = set(facts.quantized_convs)
    row = {"quantized_convs": len(quantized), "float_bias_convs": len(facts.float_bias_convs),
           "float_weight_qdq_convs": len(facts.float_weight_qdq_convs),
           "ran_int8": census["int8_compute_ops"], "ran_float": census["float_compute_ops"],
           # the file's quantized convolutions that ran in float (float ops keep their names)
           "quantized_ran_float": sorted(n for n in census["float_ops"] if n in quantized)}
    if not session:  # the rule models the session ort-cpu opens, nothing else
        row["predicted_int8"] = len(predicted_int8_convs(facts))
        row["predicted_quantized_float"] = sorted(predicted_float_convs(facts))
        row["match"] = (row["predicted_int8"] == row["ran_int8"]
                        and row["predicted_quantized_float"] == row["quantized_ran_float"])
    return row


def tiny_rows(tmp: Path) -> list[tuple[str, dict[str, Any]]]:
    fp32 = tiny_net(tmp / "tiny-fp32.onnx")
    rows = []
    for i, v in enumerate(TINY):
        path = quantize_tiny(fp32, tmp / f"tiny-{i}.onnx", v)
        rows.append((f"tiny: {v.name}", measure(path, v.session)))
    return rows


def demo_rows(tmp: Path, images: int = 4) -> list[tuple[str, dict[str, Any]]]:
    import cv2

    from harness.ptq import quantize

    fp32 = Path(__file__).resolve().parent / "demo" / "demo-fp32.onnx"
    rng = np.random.default_rng(0)
    calib = []
    for i in range(images):
        p = tmp / f"calib{i}.jpg"
        cv2.imwrite(str(p), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
        calib.append(p)
    rows = []
    for recipe in DEMO_RECIPES:
        out = tmp / recipe / "model-int8.onnx"
        quantize(fp32, calib, out, recipe=recipe, method="minmax")
        rows.append((f"demo: {recipe}", measure(out)))
        if recipe == "portable":
            rows.append((f"demo: portable, {INT8_ALLOWED}=1", measure(out, ((INT8_ALLOWED, "1"),))))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", action="store_true", help="also the demo model under the project's recipes")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args()

    import onnxruntime as ort
    from rich.table import Table

    from harness.emulate import cpu_class_of, features_here
    from harness.envinfo import cpu_info
    from harness.report import wide_console

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer's pre-processing advice, per call
    with tempfile.TemporaryDirectory(prefix="qparity-ort-int8-") as tmp:
        rows = tiny_rows(Path(tmp))
        if args.demo:
            rows += demo_rows(Path(tmp))
    cpu = cpu_info()
    # what CPUID shows this process (under qemu-user, the emulated class; /proc/cpuinfo is the host's)
    cpu["features"] = features_here()
    t = Table(title=f"ONNX Runtime {ort.__version__} CPU, {cpu['arch']}, {cpu['model']}, "
                    f"{cpu_class_of(cpu['features'])} class (CPUID: {' '.join(cpu['features'])}): "
                    "convolutions run in int8", title_justify="left")
    for col in ("variant", "quantized", "float bias", "float w. in Q/DQ", "ran int8", "ran float",
                "quantized ran float", "pred. int8", "pred. quantized float", "match"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    misses = 0
    for name, r in rows:
        pred = "predicted_int8" in r
        misses += pred and not r["match"]
        t.add_row(name, str(r["quantized_convs"]), str(r["float_bias_convs"]),
                  str(r["float_weight_qdq_convs"]), str(r["ran_int8"]), str(r["ran_float"]),
                  str(len(r["quantized_ran_float"])),
                  str(r["predicted_int8"]) if pred else "-",
                  str(len(r["predicted_quantized_float"])) if pred else "-",
                  ("yes" if r["match"] else "[bold red]NO[/]") if pred else "-")
    wide_console().print(t)
    print("quantized: convolutions with int8 weights in the file (float bias: of which with a float "
          "bias); float w. in Q/DQ: float-weight convolutions between a DQ and a Q. "
          "ran int8 / ran float: ONNX Runtime's census (every convolution of the graph); predicted: "
          "ort-cpu's check-model rule (harness/engines/ort_cpu.py); match: same int8 count and the "
          "same quantized convolutions, by name, in float; '-': a session setting the rule does "
          "not model")
    if args.json:
        args.json.write_text(json.dumps({"onnxruntime": ort.__version__, "cpu": cpu,
                                         "rows": [{"variant": n, **r} for n, r in rows]}, indent=1) + "\n")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
