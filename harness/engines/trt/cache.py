"""The engine cache: built plans kept beside the results, reused only when provably ours.

A plan is valid only for the TensorRT version and its CUDA major, GPU (name, compute
capability and SM count: a MIG slice or cut-down part differs there), driver, model bytes
(the .onnx and any external-data files) and builder settings it was built with. Those facts
are hashed into a key; the plan is stored as `<model>.<key16>.plan` with a sidecar
`<model>.<key16>.json` holding the full key, the facts and the plan's sha256. A lookup
trusts nothing: an entry whose sidecar is missing, unreadable, for other facts, or whose
plan bytes changed is stale and is rebuilt, never loaded. The sidecar is written last, so an
interrupted write leaves no valid entry.

The timing cache (kernel timings) is keyed the same way minus the model and settings, since
it is shared across models on one GPU; it makes a rebuild pick the same kernels.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...fileio import sha256_file, write_atomic

KEY_SCHEMA = 2  # 2: external data, SM count and TensorRT's CUDA major joined the key
SUBDIR = "tensorrt"


@dataclass(frozen=True)
class CacheKeyFields:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.9"
    driver_version: str
    model_sha256: str
    builder_settings: dict[str, Any] = field(default_factory=dict)
    external_data_sha256: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    sm_count: int | None = None
    tensorrt_cuda_major: int | None = None
    schema: int = KEY_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _digest(obj: dict[str, Any]) -> str:
    # sort_keys + fixed separators: the same facts always give the same bytes, whatever
    # the dict order or Python version.
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(fields: CacheKeyFields) -> str:
    return _digest(fields.to_dict())


def timing_cache_key(fields: CacheKeyFields) -> str:
    """Kernel timings depend on the GPU, driver and TensorRT, not on the model."""
    return _digest({"schema": fields.schema, "tensorrt_version": fields.tensorrt_version,
                    "gpu_name": fields.gpu_name, "driver_version": fields.driver_version,
                    "compute_capability": fields.compute_capability,
                    "sm_count": fields.sm_count,
                    "tensorrt_cuda_major": fields.tensorrt_cuda_major})


def differing_fields(expected: dict[str, Any], found: dict[str, Any]) -> list[str]:
    keys = sorted(set(expected) | set(found))
    return [k for k in keys if expected.get(k) != found.get(k)]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class CacheDecision:
    status: str  # "hit", "miss", "stale" or "disabled"
    reason: str
    key: str | None = None
    plan_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "key": self.key,
                "plan": str(self.plan_path) if self.plan_path else None}


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "model"


class PlanCache:
    """Plans for one model file under `<root>/tensorrt/`; `root=None` disables caching."""

    def __init__(self, root: Path | None, model_name: str):
        self.dir = Path(root) / SUBDIR if root is not None else None
        self.stem = _safe_stem(Path(model_name).stem)

    def paths(self, key: str) -> tuple[Path, Path]:
        assert self.dir is not None
        base = f"{self.stem}.{key[:16]}"
        return self.dir / f"{base}.plan", self.dir / f"{base}.json"

    def _others(self, fields: CacheKeyFields, key: str) -> str:
        """Why the other entries for this model do not apply (helps explain a miss)."""
        notes = []
        for sidecar in sorted(self.dir.glob(f"{self.stem}.*.json")):
            try:
                found = json.loads(sidecar.read_text())
                if found.get("key") == key:
                    continue
                diff = differing_fields(fields.to_dict(), found.get("fields", {}))
                notes.append(f"{sidecar.name} differs in {', '.join(diff) or 'key only'}")
            except (OSError, ValueError, AttributeError):
                notes.append(f"{sidecar.name} unreadable")
        return "; ".join(notes)

    def lookup(self, fields: CacheKeyFields) -> CacheDecision:
        if self.dir is None:
            return CacheDecision("disabled", "no cache directory given")
        key = cache_key(fields)
        plan, sidecar = self.paths(key)

        def stale(why: str) -> CacheDecision:
            return CacheDecision("stale", why + "; rebuilding", key, plan)

        if not plan.exists() and not sidecar.exists():
            others = self._others(fields, key) if self.dir.is_dir() else ""
            return CacheDecision("miss", "no entry for this key" + (f" ({others})" if others
                                                                      else ""), key, plan)
        if not plan.exists():
            return stale("sidecar without plan file")
        if not sidecar.exists():
            return stale("plan file without sidecar (interrupted write or foreign file)")
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            return stale(f"sidecar unreadable ({e})")
        if not isinstance(meta, dict):
            return stale("sidecar is not a JSON object")
        if meta.get("key") != key or meta.get("fields") != fields.to_dict():
            diff = differing_fields(fields.to_dict(), meta.get("fields") or {})
            return stale(f"entry was built for other facts (differs in {', '.join(diff) or 'key'})")
        if meta.get("plan_sha256") != sha256_file(plan):
            return stale("plan file changed since it was cached (sha256 mismatch)")
        return CacheDecision("hit", "key, facts and plan sha256 match", key, plan)

    def read(self, decision: CacheDecision) -> bytes:
        assert decision.status == "hit" and decision.plan_path is not None
        return decision.plan_path.read_bytes()

    def store(self, fields: CacheKeyFields, plan_bytes: bytes) -> Path | None:
        if self.dir is None:
            return None
        key = cache_key(fields)
        plan, sidecar = self.paths(key)
        sidecar.unlink(missing_ok=True)  # the old entry stops being valid before the plan moves
        write_atomic(plan, plan_bytes)
        meta = {"key": key, "fields": fields.to_dict(), "plan_sha256": sha256_bytes(plan_bytes),
                "plan_bytes": len(plan_bytes)}
        write_atomic(sidecar, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
        return plan


class TimingCacheFile:
    """The builder's timing cache for one GPU/driver/TensorRT, reloaded across builds."""

    def __init__(self, root: Path | None, fields: CacheKeyFields):
        self.path = (Path(root) / SUBDIR / f"timing.{timing_cache_key(fields)[:16]}.cache"
                     if root is not None else None)

    def load(self) -> bytes | None:
        if self.path is None or not self.path.is_file():
            return None
        return self.path.read_bytes()

    def save(self, data: bytes) -> None:
        if self.path is not None and data:
            write_atomic(self.path, data)
