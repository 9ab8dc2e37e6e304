"""The evaluation data: a sorted image list, its COCO annotations, and the class mapping."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import QParityError
from .fileio import sha256_file

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
        image_ids = {int(im["id"]) for im in coco["images"]}
        cat_ids = {int(c["id"]) for c in coco["categories"]}
        for a in coco["annotations"]:
            if int(a["image_id"]) not in image_ids or int(a["category_id"]) not in cat_ids:
                raise QParityError(f"annotation id {a.get('id')} refers to an unknown image "
                                   f"or category", annotations)
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
            image_ids=[int(by_name[f.name]["id"]) for f in files_eval],
            sizes=[(int(by_name[f.name]["height"]), int(by_name[f.name]["width"])) for f in files_eval],
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
        path = self.files[index]
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            reason = "is missing" if not path.exists() else "cannot be decoded as an image"
            raise QParityError(f"image {reason}", path)
        h, w = self.sizes[index]
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
