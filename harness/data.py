"""The evaluation data: a sorted image list, its COCO annotations, and the class mapping."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import QParityError
from .fileio import sha256_file

if TYPE_CHECKING:  # numpy only types read_image: the report page reads annotations without it
    import numpy as np

# The 80 category ids COCO's detectors predict, in model-class order (COCO's "80 -> 91" map).
COCO80_TO_91 = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
    31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54,
    55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81,
    82, 84, 85, 86, 87, 88, 89, 90,
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(images_dir: Path) -> list[Path]:
    """Every image under the folder, sorted by name: the fixed evaluation order."""
    if not images_dir.is_dir():
        raise QParityError("image folder does not exist", images_dir)
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise QParityError("no images (*.jpg, *.png) in this folder", images_dir)
    return files


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bad_image(im: Any) -> str | None:
    if not isinstance(im, dict):
        return "is not an object"
    if not _is_int(im.get("id")):
        return "has no integer 'id'"
    if not isinstance(im.get("file_name"), str) or not im["file_name"].strip():
        return "has no 'file_name'"
    for k in ("height", "width"):
        if not _is_int(im.get(k)) or im[k] < 1:
            return f"has no positive integer '{k}'"
    return None


def _bad_annotation(a: Any, image_ids: set[int], cat_ids: set[int]) -> str | None:
    if not isinstance(a, dict):
        return "is not an object"
    for k in ("id", "image_id", "category_id"):
        if not _is_int(a.get(k)):
            return f"has no integer '{k}'"
    if a["image_id"] not in image_ids:
        return f"refers to unknown image id {a['image_id']}"
    if a["category_id"] not in cat_ids:
        return f"refers to unknown category id {a['category_id']}"
    box = a.get("bbox")
    if not isinstance(box, list) or len(box) != 4 or not all(_is_finite(v) for v in box):
        return f"has a 'bbox' that is not 4 finite numbers ({str(box)[:60]})"
    if box[2] < 0 or box[3] < 0:  # zero stays allowed: degenerate, but COCO-valid, never matched
        return f"has a 'bbox' with a negative width or height ({box})"
    if not _is_finite(a.get("area")) or a["area"] < 0:  # pycocotools reads it for S/M/L
        return "has no finite, non-negative 'area'"
    if a.get("iscrowd") not in (0, 1):  # pycocotools reads it for every ground-truth box
        return "has no 'iscrowd' of 0 or 1"
    return None


def _first_duplicate(values: list[Any]) -> tuple[Any, int] | None:
    seen: set[Any] = set()
    dups = [v for v in values if v in seen or seen.add(v)]
    return (dups[0], len(dups)) if dups else None


def validate_coco(coco: dict[str, Any], path: Path) -> None:
    """Every field the evaluation reads, checked once when loaded: one bad box or a duplicate id
    changes mAP silently otherwise (pycocotools takes a NaN or negative box as it comes)."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco[key], list):
            raise QParityError(f"'{key}' is not a list", path)

    def report(what: str, items: list[Any], problem) -> None:
        bad = [(i, p) for i, p in ((i, problem(x)) for i, x in enumerate(items)) if p]
        if bad:
            i, p = bad[0]
            ident = items[i].get("id") if isinstance(items[i], dict) else None
            first = f"id {ident}" if ident is not None else f"entry #{i}"
            raise QParityError(f"{len(bad)} {what} entr{'y' if len(bad) == 1 else 'ies'} are "
                               f"invalid (first: {first} {p})", path)

    report("image", coco["images"], _bad_image)
    report("category", coco["categories"],
           lambda c: None if isinstance(c, dict) and _is_int(c.get("id"))
           else "has no integer 'id'")
    image_ids = [im["id"] for im in coco["images"]]
    cat_ids = [c["id"] for c in coco["categories"]]
    for what, values in (("image id", image_ids),
                         ("image file name", [Path(im["file_name"]).name for im in coco["images"]]),
                         ("category id", cat_ids)):
        dup = _first_duplicate(values)
        if dup:
            raise QParityError(f"{dup[1]} duplicate {what}(s) (first: {dup[0]!r}); each must be "
                               f"unique", path)
    ids, cats = set(image_ids), set(cat_ids)
    report("annotation", coco["annotations"], lambda a: _bad_annotation(a, ids, cats))
    dup = _first_duplicate([a["id"] for a in coco["annotations"]])
    if dup:
        raise QParityError(f"{dup[1]} duplicate annotation id(s) (first: {dup[0]!r}); each must "
                           f"be unique", path)


