"""Run one engine over the data: evaluate, time, describe; always leave a result file.

`execute` does the work in this process. `run_isolated` runs it in a child process, so a
crash (a segfault in an engine's native code) costs only that engine's result, which the
parent then writes as an `error` saying how the child died.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import emulate
from .data import Dataset
from .engines import EngineConfig, EngineFailure, EngineUnavailable, engine_class
from .envinfo import environment
from .errors import QParityError
from .evaluate import run_dataset
from .fileio import write_json_atomic
from .latency import measure
from .metrics import evaluate
from .modelinfo import inspect_model
from .protocol import Protocol

RESULT_SCHEMA = 1


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
    emulate_cpu: str | None = None  # a CPU class or QEMU model (harness/emulate.py): accuracy only

    def argv(self) -> list[str]:
        """The `qparity run-engine` arguments that reproduce this request in a child."""
        p = self.protocol
        args = ["run-engine", "--engine", self.engine, "--model", str(self.model),
                "--images", str(self.images_dir), "--annotations", str(self.annotations),
                "--out", str(self.out), "--threads", str(self.config.threads),
                "--warmup", str(p.warmup), "--runs", str(p.runs)]
        if self.limit is not None:
            args += ["--limit", str(self.limit)]
        if self.config.cache_dir is not None:
            args += ["--cache-dir", str(self.config.cache_dir)]
        for k, v in self.config.options.items():
            args += ["--engine-opt", f"{k}={v}"]
        if self.emulate_cpu:
            args += ["--emulate-cpu", self.emulate_cpu]
        return args


def result_path(out: Path, engine: str) -> Path:
    return Path(out) / f"{engine}.json"


def detections_path(out: Path, engine: str) -> Path:
    return Path(out) / "detections" / f"{engine}.npz"


def new_result(engine: str, protocol: Protocol) -> dict[str, Any]:
    return {"schema": RESULT_SCHEMA, "engine": engine, "status": "error", "reason": "",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "protocol": protocol.to_dict(),
            "env": environment()}


def _progress(total: int, label: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(f"[bold]{label}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), transient=True)


def execute(req: RunRequest, show_progress: bool = True) -> dict[str, Any]:
    """Do the whole per-engine job in this process; what was measured is kept on failure."""
    res = new_result(req.engine, req.protocol)
    engine = None
    if req.emulate_cpu:
        emulate.mark_result(res, req.emulate_cpu)
    try:
        cls = engine_class(req.engine)
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
        with _progress(len(data.files), req.engine) as bar:
            task = bar.add_task(req.engine, total=len(data.files))
            out = run_dataset(engine.run, data, req.protocol, req.engine,
                              on_image=lambda: bar.advance(task) if show_progress else None)
        res["eval_timing"] = out.timing_s
        dpath = detections_path(req.out, req.engine)
        dpath.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(dpath, detections=out.detections)
        res["detections_file"] = str(dpath.relative_to(req.out))
        res["metrics"] = evaluate(data.coco_json, out.detections, data.image_ids)
        # Checkpoint: if the engine dies in native code while being timed, its accuracy survives.
        write_json_atomic(result_path(req.out, req.engine),
                          {**res, "partial": True, "reason": "engine process ended during the "
                                                            "latency measurement"})
        if not req.emulate_cpu:  # an emulated CPU's speed means nothing: accuracy only
            lat = measure(engine.run, out.latency_inputs, req.protocol.warmup, req.protocol.runs)
            engine.timed_runs = req.protocol.runs
            lat["first_inference_ms"] = out.first_inference_ms
            lat["timed"] = cls.timed
            res["latency_ms"] = lat
        res["engine_info"] = engine.describe()
        res["census"] = engine.census()
        res["status"], res["reason"] = "ok", ""
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
        write_json_atomic(result_path(req.out, req.engine), res)
    return res


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def run_isolated(req: RunRequest) -> dict[str, Any]:
    """Run `execute` in a child process and return its result, or an error result if it died."""
    path = result_path(req.out, req.engine)
    path.unlink(missing_ok=True)  # a stale file must never stand in for this run
    cmd = emulate.command([sys.executable, "-m", "harness.cli", *req.argv(), "--in-process"],
                          req.emulate_cpu)
    code = subprocess.run(cmd).returncode
    if path.is_file():
        res = json.loads(path.read_text())
        if res.get("partial"):  # the checkpoint of a child that died before finishing
            res["reason"] += f" ({req.engine} process {describe_exit(code)})"
            write_json_atomic(path, res)
        return res
    res = new_result(req.engine, req.protocol)
    res["reason"] = f"{req.engine} engine process {describe_exit(code)} before writing a result"
    write_json_atomic(path, res)
    return res
