"""The engine result record: `<out>/<engine>.json`, one engine's run (harness/runner.py).

The runner builds it as a dict while it works (so a failure keeps whatever was measured) and
checks it through `EngineResult.from_json` before every write. The collector reads result files
through `harness.results.read_result`, which adds the checks a type cannot express (the engine
named like its file, the locked protocol, an `ok` result carrying its metrics, latency and
hashes, an emulated run carrying no latency), and keeps the records: the nightly and the
history judge and store from them.

Optional fields are optional because a result is written at every stage of a run: an engine
refused before it loaded the model has no `model`, one interrupted during the latency
measurement has metrics but no `latency_ms`. Free-form parts (`env`, `engine_info`, `census`,
`protocol`) hold keys that belong to a library or are checked against the locked protocol
instead (results.check_protocol).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .base import Record, Section

# What an engine run can end as. Anything else in a file is not a result qparity wrote.
Status = Literal["ok", "error", "unavailable", "interrupted"]
STATUSES: tuple[str, ...] = get_args(Status)


def doc(text: str) -> Any:
    return field(default=None, metadata={"doc": text})


@dataclass
class ModelFacts(Section):
    """The model file as harness/modelinfo.py inspected it: hashes, I/O contract, quantization."""
    path: str | None = None
    md5: str | None = None
    sha256: str | None = doc("sha256 of the model file (and its external data files)")
    size_bytes: int | None = None
    input_name: str | None = None
    input_shape: list[int | str] | None = None
    output_name: str | None = None
    output_shape: list[int | str] | None = None
    num_classes: int | None = None
    opset: int | None = None
    quantize_nodes: int | None = None
    dequantize_nodes: int | None = None
    quantized_compute_ops: int | None = doc("compute ops whose weight comes through a "
                                            "DequantizeLinear")
    compute_ops: int | None = None
    md5_file_check: Literal["ok", "mismatch", "absent"] | None = doc(
        "the md5 recorded beside the model (onnx_int8_md5.txt): ok, mismatch or absent")
    external_data: list[dict[str, Any]] | None = None
    is_int8_qdq: bool | None = None


@dataclass
class DataManifest(Section):
    """Which images and annotations were evaluated (harness/data.py Dataset.manifest)."""
    images_dir: str | None = None
    annotations: str | None = None
    annotations_sha256: str | None = None
    images_evaluated: int | None = None
    images_in_folder: int | None = None
    limit: int | None = None
    image_list_sha256: str | None = doc("sha256 of the evaluated file names, one a line, in order")
    num_classes: int | None = None


# pycocotools' first six statistics, in its order (harness/metrics.py), as Metrics names them.
COCO_METRICS = ("map50_95", "map50", "map75", "map_small", "map_medium", "map_large")


@dataclass
class Metrics(Section):
    """COCO metrics from pycocotools, in points (0..100); null where pycocotools cannot define
    one (no ground truth of that size)."""
    map50_95: float | None
    map50: float | None
    map75: float | None
    map_small: float | None
    map_medium: float | None
    map_large: float | None
    images: int | None = None
    detections: int | None = None


@dataclass
class ResultMetrics(Metrics):
    """An engine result's metrics: the COCO figures (as the evaluation report carries them)
    and, from the same pycocotools evaluation, AP50-95 per class (harness/metrics.py
    class_aps). Results written before it was recorded have no `per_class_ap50_95`."""
    per_class_ap50_95: dict[str, float | None] | None = doc(
        "AP50-95 per category name, in points, in category id order (a name two categories "
        "share is followed by ' #<id>'): each category's pycocotools precision (area all, "
        "100 detections) averaged as summarize averages the whole; null for a category "
        "without ground truth among the evaluated images. The mean of the non-null values is "
        "map50_95 (each rounded to 4 places)")


@dataclass
class LatencyStats(Section):
    """Statistics of latency samples in milliseconds (harness/latency.py summarize)."""
    median: float
    p95: float
    n: int | None = None
    p99: float | None = None
    mean: float | None = None
    stdev: float | None = None
    min: float | None = None
    max: float | None = None
    cv: float | None = None
    samples_ms: list[float] | None = None


@dataclass
class Spinning(Section):
    """The engine's thread-spinning setting in each phase (null: the engine has none)."""
    accuracy_pass: str | None = None
    latency: str | None = None


@dataclass
class Latency(LatencyStats):
    """The latency protocol's figures: batch 1, warm-up runs untimed, then timed runs."""
    warmup: int | None = None
    input: str | None = doc("how each timed call's input was staged")
    first_inference_ms: float | None = None
    timed: str | None = doc("what one timed sample covers (model execution only, copies...)")
    spinning: Spinning | None = None
    engine_reported: LatencyStats | None = doc("the engine's own measure of each timed run")


@dataclass
class Emulation(Section):
    """The emulated CPU an accuracy-only run ran on (harness/emulate.py mark_result)."""
    spec: str
    qemu_model: str
    flags_seen: list[str]
    label: str
    class_: str | None = None
    class_seen: str | None = None
    latency: str | None = None
    host_cpu: str | None = None

    # "class" is a Python keyword: the JSON key is `class`.
    @classmethod
    def from_json(cls, data: Any, where: str = "") -> "Emulation":
        if isinstance(data, dict) and "class" in data:
            data = {("class_" if k == "class" else k): v for k, v in data.items()}
        return super().from_json(data, where)

    def to_json(self, omit_absent: bool = False) -> dict[str, Any]:
        return {("class" if k == "class_" else k): v
                for k, v in super().to_json(omit_absent).items()}

    @classmethod
    def json_schema(cls, defs: dict[str, Any] | None = None) -> dict[str, Any]:
        s = super().json_schema(defs)
        s["properties"] = {("class" if k == "class_" else k): v
                           for k, v in s["properties"].items()}
        return s


@dataclass
class EngineResult(Record):
    """One engine's run: what it measured, on which model and data, with which settings, and
    how it ended. Written by the runner at every stage, so a failure keeps what was measured."""
    KIND = "engine-result"
    VERSION = 1

    engine: str
    status: Status
    reason: str = ""
    run_id: str | None = doc("the run this result belongs to; null outside a run")
    started: str | None = None
    finished: str | None = None
    protocol: dict[str, Any] | None = doc(
        "the protocol used (protocol.toml's fields plus `overrides`); checked against the "
        "locked protocol by results.check_protocol")
    env: dict[str, Any] | None = doc("environment facts (harness/envinfo.py)")
    reference: bool = field(default=False, metadata={"doc": (
        "a diagnostic yardstick (the model's own Q/DQ arithmetic), never gated")})
    emulated: Emulation | None = None
    model: ModelFacts | None = None
    data: DataManifest | None = None
    load_s: float | None = None
    eval_timing: dict[str, float] | None = doc("where the evaluation pass spent its time")
    detections_file: str | None = None
    metrics: ResultMetrics | None = None
    latency_ms: Latency | None = None
    engine_info: dict[str, Any] | None = doc("the engine's describe(): library, version, "
                                             "settings")
    census: dict[str, Any] | None = doc("which compute ops really ran in int8")
    partial: bool | None = doc("a checkpoint written before the latency measurement")
    cached_from: str | None = doc("the demo's cache file this result was read from")


__all__ = ["COCO_METRICS", "DataManifest", "Emulation", "EngineResult", "Latency", "LatencyStats", "Metrics",
           "ModelFacts", "ResultMetrics", "STATUSES", "Spinning", "Status"]