def truncation(path: Path) -> str | None:
    """Why an image file ends early, or None. OpenCV decodes a truncated JPEG without an error
    (the missing part comes out grey), so the file is checked: a JPEG's last end-of-image
    marker must come after its last start-of-scan (0xFF is byte-stuffed inside scan data, so
    neither marker occurs there by chance); a PNG must have its IEND chunk."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if data[:2] == b"\xff\xd8":
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            return "is a truncated JPEG (no end-of-image marker after its last scan)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and data.rfind(b"IEND") < 0:
        return "is a truncated PNG (no IEND chunk)"
    return None


def category_ids_for(categories: list[dict[str, Any]]) -> list[int]:
    """Model class index -> category id. COCO's 80 classes use the 80->91 map; any other
    set is taken in id order, the convention of every COCO-format training pipeline."""
    ids = sorted(int(c["id"]) for c in categories)
    return list(COCO80_TO_91) if ids == sorted(COCO80_TO_91) else ids


@dataclass
class Dataset:
    images_dir: Path
    annotations: Path
    files: list[Path]  # evaluated images, sorted
    image_ids: list[int]  # COCO image id of each file
    sizes: list[tuple[int, int]]  # (height, width) the annotation file declares
    category_ids: list[int]
    category_names: list[str]
    total_images: int  # in the folder, before --limit
    limit: int | None = None
    coco_json: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def load(cls, images_dir: Path, annotations: Path, limit: int | None = None) -> "Dataset":
        images_dir, annotations = Path(images_dir), Path(annotations)
        files = list_images(images_dir)
        if not annotations.is_file():
            raise QParityError("annotation file does not exist", annotations)
        try:
            coco = json.loads(annotations.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise QParityError(f"not a readable JSON annotation file ({e})", annotations) from e
        if not isinstance(coco, dict) or not {"images", "annotations", "categories"} <= coco.keys():
            raise QParityError("not COCO format: needs 'images', 'annotations' and 'categories'",
                               annotations)
        validate_coco(coco, annotations)
        by_name = {Path(im["file_name"]).name: im for im in coco["images"]}
        on_disk = {f.name for f in files}
        unannotated = sorted(on_disk - by_name.keys())
        if unannotated:
            raise QParityError(
                f"{len(unannotated)} image(s) in {images_dir} are not in the annotations "
                f"(first: {unannotated[0]}); annotations do not match the images", annotations)
        missing = sorted(by_name.keys() - on_disk)
        if missing:
            raise QParityError(
                f"{len(missing)} image(s) listed in the annotations are missing from {images_dir} "
                f"(first: {missing[0]})", annotations)
        if limit is not None:
            if limit < 1:
                raise QParityError(f"--limit must be at least 1, got {limit}")
            files_eval = files[:limit]
        else:
            files_eval = files
        cats = sorted(coco["categories"], key=lambda c: int(c["id"]))
        category_ids = category_ids_for(cats)
        name_of = {int(c["id"]): c.get("name", str(c["id"])) for c in cats}
        return cls(
            images_dir=images_dir,
            annotations=annotations,
            files=files_eval,
            image_ids=[by_name[f.name]["id"] for f in files_eval],
            sizes=[(by_name[f.name]["height"], by_name[f.name]["width"]) for f in files_eval],
            category_ids=category_ids,
            category_names=[name_of[i] for i in category_ids],
            total_images=len(files),
            limit=limit,
            coco_json=coco,
        )

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def check_num_classes(self, model_nc: int, model_path: Path) -> None:
        if model_nc != self.num_classes:
            raise QParityError(
                f"the model predicts {model_nc} classes but {self.annotations} has "
                f"{self.num_classes} categories; they must agree", model_path)

    def read_image(self, index: int) -> np.ndarray:
        import cv2  # here: reading annotations (the report's per-class AP) needs no OpenCV

        path = self.files[index]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            reason = "is missing" if not path.exists() else "cannot be decoded as an image"
            raise QParityError(f"image {reason}", path)
        h, w = self.sizes[index]
        cut = truncation(path)
        if cut:
            raise QParityError(f"image {cut}; decoded, part of it would be grey", path)
        if img.shape[:2] != (h, w):
            raise QParityError(f"image is {img.shape[1]}x{img.shape[0]} but the annotations say "
                               f"{w}x{h}; annotations do not match the images", path)
        return img

    def manifest(self) -> dict[str, Any]:
        names = "\n".join(f.name for f in self.files) + "\n"
        return {
            "images_dir": str(self.images_dir),
            "annotations": str(self.annotations),
            "annotations_sha256": sha256_file(self.annotations),
            "images_evaluated": len(self.files),
            "images_in_folder": self.total_images,
            "limit": self.limit,
            "image_list_sha256": hashlib.sha256(names.encode()).hexdigest(),
            "num_classes": self.num_classes,
        }
