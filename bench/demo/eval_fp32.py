"""Quick COCO mAP check of a demo ONNX model with onnxruntime (own verification;
the harness has the official evaluator).

    python bench/demo/eval_fp32.py --model bench/demo/demo-fp32.onnx [--data DIR]

YOLOv7 test.py conventions: conf_thres 0.001, multi-label, class-aware NMS at
IoU 0.65, max_det 300, boxes mapped back through the letterbox.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_data  # noqa: E402
from model import letterbox  # noqa: E402


def nms(boxes, scores, iou_thres):
    """Greedy NMS (OpenCV's C++ implementation); boxes xyxy. Returns kept indices, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).astype(np.float64)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(np.float32).tolist(), 0.0, iou_thres)
    return np.asarray(keep, np.int64).reshape(-1)


def postprocess(pred, conf_thres=0.001, iou_thres=0.65, max_det=300, max_nms=30000):
    """pred [N, 5+nc] -> (xyxy [M,4], score [M], cls [M]) in letterboxed pixels."""
    pred = pred[pred[:, 4] > conf_thres]
    scores = pred[:, 5:] * pred[:, 4:5]
    xy, wh = pred[:, 0:2], pred[:, 2:4]
    box = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    i, j = np.nonzero(scores > conf_thres)  # multi-label
    box, conf, cls = box[i], scores[i, j], j
    if len(conf) > max_nms:
        o = conf.argsort()[::-1][:max_nms]
        box, conf, cls = box[o], conf[o], cls[o]
    keep = nms(box + cls[:, None] * 4096.0, conf, iou_thres)[:max_det]
    return box[keep], conf[keep], cls[keep]


def evaluate(model_path: Path, data: Path, split: str = "val2017") -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ann = data / "annotations" / f"instances_{split}.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
    cat_ids = sorted(gt.getCatIds())
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    dets = []
    for im in gt.dataset["images"]:
        img0 = cv2.imread(str(data / split / im["file_name"]))
        h0, w0 = img0.shape[:2]
        img, r, (dw, dh) = letterbox(img0)
        x = np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255.0
        pred = sess.run(["output"], {"images": x})[0][0]
        box, conf, cls = postprocess(pred)
        box = (box - np.array([dw, dh, dw, dh])) / r
        box[:, [0, 2]] = box[:, [0, 2]].clip(0, w0)
        box[:, [1, 3]] = box[:, [1, 3]].clip(0, h0)
        for b, s, c in zip(box, conf, cls):
            dets.append({"image_id": im["id"], "category_id": cat_ids[int(c)],
                         "bbox": [round(float(b[0]), 3), round(float(b[1]), 3),
                                  round(float(b[2] - b[0]), 3), round(float(b[3] - b[1]), 3)],
                         "score": round(float(s), 5)})
    dt = gt.loadRes(dets) if dets else COCO()
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return 100 * ev.stats[0], 100 * ev.stats[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parent / "demo-fp32.onnx")
    ap.add_argument("--data", type=Path, default=None, help="demo data dir (default: generate val2017 seed 0)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = a.data
        if data is None or not (data / "annotations" / "instances_val2017.json").exists():
            data = data or Path(tmp)
            make_data.generate(data, 300, seed=0, split="val2017")
        m, m50 = evaluate(a.model, data)
    print(f"mAP50-95 {m:.2f}  mAP50 {m50:.2f}")


if __name__ == "__main__":
    main()
