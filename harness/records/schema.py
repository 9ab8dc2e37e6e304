"""The published records and their JSON Schemas, generated from the record types themselves.

    python -m harness.records.schema [--out docs/schema]   # write <kind>.v<N>.schema.json
    python -m harness.records.schema --check               # exit 1 if a published file is stale

A schema file is named by kind and version, so bumping a record's VERSION publishes a new file
beside the old one (kept: it describes the files older qparity versions wrote).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .base import Record
from .nightly import NightlyReport
from .preflight import PreflightVerdict
from .report import EvalReport
from .result import EngineResult

# Every record qparity writes to disk, in the order docs/records.md describes them.
PUBLISHED: tuple[type[Record], ...] = (EngineResult, EvalReport, PreflightVerdict, NightlyReport)
DEFAULT_OUT = Path("docs") / "schema"


def file_name(record: type[Record]) -> str:
    return f"{record.KIND}.v{record.VERSION}.schema.json"


def schema_text(record: type[Record]) -> str:
    return json.dumps(record.json_schema(), indent=2) + "\n"


def generated() -> dict[str, str]:
    """File name -> content, for every published record."""
    return {file_name(r): schema_text(r) for r in PUBLISHED}


def stale(out: Path) -> list[str]:
    """The published files in `out` that are missing or differ from the generated ones."""
    return [name for name, text in generated().items()
            if not (out / name).is_file() or (out / name).read_text() != text]


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generated().items():
        (out / name).write_text(text)
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.records.schema",
                                 description="Write (or check) the JSON Schemas of qparity's "
                                             "records, generated from the record types.")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"folder of the published schemas (default: {DEFAULT_OUT})")
    ap.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 naming each published file that is missing or "
                         "differs from what the records generate")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale(args.out)
        for name in bad:
            print(f"{args.out / name}: stale or missing; regenerate with "
                  f"`python -m harness.records.schema --out {args.out}`", file=sys.stderr)
        return 1 if bad else 0
    for path in write(args.out):
        print(path)
    return 0


def schemas() -> dict[str, dict[str, Any]]:
    """kind -> its current JSON Schema (a dict), for tools that validate files."""
    return {r.KIND: r.json_schema() for r in PUBLISHED}


if __name__ == "__main__":
    sys.exit(main())
