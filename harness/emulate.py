"""Emulated CPU classes: another CPU's INT8 accuracy on this machine, through user-mode QEMU.

INT8 kernels differ by instruction set (ONNX Runtime's u8 x s8 kernels saturate on AVX2 without
VNNI and sum exactly with VNNI; OpenVINO dispatches per ISA), so the golden engine's accuracy
moves with the CPU class. `qemu-x86_64 -cpu MODEL` runs the unmodified engine process on an
emulated CPU that shows only MODEL's extensions, which reproduces that class's arithmetic
exactly. It is slow (17-50x in CPU time, 140-320x in wall time, measured on the demo), so an
emulated run is accuracy only: it never measures a latency, and everything it writes says
"emulated <model>: accuracy only".

Never trust a name: QEMU silently drops every extension its TCG translator does not implement
(QEMU 7.2, Debian 12: nothing past AVX2, no AVX-512, no VNNI, no AMX), and qemu-user passes the
host's /proc/cpuinfo through. So the flags are read inside the emulated process through CPUID
(numpy's feature detection, the engine's own view where it has one), recorded in every result,
and a class whose required flags are not seen is refused rather than run under a false name.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import QParityError

QEMU_ENV = "QPARITY_QEMU"          # path of qemu-x86_64 when it is not on PATH
ACCURACY_ONLY = "accuracy only"
PROBE_TIMEOUT_S = 300
# CPUID features (numpy's names) that decide which INT8 kernels an engine picks.
ISA_FLAGS = ("SSE41", "SSE42", "AVX", "F16C", "FMA3", "AVX2", "AVX512F", "AVX512CD", "AVX512BW",
             "AVX512DQ", "AVX512VL", "AVX512VNNI", "AVX512BF16", "AVX512FP16")
# numpy's names -> /proc/cpuinfo's, for env.cpu.flags (what envinfo records natively)
PROC_NAMES = {"FMA3": "fma", "AVX512VNNI": "avx512_vnni", "AVX512BF16": "avx512_bf16",
              "AVX512FP16": "avx512_fp16", "SSE41": "sse4_1", "SSE42": "sse4_2"}


@dataclass(frozen=True)
class CpuClass:
    name: str
    qemu_model: str
    needs: tuple[str, ...]   # must be seen inside, else the class is refused
    lacks: tuple[str, ...]   # must NOT be seen inside
    about: str


CLASSES: dict[str, CpuClass] = {c.name: c for c in (
    CpuClass("avx2", "EPYC-Rome", ("AVX2", "FMA3"), ("AVX512F", "AVX512VNNI"),
             "AVX2 + FMA, no AVX-512, no VNNI (Haswell .. Zen 2): ONNX Runtime's u8 x s8 "
             "kernels (vpmaddubsw) saturate"),
    CpuClass("avx", "SandyBridge", ("AVX",), ("AVX2", "FMA3"),
             "AVX without AVX2/FMA (Sandy/Ivy Bridge): SSE-width integer kernels"),
    CpuClass("sse4", "Nehalem", ("SSE42",), ("AVX",),
             "SSE4.2 only (x86-64-v2: Nehalem, Westmere, many small cloud instances)"),
    CpuClass("avx512", "Skylake-Server", ("AVX512F", "AVX512BW"), ("AVX512VNNI",),
             "AVX-512 without VNNI (Skylake-SP): u8 x s8 kernels saturate"),
    CpuClass("avx512-vnni", "Cascadelake-Server", ("AVX512F", "AVX512VNNI"), (),
             "AVX-512 with VNNI (Cascade Lake and later, Zen 4): exact int8 sums"),
)}


def qemu_binary() -> str | None:
    return os.environ.get(QEMU_ENV) or shutil.which("qemu-x86_64")


def require_qemu() -> str:
    q = qemu_binary()
    if q is None:
        raise QParityError("--emulate-cpu needs user-mode QEMU (qemu-x86_64): on Debian/Ubuntu "
                           "`apt-get install qemu-user`, or set QPARITY_QEMU to its path")
    return q


def resolve(spec: str) -> CpuClass:
    """A class name (`avx2`) or any QEMU CPU model (`Haswell`, `Icelake-Server,-avx512vnni`).

    A raw model has no expectation attached; what its process saw is still recorded."""
    if spec in CLASSES:
        return CLASSES[spec]
    if not spec or not re.fullmatch(r"[A-Za-z0-9_.,+=-]+", spec):
        raise QParityError(f"--emulate-cpu {spec!r}: not a CPU class ({', '.join(CLASSES)}) "
                           f"nor a QEMU CPU model name")
    return CpuClass(spec, spec, (), (), "a QEMU CPU model given by name")


def command(cmd: list[str], spec: str | None) -> list[str]:
    """The engine child's command line, run on the emulated CPU when `spec` is given."""
    if not spec:
        return cmd
    return [require_qemu(), "-cpu", cpu_arg(spec), *cmd]


def cpu_arg(spec: str) -> str:
    """The model minus what QEMU cannot emulate anyway: the same CPU, without QEMU repeating
    its warning for every thread the engine starts."""
    c = resolve(spec)
    return ",".join([c.qemu_model, *(f"-{d}" for d in probe(spec)["dropped_by_qemu"])])


def label(spec: str) -> str:
    return f"emulated {resolve(spec).qemu_model}: {ACCURACY_ONLY}"


# ------------------------------------------------------------------ what the CPU shows inside

