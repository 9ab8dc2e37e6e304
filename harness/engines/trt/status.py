"""Is the TensorRT engine usable here? Decided without touching TensorRT first.

Constructing a TensorRT builder or runtime on a machine without a usable GPU can take the
whole process down, so the driver is probed on its own (libcuda through ctypes, which fails
with an OSError, never a crash) before anything TensorRT is imported. The facts are gathered
by `collect_facts`; the decision is the pure function `unavailable_reason`.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

#: pip name -> import name of what the engine needs at run time (the `tensorrt` extra).
REQUIRED_PACKAGES: dict[str, str] = {
    "tensorrt": "tensorrt",
    "cuda-bindings": "cuda.bindings",
}
INSTALL_HINT = "pip install 'qparity[tensorrt]'"
MIN_TENSORRT_MAJOR = 10  # named-tensor I/O and execute_async_v3
# 11 changed the inspector's JSON (read both, see census.py) and removed weak typing (never
# used here); a later major is refused rather than guessed at.
MAX_TENSORRT_MAJOR = 11


def driver_library_names() -> tuple[str, ...]:
    """The CUDA driver library as the loader knows it (the versioned name on Linux: the
    unversioned libcuda.so only exists where the developer package is installed)."""
    if sys.platform.startswith("win"):
        return ("nvcuda.dll",)
    return ("libcuda.so.1",)


@dataclass(frozen=True)
class DriverFacts:
    library: str | None = None  # the name that loaded; None when none did
    load_error: str | None = None
    init_error: str | None = None  # cuInit's error name when it failed
    device_count: int | None = None
    cuda_version: int | None = None  # cuDriverGetVersion, e.g. 12040 for CUDA 12.4

    @property
    def tried(self) -> str:
        return ", ".join(driver_library_names())


@dataclass(frozen=True)
class ProbeFacts:
    driver: DriverFacts
    missing_packages: tuple[str, ...] = ()
    tensorrt_version: str | None = None
    tensorrt_import_error: str | None = None
    cuda_python_error: str | None = None  # cuda-python's runtime refused this driver
    # The CUDA major the installed TensorRT was built for, and how that was found out
    # (see tensorrt_cuda_build); None when it cannot be told.
    tensorrt_cuda_major: int | None = None
    tensorrt_cuda_source: str = "unknown"
    notes: tuple[str, ...] = field(default_factory=tuple)


def _cu_error_name(lib: ctypes.CDLL, code: int) -> str:
    name = ctypes.c_char_p()
    try:
        if lib.cuGetErrorName(ctypes.c_int(code), ctypes.byref(name)) == 0 and name.value:
            return f"{name.value.decode()} ({code})"
    except (AttributeError, OSError):
        pass
    return f"CUresult {code}"


def probe_driver(names: tuple[str, ...] | None = None) -> DriverFacts:
    """Load the CUDA driver with ctypes and ask it for devices; never raises."""
    errors = []
    lib = used = None
    for name in names or driver_library_names():
        try:
            lib, used = ctypes.CDLL(name), name
            break
        except OSError as e:
            errors.append(str(e))
    if lib is None:
        return DriverFacts(load_error="; ".join(errors) or "not found")
    try:
        rc = lib.cuInit(ctypes.c_uint(0))
        if rc != 0:
            return DriverFacts(library=used, init_error=_cu_error_name(lib, rc))
        count, version = ctypes.c_int(0), ctypes.c_int(0)
        rc = lib.cuDeviceGetCount(ctypes.byref(count))
        if rc != 0:
            return DriverFacts(library=used, init_error=_cu_error_name(lib, rc))
        lib.cuDriverGetVersion(ctypes.byref(version))
        return DriverFacts(library=used, device_count=count.value,
                           cuda_version=version.value or None)
    except (AttributeError, OSError) as e:  # a library by that name without the CUDA API
        return DriverFacts(library=used, init_error=f"not a usable CUDA driver ({e})")


def missing_packages(find_spec: Callable[[str], object] | None = None) -> tuple[str, ...]:
    """pip names of the required packages that are not installed. `find_spec` locates a
    module without importing it (for a dotted name it imports only the parent package)."""
    find_spec = find_spec or importlib.util.find_spec
    missing = []
    for pip_name, module in REQUIRED_PACKAGES.items():
        try:
            found = find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(pip_name)
    return tuple(missing)


def format_cuda_version(v: int | None) -> str | None:
    """CUDA's integer versions (12040) as people write them (12.4)."""
    if not v:
        return None
    return f"{v // 1000}.{(v % 1000) // 10}"


