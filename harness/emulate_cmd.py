"""`qparity emulate ...`: the commands over the emulated CPU classes (harness/emulate.py is
the library; the nightly and drift commands are in harness/emulate_nightly.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .emulate import CLASSES, cpu_class_of, features_here, probe, qemu_binary, qemu_version
from .emulate_nightly import register_nightly
from .errors import QParityError


def cmd_classes(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .report import wide_console

    q = qemu_binary()
    native = features_here()
    t = Table("class", "QEMU model", "flags seen inside", "emulatable here", "about",
              title=f"CPU classes (this host: {cpu_class_of(native)}; qemu-x86_64: "
                    f"{qemu_version(q) if q else 'not installed'})", title_justify="left")
    rows = {}
    for name, c in CLASSES.items():
        if q is None:
            t.add_row(name, c.qemu_model, "-", "no: qemu-user not installed", c.about)
            continue
        try:
            seen = probe(name, args.engines)
        except QParityError as e:
            t.add_row(name, c.qemu_model, "-", f"[red]no[/]: {e}", c.about)
            continue
        rows[name] = seen
        ok = not seen["missing"] and not seen["unexpected"]
        ov = (seen["engines_view"] or {}).get("openvino") or {}
        view = (f"\nOpenVINO: {ov.get('device')}, {' '.join(ov.get('capabilities') or [])}"
                if ov.get("device") else f"\nOpenVINO: {ov['unavailable']}" if ov else "")
        t.add_row(name, c.qemu_model, ", ".join(seen["flags_seen"]) + view,
                  "[green]yes[/]" if ok else f"[yellow]no[/]: lacks {', '.join(seen['missing'])}"
                  + (f"; shows {', '.join(seen['unexpected'])}" if seen["unexpected"] else ""),
                  c.about)
    wide_console().print(t)
    if args.json:
        Path(args.json).write_text(json.dumps({"host_flags": native, "classes": rows}, indent=1))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("emulate", help="emulated CPU classes (qemu-user): accuracy of "
                                              "another CPU class on this machine")
    sub = p.add_subparsers(dest="emulate_command", required=True,
                           help="classes, drift or nightly")
    c = sub.add_parser("classes", help="the named CPU classes, their QEMU models and the flags a "
                                       "process actually sees on each")
    c.add_argument("--engines", action="store_true", help="also ask OpenVINO what it sees (slow)")
    c.add_argument("--json", help="write what was seen to this file")
    c.set_defaults(func=cmd_classes)
    register_nightly(sub)
