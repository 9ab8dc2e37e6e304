"""Train the demo detector (bench/demo/model.py) on CPU and export it to ONNX.

    python bench/demo/train.py --out bench/demo/demo-fp32.onnx

Generates its own training split with make_data.generate(split="train2017",
seed=1) into a temporary directory (never the demo val split, which is seed 0),
trains a YOLOv5-style loss (multi-anchor + neighbour-cell assignment, CIoU box
loss, BCE objectness with IoU target, BCE classes) with AdamW + EMA, and exports
the EMA weights with BN folded, opset 17, static 1x3x320x320 input.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
import warnings
from copy import deepcopy
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_data  # noqa: E402
from model import ANCHORS, IMG_SIZE, STRIDES, DemoYolo, fuse_bn, letterbox, n_params  # noqa: E402


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# --------------------------------------------------------------------------- data
def load_split(root: Path, split: str):
    """Letterbox every image once; returns uint8 [N,3,S,S] RGB and per-image
    label arrays (cls_index, cx, cy, w, h) in letterboxed pixels."""
    import json

    d = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    cat_ids = sorted(c["id"] for c in d["categories"])
    cidx = {c: i for i, c in enumerate(cat_ids)}
    per = {}
    for a in d["annotations"]:
        per.setdefault(a["image_id"], []).append(a)
    imgs = np.empty((len(d["images"]), 3, IMG_SIZE, IMG_SIZE), np.uint8)
    labels = []
    for k, im in enumerate(sorted(d["images"], key=lambda x: x["id"])):
        img0 = cv2.imread(str(root / split / im["file_name"]))
        h, w = img0.shape[:2]
        img, r, _ = letterbox(img0)
        nh, nw = int(round(h * r)), int(round(w * r))
        sx, sy = nw / w, nh / h  # actual resize factors
        left = int(round((IMG_SIZE - nw) / 2 - 0.1))
        top = int(round((IMG_SIZE - nh) / 2 - 0.1))
        imgs[k] = img[:, :, ::-1].transpose(2, 0, 1)
        lab = [[cidx[a["category_id"]],
                (a["bbox"][0] + a["bbox"][2] / 2) * sx + left,
                (a["bbox"][1] + a["bbox"][3] / 2) * sy + top,
                a["bbox"][2] * sx, a["bbox"][3] * sy] for a in per.get(im["id"], [])]
        labels.append(np.array(lab, np.float32).reshape(-1, 5))
    return imgs, labels


def make_batch(imgs, labels, idx, rng: np.random.Generator, augment: bool):
    x = torch.from_numpy(imgs[idx]).float().div_(255.0)
    targets = []
    for bi, i in enumerate(idx):
        lab = labels[i].copy()
        if augment:
            if rng.random() < 0.5:  # horizontal flip
                x[bi] = x[bi].flip(-1)
                lab[:, 1] = IMG_SIZE - lab[:, 1]
            if rng.random() < 0.5:  # vertical flip
                x[bi] = x[bi].flip(-2)
                lab[:, 2] = IMG_SIZE - lab[:, 2]
        if len(lab):
            targets.append(np.concatenate([np.full((len(lab), 1), bi, np.float32), lab], 1))
    t = np.concatenate(targets, 0) if targets else np.zeros((0, 6), np.float32)
    return x, torch.from_numpy(t)  # targets: (img, cls, cx, cy, w, h) pixels


# --------------------------------------------------------------------------- loss
def bbox_ciou(b1, b2, eps=1e-7):
    """CIoU between matching rows of two (n,4) xywh tensors."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = b1.unbind(1), b2.unbind(1)
    b1x1, b1x2, b1y1, b1y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2x1, b2x2, b2y1, b2y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * \
            (torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((x2 - x1) ** 2 + (y2 - y1) ** 2)
    v = (4 / math.pi ** 2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


class YoloLoss:
    """YOLOv5-style loss for the raw per-scale maps [B, na, ny, nx, 5+nc]."""

    def __init__(self, nc: int, anchor_t: float = 4.0):
        self.nc = nc
        self.na = len(ANCHORS[0])
        self.anchor_t = anchor_t
        self.anchors = [torch.tensor(a, dtype=torch.float32) / s for a, s in zip(ANCHORS, STRIDES)]
        self.balance = [4.0, 1.0, 0.4]
        nl = len(STRIDES)
        self.g_box = 0.05 * 3 / nl
        self.g_cls = 0.5 * nc / 80 * 3 / nl
        self.g_obj = 1.0 * (IMG_SIZE / 640) ** 2 * 3 / nl
        self.bce = nn.BCEWithLogitsLoss()

    def build_targets(self, p, targets):
        nt = targets.shape[0]
        ai = torch.arange(self.na, dtype=torch.float32).view(self.na, 1).repeat(1, nt)
        tt = torch.cat((targets.repeat(self.na, 1, 1), ai[..., None]), 2)  # (na, nt, 7)
        g = 0.5
        off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32) * g
        out = []
        for i, s in enumerate(STRIDES):
            anchors = self.anchors[i]
            ny, nx = p[i].shape[2:4]
            t = tt.clone()
            t[..., 2:6] /= s  # to grid units
            if nt:
                r = t[..., 4:6] / anchors[:, None]
                j = torch.max(r, 1 / r).max(2)[0] < self.anchor_t
                t = t[j]
                gxy = t[:, 2:4]
                gxi = torch.tensor([nx, ny], dtype=torch.float32) - gxy
                j, k = ((gxy % 1 < g) & (gxy > 1)).T
                l, m = ((gxi % 1 < g) & (gxi > 1)).T
                j = torch.stack((torch.ones_like(j), j, k, l, m))
                t = t.repeat((5, 1, 1))[j]
                offsets = (torch.zeros_like(gxy)[None] + off[:, None])[j]
            else:
                t = tt[0]
                offsets = 0
            b, c = t[:, 0].long(), t[:, 1].long()
            gxy, gwh, a = t[:, 2:4], t[:, 4:6], t[:, 6].long()
            gij = (gxy - offsets).long()
            gi, gj = gij[:, 0].clamp(0, nx - 1), gij[:, 1].clamp(0, ny - 1)
            out.append(((b, a, gj, gi), torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1),
                        anchors[a], c))
        return out

    def __call__(self, p, targets):
        lcls = torch.zeros(1)
        lbox = torch.zeros(1)
        lobj = torch.zeros(1)
        for i, ((b, a, gj, gi), tbox, anch, tcls) in enumerate(self.build_targets(p, targets)):
            pi = p[i]
            tobj = torch.zeros(pi.shape[:4])
            n = b.shape[0]
            if n:
                ps = pi[b, a, gj, gi]
                pxy = ps[:, 0:2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anch
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox)
                lbox = lbox + (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0)
                tc = torch.zeros_like(ps[:, 5:])
                tc[torch.arange(n), tcls] = 1.0
                lcls = lcls + self.bce(ps[:, 5:], tc)
            lobj = lobj + self.bce(pi[..., 4], tobj) * self.balance[i]
        bs = p[0].shape[0]
        lbox, lobj, lcls = lbox * self.g_box, lobj * self.g_obj, lcls * self.g_cls
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()


