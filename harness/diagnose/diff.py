"""`qparity diff`: where two engines' detections disagree, image by image, with pictures.

Both engines' final detections (after the shared decode + NMS, in original-image pixels, from
`RUN/detections/<engine>.npz`) are matched per image and per class:

- Only boxes scored at least `--floor` (default 0.25) are counted. The evaluation keeps boxes
  down to conf 0.001 so that mAP can integrate the whole precision-recall curve; hundreds of
  those per image are noise no user ever sees, and counting them would rank images by how much
  low-score clutter they have. 0.25 is the usual deployment threshold of YOLO models (YOLOv5/7
  `detect.py` default). A box may still find its partner below the floor, down to half of it,
  so that a box whose score merely slid across the floor shows as *moved*, not as missing
  plus nothing.
- Matching is greedy over same-class pairs with IoU >= 0.5, highest IoU first: each box takes
  its best-overlapping partner, once.
- matched: IoU >= 0.9 and |score change| <= 0.1; moved: matched at IoU >= 0.5 but not that
  close; missing: a reference (B) box with no partner; extra: an engine (A) box with no partner.

Images are ranked by disagreement = missing + extra + moved (ties: by the summed score of the
missing and extra boxes). This is engine-to-engine disagreement, independent of the ground
truth: per-image AP cannot rank images without ground truth, moves in steps of 1/|GT| on
images with a couple of objects, and hides changes among false positives. Per-image AP50-95 of
both engines is still shown for the top images (pycocotools on those images only: cheap).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import QParityError
from ..postprocess import iou_matrix
from ..records.report import read_report_record
from ..records.result import DataManifest, EngineResult
from ..results import read_result
from .defaults import FLOOR  # noqa: F401  (also read from here)

IOU_MATCH = 0.5
IOU_SAME = 0.9
SCORE_TOL = 0.1
STATUSES = ("matched", "moved", "missing", "extra")
# BGR colours of each status in the pictures
COLOURS = {"matched": (80, 200, 80), "moved": (0, 200, 255), "missing": (60, 60, 235),
           "extra": (235, 80, 235)}


@dataclass
class ImageDiff:
    image_id: int
    a: np.ndarray  # [K, 7] A's rows of this image (score >= floor / 2)
    b: np.ndarray
    pairs: list[tuple[int, int, float]] = field(default_factory=list)  # (ia, ib, iou), counted
    status_a: dict[int, str] = field(default_factory=dict)  # row index in a -> status
    status_b: dict[int, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    unmatched_score: float = 0.0
    a_count: int = 0  # boxes >= floor
    b_count: int = 0
    floor: float = FLOOR

    def paired(self) -> dict[str, int]:
        """Boxes at or above the floor that found a partner, per side: with `missing` and
        `extra` they add up to each side's box count."""
        return {"engine_paired": int(sum(bool(self.a[i, 5] >= self.floor) for i, _, _ in self.pairs)),
                "against_paired": int(sum(bool(self.b[j, 5] >= self.floor) for _, j, _ in self.pairs))}

    @property
    def disagreement(self) -> int:
        return self.counts["moved"] + self.counts["missing"] + self.counts["extra"]


def xyxy(rows: np.ndarray) -> np.ndarray:
    b = rows[:, 1:5].astype(np.float64)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:4]], axis=1)


def match_image(image_id: int, a: np.ndarray, b: np.ndarray, floor: float = FLOOR,
                iou_match: float = IOU_MATCH, iou_same: float = IOU_SAME,
                score_tol: float = SCORE_TOL) -> ImageDiff:
    """Classify the detections of one image; a, b: [K, 7] COCO rows of A and B."""
    a = a[a[:, 5] >= floor / 2]
    b = b[b[:, 5] >= floor / 2]
    d = ImageDiff(image_id, a, b, floor=floor)
    d.a_count, d.b_count = int((a[:, 5] >= floor).sum()), int((b[:, 5] >= floor).sum())
    taken_a, taken_b = set(), set()
    for cat in np.intersect1d(a[:, 6], b[:, 6]):
        ia, ib = np.nonzero(a[:, 6] == cat)[0], np.nonzero(b[:, 6] == cat)[0]
        iou = iou_matrix(xyxy(a[ia]), xyxy(b[ib]))
        cand = [(iou[i, j], max(a[ia[i], 5], b[ib[j], 5]), int(ia[i]), int(ib[j]))
                for i, j in zip(*np.nonzero(iou >= iou_match))]
        for v, _, i, j in sorted(cand, key=lambda c: (-c[0], -c[1], c[2], c[3])):
            if i in taken_a or j in taken_b:
                continue
            taken_a.add(i)
            taken_b.add(j)
            if max(a[i, 5], b[j, 5]) < floor:  # both below the floor: a pair nobody sees
                continue
            same = v >= iou_same and abs(a[i, 5] - b[j, 5]) <= score_tol
            st = "matched" if same else "moved"
            d.pairs.append((i, j, float(v)))
            d.status_a[i] = d.status_b[j] = st
            d.counts[st] += 1
    for j in range(len(b)):
        if j not in taken_b and b[j, 5] >= floor:
            d.status_b[j] = "missing"
            d.counts["missing"] += 1
            d.unmatched_score += float(b[j, 5])
    for i in range(len(a)):
        if i not in taken_a and a[i, 5] >= floor:
            d.status_a[i] = "extra"
            d.counts["extra"] += 1
            d.unmatched_score += float(a[i, 5])
    return d


