"""What GPU ran it: CUDA's view of the device, NVML's clocks and settings. Best effort:
a fact that cannot be read is recorded as such, never an exception."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .cuda import check_cuda
from .status import format_cuda_version


@dataclass(frozen=True)
class DeviceIdentity:
    index: int
    name: str
    compute_capability: str
    total_memory_bytes: int
    # The SM count tells a MIG slice (or a cut-down SKU sharing the name) from the full GPU:
    # a plan is tuned for the SMs it was built on.
    sm_count: int | None
    pci_bus_id: str | None
    cuda_driver_version: str | None  # the CUDA version the driver supports
    cuda_runtime_version: str | None  # the CUDA version cuda-python's runtime is built for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _text(v: Any) -> str:
    """A C string from cuda-python or NVML. cudaDeviceGetPCIBusId and the properties' name
    come back as the whole fixed-size buffer: the text ends at the first NUL, and whatever
    follows it (padding, stale bytes) is not part of it."""
    text = v.decode(errors="replace") if isinstance(v, (bytes, bytearray)) else str(v)
    return text.split("\x00", 1)[0].strip()


def cuda_device_identity(cudart: Any, device: int) -> DeviceIdentity:
    props = check_cuda(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    try:
        bus = _text(check_cuda(cudart.cudaDeviceGetPCIBusId(32, device), "cudaDeviceGetPCIBusId"))
    except Exception:
        bus = None
    driver = check_cuda(cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
    runtime = check_cuda(cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
    return DeviceIdentity(index=device, name=_text(props.name),
                          compute_capability=f"{props.major}.{props.minor}",
                          total_memory_bytes=int(props.totalGlobalMem),
                          sm_count=_int_or_none(getattr(props, "multiProcessorCount", None)),
                          pci_bus_id=bus,
                          cuda_driver_version=format_cuda_version(driver),
                          cuda_runtime_version=format_cuda_version(runtime))


def _int_or_none(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _read(fn: Callable[[], Any]) -> Any:
    try:
        v = fn()
    except Exception as e:  # NVMLError_NotSupported, NoPermission, missing symbol, ...
        return f"unavailable: {e}"
    return _text(v) if isinstance(v, bytes) else v


def nvml_snapshot(nvml: Any, pci_bus_id: str | None) -> dict[str, Any]:
    """Clocks, power and persistence of the device CUDA uses, found by PCI bus id (NVML's
    and CUDA's device indices can differ). `nvml` is the pynvml module (nvidia-ml-py)."""
    try:
        nvml.nvmlInit()
    except Exception as e:
        return {"nvml": f"unavailable: {e}"}
    try:
        if pci_bus_id:
            h = nvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
        else:
            return {"nvml": "unavailable: no PCI bus id to find the device"}
        mhz = lambda kind: _read(lambda: nvml.nvmlDeviceGetClockInfo(h, kind))  # noqa: E731
        max_mhz = lambda kind: _read(lambda: nvml.nvmlDeviceGetMaxClockInfo(h, kind))  # noqa: E731
        # renamed in newer NVML; a missing one is recorded by _read, not raised
        reasons = (getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
                   or getattr(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
        return {
            "name": _read(lambda: nvml.nvmlDeviceGetName(h)),
            "driver_version": _read(nvml.nvmlSystemGetDriverVersion),
            "memory_total_bytes": _read(lambda: nvml.nvmlDeviceGetMemoryInfo(h).total),
            "persistence_mode": _read(lambda: nvml.nvmlDeviceGetPersistenceMode(h)
                                      == nvml.NVML_FEATURE_ENABLED),
            "performance_state": _read(lambda: nvml.nvmlDeviceGetPerformanceState(h)),
            "clocks_mhz": {"sm": mhz(nvml.NVML_CLOCK_SM), "mem": mhz(nvml.NVML_CLOCK_MEM),
                           "graphics": mhz(nvml.NVML_CLOCK_GRAPHICS)},
            "max_clocks_mhz": {"sm": max_mhz(nvml.NVML_CLOCK_SM),
                               "mem": max_mhz(nvml.NVML_CLOCK_MEM)},
            "applications_clocks_mhz": {
                "graphics": _read(lambda: nvml.nvmlDeviceGetApplicationsClock(
                    h, nvml.NVML_CLOCK_GRAPHICS)),
                "mem": _read(lambda: nvml.nvmlDeviceGetApplicationsClock(h, nvml.NVML_CLOCK_MEM))},
            "clock_event_reasons_mask": _read(lambda: reasons(h)),
            "power_limit_w": _read(lambda: nvml.nvmlDeviceGetPowerManagementLimit(h) / 1000),
            "temperature_c": _read(lambda: nvml.nvmlDeviceGetTemperature(
                h, nvml.NVML_TEMPERATURE_GPU)),
            "compute_mode": _read(lambda: nvml.nvmlDeviceGetComputeMode(h)),
            # (current, pending); with MIG on, CUDA sees a slice: its SM count is in the
            # device identity and the plan cache key
            "mig_mode": _read(lambda: list(nvml.nvmlDeviceGetMigMode(h))),
        }
    except Exception as e:
        return {"nvml": f"unavailable: {e}"}
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def import_nvml() -> Any | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def driver_version(nvml: Any | None, cuda_driver_version: str | None,
                   proc_file: Path = Path("/proc/driver/nvidia/version")) -> tuple[str, str]:
    """The driver's own version ("550.54.15") and where it came from. NVML first; the
    kernel module's version file where NVML is absent; CUDA's coarse version last, marked
    as such so a cache key never mixes the two silently."""
    if nvml is not None:
        try:
            nvml.nvmlInit()
            try:
                return _text(nvml.nvmlSystemGetDriverVersion()), "nvml"
            finally:
                nvml.nvmlShutdown()
        except Exception:
            pass
    try:
        for word in proc_file.read_text().split():
            parts = word.split(".")
            if len(parts) >= 2 and all(p.isdigit() for p in parts):
                return word, str(proc_file)
    except OSError:
        pass
    return f"cuda-{cuda_driver_version or 'unknown'}", "cudaDriverGetVersion"
