"""One run per results folder: a lock, a run id, and a clean slate before a run starts.

`qparity run` takes an exclusive lock on `--out` for its whole life (a second run into the same
folder fails at once), gives the run an id that goes into every file it writes, moves the
previous run's files aside into `previous/`, and records the run in `run.json`, whose status
stays `running` until the run ends as `finished` or `interrupted`. The collector reads run.json
to know which run id to gather and which engines were asked for.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import QParityError
from .fileio import write_json_atomic

LOCK_NAME = ".qparity.lock"
RUN_NAME = "run.json"
PREVIOUS = "previous"
# What a run leaves in its folder besides one `<engine>.json` per engine: moved aside as one set,
# so no old verdict or result sits beside a new run's files. Nothing else is touched: --out may
# be a folder that holds the user's own files.
RUN_FILES = ("eval_report.json", "preflight.json", RUN_NAME, "detections")


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def prepare_out(out: Path) -> Path:
    """The results folder, created; a path that is a file, or cannot be created, is one line."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise QParityError("--out is a file, not a folder", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise QParityError(f"cannot create the results folder ({e.strerror or e})", out) from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise QParityError("the results folder is not writable", out)
    return out


class RunLock:
    """An exclusive, non-blocking flock on `<out>/.qparity.lock`; the kernel drops it when the
    process ends, however it ends, so a killed run never leaves the folder locked."""

    def __init__(self, out: Path, run_id: str | None = None):
        self.path = Path(out) / LOCK_NAME
        self.run_id = run_id
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise QParityError(f"cannot create the run lock ({e.strerror or e})", self.path) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise QParityError(f"another qparity run is writing into this folder ({holder}); "
                               f"wait for it or give another --out", self.path.parent) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, run {self.run_id or '-'}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock; the file stays (harmless, reused)
            self.fd = None


def _is_engine_result(f: Path) -> bool:
    """`<engine>.json` for an engine qparity knows, or a file that says it is a result."""
    from .engines import REGISTRY

    if f.stem in REGISTRY:
        return True
    try:
        doc = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(doc, dict) and "schema" in doc and doc.get("engine") == f.stem


def move_aside(out: Path) -> list[str]:
    """Move the files of an earlier run into `<out>/previous/` (replacing an older `previous/`).
    Returns what was moved."""
    out = Path(out)
    found = sorted({out / n for n in RUN_FILES if (out / n).exists()}
                   | {f for f in out.glob("*.json") if _is_engine_result(f)})
    if not found:
        return []
    prev = out / PREVIOUS
    if prev.exists():
        shutil.rmtree(prev) if prev.is_dir() else prev.unlink()
    prev.mkdir()
    for p in found:
        p.rename(prev / p.name)
    return [p.name for p in found]


def write_run(out: Path, run_id: str, engines: list[str], status: str,
              **extra: Any) -> dict[str, Any]:
    path = Path(out) / RUN_NAME
    rec: dict[str, Any] = {}
    if path.is_file():
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            rec = {}
        if not isinstance(rec, dict) or rec.get("run_id") != run_id:
            rec = {}
    rec.update(run_id=run_id, engines=list(engines), status=status, pid=os.getpid(), **extra)
    rec.setdefault("started", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if status != "running":
        rec["ended"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(path, rec)
    return rec


def read_run(out: Path) -> dict[str, Any] | None:
    """run.json, or None where there is none; a broken one is an error naming it."""
    path = Path(out) / RUN_NAME
    if not path.is_file():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise QParityError(f"unreadable run record ({e})", path) from e
    if not isinstance(rec, dict) or not isinstance(rec.get("run_id"), str) \
            or not isinstance(rec.get("engines", []), list):
        raise QParityError("not a qparity run record (needs a run_id and an engines list)", path)
    return rec
