"""Calibration chunking depends on the image count alone, never on its divisors."""

from pathlib import Path

import pytest

from harness.protocol import locked_protocol
from harness.ptq import CalibrationImages, calib_chunks, stride_for


@pytest.mark.parametrize("n", [1, 5, 16, 17, 30, 31, 97, 300, 509, 512])
def test_chunks_are_balanced_and_cover_the_list_in_order(n):
    b = calib_chunks(n, 16)
    sizes = [y - x for x, y in zip(b, b[1:])]
    assert b[0] == 0 and b[-1] == n
    assert len(sizes) == -(-n // 16)
    assert max(sizes) - min(sizes) <= 1 and max(sizes) <= 16
    assert min(sizes) >= min(n, 8)  # a prime count no longer degrades to chunks of one image


def test_counts_that_divide_keep_their_old_chunks():
    # the protocol's 512 images and the demo's 30 are chunked as before the change
    assert stride_for(512) == 16 and len(calib_chunks(512)) - 1 == 32
    assert stride_for(30) == 15 and len(calib_chunks(30)) - 1 == 2


@pytest.mark.parametrize("n", [31, 97, 30, 512])
def test_reader_maps_onnxruntime_strided_ranges_onto_the_chunks(n):
    # ONNX Runtime's CalibStridedMinMax loop: the size must divide by the stride, then one
    # set_range per stride-sized window
    r = CalibrationImages([Path(f"{i}.jpg") for i in range(n)], "images", locked_protocol(), chunk=16)
    stride = stride_for(n)
    assert len(r) % stride == 0
    seen = []
    for start in range(0, len(r), stride):
        r.set_range(start, start + stride)
        chunk = list(range(r.start, r.end))
        assert chunk, "an empty chunk makes ONNX Runtime's calibrator fail"
        seen += chunk
    assert seen == list(range(n))
