"""The md5 record beside each model file, one record per file.

SPEC.md: the model's md5 is recorded next to it in `onnx_int8_md5.txt` and checked by every
engine. That file used to hold one line, so a second `qparity ptq` into the same folder
replaced the first model's record and every engine then refused the first model. Now:

- `<model>.md5` beside each model (`md5  name`, the `md5sum` format, so `md5sum -c` reads it);
- `onnx_int8_md5.txt` lists every model written into the folder, one `md5  name` line each;
  writing a model replaces its own line and keeps the others.

Reading accepts what older versions wrote: a one-line `onnx_int8_md5.txt`, with or without a
file name. A line naming another file is that file's record, not this one's.
"""

from __future__ import annotations

from pathlib import Path

from .fileio import write_atomic

FOLDER_RECORD = "onnx_int8_md5.txt"  # the name SPEC.md gives


def file_record(model: Path) -> Path:
    return Path(model).with_name(Path(model).name + ".md5")


def _lines(path: Path) -> list[tuple[str, str | None]]:
    """(md5, file name or None) per non-empty line; `*name` (md5sum's binary mark) is a name."""
    out = []
    for line in path.read_text().splitlines():
        parts = line.split(maxsplit=1)
        if parts:
            name = parts[1].strip().lstrip("*") if len(parts) > 1 else None
            out.append((parts[0].lower(), name or None))
    return out


def write_record(model: Path, md5: str) -> None:
    model = Path(model)
    write_atomic(file_record(model), f"{md5}  {model.name}\n".encode())
    folder = model.parent / FOLDER_RECORD
    kept = [(m, n) for m, n in (_lines(folder) if folder.is_file() else [])
            if n is not None and n != model.name]  # a nameless old line cannot be attributed
    lines = sorted(kept + [(md5, model.name)], key=lambda mn: mn[1])
    write_atomic(folder, "".join(f"{m}  {n}\n" for m, n in lines).encode())


def recorded(model: Path) -> list[str]:
    """Every md5 recorded for this file: its own `.md5`, and its line in the folder's list
    (a single line without a name, as the first versions wrote, counts as this file's)."""
    model = Path(model)
    found = []
    own = file_record(model)
    if own.is_file():
        found += [m for m, n in _lines(own) if n in (None, model.name)]
    folder = model.parent / FOLDER_RECORD
    if folder.is_file():
        lines = _lines(folder)
        found += [m for m, n in lines if n == model.name or (n is None and len(lines) == 1)]
    return found


def check_record(model: Path, md5: str) -> str:
    """"ok" (every record of this file agrees), "mismatch" (one does not), "absent" (none)."""
    found = recorded(model)
    if not found:
        return "absent"
    return "ok" if all(m == md5.lower() for m in found) else "mismatch"
