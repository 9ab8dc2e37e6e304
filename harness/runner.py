"""Run one engine over the data: evaluate, time, describe; always leave a result file.

`execute` does the work in this process. `run_isolated` runs it in a child process (its own
process group), so a crash (a segfault in an engine's native code) costs only that engine's
result, which the parent then writes as an `error` saying how the child died; a child past its
timeout is ended with its whole group (`error: timed out`), and Ctrl-C is passed on to it so it
writes an `interrupted` result before the run stops.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import emulate
from .data import Dataset
from .engines import EngineConfig, EngineFailure, EngineUnavailable, engine_class
from .errors import QParityError
from .evaluate import run_dataset
from .latency import measure
from .metrics import evaluate
from .modelinfo import inspect_model
from .progress import bar as progress_bar
from .protocol import Protocol
from .results import RESULT_SCHEMA, detections_path, new_result, result_path, write_result

# How long one engine child may run before its process group is ended. Generous: a TensorRT
# build plus 5000 images on a slow CPU stays well inside it; a hung engine does not.
DEFAULT_ENGINE_TIMEOUT_S = 6 * 3600.0
# After Ctrl-C, how long the child gets to write its `interrupted` result.
INTERRUPT_GRACE_S = 20.0
# The record a parent hands its engine child (RunRequest.to_json); bumped on any change.
REQUEST_SCHEMA = "qparity.run-request/1"
__all__ = ["REQUEST_SCHEMA", "RESULT_SCHEMA", "RunRequest", "detections_path", "execute", "new_result",
           "result_path", "run_isolated"]


@dataclass
class RunRequest:
    engine: str
    model: Path
    images_dir: Path
    annotations: Path
    out: Path
    protocol: Protocol
    limit: int | None = None
    config: EngineConfig = field(default_factory=EngineConfig)
    run_id: str | None = None  # written into every file; None for a result made outside a run
    timeout_s: float = DEFAULT_ENGINE_TIMEOUT_S  # for the child process of run_isolated
    emulate_cpu: str | None = None  # a CPU class or QEMU model (harness/emulate.py): accuracy only

    def to_json(self) -> str:
        """The whole request as one record: what the engine child receives (never a re-built
        argument list, which loses whatever it forgets to forward)."""
        return json.dumps({
            "schema": REQUEST_SCHEMA, "engine": self.engine, "model": str(self.model),
            "images_dir": str(self.images_dir), "annotations": str(self.annotations),
            "out": str(self.out), "protocol": self.protocol.to_dict(), "limit": self.limit,
            "config": {"threads": self.config.threads, "options": dict(self.config.options),
                       "cache_dir": None if self.config.cache_dir is None
                       else str(self.config.cache_dir)},
            "run_id": self.run_id, "timeout_s": self.timeout_s, "emulate_cpu": self.emulate_cpu,
        }, indent=1)

    @classmethod
    def from_json(cls, text: str, where: Path | str = "request") -> "RunRequest":
        try:
            d = json.loads(text)
        except ValueError as e:
            raise QParityError(f"not a JSON run request: {e}", where) from e
        if not isinstance(d, dict) or d.get("schema") != REQUEST_SCHEMA:
            got = d.get("schema") if isinstance(d, dict) else type(d).__name__
            raise QParityError(f"run request schema {got!r}, this qparity reads "
                               f"{REQUEST_SCHEMA!r} (parent and child must be the same version)",
                               where)
        try:
            c = d["config"]
            config = EngineConfig(threads=int(c["threads"]), options=dict(c["options"]),
                                  cache_dir=None if c["cache_dir"] is None else Path(c["cache_dir"]))
            return cls(d["engine"], Path(d["model"]), Path(d["images_dir"]),
                       Path(d["annotations"]), Path(d["out"]), Protocol.from_dict(d["protocol"]),
                       d["limit"], config, run_id=d["run_id"], timeout_s=float(d["timeout_s"]),
                       emulate_cpu=d["emulate_cpu"])
        except (KeyError, TypeError, ValueError) as e:
            raise QParityError(f"run request is incomplete: {type(e).__name__}: {e}", where) from e


def child_main(argv: list[str] | None = None) -> int:
    """`python -m harness.engine_child REQUEST.json`: the child of `run_isolated`. Its parent
    holds the folder's lock and judges what it wrote; 2 only when the request is unreadable."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m harness.engine_child REQUEST.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        req = RunRequest.from_json(path.read_text(), path)
    except (OSError, QParityError) as e:
        print(f"qparity engine child: error: {e}", file=sys.stderr)
        return 2
    try:
        execute(req)
    except KeyboardInterrupt:  # the interrupted result is on disk; the parent reports it
        return 130
    return 0


