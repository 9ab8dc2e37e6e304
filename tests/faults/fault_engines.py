"""Broken engines the fault suite plugs in through QPARITY_EXTRA_ENGINES (children inherit it).
Each is the real ONNX Runtime engine with one fault added."""

import os
import subprocess
import time

import numpy as np

from harness.engines.ort_cpu import OrtCpuEngine


class NanEngine(OrtCpuEngine):
    """Three NaN values in its output for the second image, real outputs otherwise."""

    name = "nanout"

    def run(self, x):
        self.calls = getattr(self, "calls", 0) + 1
        out = np.array(super().run(x), copy=True)
        if self.calls == 2:
            out[0, :3, 0] = np.nan
        return out


class InfEngine(OrtCpuEngine):
    """An infinity in a box width for the first image."""

    name = "infout"

    def run(self, x):
        out = np.array(super().run(x), copy=True)
        out[0, 0, 2] = np.inf
        return out


class HangEngine(OrtCpuEngine):
    """Starts a helper process (as an engine's server or compiler might), then hangs."""

    name = "hang"

    def load(self, model):
        super().load(model)
        helper = subprocess.Popen(["sleep", "600"])
        pidfile = os.environ.get("FAULT_PIDFILE")
        if pidfile:
            with open(pidfile, "w") as f:
                f.write(f"{os.getpid()} {helper.pid}\n")

    def run(self, x):
        time.sleep(3600)


class SlowEngine(OrtCpuEngine):
    """Half a second per image, and says when it got going, so a test can interrupt it."""

    name = "slow"

    def run(self, x):
        flag = os.environ.get("FAULT_STARTED")
        if flag and not os.path.exists(flag):
            open(flag, "w").close()
        time.sleep(0.5)
        return super().run(x)
