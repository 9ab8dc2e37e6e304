"""The environment a result was measured in: enough to tell two platforms apart."""

from __future__ import annotations

import importlib.metadata as md
import platform
import subprocess
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


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
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