def finite_outputs(run: Callable[[np.ndarray], Any], data: Dataset, engine: str
                   ) -> Callable[[np.ndarray], Any]:
    """`run`, refusing any output with a NaN or an infinity: pycocotools scores a NaN box as a
    match, so such an output must stop the engine, naming the image, never reach the metric.

    Calls come in dataset order (the evaluator feeds images in order), so the n-th call is the
    n-th image. The check costs about 0.2 ms on a [1, 6300, 85] float32 output; it counts in
    the evaluation's inference time, never in the latency protocol (which calls the engine).
    """
    calls = itertools.count()

    def checked(x: np.ndarray) -> Any:
        i = next(calls)
        raw = run(x)
        a = np.asarray(raw)
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            name = data.files[i].name if i < len(data.files) else f"#{i}"
            raise QParityError(f"{engine} returned {bad} non-finite value(s) (NaN or Inf) of "
                               f"{a.size} in its output for image {name}; such an output is "
                               f"never scored")
        return raw

    return checked


def _phase(res: dict[str, Any]) -> str:
    if "latency_ms" in res:
        return "after the latency measurement"
    if "metrics" in res:
        return "during the latency measurement"
    if "load_s" in res:
        return "during the evaluation of the images"
    return "before the engine had run any image"


def execute(req: RunRequest, show_progress: bool = True) -> dict[str, Any]:
    """Do the whole per-engine job in this process; what was measured is kept on failure."""
    res = new_result(req.engine, req.protocol, req.run_id)
    engine = None
    if req.emulate_cpu:
        emulate.mark_result(res, req.emulate_cpu)
    try:
        cls = engine_class(req.engine)
        res["reference"] = cls.REFERENCE  # a yardstick, never gated (the collector reads it)
        reason = cls.probe()
        if reason:
            raise EngineUnavailable(reason)
        info = inspect_model(req.model, req.protocol.size)
        res["model"] = info.to_dict()
        if info.md5_file_check == "mismatch":
            raise QParityError("md5 differs from onnx_int8_md5.txt beside it: not the recorded "
                               "model file", req.model)
        data = Dataset.load(req.images_dir, req.annotations, req.limit)
        res["data"] = data.manifest()
        data.check_num_classes(info.num_classes, req.model)
        engine = cls(req.config)
        t0 = time.perf_counter()
        engine.load(req.model)
        res["load_s"] = round(time.perf_counter() - t0, 3)
        pass_spinning = engine.set_spinning(False)  # spinning threads would starve decode
        label = f"{req.engine} {req.model.name}"  # two runs of one engine (int8, fp32) differ
        with progress_bar(f"{label}: images", len(data.files), show_progress) as tick:
            out = run_dataset(finite_outputs(engine.run, data, req.engine), data, req.protocol,
                              req.engine, on_image=tick, engine_threads=req.config.threads)
        if not np.isfinite(out.detections).all():  # a finite output mapped to an infinite box
            bad = int(out.detections.size - np.count_nonzero(np.isfinite(out.detections)))
            raise QParityError(f"{req.engine}: {bad} non-finite value(s) in the decoded "
                               f"detections; never scored")
        res["eval_timing"] = out.timing_s
        dpath = detections_path(req.out, req.engine)
        dpath.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(dpath, detections=out.detections, run_id=np.array(req.run_id or ""))
        res["detections_file"] = str(dpath.relative_to(req.out))
        res["metrics"] = evaluate(data.coco_json, out.detections, data.image_ids)
        # Checkpoint: if the engine dies in native code while being timed, its accuracy survives.
        write_result(result_path(req.out, req.engine),
                     {**res, "partial": True, "reason": "engine process ended during the "
                                                       "latency measurement"})
        if not req.emulate_cpu:  # an emulated CPU's speed means nothing: accuracy only
            latency_spinning = engine.set_spinning(True)
            with progress_bar(f"{label}: latency", req.protocol.warmup + req.protocol.runs,
                              show_progress, manual=True) as tick:
                lat = measure(engine.infer, out.latency_inputs, req.protocol.warmup,
                              req.protocol.runs, engine_ms=engine.reported_latency_ms, on_run=tick)
            engine.timed_runs = req.protocol.runs
            lat["first_inference_ms"] = out.first_inference_ms
            lat["timed"] = cls.timed
            lat["spinning"] = {"accuracy_pass": pass_spinning, "latency": latency_spinning}
            res["latency_ms"] = lat
        res["engine_info"] = engine.describe()
        res["census"] = engine.census()
        res["status"], res["reason"] = "ok", ""
    except KeyboardInterrupt:
        res["status"] = "interrupted"
        res["reason"] = f"interrupted (Ctrl-C, SIGINT or SIGTERM) {_phase(res)}"
        raise
    except EngineUnavailable as e:
        res["status"], res["reason"] = "unavailable", str(e)
    except (EngineFailure, QParityError) as e:
        res["status"], res["reason"] = "error", str(e)
    except Exception as e:  # an engine bug must still leave a result naming it
        res["status"], res["reason"] = "error", f"{req.engine} crashed: {type(e).__name__}: {e}"
    finally:
        if engine is not None:
            try:
                engine.close()
            except Exception:
                pass
        res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        res = write_result(result_path(req.out, req.engine), res)
    return res


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _end_group(proc: subprocess.Popen, sig: int, grace_s: float) -> int:
    """Send `sig` to the child's process group and wait up to grace_s; then, or if this wait is
    itself interrupted (a second Ctrl-C), SIGKILL the group: no engine outlives its run."""
    try:
        os.killpg(proc.pid, sig)
        return proc.wait(grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return proc.wait()


_NO_RESULT = "before the engine process had written anything"


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return res if isinstance(res, dict) else None


class sigterm_as_interrupt:
    """While a parent supervises engine children, SIGTERM (docker stop, a CI job cancelled) is
    handled like Ctrl-C: the child is told, writes its `interrupted` result, and is ended,
    instead of the parent dying and leaving the engine running in its own session."""

    def __enter__(self) -> "sigterm_as_interrupt":
        self.previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous)