# --------------------------------------------------------------------------- EMA
class ModelEMA:
    def __init__(self, model, decay=0.9999, tau=500):
        self.ema = deepcopy(model).eval()
        self.updates = 0
        self.decay = lambda u: decay * (1 - math.exp(-u / tau))
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        d = self.decay(self.updates)
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)


# --------------------------------------------------------------------------- export
def export_onnx(model: nn.Module, out: Path) -> None:
    import onnx

    m = fuse_bn(deepcopy(model).float().eval())
    x = torch.zeros(1, 3, IMG_SIZE, IMG_SIZE)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy (TorchScript) exporter deprecation notice
        torch.onnx.export(m, (x,), str(out), input_names=["images"], output_names=["output"],
                          opset_version=17, do_constant_folding=True, dynamo=False)
    mp = onnx.load(str(out))
    onnx.checker.check_model(mp)
    mp.producer_version = ""  # keep the file independent of the local torch build
    mp.doc_string = "qparity demo detector (bench/demo/train.py)"
    onnx.save(mp, str(out))


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description="train + export the qparity demo detector")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "demo-fp32.onnx")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--opt", choices=("sgd", "adamw"), default="adamw")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None,
                    help="reuse/keep the generated training set here (default: a temp dir)")
    ap.add_argument("--ckpt", type=Path, default=None, help="also save the EMA state_dict here")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    rng = np.random.default_rng(a.seed)
    t0 = time.time()

    with tempfile.TemporaryDirectory(prefix="qparity-demo-train-") as tmp:
        root = a.data or Path(tmp)
        if not (root / "annotations" / "instances_train2017.json").exists():
            make_data.generate(root, n_images=a.n_train, seed=1, split="train2017")
        imgs, labels = load_split(root, "train2017")
    log(f"train images {len(imgs)}, objects {sum(len(l) for l in labels)}, data {time.time() - t0:.0f}s")

    model = DemoYolo(nc=len(make_data.CATEGORIES))
    log(f"params {n_params(model)}")
    g_bn, g_w, g_b = [], [], []
    for mod in model.modules():
        if hasattr(mod, "bias") and isinstance(mod.bias, nn.Parameter):
            g_b.append(mod.bias)
        if isinstance(mod, nn.BatchNorm2d):
            g_bn.append(mod.weight)
        elif hasattr(mod, "weight") and isinstance(mod.weight, nn.Parameter):
            g_w.append(mod.weight)
    if a.opt == "sgd":
        opt = torch.optim.SGD(g_bn, lr=a.lr, momentum=0.937, nesterov=True)
        opt.add_param_group({"params": g_w, "weight_decay": 5e-4})
    else:
        opt = torch.optim.AdamW(g_bn, lr=a.lr, betas=(0.937, 0.999), weight_decay=0.0)
        opt.add_param_group({"params": g_w, "weight_decay": 0.05})
    opt.add_param_group({"params": g_b})
    for mod in model.modules():  # channels_last convs are ~10-15% faster on CPU
        if isinstance(mod, nn.Conv2d):
            mod.to(memory_format=torch.channels_last)
    loss_fn = YoloLoss(model.nc)
    ema = ModelEMA(model)

    nb = math.ceil(len(imgs) / a.batch)
    total = nb * a.epochs
    warm = min(max(nb, 200), total // 10)
    lrf = 0.02
    it = 0
    for ep in range(a.epochs):
        model.train()
        perm = rng.permutation(len(imgs))
        mloss = torch.zeros(3)
        te = time.time()
        for bi in range(nb):
            idx = perm[bi * a.batch:(bi + 1) * a.batch]
            x, targets = make_batch(imgs, labels, idx, rng, augment=True)
            x = x.contiguous(memory_format=torch.channels_last)
            # lr: linear warmup then cosine to lr*lrf
            cos = lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * it / total))
            for gi, pg in enumerate(opt.param_groups):
                if it < warm:
                    f = it / warm
                    start = 0.1 if (gi == 2 and a.opt == "sgd") else 0.0  # YOLOv5 bias warmup
                    pg["lr"] = start + f * (a.lr * cos - start)
                    if a.opt == "sgd":
                        pg["momentum"] = 0.8 + f * (0.937 - 0.8)
                else:
                    pg["lr"] = a.lr * cos
            p = model(x)
            loss, items = loss_fn(p, targets)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            ema.update(model)
            mloss = (mloss * bi + items) / (bi + 1)
            it += 1
            if bi % 50 == 0:
                log(f"ep {ep + 1}/{a.epochs} it {bi}/{nb} box {mloss[0]:.4f} obj {mloss[1]:.4f} "
                    f"cls {mloss[2]:.4f} lr {opt.param_groups[1]['lr']:.5f}")
        log(f"epoch {ep + 1} done in {time.time() - te:.0f}s  loss box {mloss[0]:.4f} "
            f"obj {mloss[1]:.4f} cls {mloss[2]:.4f}  elapsed {(time.time() - t0) / 60:.1f} min")

    if a.ckpt:
        torch.save(ema.ema.state_dict(), a.ckpt)
    export_onnx(ema.ema, a.out)
    log(f"exported {a.out}  total {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
