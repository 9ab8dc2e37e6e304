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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..collector import (EXIT_ERROR, EXIT_FAIL, EXIT_PASS, REPORT_NAME, collect_report,
                         load_records, map_delta, part)
from ..errors import QParityError
from ..fileio import write_json_atomic
from ..protocol import locked_protocol
from ..records.base import Section, dig
from ..records.nightly import (NIGHTLY_REPORT, EngineCell, Finding, GoldenCheck, Host, NightlyReport,
                               PlatformSummary, QdqRef)
from ..records.report import EngineEntry, EvalReport, read_report_record
from ..records.result import EngineResult
from ..results import RESULT_SCHEMA

NIGHTLY_SUMMARY = "nightly_summary.md"
PLATFORM_META = "platform.json"
SEVERITY = {"error": 2, "fail": 1, "note": 0}
# Where a platform must agree with the reference platform before its golden can be compared.
SAME_ACROSS_PLATFORMS = (("model-mismatch", "model", "sha256", "model file"),
                         ("data-mismatch", "data", "image_list_sha256", "image list"),
                         ("data-mismatch", "data", "annotations_sha256", "annotation file"))
# What a nightly cell keeps of the collector's entry for an engine (the rest is in the
# platform's re-collected report).
ENGINE_CELL = ("status", "reason", "metrics", "delta_map50_95", "delta_vs_qdq_ref", "latency_ms",
               "speedup_vs_golden", "engine", "model_sha256", "census", "quantized_in_file")
MISSING_ENGINE = "no result file from this engine (its service did not run or did not write)"


@dataclass
class Platform:
    """One platform while it is judged: its folder, its re-collected report and results, and
    the cells of the table (the report's engines, then those its profile runs but that left no
    result, as `missing`)."""
    folder: Path | None
    status: str = "missing"
    reason: str = ""
    meta: dict[str, Any] | None = None
    report: EvalReport | None = None
    results: dict[str, EngineResult] = field(default_factory=dict)
    cells: dict[str, EngineCell] = field(default_factory=dict)
    verdict: str | None = None  # the re-collected report's, or error with an engine missing
    exit_code: int | None = None
    platform_verdict: str | None = None
    golden_check: GoldenCheck | None = None


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
            name = dig(meta, "platform") or Path(folder).name
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


def cell(entry: EngineEntry) -> EngineCell:
    """What the nightly keeps of a report entry; its sections as the report holds them."""
    return EngineCell(**{k: _json_of(getattr(entry, k)) for k in ENGINE_CELL})


def _json_of(v: Any) -> Any:
    return v.to_json(omit_absent=True) if isinstance(v, Section) else v


def collect_platform(name: str, folder: Path | None, work: Path) -> Platform:
    """Re-collect one platform into `work`; its status is ok, missing or error."""
    p = Platform(folder)
    if folder is None or not folder.is_dir():
        p.reason = ("no results for this platform (its runner offline, its job not run, "
                    "or its artifact not uploaded)")
        return p
    meta = p.meta = read_meta(folder)
    files = _result_files(folder)
    if not any(_is_result(f) for f in files):
        why = "no engine result files: the platform job did not get as far as running an engine"
        if meta:
            code = meta.get("compose_exit")
            why += (f" (its compose run: {'never ran' if code is None else f'exit {code}'}; "
                    f"job status {meta.get('job_status', '?')}; runner {meta.get('runner', '?')})")
        p.reason = why
        return p
    shutil.rmtree(work, ignore_errors=True)  # an earlier nightly's files must not count now
    work.mkdir(parents=True)
    for f in files:
        shutil.copy2(f, work / f.name)
    if (folder / "detections").is_dir():
        shutil.copytree(folder / "detections", work / "detections", dirs_exist_ok=True)
    try:
        p.results = load_records(work)
        p.report = collect_report(work)
    except QParityError as e:
        p.status, p.reason = "error", str(e)
        return p
    p.status = "ok"
    p.verdict, p.exit_code = p.report.verdict, p.report.exit_code
    p.cells = {e: cell(entry) for e, entry in p.report.engines.items()}
    for e in dig(meta, "engines") or []:  # the engines this platform's compose profile runs
        if e not in p.cells:
            p.verdict, p.exit_code = "error", EXIT_ERROR
            p.cells[e] = EngineCell(status="missing", reason=MISSING_ENGINE, metrics=None,
                                    delta_map50_95=None, delta_vs_qdq_ref=None, latency_ms=None,
                                    speedup_vs_golden=None, engine=None, model_sha256=None,
                                    census=None, quantized_in_file=None)
    own = folder / REPORT_NAME
    if own.is_file():
        try:  # the platform's own verdict, shown beside the re-collected one
            p.platform_verdict = read_report_record(own).verdict
        except QParityError:
            p.platform_verdict = "unreadable"
    return p


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
    ref = plats[reference]
    ref_report = ref.report
    golden = ref_report.golden if ref_report else locked_protocol().golden
    tolerance = float(ref_report.tolerance_map50_95 if ref_report
                      else locked_protocol().tolerance_map50_95)
    ref_golden = ref.results.get(golden)
    ref_ok = ref.status == "ok" and ref_golden is not None and ref_golden.status == "ok"

    for name, p in plats.items():
        if p.status != "ok":
            findings.append(Finding(p.status if p.status == "missing" else "error", "error",
                                    name, None, p.reason))
            continue
        for engine, e in p.cells.items():
            if e.status == "fail":
                findings.append(Finding("engine-fail", "fail", name, engine, e.reason or ""))
            elif e.status in ("error", "unavailable", "missing"):
                findings.append(Finding("engine-error", "error", name, engine,
                                        f"{e.status}: {e.reason or ''}"))
        p.golden_check = golden_check(name, p, reference, ref, ref_ok, golden, tolerance, findings)
        drift = p.report.reference if p.report else None
        if drift is not None and drift.golden_drift:
            findings.append(Finding("reference-drift", "note", name, golden, drift.note))
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
        model=_json_of(ref_report.model) if ref_ok and ref_report else None,
        data=_json_of(ref_report.data) if ref_ok and ref_report else None,
        findings=sorted(findings, key=lambda f: -SEVERITY[f.severity]),
        platforms={n: platform_summary(n, p) for n, p in plats.items()})
    write_json_atomic(out / NIGHTLY_REPORT, report.to_json())
    return report