def run_isolated(req: RunRequest) -> dict[str, Any]:
    """Run `execute` in a child process and return its result, or an error result if it died,
    ran past `req.timeout_s`, or was interrupted (KeyboardInterrupt is re-raised after the
    interrupted result is on disk)."""
    path = result_path(req.out, req.engine)
    path.unlink(missing_ok=True)  # a stale file must never stand in for this run
    with tempfile.TemporaryDirectory(prefix="qparity-request-") as tmp:
        request = Path(tmp) / "request.json"
        request.write_text(req.to_json())
        cmd = emulate.command([sys.executable, "-m", "harness.engine_child", str(request)],
                              req.emulate_cpu)
        return _supervise(req, cmd, path)


def _supervise(req: RunRequest, cmd: list[str], path: Path) -> dict[str, Any]:
    # Its own session: a timeout ends the engine and anything it started, and a terminal's
    # Ctrl-C reaches only us, so the child is told (SIGINT) and given time to write its result.
    proc = subprocess.Popen(cmd, start_new_session=True)
    ended = None
    try:
        code = proc.wait(req.timeout_s)
    except subprocess.TimeoutExpired:
        code = _end_group(proc, signal.SIGTERM, 10.0)
        ended = f"timed out after {req.timeout_s:g} s (--engine-timeout); its process group was ended"
    except BaseException as e:
        if not isinstance(e, KeyboardInterrupt):  # anything else ends the engine at once
            _end_group(proc, signal.SIGKILL, 0)
            raise
        _end_group(proc, signal.SIGINT, INTERRUPT_GRACE_S)
        res = _read_result(path)
        if res is None or res.get("status") != "interrupted":
            phase = _phase(res) if res else _NO_RESULT
            res = dict(res or new_result(req.engine, req.protocol, req.run_id))
            res.pop("partial", None)
            res["status"] = "interrupted"
            res["reason"] = f"interrupted (Ctrl-C, SIGINT or SIGTERM) {phase}"
            res = write_result(path, res)
        raise
    res = _read_result(path)
    if ended:  # what the child measured before it hung is kept, under the timeout's status
        phase = _phase(res) if res else _NO_RESULT
        res = res if res is not None else new_result(req.engine, req.protocol, req.run_id)
        res.pop("partial", None)
        res["status"], res["reason"] = "error", f"{ended} {phase}"
        return write_result(path, res)
    if res is not None:
        if res.get("partial"):  # the checkpoint of a child that died before finishing
            res["reason"] += f" ({req.engine} process {describe_exit(code)})"
            res = write_result(path, res)
        return res
    res = new_result(req.engine, req.protocol, req.run_id)
    res["reason"] = f"{req.engine} engine process {describe_exit(code)} before writing a result"
    return write_result(path, res)
