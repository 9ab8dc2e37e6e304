"""What triggers OpenVINO's int8 fault on the `portable` recipe: one pattern at a time.

Each case is a tiny QDQ model built here (random weights, LeakyReLU-like inputs, fixed seed),
run by OpenVINO on CPU and by the model's own Q/DQ arithmetic (ONNX Runtime, graph
optimizations off). A case disagrees when more than 1 % of the output elements differ by more
than one quantization step. The last line measures what the convolution is fed: with identity
weights, the distance between the values OpenVINO produces.

    python bench/ov_concat_trigger.py [--json out.json]

Findings (OpenVINO 2026.4, AVX-512 VNNI CPU) are in docs/recipes.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper as nh

C, H, OC = 16, 16, 16


@dataclass(frozen=True)
class Case:
    name: str
    join: str = "concat"  # "concat" (2 inputs), "add" (2 inputs), "none" (1 input)
    input_qdq: bool = True  # Q/DQ on each input of the join
    join_qdq: bool = True  # Q/DQ after the join
    dtype: str = "int8"  # activation Q/DQ type
    zero_point: int = 0
    conv: str = "int8"  # "int8": DQ'd int8 weights; "float": float weights; "none": no conv
    nonnegative: bool = False
    options: tuple[tuple[str, str], ...] = ()
    identity: bool = False  # identity weights: the output shows the conv's input


CASES = (
    Case("Concat(2 x int8 Q/DQ) -> int8 Q/DQ -> Conv  (the portable pattern)"),
    Case("  same, uint8 Q/DQ (zero point 128)  (the spec-v1 pattern)", dtype="uint8", zero_point=128),
    Case("  same, int8 zero point -128", zero_point=-128),
    Case("  same, inputs >= 0 (no negative values)", nonnegative=True),
    Case("  same, no Q/DQ on the Concat's inputs", input_qdq=False),
    Case("  same, no Q/DQ after the Concat", join_qdq=False),
    Case("  same, Conv with float weights  (the concat-safe pattern)", conv="float"),
    Case("  same, LP_TRANSFORMS_MODE=NO", options=(("LP_TRANSFORMS_MODE", "NO"),)),
    Case("one input (no Concat) -> int8 Q/DQ -> Conv", join="none"),
    Case("Add(2 inputs) -> int8 Q/DQ -> Conv", join="add", input_qdq=False),
    Case("Concat(2 x int8 Q/DQ) -> int8 Q/DQ -> output (no Conv)", conv="none"),
)


def build(case: Case, scale: float = 0.09, out_scale: float = 0.2, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    dt = np.int8 if case.dtype == "int8" else np.uint8
    inits, nodes = [], []

    def qdq(x: str, s: float, name: str) -> str:
        inits.extend([nh.from_array(np.array(s, np.float32), f"{name}_s"),
                      nh.from_array(np.array(case.zero_point, dt), f"{name}_z")])
        nodes.append(helper.make_node("QuantizeLinear", [x, f"{name}_s", f"{name}_z"], [f"{name}_q"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [f"{name}_dq"]))
        return f"{name}_dq"

    n_in = 1 if case.join == "none" else 2
    ins = [f"x{i}" for i in range(n_in)]
    joined = [qdq(x, scale, f"in{i}") if case.input_qdq else x for i, x in enumerate(ins)]
    if case.join == "concat":
        nodes.append(helper.make_node("Concat", joined, ["joined"], axis=1))
        t, cin = "joined", C * n_in
    elif case.join == "add":
        nodes.append(helper.make_node("Add", joined, ["joined"]))
        t, cin = "joined", C
    else:
        t, cin = joined[0], C
    if case.join_qdq:
        t = qdq(t, scale, "joinq")
    out, oc = t, cin
    if case.conv != "none":
        oc = cin if case.identity else OC
        w = (np.eye(cin, dtype=np.float32).reshape(cin, cin, 1, 1) if case.identity
             else rng.normal(size=(oc, cin, 1, 1)).astype(np.float32))
        b = np.zeros(oc, np.float32) if case.identity else rng.normal(size=oc).astype(np.float32)
        inits.append(nh.from_array(b, "b"))
        if case.conv == "int8":
            ws = (np.abs(w).reshape(oc, -1).max(1) / 127).astype(np.float32)
            inits += [nh.from_array(np.round(w / ws[:, None, None, None]).astype(np.int8), "w"),
                      nh.from_array(ws, "ws"), nh.from_array(np.zeros(oc, np.int8), "wz")]
            nodes.append(helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wdq"], axis=0))
            wname = "wdq"
        else:
            inits.append(nh.from_array(w, "wf"))
            wname = "wf"
        nodes.append(helper.make_node("Conv", [t, wname, "b"], ["y"]))
        out = "y" if case.identity else qdq("y", out_scale, "yq")
    g = helper.make_graph(nodes, "trigger", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, C, H, H])
                                             for x in ins],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def inputs(case: Case, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_in = 1 if case.join == "none" else 2
    out = {}
    for i in range(n_in):
        x = rng.normal(size=(1, C, H, H)).astype(np.float32) * 2.5
        out[f"x{i}"] = (np.maximum(x, 0) if case.nonnegative else np.where(x > 0, x, 0.1 * x)).astype(np.float32)
    return out


def run_both(model: onnx.ModelProto, feeds: dict[str, np.ndarray], options: dict[str, str]):
    import onnxruntime as ort
    import openvino as ov

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    ref = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32", **options})
    return compiled(feeds)[compiled.outputs[0]], ref


def measure(case: Case, step: float = 0.2) -> dict[str, float]:
    model = build(case)
    got, ref = run_both(model, inputs(case), dict(case.options))
    steps = np.abs(got - ref) / (step if case.conv != "none" else 0.09)
    return {"frac_off": float((steps > 1.001).mean()), "max_steps": float(steps.max())}


def conv_input_grid(scale: float = 0.09) -> dict[str, float]:
    """Identity 1x1 convolution after the trigger: the spacing of the values OpenVINO feeds it."""
    case = Case("identity", identity=True)
    got, ref = run_both(build(case, scale=scale), inputs(case), {})
    values = np.unique(np.round(got.astype(np.float64), 5))
    return {"scale": scale, "openvino_grid": float(np.median(np.diff(values))),
            "reference_grid": float(np.median(np.diff(np.unique(np.round(ref.astype(np.float64), 5)))))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="also write the results as JSON")
    args = ap.parse_args()
    import openvino as ov

    print(f"OpenVINO {ov.get_version()}")
    rows = []
    for case in CASES:
        r = measure(case)
        rows.append({"case": case.name.strip(), **r, "disagrees": r["frac_off"] > 0.01})
        print(f"{case.name:66s} {r['frac_off']:7.2%} off, max {r['max_steps']:5.1f} steps  "
              f"{'DISAGREES' if r['frac_off'] > 0.01 else 'agrees'}")
    grids = [conv_input_grid(s) for s in (0.02, 0.09, 0.2)]
    for g in grids:
        print(f"conv input grid, activation scale {g['scale']}: OpenVINO {g['openvino_grid']:.4f}, "
              f"reference {g['reference_grid']:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"openvino": ov.get_version(), "cases": rows, "grids": grids}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