# ----------------------------------------------------------------------------- run folders
def _result(run: Path, engine: str) -> EngineResult:
    """`<run>/<engine>.json` as its record, checked as the collector checks it (a file that is
    not a result of this engine is one line naming it, never compared)."""
    path = run / f"{engine}.json"
    if not path.is_file():
        raise QParityError(f"no result for engine {engine!r} in this run (no {path.name})", run)
    try:
        r = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise QParityError(f"unreadable result file ({e})", path) from e
    rec = read_result(r, engine)  # the collector's own check: the record, then what types cannot say
    if isinstance(rec, str):
        raise QParityError(f"not a valid result file: {rec}", path)
    if rec.status != "ok" or not rec.detections_file:
        raise QParityError(f"engine {engine} did not produce detections in this run "
                           f"(status {rec.status}: {rec.reason})", path)
    return rec


def _detections(run: Path, r: EngineResult) -> np.ndarray:
    path = run / str(r.detections_file)
    try:
        with np.load(path) as z:
            det = np.asarray(z["detections"], dtype=np.float64)
    except (OSError, KeyError, ValueError) as e:
        raise QParityError(f"unreadable detections file ({e})", path) from e
    if det.ndim != 2 or (det.size and det.shape[1] != 7):
        raise QParityError(f"detections must be [K, 7] rows, found {list(det.shape)}", path)
    return det.reshape(-1, 7)


def golden_of(run: Path, fallback_result: EngineResult) -> str:
    rep = run / "eval_report.json"
    if rep.is_file():
        try:
            return read_report_record(rep).golden
        except QParityError:  # an unreadable report: the result's own protocol says
            pass
    from ..protocol import locked_protocol

    # the protocol is free-form in a result (checked against the locked one by check_result)
    return (fallback_result.protocol or {}).get("golden") or locked_protocol().golden


