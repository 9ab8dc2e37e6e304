import numpy as np
import pytest

from harness.letterbox import boxes_to_original, letterbox, to_input


@pytest.mark.parametrize("h,w", [(480, 640), (640, 480), (320, 320), (100, 50), (333, 517), (1, 900)])
def test_letterbox_geometry(h, w):
    img = np.full((h, w, 3), 7, np.uint8)
    out, info = letterbox(img, 320)
    assert out.shape == (320, 320, 3)
    r = min(320 / h, 320 / w)
    assert info.ratio == pytest.approx(r)
    new_w, new_h = max(1, round(w * r)), max(1, round(h * r))
    # the image sits in the middle; padding differs by at most one pixel between the two sides
    content = np.argwhere((out != 114).any(axis=2))
    (y0, x0), (y1, x1) = content.min(0), content.max(0)
    assert (y1 - y0 + 1, x1 - x0 + 1) == (new_h, new_w)
    assert abs(y0 - (320 - 1 - y1)) <= 1 and abs(x0 - (320 - 1 - x1)) <= 1
    assert (out[~(out != 114).any(axis=2)] == 114).all()


def test_scaleup_enlarges_small_images_and_can_be_disabled():
    img = np.zeros((100, 50, 3), np.uint8)
    assert letterbox(img, 320)[1].ratio == pytest.approx(3.2)
    assert letterbox(img, 320, scaleup=False)[1].ratio == 1.0


def test_to_input_is_rgb_chw_unit_range():
    img = np.zeros((320, 320, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    x = to_input(img)
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32
    assert x[0, 2].max() == 1.0 and x[0, 0].max() == 0.0  # blue ends up in channel 2 (RGB)


@pytest.mark.parametrize("h,w", [(480, 640), (427, 640), (640, 361), (200, 200)])
def test_inverse_mapping_round_trips(h, w):
    rng = np.random.default_rng(h * w)
    _, info = letterbox(np.zeros((h, w, 3), np.uint8), 320)
    xy = rng.uniform(0, [w, h], size=(50, 2))
    wh = rng.uniform(1, [w, h], size=(50, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], axis=1)
    forward = boxes * info.ratio + [info.pad_left, info.pad_top] * 2
    np.testing.assert_allclose(boxes_to_original(forward, info), boxes, atol=1e-9)


def test_inverse_mapping_clips_to_image():
    _, info = letterbox(np.zeros((240, 320, 3), np.uint8), 320)
    out = boxes_to_original(np.array([[-10.0, -10.0, 400.0, 400.0]]), info)
    assert out.tolist() == [[0, 0, 320, 240]]


def test_read_input_is_the_protocols_letterbox_and_names_a_bad_file(tmp_path):
    import cv2

    from harness.errors import QParityError
    from harness.letterbox import letterbox, read_input, to_input
    from harness.protocol import locked_protocol

    p = locked_protocol()
    img = (np.arange(240 * 200 * 3) % 251).astype(np.uint8).reshape(240, 200, 3)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    x = read_input(tmp_path / "a.png", p)
    assert np.array_equal(x, to_input(letterbox(img, p.size, p.pad_color, p.auto, p.scaleup,
                                                p.stride)[0]))
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    with pytest.raises(QParityError, match="calibration image cannot be read") as e:
        read_input(tmp_path / "b.jpg", p, "calibration image")
    assert "b.jpg" in str(e.value)
