"""The folder `qparity repro` writes: model, input, a standalone script, environment, README.

The script embeds the same runner functions repro.py executes while reducing, so what the
maintainers run is what was measured.
"""

from __future__ import annotations

import json
import platform
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from .repro_runners import CONTROLS, RUNNERS, VERSION_OF, Reduced, _fn, disagreement, runner


def describe(model: Any) -> str:
    """The subgraph in one line, data path only: weights and their DequantizeLinear are folded
    into the node that reads them."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    inputs = {i.name for i in g.input}
    const = set(inits)
    for n in g.node:
        if n.input and all(i in const for i in n.input if i):
            const.update(n.output)
    parts = []
    for n in g.node:
        if n.output[0] in const:
            continue
        acts = [i for i in n.input if i and i not in const]
        text = n.op_type
        if n.op_type == "Concat":
            srcs = ["input" if a in inputs else producer[a].op_type for a in acts]
            text += f"({len(acts)} x {srcs[0]}" + (", the same tensor" if len(set(acts)) == 1 else "") + ")"
        elif n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2 and n.input[2] in inits:
            zp = numpy_helper.to_array(inits[n.input[2]])
            text += f"({zp.dtype}, zero point {int(zp.ravel()[0])})" if n.op_type == "QuantizeLinear" else ""
        elif n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1:
            w = n.input[1]
            wp = producer.get(w)
            kind = "int8 weights (DequantizeLinear)" if wp is not None and wp.op_type == "DequantizeLinear" \
                else "float weights"
            shape = list(numpy_helper.to_array(inits[wp.input[0] if wp is not None else w]).shape) \
                if (wp is not None and wp.input[0] in inits) or w in inits else []
            bias = "" if len(n.input) < 3 or not n.input[2] else (
                ", float bias" if n.input[2] in inits else ", int32 bias")
            text += f"({kind} {shape}{bias})"
        parts.append(text)
    return " -> ".join(parts)


# ----------------------------------------------------------------------------- the folder
def environment(engine: str, against: str) -> dict[str, Any]:
    from ..envinfo import cpu_info, library_versions

    libs = library_versions()
    return {"python": platform.python_version(), "os": platform.platform(),
            "cpu": cpu_info(), "engines": {e: {"library": VERSION_OF[e], "version": libs.get(VERSION_OF[e])}
                                           for e in (engine, against)},
            "libraries": {k: v for k, v in libs.items() if k in ("numpy", "onnx", "onnxruntime", "openvino")}}


SCRIPT = '''\
"""Reproducer: {engine} vs {against} on a {nodes}-node ONNX subgraph ({title}).

Run: python repro.py            (needs: numpy, {libs})
     python repro.py KEY=VALUE  (the same with an extra {engine} option)
