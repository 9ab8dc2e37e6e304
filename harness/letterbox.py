"""Letterbox preprocessing (SPEC.md) and its exact inverse for mapping boxes back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import QParityError

if TYPE_CHECKING:
    from .protocol import Protocol


@dataclass(frozen=True)
class LetterboxInfo:
    """What the letterbox did to one image: enough to invert it."""

    orig_h: int
    orig_w: int
    ratio: float
    pad_left: float  # dw/2: the (fractional) offset YOLOv7 subtracts when mapping back
    pad_top: float


def letterbox(
    img: np.ndarray,
    size: int = 320,
    color: int = 114,
    auto: bool = False,
    scaleup: bool = True,
    stride: int = 32,
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize keeping aspect ratio and pad to `size`, padding split evenly (YOLOv7's letterbox)."""
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    if not scaleup:
        r = min(r, 1.0)
    new_w, new_h = max(1, int(round(w * r))), max(1, int(round(h * r)))  # never a 0-pixel side
    dw, dh = size - new_w, size - new_h
    if auto:  # pad only to a stride multiple; the spec pins auto=False, kept for completeness
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    if (w, h) != (new_w, new_h):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    # the +-0.1 reproduces YOLOv7's rounding of odd padding (the extra pixel goes bottom/right)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    out = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(color,) * 3)
    return out, LetterboxInfo(h, w, r, dw, dh)


def letterbox_as(img: np.ndarray, protocol: "Protocol") -> tuple[np.ndarray, LetterboxInfo]:
    """`letterbox` with the protocol's size, padding colour and rules."""
    p = protocol
    return letterbox(img, p.size, p.pad_color, p.auto, p.scaleup, p.stride)


def read_input(path: Path | str, protocol: "Protocol", what: str = "image") -> np.ndarray:
    """Read an image file and make it a network input as the protocol says: the one way every
    caller outside the evaluation (calibration, localize, benchmarks) prepares an image. The
    evaluation reads through `Dataset.read_image`, which also checks sizes against the
    annotations, then letterboxes with `letterbox_as`."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise QParityError(f"{what} cannot be read or decoded", Path(path))
    return to_input(letterbox_as(img, protocol)[0])


def to_input(img_bgr_letterboxed: np.ndarray) -> np.ndarray:
    """BGR HWC uint8 -> RGB CHW float32 in [0, 1] with a batch axis."""
    x = img_bgr_letterboxed[:, :, ::-1].transpose(2, 0, 1)
    return (np.ascontiguousarray(x, dtype=np.float32) / 255.0)[None]


def boxes_to_original(xyxy: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map xyxy boxes from network-input pixels back to original-image pixels, clipped."""
    out = xyxy.astype(np.float64, copy=True)
    out[:, [0, 2]] -= info.pad_left
    out[:, [1, 3]] -= info.pad_top
    out /= info.ratio
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, info.orig_w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, info.orig_h)
    return out
