"""NMS and decode against a plain, obviously-correct brute-force reference."""

import numpy as np
import pytest

from harness.postprocess import decode, nms


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def brute_nms(boxes, scores, classes, thr, max_det, agnostic=False):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    for i in order:
        if all(iou(boxes[i].tolist(), boxes[k].tolist()) <= thr
               for k in keep if agnostic or classes[k] == classes[i]):
            keep.append(i)
    return keep[:max_det]


def random_case(rng, n, nc, integer=False):
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(0, 60, (n, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    if integer:  # many exact ties in both coordinates and IoUs
        boxes = np.round(boxes / 10) * 10
    scores = rng.uniform(0, 1, n).astype(np.float32)
    return boxes.astype(np.float32), scores, rng.integers(0, nc, n)


@pytest.mark.parametrize("seed", range(12))
def test_nms_matches_brute_force_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    boxes, scores, classes = random_case(rng, 400, [1, 3, 80][seed % 3], integer=seed % 2 == 1)
    for agnostic in (False, True):
        got = nms(boxes, scores, classes, 0.65, 300, agnostic).tolist()
        assert got == brute_nms(boxes, scores, classes, 0.65, 300, agnostic)


def test_nms_ties_keep_input_order():
    boxes = np.array([[0, 0, 10, 10]] * 4, np.float32)
    scores = np.array([0.5, 0.9, 0.9, 0.1], np.float32)
    assert nms(boxes, scores, np.zeros(4, int), 0.65, 300).tolist() == [1]
    assert nms(boxes, scores, np.arange(4), 0.65, 300).tolist() == [1, 2, 0, 3]


def test_nms_zero_area_boxes_never_suppress_or_produce_nan():
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 10], [3, 3, 3, 9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    keep = nms(boxes, scores, np.zeros(4, int), 0.5, 300)
    assert keep.tolist() == brute_nms(boxes, scores, np.zeros(4, int), 0.5, 300) == [0, 1, 2, 3]


def test_iou_exactly_at_threshold_is_kept():
    # IoU of these two boxes is exactly 0.5: suppression needs IoU strictly above the threshold
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)
    assert nms(boxes, np.array([0.9, 0.8], np.float32), np.zeros(2, int), 0.5, 300).tolist() == [0, 1]


def test_nms_stops_at_max_det_with_the_same_prefix():
    rng = np.random.default_rng(5)
    boxes, scores, classes = random_case(rng, 2000, 80)
    full = brute_nms(boxes, scores, classes, 0.65, 10**6)
    assert len(full) > 300
    assert nms(boxes, scores, classes, 0.65, 300).tolist() == full[:300]


def raw_prediction(rng, n, nc):
    cxcy = rng.uniform(0, 320, (n, 2))
    wh = rng.uniform(1, 100, (n, 2))
    obj = rng.uniform(0, 1, (n, 1)) ** 3
    cls = rng.uniform(0, 1, (n, nc)) ** 4
    return np.concatenate([cxcy, wh, obj, cls], 1).astype(np.float32)


def brute_decode(pred, conf, iou_thr, max_nms, max_det):
    cands = []
    for i, row in enumerate(pred):
        if row[4] <= conf:
            continue
        x1, y1 = row[0] - row[2] / 2, row[1] - row[3] / 2
        box = np.array([x1, y1, x1 + row[2], y1 + row[3]], np.float32)
        for j in range(len(row) - 5):
            c = row[5 + j] * row[4]
            if c > conf:
                cands.append((box, c, j))
    cands = sorted(cands, key=lambda t: -t[1])[:max_nms] if len(cands) > max_nms else cands
    boxes = np.array([c[0] for c in cands]); scores = np.array([c[1] for c in cands], np.float32)
    classes = np.array([c[2] for c in cands])
    keep = brute_nms(boxes, scores, classes, iou_thr, max_det)
    return boxes[keep], scores[keep], classes[keep]


@pytest.mark.parametrize("seed,n,nc,max_nms", [(0, 40, 80, 30000), (1, 300, 5, 30000),
                                               (2, 40, 80, 500)])
def test_decode_multilabel_matches_reference(seed, n, nc, max_nms):
    rng = np.random.default_rng(seed)
    pred = raw_prediction(rng, n, nc)
    dets = decode(pred[None], 0.001, 0.65, max_nms, 300)
    b, s, c = brute_decode(pred, 0.001, 0.65, max_nms, 300)
    assert len(dets) == len(s) <= 300
    np.testing.assert_allclose(dets.boxes, b, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(dets.classes, c)
    np.testing.assert_allclose(dets.scores, s, rtol=1e-6)


def test_decode_keeps_one_box_per_class_above_threshold():
    pred = np.zeros((1, 1, 8), np.float32)
    pred[0, 0, :5] = [100, 100, 20, 20, 0.5]
    pred[0, 0, 5:] = [0.9, 0.5, 0.001]  # confidences 0.45, 0.25, 0.0005 (below conf_thres)
    d = decode(pred, 0.001, 0.65, 30000, 300)
    assert d.classes.tolist() == [0, 1]
    np.testing.assert_allclose(d.scores, [0.45, 0.25], rtol=1e-6)
    np.testing.assert_allclose(d.boxes[0], [90, 90, 110, 110])


def test_decode_objectness_prefilter_and_empty():
    pred = np.zeros((1, 3, 7), np.float32)
    pred[0, :, 4] = 0.001  # not strictly above conf_thres
    pred[0, :, 5:] = 1.0
    assert len(decode(pred, 0.001, 0.65, 30000, 300)) == 0


# --- 80 classes, many candidates, quantized (tied) scores ------------------------------------

def greedy_per_class(boxes, scores, classes, thr, max_det, limit=None):
    """Reference class-aware greedy NMS: a stable sort, then each candidate against the kept
    boxes of its own class only; stops at max_det (each kept box depends only on earlier ones)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:limit]
    kept, by_class = [], {}
    for i in order:
        mine = by_class.setdefault(int(classes[i]), [])
        if all(iou(boxes[i].tolist(), boxes[k].tolist()) <= thr for k in mine):
            kept.append(i)
            mine.append(i)
            if len(kept) == max_det:
                break
    return kept


def clustered_prediction(rng, n=6300, nc=80, objects=8, quantum=None):
    """YOLO-like output: weak background everywhere, clusters of overlapping boxes of one class
    around a few objects; `quantum` rounds scores like an int8 output does (many exact ties)."""
    pred = np.empty((n, 5 + nc), np.float32)
    pred[:, :2] = rng.uniform(0, 320, (n, 2))
    pred[:, 2:4] = rng.uniform(4, 120, (n, 2))
    pred[:, 4] = 10 ** rng.uniform(-4, -1.5, n)
    pred[:, 5:] = 10 ** rng.uniform(-4, -1.2, (n, nc))
    for _ in range(objects):
        k = rng.integers(20, 120)
        rows = rng.choice(n, k, replace=False)
        cxy, wh = rng.uniform(40, 280, 2), rng.uniform(10, 150, 2)
        pred[rows, :2] = cxy + rng.normal(0, 3, (k, 2))
        pred[rows, 2:4] = wh * np.exp(rng.normal(0, 0.1, (k, 2)))
        pred[rows, 4] = rng.uniform(0.3, 0.95, k)
        pred[rows, 5 + rng.integers(nc)] = rng.uniform(0.5, 0.95, k)
    if quantum:
        pred[:, 4:] = np.round(pred[:, 4:] / quantum) * quantum
    return pred


def reference_decode(pred, conf, thr, max_nms, max_det):
    pred = pred[pred[:, 4] > conf]
    scores_all = pred[:, 5:] * pred[:, 4:5]
    i, j = np.nonzero(scores_all > conf)  # row-major: the tie order YOLOv7 keeps
    boxes = np.concatenate([pred[i, :2] - pred[i, 2:4] / 2, pred[i, :2] + pred[i, 2:4] / 2], 1)
    keep = greedy_per_class(boxes, scores_all[i, j], j, thr, max_det, limit=max_nms)
    return boxes[keep], scores_all[i, j][keep], j[keep]


@pytest.mark.parametrize("seed,quantum,max_nms,max_det", [(0, None, 30000, 300), (1, 1 / 256, 30000, 300),
                                                         (2, 1 / 64, 2500, 1000), (3, None, 30000, 2000)])
def test_decode_80_classes_clustered_matches_reference(seed, quantum, max_nms, max_det):
    rng = np.random.default_rng(seed)
    pred = clustered_prediction(rng, quantum=quantum)
    dets = decode(pred[None], 0.001, 0.65, max_nms, max_det)
    b, s, c = reference_decode(pred, 0.001, 0.65, max_nms, max_det)
    assert len(dets) == len(s) > 0
    np.testing.assert_array_equal(dets.boxes, b)
    np.testing.assert_array_equal(dets.scores, s)
    np.testing.assert_array_equal(dets.classes, c)


def test_nms_past_the_first_chunks_with_ties():
    # more candidates than the first sorted chunk, many tied scores: the chunks must
    # concatenate to the stable order
    rng = np.random.default_rng(7)
    boxes, _, classes = random_case(rng, 12000, 80, integer=True)
    scores = rng.integers(0, 50, 12000).astype(np.float32) / 50
    got = nms(boxes, scores, classes, 0.65, 6000).tolist()
    assert len(got) > 2048
    assert got == greedy_per_class(boxes, scores, classes, 0.65, 6000)


@pytest.mark.parametrize("above,limit", [(None, None), (0.3, None), (0.3, 5000), (None, 3)])
def test_score_order_is_a_stable_argsort_in_chunks(above, limit):
    from harness.postprocess import score_order

    rng = np.random.default_rng(3)
    s = (rng.integers(0, 200, 60000) / 200).astype(np.float32)
    want = np.argsort(-s, kind="stable")
    if above is not None:
        want = want[s[want] > above]
    want = want[:limit]
    chunks = list(score_order(s, limit, above, first=256))
    assert len(chunks) > 1 or limit == 3
    np.testing.assert_array_equal(np.concatenate(chunks), want)


def test_iou_matrix_is_the_pairwise_iou():
    from harness.postprocess import iou_matrix

    rng = np.random.default_rng(3)
    a, _, _ = random_case(rng, 7, 3)
    b, _, _ = random_case(rng, 5, 3)
    b[0] = b[0, [0, 1, 0, 1]]  # a box of zero area: no overlap with anything
    m = iou_matrix(a, b)
    assert m.shape == (7, 5)
    want = [[iou(x.astype(np.float64).tolist(), y.astype(np.float64).tolist()) for y in b] for x in a]
    assert np.allclose(m, want, rtol=0, atol=1e-12) and (m[:, 0] == 0).all()
