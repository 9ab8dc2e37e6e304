"""One colour per engine, the same in every plot (the run page and the history page).

Okabe-Ito colours (distinguishable with the common colour-vision deficiencies). The known
engines have fixed ones; any other engine (a plugin) gets one chosen from its name by a stable
hash, so it too keeps its colour from page to page and run to run.
"""

from __future__ import annotations

import hashlib

ENGINE_COLOURS = {
    "ort-cpu": "#0072B2",   # blue: the golden engine
    "openvino": "#E69F00",  # orange
    "tensorrt": "#009E73",  # green
    "qdq-ref": "#6E6E6E",   # grey: the yardstick, never gated
}
OTHERS = ("#CC79A7", "#D55E00", "#56B4E9", "#8C6D1F", "#000000", "#F0E442")


def engine_colour(engine: str) -> str:
    if engine in ENGINE_COLOURS:
        return ENGINE_COLOURS[engine]
    h = int(hashlib.sha256(engine.encode()).hexdigest(), 16)
    return OTHERS[h % len(OTHERS)]
