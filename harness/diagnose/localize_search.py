"""`qparity localize`'s judging: how far two tensors are apart in quantization steps, and the
bisection that finds the first diverging tensor with few probes. numpy only: no engine, no
terminal output (see localize_judge.py for the method, localize_render.py for the tables).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import QParityError

STEP_TOL = 1.0 + 1e-3  # "more than one step", with room for float32 dequantization error
WORST = 8


# ----------------------------------------------------------------------------- comparison
def compare(a: np.ndarray, b: np.ndarray, qa: Any, qb: Any, images: list[str]) -> dict[str, Any]:
    """a, b: dequantized values [N, ...]; qa, qb: the tensor's QuantParams on each side."""
    if a.size != b.size:
        raise QParityError(f"tensor sizes differ between the two sides ({a.shape} vs {b.shape})")
    a = a.reshape(b.shape).astype(np.float64)
    b = b.astype(np.float64)
    scale = np.minimum(qa.scale.astype(np.float64), qb.scale.astype(np.float64))
    if scale.size > 1:  # per-channel along the axis (each image's axis 0 is its batch of 1)
        axis = qa.axis if qa.axis is not None else 1
        shape = [1] * b.ndim
        shape[axis if axis >= 0 else b.ndim + axis] = scale.size
        scale = scale.reshape(shape)
    scale = np.broadcast_to(scale, b.shape)
    steps = np.abs(a - b) / scale
    off = steps > STEP_TOL
    frac = float(off.mean()) if off.size else 0.0
    worst = []
    for f in np.argsort(steps, axis=None)[::-1][:WORST] if steps.size else []:
        idx = np.unravel_index(int(f), steps.shape)
        s = float(steps[idx])
        if s <= STEP_TOL and worst:
            break
        sc = float(scale[idx])
        worst.append({"image": images[idx[0]] if idx[0] < len(images) else int(idx[0]),
                      "index": [int(i) for i in idx[1:]], "engine_value": float(a[idx]),
                      "reference_value": float(b[idx]), "engine_steps": round(float(a[idx]) / sc, 3),
                      "reference_steps": round(float(b[idx]) / sc, 3), "steps_off": round(s, 3)})
    return {"frac_off": frac, "max_steps": float(steps.max()) if steps.size else 0.0,
            "mean_steps": float(steps.mean()) if steps.size else 0.0,
            "frac_any": float((steps > 0.5).mean()) if steps.size else 0.0,
            "elements": int(steps.size), "worst": worst}


# ----------------------------------------------------------------------------- search
def search(order: list[int], ancestors: dict[int, int], q_inputs: dict[int, list[int]],
           probe: Callable[[int], bool], exhaustive: bool = False) -> int | None:
    """First diverging index in `order` (ascending graph order), assuming divergence propagates
    (a tensor downstream of a diverged one diverges; one upstream of an agreeing one agrees).
    `ancestors[i]` is a bitset of the indices upstream of i; `probe(i)` says whether i diverged.
    The answer is verified: its nearest quantized inputs are probed and must agree."""
    known: dict[int, bool] = {}

    def p(i: int) -> bool:
        if i not in known:
            known[i] = probe(i)
        return known[i]

    if exhaustive:
        bad = [i for i in order if p(i)]
        return bad[0] if bad else None
    good = 0  # bitset of indices known or (by propagation) assumed to agree
    first: int | None = None
    cand = list(order)
    while True:
        while cand:
            m = cand[len(cand) // 2]
            if p(m):
                first = m
                cand = [c for c in cand if c < m]
            else:
                good |= ancestors[m] | (1 << m)
                cand = [c for c in cand if not (good >> c) & 1]
        if first is None:
            return None
        bad_inputs = [i for i in q_inputs[first] if p(i)]
        if not bad_inputs:
            return first
        # propagation did not hold here (an input diverged but was absorbed upstream of a
        # probe that agreed): go on from the earliest diverged input
        first = min(bad_inputs)
        cand = [c for c in order if c < first and c not in known and not (good >> c) & 1]
