"""The locked protocol: loaded from one file, overridable only visibly."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from typing import Any

from .errors import QParityError


@dataclass(frozen=True)
class Protocol:
    version: str
    size: int
    stride: int
    pad_color: int
    auto: bool
    scaleup: bool
    conf_thres: float
    iou_thres: float
    multi_label: bool
    class_agnostic: bool
    max_nms: int
    max_det: int
    batch: int
    warmup: int
    runs: int
    golden: str
    tolerance_map50_95: float
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        return not self.overrides

    def with_overrides(self, **changes: Any) -> "Protocol":
        """Return a copy with fields changed; each change is recorded, so a report can never
        present a modified protocol as the locked baseline."""
        names = {f.name for f in fields(self)} - {"overrides", "version"}
        moved = dict(self.overrides)
        for key, value in changes.items():
            if value is None:
                continue
            if key not in names:
                raise QParityError(f"unknown protocol field {key!r}")
            locked = getattr(locked_protocol(), key)
            value = type(locked)(value)
            if value != locked:
                moved[key] = {"locked": locked, "used": value}
            else:
                moved.pop(key, None)
            changes[key] = value
        return replace(self, **{k: v for k, v in changes.items() if v is not None}, overrides=moved)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["baseline"] = self.is_baseline
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Protocol":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _read_locked() -> Protocol:
    raw = tomllib.loads(resources.files("harness").joinpath("protocol.toml").read_text())
    flat: dict[str, Any] = {"version": raw["version"]}
    for section in ("input", "postprocess", "latency", "gate"):
        flat.update(raw[section])
    return Protocol(**flat)


_LOCKED: Protocol | None = None


def locked_protocol() -> Protocol:
    global _LOCKED
    if _LOCKED is None:
        _LOCKED = _read_locked()
    return _LOCKED