def golden_check(name: str, p: Platform, reference: str, ref: Platform, ref_ok: bool,
                 golden: str, tolerance: float, findings: list[Finding]) -> GoldenCheck:
    """This platform's golden engine against the reference platform's."""
    mine = p.results.get(golden)
    check = GoldenCheck(reference=reference, delta_map50_95=None, drift=False, comparable=False)
    if mine is None or mine.status != "ok" or not ref_ok:
        return check
    theirs = ref.results[golden]
    if name != reference:
        for kind, section, key, what in SAME_ACROSS_PLATFORMS:
            a, b = part(mine, section, key), part(theirs, section, key)
            if a != b:
                findings.append(Finding(kind, "error", name, None,
                                        f"{what} differs from the reference platform {reference}'s "
                                        f"({str(a)[:12]} vs {str(b)[:12]}): not the same measurement"))
                return check
        if dig(mine.protocol, "overrides") != dig(theirs.protocol, "overrides"):
            findings.append(Finding("protocol-mismatch", "error", name, None,
                                    f"protocol overrides differ from the reference platform "
                                    f"{reference}'s run"))
            return check
    delta = map_delta(mine.metrics, theirs.metrics)
    check.delta_map50_95, check.comparable = delta, True
    check.drift = delta is not None and abs(delta) > tolerance
    if check.drift:
        findings.append(Finding("golden-drift", "fail", name, golden,
                                f"golden {golden} mAP50-95 {delta:+.2f} points from the reference "
                                f"platform {reference}'s golden (tolerance {tolerance}) on the same "
                                f"model and data: the golden engine itself moved with the hardware"))
    return check


def engine_order(plats: dict[str, Platform], golden: str) -> list[str]:
    """The golden engine first, reference engines (never gated: the collector marks them by the
    result's own flag) last, the others by name between."""
    cells = [(e, c) for p in plats.values() for e, c in p.cells.items()]
    refs = sorted({e for e, c in cells if c.status == "reference"} - {golden})
    rest = sorted({e for e, _ in cells} - {golden} - set(refs))
    return [golden] + rest + refs


def platform_summary(name: str, p: Platform) -> PlatformSummary:
    rep = p.report
    golden = p.results.get(rep.golden) if rep else None
    env = golden.env if golden else None  # free-form: envinfo's keys
    ref = rep.reference if rep else None
    return PlatformSummary(
        status=p.status, reason=p.reason, folder=str(p.folder) if p.folder else None,
        meta=p.meta,
        collected_report=f"platforms/{name}/{REPORT_NAME}" if p.status == "ok" else None,
        verdict=p.verdict, exit_code=p.exit_code,  # type: ignore[arg-type]
        platform_verdict=p.platform_verdict,
        model_sha256=rep.model.sha256 if rep and rep.model else None,
        image_list_sha256=rep.data.image_list_sha256 if rep and rep.data else None,
        images_evaluated=rep.data.images_evaluated if rep and rep.data else None,
        host=Host(cpu=dig(env, "cpu", "model"), vnni=dig(env, "cpu", "vnni"),
                  emulated=dig(env, "cpu", "emulated", "label"),
                  gpus=[g.get("name") for g in dig(env, "gpus") or []]),
        golden_check=p.golden_check,
        qdq_ref=QdqRef(engine=ref.engine, map50_95=ref.map50_95, golden_delta=ref.golden_delta,
                       golden_drift=ref.golden_drift, note=ref.note) if ref else None,
        engines=p.cells)