def _tensorrt_facts() -> tuple[str | None, str | None]:
    """Import tensorrt (only called once the driver is known to work)."""
    try:
        import tensorrt

        return str(tensorrt.__version__), None
    except Exception as e:  # ImportError, or OSError from a missing libnvinfer
        return None, f"{type(e).__name__}: {e}"


def _cuda_python_error() -> str | None:
    """cuda-python's runtime needs a driver at least as new as the CUDA it was built for
    (cuda-python 13.x refuses a CUDA 12 driver): ask it, it answers with an error code."""
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0:
            return getattr(err, "name", f"cudaError {int(err)}")
        if not count:
            return "cudaGetDeviceCount found no device"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


_CUDA_BUILD = re.compile(r"(?P<module>[a-z_]+?)_cu(?P<major>\d+)(?:_(?:libs|bindings))?")


def tensorrt_cuda_build(module: str = "tensorrt",
                        distributions: Mapping[str, list[str]] | None = None,
                        environ: Mapping[str, str] = os.environ) -> tuple[int | None, str]:
    """The CUDA major the installed TensorRT was built for, without importing it.

    NVIDIA's pip packages name it: `import tensorrt` comes from `tensorrt_cu12` or
    `tensorrt_cu13` (the `tensorrt` metapackage only points at one of them: from 10.13.2 on
    at `tensorrt_cu13`), and its bindings from `tensorrt_cuNN_bindings`. NVIDIA's TensorRT
    container installs a wheel named plain `tensorrt`; its CUDA is the container's, which
    NVIDIA's CUDA images state in CUDA_VERSION. Returns (major, source) or (None, why not).
    """
    if distributions is None:
        distributions = importlib.metadata.packages_distributions()
    names = [n for top in (module, f"{module}_bindings", f"{module}_libs")
             for n in distributions.get(top, [])]
    for name in names:
        m = _CUDA_BUILD.fullmatch(name.lower().replace("-", "_").replace(".", "_"))
        if m and m["module"] == module:
            return int(m["major"]), f"pip distribution {name}"
    cuda = environ.get("CUDA_VERSION", "")
    if names and re.match(r"\d+\.", cuda):
        return int(cuda.split(".")[0]), (f"distribution {names[0]} names no CUDA; "
                                         f"CUDA_VERSION={cuda} (NVIDIA container)")
    return None, ("not installed" if not names
                  else f"distribution {', '.join(sorted(set(names)))} names no CUDA major")


def collect_facts(names: tuple[str, ...] | None = None) -> ProbeFacts:
    """Driver first; TensorRT and cuda-python are imported only when the driver works."""
    driver = probe_driver(names)
    missing = missing_packages()
    driver_ok = driver.library and not driver.init_error and driver.device_count
    if not driver_ok:
        return ProbeFacts(driver=driver, missing_packages=missing)
    trt_version = trt_error = cuda_error = None
    trt_cuda: tuple[int | None, str] = (None, "unknown")
    if "tensorrt" not in missing:
        trt_cuda = tensorrt_cuda_build()
        trt_version, trt_error = _tensorrt_facts()
    if "cuda-bindings" not in missing:
        cuda_error = _cuda_python_error()
    return ProbeFacts(driver=driver, missing_packages=missing, tensorrt_version=trt_version,
                      tensorrt_import_error=trt_error, cuda_python_error=cuda_error,
                      tensorrt_cuda_major=trt_cuda[0], tensorrt_cuda_source=trt_cuda[1])