Exit status: 1 while the two engines disagree beyond tolerance, 0 once they agree.
Written by qparity repro; uses only the engines' own Python APIs.
"""
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MODEL = HERE / "model.onnx"
SCALE = np.array({scale!r}, dtype=np.float64)  # quantization step of the output tensor
AXIS = {axis!r}  # per-channel axis of SCALE (None: per-tensor)
FRAC = {frac!r}  # disagreement: more than this fraction of elements off by > 1 step
ENGINE_OPTIONS = {engine_opts!r}
AGAINST_OPTIONS = {against_opts!r}
{runner_a}
{runner_b}

def load_inputs():
    if (HERE / "input.npy").is_file():
        return {{{input_name!r}: np.load(HERE / "input.npy")}}
    with np.load(HERE / "inputs.npz") as z:
        return {{k: z[k] for k in z.files}}


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith(("flags", "Features")):
                return sorted(f for f in line.split(":", 1)[1].split()
                              if f.startswith(("avx", "amx", "sse4", "fma", "asimd", "sve")))
    except OSError:
        pass
    return []


def main():
    feeds = load_inputs()
    options = dict(ENGINE_OPTIONS)
    options.update(kv.split("=", 1) for kv in sys.argv[1:])  # e.g. python repro.py KEY=VALUE
    a = np.asarray({fn_a}(MODEL, feeds, options), np.float64)
    b = np.asarray({fn_b}(MODEL, feeds, AGAINST_OPTIONS), np.float64).reshape(a.shape)
    s = SCALE
    if s.size > 1:
        shape = [1] * b.ndim
        shape[AXIS if AXIS is not None else 1] = s.size
        s = s.reshape(shape)
    steps = np.abs(a - b) / s
    off = steps > 1.001
    import importlib.metadata as md
    for lib in {libs_list!r}:
        try:
            print(f"{{lib}} {{md.version(lib)}}")
        except md.PackageNotFoundError:
            print(f"{{lib}} (not installed)")
    print(f"python {{platform.python_version()}}, {{platform.machine()}}, CPU flags: {{' '.join(cpu_flags())}}")
    print(f"model: {{MODEL.name}} ({nodes} nodes), inputs: "
          + ", ".join(f"{{k}} {{list(v.shape)}}" for k, v in feeds.items()))
    if options:
        print(f"{engine} options: {{options}}")
    print(f"{engine} vs {against}: {{off.mean():.2%}} of {{steps.size}} output elements differ by "
          f"more than one quantization step (max {{steps.max():.1f}} steps, mean {{steps.mean():.2f}})")
    worst = np.argsort(steps, axis=None)[::-1][:5]
    for f in worst:
        i = np.unravel_index(int(f), steps.shape)
        print(f"  at {{list(map(int, i))}}: {engine} {{a[i]:.6g}}, {against} {{b[i]:.6g}} "
              f"({{steps[i]:.1f}} steps)")
    disagree = off.mean() > FRAC
    print("DISAGREE" if disagree else "agree")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def write_folder(out: Path, red: Reduced, engine: str, against: str, engine_opts: dict[str, str],
                 against_opts: dict[str, str], scale: np.ndarray, axis: int | None, frac: float,
                 target: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    import onnx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("input.npy", "inputs.npz"):
        (out / stale).unlink(missing_ok=True)
    onnx.save(red.model, str(out / "model.onnx"))
    if len(red.feeds) == 1:
        (name, x), = red.feeds.items()
        np.save(out / "input.npy", x)
        input_files = ["input.npy"]
    else:
        name = ""
        np.savez(out / "inputs.npz", **red.feeds)
        input_files = ["inputs.npz"]
    ref = runner(against)(out / "model.onnx", red.feeds, against_opts)
    np.save(out / "reference_output.npy", np.asarray(ref))
    libs = sorted({VERSION_OF[engine], VERSION_OF[against]})
    sc = np.asarray(scale, np.float64).ravel()
    ops = [n.op_type for n in red.model.graph.node]
    title = describe(red.model)
    control = None
    if engine in CONTROLS:
        opts = {**engine_opts, **CONTROLS[engine]}
        a = runner(engine)(out / "model.onnx", red.feeds, opts)
        control = {"options": opts, **disagreement(a, ref, scale, axis)}
    script = SCRIPT.format(
        engine=engine, against=against, nodes=len(ops), title=title, libs=", ".join(libs),
        libs_list=libs, scale=sc.tolist() if sc.size > 1 else float(sc[0]), axis=axis if sc.size > 1 else None,
        frac=frac, engine_opts=dict(engine_opts), against_opts=dict(against_opts),
        runner_a=textwrap.dedent(RUNNERS[engine]), runner_b=textwrap.dedent(RUNNERS[against]),
        fn_a=_fn(engine), fn_b=_fn(against), input_name=name)
    (out / "repro.py").write_text(script)
    env = environment(engine, against)
    (out / "environment.json").write_text(json.dumps(env, indent=1) + "\n")
    summary = {
        "engine": engine, "against": against, "engine_options": engine_opts,
        "against_options": against_opts, "model_nodes": len(ops), "ops": ops,
        "graph": title, "model_bytes": (out / "model.onnx").stat().st_size,
        "inputs": {k: list(v.shape) for k, v in red.feeds.items()}, "input_files": input_files,
        "input_bytes": sum((out / f).stat().st_size for f in input_files),
        "disagreement": {k: red.result[k] for k in ("frac_off", "max_steps", "mean_steps", "elements")},
        "frac": frac, "output_scale": sc.tolist(), "control": control, "target": target, "source": source,
        "reduction": red.steps, "environment": env,
    }
    (out / "repro.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    (out / "README.md").write_text(_readme(summary))
    return summary


def _readme(s: dict[str, Any]) -> str:
    d, env = s["disagreement"], s["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in env["libraries"].items())
    inputs = ", ".join(f"`{k}` {v}" for k, v in s["inputs"].items())
    opts = ", ".join(f"{k}={v}" for k, v in s["engine_options"].items()) or "none"
    src = s["source"]
    return f"""# {s['engine']} disagrees with {s['against']} on a {s['model_nodes']}-node QDQ subgraph

```
python repro.py     # prints the disagreement; exit 1 while it persists
```

- Graph (`model.onnx`, {s['model_nodes']} nodes, {s['model_bytes']} bytes): {s['graph']}
- Input: {inputs} (`{s['input_files'][0]}`), real values of that tensor in the full model on one image.
- Expected: `{s['against']}` computes the model's Q/DQ arithmetic as written ({"ONNX Runtime with graph optimizations off" if s['against'] == 'qdq-ref' else s['against']}); its output is in `reference_output.npy`.
- Observed: {d['frac_off']:.2%} of {d['elements']} output elements differ by more than one quantization step
  ({s['output_scale'] if len(s['output_scale']) > 1 else s['output_scale'][0]}); max {d['max_steps']:.1f} steps, mean {d['mean_steps']:.2f}.
- `{s['engine']}` options: {opts}.{_control_line(s)}
- Environment: {env['cpu']['model']} ({env['cpu']['arch']}; flags {' '.join(env['cpu']['flags'])}), {env['os']}, Python {env['python']}; {versions}.

Where it comes from: the full model `{src.get('model', '?')}`; `qparity localize` named
`{s['target']['tensor']}` ({s['target']['localize']['producer_op']} `{s['target']['localize']['producer']}`)
as the first node where `{s['engine']}` departs from the model's arithmetic on its own inputs. The
subgraph was cut around it and reduced while the disagreement persisted (`repro.json` lists
every step).
"""


def _control_line(s: dict[str, Any]) -> str:
    c = s.get("control")
    if not c:
        return ""
    kv = " ".join(f"{k}={v}" for k, v in c["options"].items() if k not in s["engine_options"])
    verdict = "agrees" if c["frac_off"] <= s["frac"] else "still disagrees"
    return (f"\n- Control: `python repro.py {kv}` {verdict} ({c['frac_off']:.2%} off, max "
            f"{c['max_steps']:.1f} steps).")