def features_here() -> list[str]:
    """The ISA flags this process's CPU reports through CPUID (and the OS enables, XGETBV)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as f
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as f
    return [k for k in ISA_FLAGS if f.get(k)]


def cpu_class_of(flags: list[str] | set[str]) -> str:
    """The named class a set of flags belongs to (the most capable whose test it passes)."""
    fl = set(flags)
    for name in ("avx512-vnni", "avx512", "avx2", "avx", "sse4"):
        c = CLASSES[name]
        if set(c.needs) <= fl and not set(c.lacks) & fl:
            return name
    return "other"


def engine_isa_view() -> dict[str, Any]:
    """What an engine itself says about the CPU, where it can say it (OpenVINO can)."""
    out: dict[str, Any] = {}
    try:
        import openvino as ov  # noqa: PLC0415

        core = ov.Core()
        out["openvino"] = {"device": core.get_property("CPU", "FULL_DEVICE_NAME"),
                           "capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))}
    except Exception as e:  # not installed, or refuses this CPU: say so
        out["openvino"] = {"unavailable": f"{type(e).__name__}: {e}"[:200]}
    return out


def dropped_by_qemu(stderr: str) -> list[str]:
    """Extensions the CPU model asks for that QEMU's TCG cannot emulate (its own warnings)."""
    return sorted(set(re.findall(r"TCG doesn't support requested feature: \S+?\.([\w.-]+) \[", stderr)))


def qemu_version(q: str) -> str:
    try:
        out = subprocess.run([q, "-version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else "?"


@functools.lru_cache(maxsize=None)
def probe(spec: str, with_engines: bool = False) -> dict[str, Any]:
    """Start a Python on the emulated CPU and record what it sees; refuse nothing (see check)."""
    q = require_qemu()
    c = resolve(spec)
    code = ("import json, harness.emulate as e; "
            f"print(json.dumps({{'flags': e.features_here(), "
            f"'engines': e.engine_isa_view() if {with_engines!r} else None}}))")
    try:
        p = subprocess.run([q, "-cpu", c.qemu_model, sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                           cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired as e:
        raise QParityError(f"emulated CPU {c.qemu_model}: probe did not finish in "
                           f"{PROBE_TIMEOUT_S} s") from e
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise QParityError(f"emulated CPU {c.qemu_model}: {q} could not start Python "
                           f"(exit {p.returncode}: {tail})")
    seen = json.loads(p.stdout.strip().splitlines()[-1])
    flags = seen["flags"]
    return {"class": c.name if c.name in CLASSES else cpu_class_of(flags),
            "qemu_model": c.qemu_model, "qemu": q, "qemu_version": qemu_version(q),
            "flags_seen": flags, "class_seen": cpu_class_of(flags),
            "missing": [f for f in c.needs if f not in flags],
            "unexpected": [f for f in c.lacks if f in flags],
            "dropped_by_qemu": dropped_by_qemu(p.stderr),
            "engines_view": seen["engines"],
            "proc_cpuinfo": "the host's (qemu-user passes /proc/cpuinfo through): not used",
            "host_flags": features_here()}


def check(spec: str, with_engines: bool = False) -> dict[str, Any]:
    """`probe`, and an error when the emulated CPU does not show the class it is named for."""
    seen = probe(spec, with_engines)
    if seen["missing"] or seen["unexpected"]:
        c = resolve(spec)
        what = []
        if seen["missing"]:
            what.append(f"lacks {', '.join(seen['missing'])}")
        if seen["unexpected"]:
            what.append(f"shows {', '.join(seen['unexpected'])}")
        dropped = [d for d in seen["dropped_by_qemu"] if d.startswith(("avx", "amx", "fma"))]
        raise QParityError(
            f"--emulate-cpu {spec}: QEMU {seen['qemu_version']} model {c.qemu_model} "
            f"{' and '.join(what)} inside (flags seen: {', '.join(seen['flags_seen']) or 'none'}"
            + (f"; QEMU cannot emulate {', '.join(dropped)}" if dropped else "")
            + "): this class cannot be emulated here; run it on such a CPU natively")
    return seen


# ------------------------------------------------------------------ inside the emulated child

def mark_result(res: dict[str, Any], spec: str) -> None:
    """Called in the emulated engine process: what it ran on, and env.cpu made truthful
    (envinfo reads /proc/cpuinfo, which under qemu-user is the host's)."""
    c = resolve(spec)
    flags = features_here()
    host_cpu = (res.get("env") or {}).get("cpu") or {}
    res["emulated"] = {"spec": spec, "class": c.name if c.name in CLASSES else cpu_class_of(flags),
                       "qemu_model": c.qemu_model, "flags_seen": flags,
                       "class_seen": cpu_class_of(flags), "label": label(spec),
                       "latency": "not measured: an emulated CPU's speed means nothing",
                       "host_cpu": host_cpu.get("model")}
    proc = [PROC_NAMES.get(f, f.lower()) for f in flags]
    res.setdefault("env", {})["cpu"] = {
        **host_cpu, "model": f"emulated {c.qemu_model} ({res['emulated']['class_seen']}) on "
                             f"{host_cpu.get('model') or 'this host'}",
        "flags": proc, "vnni": "AVX512VNNI" in flags, "emulated": res["emulated"]}


def emulated_of(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The emulation record of a result or report entry (None: native)."""
    if not entry:
        return None
    return entry.get("emulated") or (((entry.get("env") or {}).get("cpu") or {}).get("emulated"))


def add_run_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--emulate-cpu", metavar="CLASS|MODEL",
                   help=f"run the engines under user-mode QEMU on this CPU class "
                        f"({', '.join(CLASSES)}) or QEMU CPU model: {ACCURACY_ONLY}, no latency")


def check_and_say(spec: str, console) -> dict[str, Any]:
    seen = check(spec)
    console.print(f"[bold yellow]{label(spec)}[/] (class {seen['class_seen']}; flags seen inside: "
                  f"{', '.join(seen['flags_seen'])}; QEMU {seen['qemu_version']})", highlight=False)
    return seen
