"""CUDA through cuda-python (`cuda.bindings.runtime`): error checks, page-locked and device
buffers, one stream, events.

cuda-python returns a tuple from every call, the error code first: `(err,)`, `(err, value)`
or `(err, v1, v2, ...)`. Nothing raises on its own, so every call goes through `check_cuda`,
which turns a failure into a `CudaError` naming the call and the CUDA error.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from .io_plan import TensorPlan

#: What to do about the errors people actually meet with this engine.
HINTS: dict[str, str] = {
    "cudaErrorInsufficientDriver": "the NVIDIA driver is older than the CUDA version this "
    "cuda-bindings was built for; install the cuda-bindings major version matching the driver",
    "cudaErrorNoDevice": "no GPU visible to this process",
    "cudaErrorMemoryAllocation": "out of GPU (or page-locked host) memory",
    "cudaErrorInvalidDevice": "no such CUDA device index",
    "CUDA_ERROR_NO_DEVICE": "no GPU visible to this process",
    "CUDA_ERROR_OUT_OF_MEMORY": "out of GPU memory",
}


class CudaError(RuntimeError):
    """A CUDA call failed; the message names the call, the error and, if known, a hint."""

    def __init__(self, what: str, name: str, code: int):
        hint = HINTS.get(name)
        super().__init__(f"{what} failed: {name} ({code})" + (f": {hint}" if hint else ""))
        self.what, self.name, self.code = what, name, code


def error_name(err: Any) -> str:
    """cuda-python's error codes are enums (`cudaError_t.cudaErrorNoDevice`); keep the name."""
    name = getattr(err, "name", None)
    return str(name) if name else f"CUDA error {int(err)}"


