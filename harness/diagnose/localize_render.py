"""`qparity localize`, rendering: the finding (localize_judge.localize's JSON-able dict) as
rich tables and sentences. Reads the finding only; computes nothing."""

from __future__ import annotations

from typing import Any


def _tensor_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    t = Table("#", "tensor", "producer", "op", "frac > 1 step", "max steps", "mean steps", "",
              "in context", title=title, title_justify="left")
    for r in rows:
        ic = r.get("in_context")
        t.add_row(str(r["index"]), r["tensor"], r["producer"] or "(input)", r["producer_op"] or "-",
                  f"{r['frac_off']:.4f}", f"{r['max_steps']:.2f}", f"{r['mean_steps']:.3f}",
                  "[bold red]diverged[/]" if r["diverged"] else "[green]agrees[/]",
                  "-" if not ic else (f"[bold red]fault[/] {ic['frac_off']:.4f}" if ic["fault"]
                                      else f"ok {ic['frac_off']:.4f}"))
    return t


def _print_detail(console: Any, d: dict[str, Any], label: str) -> None:
    from rich.table import Table

    console.print(f"[bold red]{label}[/]: tensor [bold]{d['tensor']}[/] (#{d['index']}), "
                  f"QuantizeLinear [bold]{d['q_node']}[/] of {d['producer_op'] or 'graph input'} "
                  f"[bold]{d['producer'] or '-'}[/]: {d['frac_off']:.2%} of elements off by more "
                  f"than one step (max {d['max_steps']:.1f} steps)", highlight=False)
    console.print(f"  output quantization: {d['quant_text']}"
                  + (f"  (reference model: {d['against_quant_text']})"
                     if d["against_quant_text"] != d["quant_text"] else ""), highlight=False)
    for p in d["producer_inputs"]:
        console.print(f"  {d['producer']} input {p['input']} ({p['kind']}) {p['tensor']}: {p['text']}",
                      highlight=False)
    for q in d["quantized_inputs"]:
        console.print(f"  quantized input {q['tensor']}: {q['frac_off']:.2%} off, max "
                      f"{q['max_steps']:.2f} steps: {'diverged' if q['diverged'] else 'agrees'}",
                      highlight=False)
    ic = d.get("in_context")
    if ic:
        if ic["fault"]:
            console.print(f"  in context: on the engine's own inputs, the model's Q/DQ arithmetic "
                          f"gives a different result for {ic['frac_off']:.2%} of elements (max "
                          f"{ic['max_steps']:.1f} steps): [bold red]this node is where the engine "
                          f"departs from the model[/]", highlight=False)
        else:
            console.print(f"  in context: on the engine's own inputs, the model's Q/DQ arithmetic "
                          f"agrees ({ic['frac_off']:.2%} off, max {ic['max_steps']:.1f} steps): "
                          f"[yellow]this node computes correctly; the difference is rounding "
                          f"drift accumulated upstream[/]", highlight=False)
    w = Table("image", "index", "engine (steps)", "reference (steps)", "off by", title="worst elements",
              title_justify="left")
    for e in d["worst"]:
        w.add_row(str(e["image"]), str(e["index"]), f"{e['engine_steps']:.2f}",
                  f"{e['reference_steps']:.2f}", f"{e['steps_off']:.2f}")
    console.print(w)


def print_finding(f: dict[str, Any], console: Any = None) -> None:
    from rich.table import Table

    from ..report import wide_console

    console = console or wide_console()
    how = "every tensor" if f["exhaustive"] else "bisection over graph order"
    console.print(f"[bold]localize[/]: {f['engine']}  vs  {f['against']}  on {len(f['images'])} "
                  f"image(s); {f['compared_tensors']} quantized tensors, {f['probed']} probed "
                  f"({how}); compiles: {f['compiles']['engine']} + {f['compiles']['against']} "
                  f"(methods {f['method']['engine']} / {f['method']['against']})", highlight=False)
    console.print(_tensor_table(f["trail"], "probed quantized tensors, graph order"))
    d = f["first_divergence"]
    if d is None:
        console.print(f"[bold green]no divergence[/]: no {'' if f['exhaustive'] else 'probed '}"
                      f"quantized tensor has more than {f['frac']:.2%} of its elements off by more "
                      f"than one step", highlight=False)
    else:
        _print_detail(console, d, "first divergence")
        if not f["exhaustive"] and d.get("in_context") and not d["in_context"]["fault"]:
            console.print("  [yellow]a faulty node further down would be hidden by this drift: "
                          "--exhaustive checks every node in context[/]", highlight=False)
    if f["exhaustive"]:
        ff = f.get("first_fault")
        if ff is None:
            console.print("[bold green]no fault[/]: every node gives the model's Q/DQ result on "
                          "the engine's own inputs", highlight=False)
        elif d is None or ff["index"] != d["index"]:
            _print_detail(console, ff, "first fault")
        if f.get("faults"):
            o = Table("#", "tensor", "producer", "op", "frac off in context", "max steps",
                      title="every fault (the node's own arithmetic departs), worst first",
                      title_justify="left")
            for r in f["faults"][:10]:
                ic = r["in_context"]
                o.add_row(str(r["index"]), r["tensor"], r["producer"] or "-", r["producer_op"] or "-",
                          f"{ic['frac_off']:.4f}", f"{ic['max_steps']:.2f}")
            console.print(o)
