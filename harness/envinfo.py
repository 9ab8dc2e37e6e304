"""The environment a result was measured in: enough to tell two platforms apart."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .engines.base import visible_cpus

CPU_FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                         "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve")
LIBRARIES = ("numpy", "onnx", "onnxruntime", "openvino", "pycocotools", "opencv-python-headless",
             "opencv-python", "rich", "tensorrt", "tensorrt-cu12", "cuda-python", "cuda-bindings",
             "nvidia-ml-py")


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "arch": platform.machine(),
            "flags": [f for f in CPU_FLAGS_OF_INTEREST if f in flags],
            "vnni": bool(flags & {"avx512_vnni", "avx_vnni"}),
            "visible_cpus": visible_cpus()}


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


# An installed distribution's metadata folder: `<name>-<version>.dist-info` (the wheel spec
# names it so; pip and uv install it under that name) or `<name>-<version>[-pyX.Y].egg-info`.
_DIST_DIR = re.compile(r"^(?P<name>[A-Za-z0-9._]+?)(?:-(?P<version>[^-]+?)(?:-py[0-9.]+)?)?"
                       r"\.(?:dist|egg)-info$")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _installed_versions() -> dict[str, str | None]:
    """Normalized name -> version of each distribution on sys.path, the first found winning
    (as importlib.metadata resolves them), read from the metadata folders' names: one listing
    per path entry, instead of importlib.metadata's import (email parsing, ~40 ms, a tenth of
    `qparity collect`) and a search per name. None: a folder without a version in its name."""
    found: dict[str, str | None] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:  # a zip, a missing folder
            continue
        for n in names:
            m = _DIST_DIR.match(n)
            if m:
                found.setdefault(_normalized(m["name"]), m["version"])
    return found


def library_versions() -> dict[str, str]:
    installed = _installed_versions()
    out = {}
    for name in LIBRARIES:
        key = _normalized(name)
        if key not in installed:
            continue
        version = installed[key]
        if version is None:  # e.g. a `setup.py develop` egg-info: ask the metadata itself
            import importlib.metadata as md

            try:
                version = md.version(name)
            except md.PackageNotFoundError:
                continue
        out[name] = version
    return out


def git_state() -> dict[str, Any]:
    """The harness's own commit and whether the tree was dirty (None outside a checkout)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def gpu_info() -> list[dict[str, Any]]:
    """NVIDIA GPUs through NVML when it is installed and a driver answers; else none."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            gpus.append({"name": str(pynvml.nvmlDeviceGetName(h)),
                         "memory_gib": round(pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30, 1),
                         "driver": str(pynvml.nvmlSystemGetDriverVersion())})
        return gpus
    finally:
        pynvml.nvmlShutdown()


def environment() -> dict[str, Any]:
    return {
        "os": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
        "cpu": cpu_info(),
        "memory_gib": memory_gib(),
        "gpus": gpu_info(),
        "libraries": library_versions(),
        "harness": {"version": __version__, **git_state()},
    }