def check_cuda(result: Any, what: str) -> Any:
    """Unpack a cuda-python result: raise on an error, else return the value(s) after it
    (None for `(err,)`, the value for `(err, v)`, a tuple for more)."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:  # a few calls return the bare error code
        err, values = result, ()
    if int(err) != 0:
        raise CudaError(what, error_name(err), int(err))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def host_view(address: int, plan: TensorPlan) -> np.ndarray:
    """A writable numpy array over `plan.nbytes` of memory at `address` (page-locked memory
    from cudaMallocHost): no copy, so writing into it is writing the staging buffer."""
    raw = (ctypes.c_byte * plan.nbytes).from_address(address)
    return np.frombuffer(raw, dtype=plan.dtype).reshape(plan.shape)


@dataclass
class StagedTensor:
    """One I/O tensor: a page-locked host buffer and a device buffer of the same size."""

    plan: TensorPlan
    host_ptr: int
    device_ptr: int
    host: np.ndarray


class CudaSession:
    """One device, one stream, four events, and the buffers; `close` frees all of it.

    The events bracket each inference twice: `start`/`end` around the execution alone
    (what trtexec reports as "GPU Compute Time"), `copy_start`/`copy_end` around the H2D
    copy, the execution and the D2H copy (trtexec's "Latency"). Everything is allocated once
    in `__init__`/`stage`, so the timed path only enqueues copies and records events.
    `cudart` is `cuda.bindings.runtime`, passed in so this module imports nothing
    GPU-related at import time.
    """

    _EVENTS = ("start", "end", "copy_start", "copy_end")

    def __init__(self, cudart: Any, device: int):
        self.cudart = cudart
        self.device = device
        self.tensors: list[StagedTensor] = []
        self.stream = self.start = self.end = self.copy_start = self.copy_end = None
        check_cuda(cudart.cudaSetDevice(device), f"cudaSetDevice({device})")
        try:
            # A non-blocking stream does not synchronise with the legacy default stream,
            # which TensorRT warns costs extra synchronisation and graph capture refuses.
            self.stream = check_cuda(
                cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking),
                "cudaStreamCreateWithFlags")
            for name in self._EVENTS:
                setattr(self, name, check_cuda(cudart.cudaEventCreate(), "cudaEventCreate"))
        except CudaError:
            self.close()  # the caller never gets the object, so it could not free it
            raise

    @property
    def stream_handle(self) -> int:
        """The raw cudaStream_t value, what TensorRT's execute_async_v3 takes."""
        return int(self.stream)

    def stage(self, plan: TensorPlan) -> StagedTensor:
        host_ptr = check_cuda(self.cudart.cudaMallocHost(plan.nbytes),
                              f"cudaMallocHost({plan.nbytes}) for {plan.name!r}")
        try:
            device_ptr = check_cuda(self.cudart.cudaMalloc(plan.nbytes),
                                    f"cudaMalloc({plan.nbytes}) for {plan.name!r}")
        except CudaError:
            self.cudart.cudaFreeHost(host_ptr)
            raise
        t = StagedTensor(plan, int(host_ptr), int(device_ptr), host_view(int(host_ptr), plan))
        self.tensors.append(t)
        return t

    def to_device(self, t: StagedTensor) -> None:
        check_cuda(self.cudart.cudaMemcpyAsync(
            t.device_ptr, t.host_ptr, t.plan.nbytes,
            self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream),
            f"cudaMemcpyAsync H2D {t.plan.name!r}")

    def to_host(self, t: StagedTensor) -> None:
        check_cuda(self.cudart.cudaMemcpyAsync(
            t.host_ptr, t.device_ptr, t.plan.nbytes,
            self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream),
            f"cudaMemcpyAsync D2H {t.plan.name!r}")

    def record(self, event: Any, what: str) -> None:
        check_cuda(self.cudart.cudaEventRecord(event, self.stream), f"cudaEventRecord({what})")

    def synchronize(self) -> None:
        check_cuda(self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def elapsed_ms(self, first: Any = None, last: Any = None) -> float:
        """GPU time between two recorded events, by default start and end (valid after
        synchronize)."""
        first = self.start if first is None else first
        last = self.end if last is None else last
        return float(check_cuda(self.cudart.cudaEventElapsedTime(first, last),
                                "cudaEventElapsedTime"))

    def close(self) -> list[str]:
        """Free everything, best effort; return the errors instead of raising them (this
        runs in cleanup paths, where an exception would hide the original one)."""
        errors = []

        def free(result: Any, what: str) -> None:
            try:
                check_cuda(result, what)
            except CudaError as e:
                errors.append(str(e))

        for t in self.tensors:
            free(self.cudart.cudaFree(t.device_ptr), f"cudaFree {t.plan.name!r}")
            free(self.cudart.cudaFreeHost(t.host_ptr), f"cudaFreeHost {t.plan.name!r}")
        self.tensors = []
        for name in self._EVENTS:
            ev = getattr(self, name)
            if ev is not None:
                free(self.cudart.cudaEventDestroy(ev), "cudaEventDestroy")
            setattr(self, name, None)
        if self.stream is not None:
            free(self.cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
            self.stream = None
        return errors


class CudaGraph:
    """execute_async_v3 captured once into a CUDA graph and replayed (option cuda_graph=1).

    TensorRT needs one ordinary enqueue (and a synchronize) after the tensor addresses are
    set and before capture, so that its lazy per-context set-up is not captured. The graph
    fixes the tensor addresses, which is fine: the buffers never move.
    """

    def __init__(self, session: CudaSession, enqueue: Any):
        cudart = session.cudart
        self.cudart, self.session = cudart, session
        self.graph = self.exec = None
        if not enqueue():
            raise RuntimeError("execute_async_v3 returned False before graph capture")
        session.synchronize()
        check_cuda(cudart.cudaStreamBeginCapture(
            session.stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
            "cudaStreamBeginCapture")
        try:
            ok = enqueue()
        finally:  # always end the capture, or the stream stays unusable
            self.graph = check_cuda(cudart.cudaStreamEndCapture(session.stream),
                                    "cudaStreamEndCapture")
        if not ok:
            raise RuntimeError("execute_async_v3 returned False during graph capture")
        self.exec = check_cuda(cudart.cudaGraphInstantiate(self.graph, 0), "cudaGraphInstantiate")

    def launch(self) -> None:
        check_cuda(self.cudart.cudaGraphLaunch(self.exec, self.session.stream), "cudaGraphLaunch")

    def close(self) -> None:
        if self.exec is not None:
            self.cudart.cudaGraphExecDestroy(self.exec)
            self.exec = None
        if self.graph is not None:
            self.cudart.cudaGraphDestroy(self.graph)
            self.graph = None
