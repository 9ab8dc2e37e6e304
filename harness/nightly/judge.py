"""The nightly's judgement: one verdict over the results of every platform.

Input: one results folder per platform (what `docker compose --profile <p> up` leaves, downloaded
from the platform jobs' artifacts), optionally with a `platform.json` the job wrote beside the
results (platform name, runner, compose exit status, the engines its profile runs).

Per platform the folder is re-collected with this collector (a copy of its result files under
`<out>/platforms/<name>/`), so every platform is judged by the same code: each engine against
the golden engine of its own platform. Then across platforms: every platform must have measured
the same model file, data and protocol as the reference platform, and its golden engine must
agree with the reference platform's golden engine within the tolerance; a golden engine that
moves with the hardware (ORT's int8 kernels differ across CPU generations) is a `golden-drift`
finding, reported apart from engine failures. An expected platform without results is
`missing`, never a pass.

Exit status as the collector's: 0 pass, 1 fail (an engine outside the gate, a golden drift),
2 error (a platform missing or unusable, an engine that did not run, no reference to judge by).
Judging only: no terminal output here (`render`), no argument parsing (`command`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from ..collector import (EXIT_ERROR, EXIT_FAIL, EXIT_PASS, REPORT_NAME, collect,
                         load_results, map_delta)
from ..errors import QParityError
from ..fileio import write_json_atomic
from ..protocol import locked_protocol
from ..records.report import read_report
from ..records.nightly import (NIGHTLY_REPORT, EngineCell, Finding, GoldenCheck, Host, NightlyReport,
                               PlatformSummary, QdqRef)
from ..results import RESULT_SCHEMA

NIGHTLY_SUMMARY = "nightly_summary.md"
PLATFORM_META = "platform.json"
SEVERITY = {"error": 2, "fail": 1, "note": 0}
# Where a platform must agree with the reference platform before its golden can be compared.
SAME_ACROSS_PLATFORMS = (("model-mismatch", "model", "sha256", "model file"),
                         ("data-mismatch", "data", "image_list_sha256", "image list"),
                         ("data-mismatch", "data", "annotations_sha256", "annotation file"))


def read_meta(folder: Path) -> dict[str, Any] | None:
    f = folder / PLATFORM_META
    if not f.is_file():
        return None
    try:
        meta = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"unreadable": str(e)}
    return meta if isinstance(meta, dict) else {"unreadable": "not a JSON object"}


def platform_folders(specs: list[str]) -> dict[str, Path]:
    """`NAME=DIR` or `DIR` (the name then comes from its platform.json, else the folder name)."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep:
            folder = spec
            meta = read_meta(Path(folder)) if Path(folder).is_dir() else None
            name = (meta or {}).get("platform") or Path(folder).name
        if not name or name in out:
            raise QParityError(f"platform name {name!r} is empty or given twice", Path(folder))
        out[name] = Path(folder)
    return out


def _result_files(folder: Path) -> list[Path]:
    files = []
    for f in sorted(folder.glob("*.json")):
        if f.name in (REPORT_NAME, PLATFORM_META) or f.name.startswith("."):
            continue
        files.append(f)
    return files


def collect_platform(name: str, folder: Path | None, work: Path) -> dict[str, Any]:
    """Re-collect one platform into `work`; its status is ok, missing or error."""
    entry: dict[str, Any] = {"status": "missing", "reason": "", "folder": str(folder) if folder else None,
                             "meta": None, "report": None, "results": {}}
    if folder is None or not folder.is_dir():
        entry["reason"] = ("no results for this platform (its runner offline, its job not run, "
                           "or its artifact not uploaded)")
        return entry
    meta = entry["meta"] = read_meta(folder)
    files = _result_files(folder)
    if not any(_is_result(f) for f in files):
        why = "no engine result files: the platform job did not get as far as running an engine"
        if meta:
            code = meta.get("compose_exit")
            why += (f" (its compose run: {'never ran' if code is None else f'exit {code}'}; "
                    f"job status {meta.get('job_status', '?')}; runner {meta.get('runner', '?')})")
        entry["reason"] = why
        return entry
    shutil.rmtree(work, ignore_errors=True)  # an earlier nightly's files must not count now
    work.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, work / f.name)
    if (folder / "detections").is_dir():
        shutil.copytree(folder / "detections", work / "detections", dirs_exist_ok=True)
    try:
        entry["results"] = load_results(work)
        entry["report"] = collect(work)
    except QParityError as e:
        entry.update(status="error", reason=str(e))
        return entry
    entry["status"] = "ok"
    own = folder / REPORT_NAME
    if own.is_file():
        try:  # the platform's own verdict, shown beside the re-collected one
            entry["platform_verdict"] = read_report(own)["verdict"]
        except QParityError:
            entry["platform_verdict"] = "unreadable"
    return entry


