"""Ask PyPI what the `tensorrt` extra really installs (network; not part of the test suite).

tests/test_tensorrt_gpu_facts.py checks pyproject.toml, docker/constraints.txt and the
Dockerfile against each other offline. This script checks them against the index: for every
requirement of the extra it lets pip resolve the version (`pip install --dry-run --no-deps
--report`, with and without docker/constraints.txt) and reads the resolved metadata's own
requirements. The TensorRT *-libs wheels live on NVIDIA's index, so dependencies are read one
level deep from the metadata rather than installed.

    python bench/trt_pins_resolve.py            # exit 0: every resolution is CUDA 12

It also resolves the bare `tensorrt>=10.0,<11` that the extra used to name, to show where
that leads (tensorrt_cu13 from 10.13.2 on).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "docker" / "constraints.txt"


def resolve(requirement: str, constrained: bool) -> dict:
    """pip's resolution of one requirement alone: name, version, requires_dist."""
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
           "--no-deps", "--quiet", "--report", "-", requirement]
    if constrained:
        cmd[4:4] = ["-c", str(CONSTRAINTS)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1:] or ["pip failed"]}
    meta = json.loads(out.stdout)["install"][0]["metadata"]
    return {"name": meta["name"], "version": meta["version"],
            "requires": [r for r in meta.get("requires_dist") or [] if "extra ==" not in r]}


def cuda_majors(names: list[str]) -> set[int]:
    return {int(m.group(1)) for n in names if (m := re.search(r"cu(\d+)", n.lower()))}


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["tensorrt"]
    problems = []
    print(f"pyproject [tensorrt] = {extra}")
    for req in extra:
        name = Requirement(req).name
        for constrained in (False, True):
            r = resolve(req, constrained)
            label = "with constraints" if constrained else "latest allowed"
            if "error" in r:
                problems.append(f"{req} ({label}): {r['error']}")
                print(f"  {req:32s} {label:17s} ERROR {r['error']}")
                continue
            print(f"  {req:32s} {label:17s} -> {r['name']} {r['version']}  "
                  f"requires {r['requires']}")
            if name.startswith("tensorrt"):
                majors = cuda_majors([r["name"], *r["requires"]])
                if majors != {12}:
                    problems.append(f"{req} ({label}) leads to CUDA {sorted(majors)}")
                if int(r["version"].split(".")[0]) != 10:
                    problems.append(f"{req} ({label}) resolved TensorRT {r['version']}")
            if name.startswith("cuda-") and int(r["version"].split(".")[0]) != 12:
                problems.append(f"{req} ({label}) resolved {r['version']}, not CUDA 12")
    old = resolve("tensorrt>=10.0,<11", constrained=False)
    print(f"\nfor comparison, the old requirement tensorrt>=10.0,<11 -> {old}")
    print("\n" + ("OK: every TensorRT/CUDA requirement resolves to the CUDA 12 build"
                  if not problems else "PROBLEMS:\n  " + "\n  ".join(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
