"""A small YOLOv7-tiny-style detector for the qparity demo.

Backbone/neck are plain Conv(+BN)+LeakyReLU(0.1) blocks (ELAN-ish, FPN+PAN);
each of the three branches (strides 8, 16, 32) ends in one 1x1 "detection
convolution" followed by the conventional YOLOv7 ``Detect`` decode:

    Conv -> Reshape -> Transpose -> Sigmoid
         -> xy = (s[..., 0:2] * 2 - 0.5 + grid) * stride
         -> wh = (s[..., 2:4] * 2) ** 2 * anchor_grid
         -> Concat(xy, wh, s[..., 4:]) -> Reshape(1, -1, 5 + nc)
    final Concat over the three scales -> output [1, N, 5 + nc]

Output rows are cx, cy, w, h (input pixels), objectness, nc class scores, all
sigmoided; no NMS in the graph. In training mode ``forward`` returns the raw
per-scale maps [B, na, ny, nx, 5 + nc] for the loss instead.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

IMG_SIZE = 320
STRIDES = (8, 16, 32)
# anchors (w, h) in input pixels, three per scale, log-spaced for 320x320 input
ANCHORS = (
    ((8, 8), (12, 12), (18, 18)),
    ((26, 26), (39, 39), (58, 58)),
    ((86, 86), (130, 130), (200, 200)),
)


class Conv(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.LeakyReLU(0.1, inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def forward_fused(self, x):
        return self.act(self.conv(x))


class ELAN(nn.Module):
    """YOLOv7-tiny style aggregation: two 1x1 splits, two stacked 3x3s, concat, 1x1."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        h = max(c2 // 2, 8)
        self.cv1 = Conv(c1, h, 1)
        self.cv2 = Conv(c1, h, 1)
        self.cv3 = Conv(h, h, 3)
        self.cv4 = Conv(h, h, 3)
        self.out = Conv(4 * h, c2, 1)

    def forward(self, x):
        a = self.cv1(x)
        b = self.cv2(x)
        c = self.cv3(b)
        d = self.cv4(c)
        return self.out(torch.cat((a, b, c, d), 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int):
        super().__init__()
        h = c1 // 2
        self.cv1 = Conv(c1, h, 1)
        self.m = nn.MaxPool2d(5, 1, 2)
        self.cv2 = Conv(4 * h, c2, 1)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Detect(nn.Module):
    def __init__(self, nc: int, chs: tuple[int, ...], img_size: int = IMG_SIZE):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(STRIDES)
        self.na = len(ANCHORS[0])
        self.m = nn.ModuleList(nn.Conv2d(c, self.na * self.no, 1) for c in chs)
        self.register_buffer("stride", torch.tensor(STRIDES, dtype=torch.float32))
        self.register_buffer("anchors", torch.tensor(ANCHORS, dtype=torch.float32))  # pixels
        grids, agrids = [], []
        for i, s in enumerate(STRIDES):
            ny = nx = img_size // s
            yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
            grids.append(torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).float())
            agrids.append(self.anchors[i].view(1, self.na, 1, 1, 2).expand(1, self.na, ny, nx, 2).clone())
        for i in range(self.nl):
            self.register_buffer(f"grid{i}", grids[i], persistent=False)
            self.register_buffer(f"anchor_grid{i}", agrids[i], persistent=False)
        self._init_biases(img_size)

    def _init_biases(self, img_size: int):
        for mi, s in zip(self.m, STRIDES):
            b = mi.bias.view(self.na, -1)
            with torch.no_grad():
                b[:, 4] = math.log(8 / (img_size / s) ** 2)  # ~8 objects per image
                b[:, 5:] = math.log(0.6 / (self.nc - 0.99))

    def forward(self, xs):
        z = []
        for i in range(self.nl):
            x = self.m[i](xs[i])
            bs, _, ny, nx = x.shape
            x = x.reshape(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if self.training:
                z.append(x)
                continue
            y = x.sigmoid()
            xy = (y[..., 0:2] * 2.0 - 0.5 + getattr(self, f"grid{i}")) * self.stride[i]
            wh = (y[..., 2:4] * 2) ** 2 * getattr(self, f"anchor_grid{i}")
            y = torch.cat((xy, wh, y[..., 4:]), -1)
            z.append(y.view(bs, -1, self.no))
        return z if self.training else torch.cat(z, 1)


class DemoYolo(nn.Module):
    def __init__(self, nc: int = 6, w: tuple[int, ...] = (16, 32, 64, 96, 128)):
        super().__init__()
        c1, c2, c3, c4, c5 = w
        self.nc = nc
        # backbone
        self.stem = nn.Sequential(Conv(3, c1, 3, 2), Conv(c1, c2, 3, 2), ELAN(c2, c2))     # /4
        self.b3 = nn.Sequential(Conv(c2, c3, 3, 2), ELAN(c3, c3))                            # /8
        self.b4 = nn.Sequential(Conv(c3, c4, 3, 2), ELAN(c4, c4))                            # /16
        self.b5 = nn.Sequential(Conv(c4, c5, 3, 2), ELAN(c5, c5), SPPF(c5, c5))              # /32
        # neck (FPN top-down + PAN bottom-up)
        n3, n4, n5 = c3 // 2 + c3 // 4, c4 // 2 + c4 // 4, c5 // 2  # 48, 72, 64
        self.l5 = Conv(c5, n4, 1)
        self.l4 = Conv(c4, n4, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.f4 = ELAN(2 * n4, n4)
        self.l4b = Conv(n4, n3, 1)
        self.l3 = Conv(c3, n3, 1)
        self.f3 = ELAN(2 * n3, n3)                 # -> P3 out
        self.d3 = Conv(n3, n4, 3, 2)
        self.p4 = ELAN(2 * n4, n4)                 # -> P4 out
        self.d4 = Conv(n4, n4, 3, 2)
        self.p5 = ELAN(2 * n4, n5 * 2)             # -> P5 out
        # per-scale 3x3 before the detection conv (like YOLOv7-tiny)
        hc = (c3, c4, c5)  # 64, 96, 128
        self.h3 = Conv(n3, hc[0], 3)
        self.h4 = Conv(n4, hc[1], 3)
        self.h5 = Conv(2 * n5, hc[2], 3)
        self.detect = Detect(nc, hc)

    def forward(self, x):
        x = self.stem(x)
        p3 = self.b3(x)
        p4 = self.b4(p3)
        p5 = self.b5(p4)
        t5 = self.l5(p5)
        f4 = self.f4(torch.cat((self.up(t5), self.l4(p4)), 1))
        t4 = self.l4b(f4)
        o3 = self.f3(torch.cat((self.up(t4), self.l3(p3)), 1))
        o4 = self.p4(torch.cat((self.d3(o3), f4), 1))
        o5 = self.p5(torch.cat((self.d4(o4), t5), 1))
        return self.detect([self.h3(o3), self.h4(o4), self.h5(o5)])


def fuse_bn(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into its preceding conv (in place, eval use only)."""
    for m in model.modules():
        if isinstance(m, Conv) and hasattr(m, "bn"):
            conv, bn = m.conv, m.bn
            std = (bn.running_var + bn.eps).sqrt()
            wscale = bn.weight / std
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                              conv.stride, conv.padding, groups=conv.groups, bias=True)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * wscale.view(-1, 1, 1, 1))
                fused.bias.copy_(bn.bias - bn.running_mean * wscale)
            m.conv = fused
            del m.bn
            m.forward = m.forward_fused
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def letterbox(img, size: int = IMG_SIZE):
    """The harness's own letterbox, so training sees exactly the evaluation preprocessing.

    Returns (padded image, ratio r, (dw, dh)) where dw/dh are the (float) half paddings, so
    original = (letterboxed - (dw, dh)) / r."""
    from harness.letterbox import letterbox as harness_letterbox

    out, info = harness_letterbox(img, size)
    return out, info.ratio, (info.pad_left, info.pad_top)