def _is_result(f: Path) -> bool:
    try:
        r = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(r, dict) and r.get("schema") == RESULT_SCHEMA and "engine" in r


def nightly(platforms: dict[str, Path], out: Path, expected: list[str] | None = None,
            reference: str | None = None, golden_drift: str = "fail",
            run_id: str | None = None, date: str | None = None) -> NightlyReport:
    """Judge every platform, write `<out>/nightly_report.json`, return the report."""
    out = Path(out)
    expected = list(expected or [])
    names = expected + [n for n in platforms if n not in expected]
    if not names:
        raise QParityError("no platforms: give --platforms folders and/or --expected names")
    reference = reference or names[0]
    if reference not in names:  # judged without it, every golden would pass unseen
        names.insert(0, reference)
    plats = {n: collect_platform(n, platforms.get(n), out / "platforms" / n) for n in names}
    findings: list[Finding] = []
    golden = locked_protocol().golden
    ref = plats[reference]
    ref_report = ref["report"] or {}
    golden = ref_report.get("golden") or golden
    tolerance = float(ref_report.get("tolerance_map50_95", locked_protocol().tolerance_map50_95))
    ref_golden = (ref["results"] or {}).get(golden)
    ref_ok = ref["status"] == "ok" and ref_golden is not None and ref_golden.get("status") == "ok"

    for name, p in plats.items():
        if p["status"] != "ok":
            findings.append(Finding(p["status"] if p["status"] == "missing" else "error", "error",
                                    name, None, p["reason"]))
            continue
        rep = p["report"]
        wanted = (p["meta"] or {}).get("engines") or []
        for e in wanted:  # the engines this platform's compose profile runs
            if e not in rep["engines"]:
                rep["verdict"], rep["exit_code"] = "error", EXIT_ERROR
                rep["engines"][e] = {"status": "missing", "reason": "no result file from this "
                                     "engine (its service did not run or did not write)",
                                     "metrics": None, "delta_map50_95": None, "latency_ms": None}
        for engine, e in rep["engines"].items():
            if e["status"] == "fail":
                findings.append(Finding("engine-fail", "fail", name, engine, e.get("reason", "")))
            elif e["status"] in ("error", "unavailable", "missing"):
                findings.append(Finding("engine-error", "error", name, engine,
                                        f"{e['status']}: {e.get('reason', '')}"))
        p["golden_check"] = golden_check(name, p, reference, ref, ref_ok, golden, tolerance, findings)
        if (rep.get("reference") or {}).get("golden_drift"):
            findings.append(Finding("reference-drift", "note", name, golden, rep["reference"]["note"]))
    if not ref_ok:
        findings.append(Finding("no-reference", "error", reference, golden,
                                f"reference platform {reference} has no {golden} result to judge "
                                f"the other platforms' golden engines by"))
    if golden_drift == "warn":
        for f in findings:
            if f.kind == "golden-drift":
                f.severity = "note"
    worst = max((SEVERITY[f.severity] for f in findings), default=0)
    verdict, code = {2: ("error", EXIT_ERROR), 1: ("fail", EXIT_FAIL), 0: ("pass", EXIT_PASS)}[worst]
    report = NightlyReport(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), run_id=run_id, date=date,
        verdict=verdict, exit_code=code, golden=golden, tolerance_map50_95=tolerance,
        reference_platform=reference, golden_drift_policy=golden_drift,
        expected_platforms=expected, platforms_order=names,
        engines_order=engine_order(plats, golden),
        model=ref_report.get("model") if ref_ok else None,
        data=ref_report.get("data") if ref_ok else None,
        findings=sorted(findings, key=lambda f: -SEVERITY[f.severity]),
        platforms={n: platform_summary(n, p) for n, p in plats.items()})
    write_json_atomic(out / NIGHTLY_REPORT, report.to_json())
    return report


