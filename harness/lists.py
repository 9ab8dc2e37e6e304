"""The fixed image lists and their sha256 manifests (SPEC.md "The data")."""

from __future__ import annotations

from pathlib import Path

from .data import list_images
from .fileio import sha256_file
from .errors import QParityError

CALIB_EVERY, CALIB_MAX = 10, 512  # `sort | awk 'NR%10==1' | head -n 512`


def calibration_subset(val: list[str], every: int = CALIB_EVERY, limit: int = CALIB_MAX) -> list[str]:
    """awk's NR is 1-based: NR%10==1 keeps lines 1, 11, 21, ... i.e. indices 0, 10, 20, ..."""
    return val[::every][:limit]


def write_lists(data: Path, out: Path, split: str = "val2017") -> dict[str, Path]:
    """val.txt, calib.txt and their manifests; paths relative to the data folder, so the
    files are identical on every machine and `sha256sum -c` works from inside it."""
    data, out = Path(data), Path(out)
    files = list_images(data / split)
    val = [f"{split}/{f.name}" for f in files]
    calib = calibration_subset(val)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, items in (("val", val), ("calib", calib)):
        lst = out / f"{name}.txt"
        lst.write_text("".join(f"{p}\n" for p in items))
        man = out / f"manifest_{name}.sha256"
        man.write_text("".join(f"{sha256_file(data / p)}  {p}\n" for p in items))
        written[name], written[f"manifest_{name}"] = lst, man
    return written


def read_list(path: Path, data: Path | None = None) -> list[Path]:
    """Image paths of a list file; relative entries resolve against `data` (or the list's folder)."""
    path = Path(path)
    if not path.is_file():
        raise QParityError("image list does not exist", path)
    base = Path(data) if data else path.parent
    items = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not items:
        raise QParityError("image list is empty", path)
    paths = [p if (p := Path(i)).is_absolute() else base / p for i in items]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise QParityError(f"{len(missing)} listed image(s) not found (first: {missing[0]}); "
                           f"pass --data with the folder the list is relative to", path)
    return paths