# ----------------------------------------------------------------------------- the command
def diff(run: Path, engine: str, against: str | None = None, against_run: Path | None = None,
         top: int = 12, out: Path | None = None, floor: float = FLOOR, pictures: bool = True
         ) -> dict[str, Any]:
    """Compare A = `engine` with B = `against` (default: the run's golden engine); writes the
    pictures and summary.json into `out` (default RUN/diff_<A>_vs_<B>/) and returns the summary."""
    run = Path(run)
    if not run.is_dir():
        raise QParityError("run folder does not exist", run)
    if not 0 < floor <= 1:
        raise QParityError(f"--floor must be in (0, 1], got {floor}")
    ra = _result(run, engine)
    b_run = Path(against_run) if against_run else run
    against = against or golden_of(run, ra)
    rb = _result(b_run, against)
    list_a, list_b = (r.data.image_list_sha256 if r.data else None for r in (ra, rb))
    if list_a != list_b:
        raise QParityError(f"{engine} and {against} were run on different images "
                           f"({str(list_a)[:12]} vs {str(list_b)[:12]}); nothing to compare", b_run)
    det_a, det_b = _detections(run, ra), _detections(b_run, rb)
    dataset, why_no_images = _dataset(ra.data)
    image_ids = dataset.image_ids if dataset else sorted(set(det_a[:, 0]) | set(det_b[:, 0]))
    by_a, by_b = _split(det_a), _split(det_b)
    empty = np.zeros((0, 7))
    diffs = [match_image(int(i), by_a.get(int(i), empty), by_b.get(int(i), empty), floor)
             for i in image_ids]
    ranked = sorted(diffs, key=lambda d: (-d.disagreement, -d.unmatched_score, d.image_id))
    top_diffs = [d for d in ranked[:top] if d.disagreement > 0]
    label_a = engine + ("" if b_run == run else f" ({run.name})")
    label_b = against + ("" if b_run == run else f" ({b_run.name})")
    b_tag = against if b_run == run else f"{b_run.name}-{against}"
    out = Path(out) if out else run / f"diff_{_safe(engine)}_vs_{_safe(b_tag)}"
    out.mkdir(parents=True, exist_ok=True)
    ap = _per_image_ap(dataset, det_a, det_b, [d.image_id for d in top_diffs]) if dataset else {}
    names = _names(dataset)
    files = dict(zip(dataset.image_ids, dataset.files)) if dataset else {}
    rows = []
    for rank, d in enumerate(top_diffs, 1):
        entry = _entry(d, rank, files.get(d.image_id), names)
        entry["ap50_95"] = ap.get(d.image_id)
        if pictures and dataset:
            pic = out / f"{rank:02d}_{Path(entry['file']).stem}.jpg"
            draw(dataset, dataset.image_ids.index(d.image_id), d, label_a, label_b, names, pic)
            entry["picture"] = pic.name
        rows.append(entry)
    totals = {s: sum(d.counts[s] for d in diffs) for s in STATUSES}
    summary = {
        "run": str(run), "engine": engine, "against": against,
        "engine_label": label_a, "against_label": label_b,
        "against_run": str(b_run) if b_run != run else None,
        "settings": {"floor": floor, "partner_floor": floor / 2, "iou_match": IOU_MATCH,
                     "iou_same": IOU_SAME, "score_tol": SCORE_TOL,
                     "rank_by": "missing + extra + moved, then summed score of missing and extra"},
        "images": len(diffs), "images_differing": sum(d.disagreement > 0 for d in diffs),
        "boxes": {"engine": sum(d.a_count for d in diffs), "against": sum(d.b_count for d in diffs)},
        "totals": totals,
        "pictures": {"written": bool(pictures and dataset and rows),
                     "why_not": None if pictures and dataset else (why_no_images or "--no-pictures")},
        "top": rows,
        "per_image": [{"image_id": d.image_id, **d.counts, "engine_boxes": d.a_count,
                       "against_boxes": d.b_count, **d.paired()} for d in ranked],
        "out": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _split(det: np.ndarray) -> dict[int, np.ndarray]:
    if not len(det):
        return {}
    order = np.argsort(det[:, 0], kind="stable")
    det = det[order]
    ids, starts = np.unique(det[:, 0], return_index=True)
    return {int(i): det[s:e] for i, s, e in zip(ids, starts, list(starts[1:]) + [len(det)])}


def _dataset(data: DataManifest | None):
    from ..data import Dataset

    if data is None or not data.images_dir or not data.annotations:
        return None, "images not available here (the result names no images); table and JSON only"
    try:
        return Dataset.load(Path(data.images_dir), Path(data.annotations), data.limit), None
    except QParityError as e:
        return None, f"images not available here ({e}); table and JSON only"


def _names(dataset: Any) -> dict[int, str]:
    if not dataset:
        return {}
    return dict(zip(dataset.category_ids, dataset.category_names))


def _entry(d: ImageDiff, rank: int, file: Path | None, names: dict[int, str]) -> dict[str, Any]:
    def box(rows: np.ndarray, i: int) -> dict[str, Any]:
        r = rows[i]
        return {"xywh": [round(float(v), 2) for v in r[1:5]], "score": round(float(r[5]), 4),
                "category_id": int(r[6]), "name": names.get(int(r[6]), str(int(r[6])))}

    boxes = [{"status": d.status_a[i], "iou": round(v, 4), "engine": box(d.a, i), "against": box(d.b, j)}
             for i, j, v in d.pairs if d.status_a[i] == "moved"]
    boxes += [{"status": "missing", "against": box(d.b, j)} for j, s in d.status_b.items() if s == "missing"]
    boxes += [{"status": "extra", "engine": box(d.a, i)} for i, s in d.status_a.items() if s == "extra"]
    return {"rank": rank, "image_id": d.image_id, "file": file.name if file else str(d.image_id),
            **d.counts, "engine_boxes": d.a_count, "against_boxes": d.b_count,
            "disagreement": d.disagreement, "differences": boxes}


def _per_image_ap(dataset: Any, det_a: np.ndarray, det_b: np.ndarray, ids: list[int]
                  ) -> dict[int, dict[str, float | None]]:
    """AP50-95 of each engine on each of `ids`, alone (pycocotools on those images only)."""
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    from ..metrics import coco_from_dict

    if not ids:
        return {}
    gt = coco_from_dict(dataset.coco_json)
    out: dict[int, dict[str, float | None]] = {i: {} for i in ids}
    for key, det in (("engine", det_a), ("against", det_b)):
        sel = det[np.isin(det[:, 0], ids)]
        if not len(sel):
            for i in ids:
                out[i][key] = 0.0 if gt.getAnnIds(imgIds=[i]) else None
            continue
        dt = None
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes(sel)
            for i in ids:  # one evaluation per image: accumulate() cannot select a subset
                ev = COCOeval(gt, dt, "bbox")
                ev.params.imgIds = [i]
                ev.evaluate()
                ev.accumulate()
                prec = ev.eval["precision"][:, :, :, 0, -1]  # all areas, maxDets 100
                valid = prec[prec > -1]
                out[i][key] = round(float(valid.mean()) * 100, 2) if valid.size else None
    return out


# ----------------------------------------------------------------------------- pictures
def draw(dataset: Any, index: int, d: ImageDiff, label_a: str, label_b: str,
         names: dict[int, str], path: Path) -> None:
    """B's boxes on the left, A's on the right, coloured by status, with a legend below."""
    import cv2

    img = dataset.read_image(index)
    h, w = img.shape[:2]
    k = max(1.0, 480 / max(h, w))  # small images are enlarged so that labels stay legible
    if k > 1:
        img = cv2.resize(img, (int(round(w * k)), int(round(h * k))), interpolation=cv2.INTER_LINEAR)
    panels = []
    for rows, status, title in ((d.b, d.status_b, f"B: {label_b}"), (d.a, d.status_a, f"A: {label_a}")):
        p = img.copy()
        order = sorted(status, key=lambda i: ("matched", "moved", "extra", "missing").index(status[i]))
        for i in order:  # matched first, so that differences are drawn on top
            st = status[i]
            x0, y0, x1, y1 = (xyxy(rows[i:i + 1])[0] * k).round().astype(int)
            cv2.rectangle(p, (x0, y0), (x1, y1), COLOURS[st], 1 if st == "matched" else 2)
            if st == "matched":  # unlabelled: the differences are what the picture is for
                continue
            text = f"{names.get(int(rows[i, 6]), int(rows[i, 6]))} {rows[i, 5]:.2f}"
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            ty = y0 - 3 if y0 - th - 5 >= 0 else y0 + th + 3  # above the box, or inside at the top
            cv2.rectangle(p, (x0, ty - th - 2), (x0 + tw + 4, ty + 2), COLOURS[st], -1)
            cv2.putText(p, text, (x0 + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        bar = np.full((24, p.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, title, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(np.vstack([bar, p]))
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    canvas = np.hstack([panels[0], gap, panels[1]])
    legend = np.full((28, canvas.shape[1], 3), 255, np.uint8)
    x = 6
    for st in STATUSES:
        cv2.rectangle(legend, (x, 8), (x + 14, 20), COLOURS[st], -1)
        text = f"{st} {d.counts[st]}"
        cv2.putText(legend, text, (x + 18, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        x += 30 + 9 * len(text)
    cv2.imwrite(str(path), np.vstack([canvas, legend]), [cv2.IMWRITE_JPEG_QUALITY, 90])


# ----------------------------------------------------------------------------- output
def print_summary(s: dict[str, Any], console: Any = None) -> None:
    from rich.table import Table

    from ..report import wide_console

    console = console or wide_console()
    a, b = s["engine_label"], s["against_label"]
    t = Table("#", "image", "boxes B", "boxes A", "matched", "moved", "missing", "extra",
              "AP B", "AP A", "picture",
              title=f"diff: A = {a} vs B = {b}: {s['images_differing']} of {s['images']} images "
                    f"differ (boxes scored >= {s['settings']['floor']})", title_justify="left")
    for r in s["top"]:
        ap = r.get("ap50_95") or {}
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        t.add_row(str(r["rank"]), r["file"], str(r["against_boxes"]), str(r["engine_boxes"]),
                  str(r["matched"]), f"[yellow]{r['moved']}[/]" if r["moved"] else "0",
                  f"[red]{r['missing']}[/]" if r["missing"] else "0",
                  f"[magenta]{r['extra']}[/]" if r["extra"] else "0",
                  fmt(ap.get("against")), fmt(ap.get("engine")), r.get("picture", "-"))
    tot = s["totals"]
    t.caption = (f"all images: B {s['boxes']['against']} boxes, A {s['boxes']['engine']}; matched "
                 f"{tot['matched']}, moved {tot['moved']}, missing {tot['missing']}, extra {tot['extra']}")
    console.print(t)
    if s["pictures"]["why_not"] and s["top"]:
        console.print(f"[yellow]no pictures:[/] {s['pictures']['why_not']}", highlight=False)
    console.print(f"written: {s['out']}/summary.json" + (" and one picture per listed image"
                                                         if s["pictures"]["written"] else ""),
                  highlight=False)


def cmd_diff(args: argparse.Namespace) -> int:
    s = diff(Path(args.run), args.engine, args.against,
             Path(args.against_run) if args.against_run else None, args.top,
             Path(args.out) if args.out else None, args.floor, not args.no_pictures)
    print_summary(s)
    return 0