def golden_check(name: str, p: dict[str, Any], reference: str, ref: dict[str, Any], ref_ok: bool,
                 golden: str, tolerance: float, findings: list[Finding]) -> GoldenCheck:
    """This platform's golden engine against the reference platform's."""
    mine = p["results"].get(golden)
    check = GoldenCheck(reference=reference, delta_map50_95=None, drift=False, comparable=False)
    if mine is None or mine.get("status") != "ok" or not ref_ok:
        return check
    theirs = ref["results"][golden]
    if name != reference:
        for kind, section, key, what in SAME_ACROSS_PLATFORMS:
            a, b = (mine.get(section) or {}).get(key), (theirs.get(section) or {}).get(key)
            if a != b:
                findings.append(Finding(kind, "error", name, None,
                                        f"{what} differs from the reference platform {reference}'s "
                                        f"({str(a)[:12]} vs {str(b)[:12]}): not the same measurement"))
                return check
        if (mine.get("protocol") or {}).get("overrides") != (theirs.get("protocol") or {}).get("overrides"):
            findings.append(Finding("protocol-mismatch", "error", name, None,
                                    f"protocol overrides differ from the reference platform "
                                    f"{reference}'s run"))
            return check
    delta = map_delta(mine.get("metrics"), theirs.get("metrics"))
    check.delta_map50_95, check.comparable = delta, True
    check.drift = delta is not None and abs(delta) > tolerance
    if check.drift:
        findings.append(Finding("golden-drift", "fail", name, golden,
                                f"golden {golden} mAP50-95 {delta:+.2f} points from the reference "
                                f"platform {reference}'s golden (tolerance {tolerance}) on the same "
                                f"model and data: the golden engine itself moved with the hardware"))
    return check


def engine_order(plats: dict[str, dict[str, Any]], golden: str) -> list[str]:
    """The golden engine first, reference engines (never gated: the collector marks them by the
    result's own flag) last, the others by name between."""
    entries = [(e, ent) for p in plats.values() for e, ent in ((p["report"] or {}).get("engines")
                                                              or {}).items()]
    refs = sorted({e for e, ent in entries if ent.get("status") == "reference"} - {golden})
    rest = sorted({e for e, _ in entries} - {golden} - set(refs))
    return [golden] + rest + refs


def platform_summary(name: str, p: dict[str, Any]) -> PlatformSummary:
    rep = p["report"] or {}
    golden_env = ((p["results"] or {}).get(rep.get("golden")) or {}).get("env") or {}
    cpu = golden_env.get("cpu") or {}
    ref = rep.get("reference")
    return PlatformSummary(
        status=p["status"], reason=p["reason"], folder=p["folder"], meta=p["meta"],
        collected_report=f"platforms/{name}/{REPORT_NAME}" if p["status"] == "ok" else None,
        verdict=rep.get("verdict"), exit_code=rep.get("exit_code"),
        platform_verdict=p.get("platform_verdict"),
        model_sha256=(rep.get("model") or {}).get("sha256"),
        image_list_sha256=(rep.get("data") or {}).get("image_list_sha256"),
        images_evaluated=(rep.get("data") or {}).get("images_evaluated"),
        host=Host(cpu=cpu.get("model"), vnni=cpu.get("vnni"),
                  emulated=(cpu.get("emulated") or {}).get("label"),
                  gpus=[g.get("name") for g in golden_env.get("gpus") or []]),
        golden_check=p.get("golden_check"),
        qdq_ref=QdqRef(**{k: ref.get(k) for k in ("engine", "map50_95", "golden_delta",
                                                  "golden_drift", "note")}) if ref else None,
        engines={n: EngineCell(**{k: e.get(k) for k in ENGINE_CELL})
                 for n, e in (rep.get("engines") or {}).items()})


# What a nightly cell keeps of the collector's entry for an engine (the rest is in the
# platform's re-collected report).
ENGINE_CELL = ("status", "reason", "metrics", "delta_map50_95", "delta_vs_qdq_ref", "latency_ms",
               "speedup_vs_golden", "engine", "model_sha256", "census", "quantized_in_file")