def _driver_reason(d: DriverFacts) -> str | None:
    if d.library is None:
        names = " / ".join(driver_library_names())
        return f"no NVIDIA driver ({names} not found)"
    if d.init_error:
        hint = ""
        if "NO_DEVICE" in d.init_error:
            hint = " (no GPU visible to this process: container started without GPUs, or " \
                   "CUDA_VISIBLE_DEVICES hides them)"
        return f"NVIDIA driver loaded but cuInit failed: {d.init_error}{hint}"
    if not d.device_count:
        return "NVIDIA driver loaded but it reports no CUDA device"
    return None


def _major(version: str) -> int | None:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return None


def cuda_build_mismatch(f: ProbeFacts) -> str | None:
    """TensorRT built for a newer CUDA major than the driver supports: importing it works,
    the probe's CUDA calls work, and then creating the Runtime fails (TensorRT logs CUDA
    error 35, Python sees "pybind11::init(): factory function returned nullptr"). Said here
    instead, before any TensorRT object exists."""
    driver_major = f.driver.cuda_version // 1000 if f.driver.cuda_version else None
    if not driver_major or not f.tensorrt_cuda_major or f.tensorrt_cuda_major <= driver_major:
        return None
    return (f"tensorrt {f.tensorrt_version or ''} is the CUDA {f.tensorrt_cuda_major} build "
            f"({f.tensorrt_cuda_source}) but the NVIDIA driver supports CUDA "
            f"{format_cuda_version(f.driver.cuda_version)}: TensorRT could not create its runtime "
            f"(CUDA error 35, insufficient driver); install the CUDA {driver_major} build "
            f"(pip install 'tensorrt-cu{driver_major}<11', which {INSTALL_HINT} pins for CUDA "
            "12) or a newer driver").replace("tensorrt  is", "tensorrt is")


def unavailable_reason(f: ProbeFacts) -> str | None:
    """None when the engine can run; otherwise every reason found, most basic first."""
    reasons = []
    driver = _driver_reason(f.driver)
    if driver:
        reasons.append(driver)
    if f.missing_packages:
        verb = "is" if len(f.missing_packages) == 1 else "are"
        reasons.append(f"{' and '.join(f.missing_packages)} {verb} not installed ({INSTALL_HINT})")
    if f.tensorrt_import_error:
        reasons.append(f"tensorrt cannot be imported: {f.tensorrt_import_error}")
    elif f.tensorrt_version and (_major(f.tensorrt_version) or 0) < MIN_TENSORRT_MAJOR:
        reasons.append(f"tensorrt {f.tensorrt_version} is older than {MIN_TENSORRT_MAJOR}.0 "
                       "(the engine uses the named-tensor API and execute_async_v3)")
    elif f.tensorrt_version and (_major(f.tensorrt_version) or 0) > MAX_TENSORRT_MAJOR:
        reasons.append(f"tensorrt {f.tensorrt_version} is newer than this engine knows (written "
                       f"for TensorRT {MIN_TENSORRT_MAJOR}-{MAX_TENSORRT_MAJOR}: its inspector "
                       "JSON and API are checked against those); install tensorrt-cu12<11")
    mismatch = cuda_build_mismatch(f)
    if mismatch:
        reasons.append(mismatch)
    if f.cuda_python_error:
        driver_cuda = format_cuda_version(f.driver.cuda_version) or "unknown"
        reasons.append(f"cuda-bindings cannot use this driver (driver supports CUDA "
                       f"{driver_cuda}): {f.cuda_python_error}; install the cuda-bindings major "
                       "version that matches the driver's CUDA major (the tensorrt extra pins 12)")
    return "; ".join(reasons) or None
