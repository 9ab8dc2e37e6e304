"""Open a page in headless Chromium and report what a user would see and what went wrong.

The DevTools protocol over `--remote-debugging-pipe` (fd 3: commands in, fd 4: replies and
events out, each JSON message ended by a NUL byte): no port, no websocket library, no race
on a DevToolsActivePort file. Collected: uncaught exceptions, console errors and assertions,
log entries at level error (failed loads among them), every request to something that is not
the page's own file (a page that is meant to work offline makes none), and a full-page PNG.
"""

from __future__ import annotations

import base64
import json
import math
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", "--mute-audio",
         "--remote-debugging-pipe"]


def find_chromium() -> str | None:
    env = os.environ.get("QPARITY_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    png: bytes = b""
    errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    title: str = ""
    height: int = 0


class _Pipe:
    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int):
        self.proc, self.w, self.r = proc, to_browser, from_browser
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit {self.proc.poll()})")
                self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            m = self._read_message(deadline)
            if m.get("method") == method:
                return m
            self.events.append(m)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except TimeoutError:
            pass


def open_page(page: Path, chromium: str | None = None, width: int = 1200,
              timeout: float = 60) -> PageReport:
    chromium = chromium or find_chromium()
    if not chromium:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    url = Path(page).resolve().as_uri()
    cmd_r, cmd_w = os.pipe()  # we write, Chromium reads on fd 3
    out_r, out_w = os.pipe()  # Chromium writes on fd 4, we read

    def child_fds() -> None:  # runs in the child between fork and exec
        a, b = os.dup(cmd_r), os.dup(out_w)  # out of the way of 3 and 4 first
        os.dup2(a, 3)
        os.dup2(b, 4)

    with tempfile.TemporaryDirectory(prefix="qparity-chromium-") as profile:
        log = open(Path(profile) / "stderr.log", "wb")
        proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}",
                                 f"--window-size={width},900", "about:blank"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                close_fds=False, preexec_fn=child_fds)
        os.close(cmd_r)
        os.close(out_w)
        pipe = _Pipe(proc, cmd_w, out_r)
        rep = PageReport()
        try:
            target = pipe.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)
            session = pipe.send("Target.attachToTarget", {"targetId": target["targetId"],
                                                          "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.send(f"{domain}.enable", session=session)
            pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900,
                      "deviceScaleFactor": 1, "mobile": False}, session=session)
            pipe.send("Page.navigate", {"url": url}, session=session)
            pipe.wait_event("Page.loadEventFired", timeout=timeout)
            pipe.drain(0.5)  # late console messages and failed loads
            rep.title = pipe.send("Runtime.evaluate", {"expression": "document.title",
                                                       "returnByValue": True},
                                  session=session)["result"].get("value", "")
            size = pipe.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            rep.height = int(math.ceil(size["height"]))
            pipe.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": rep.height,
                      "deviceScaleFactor": 1, "mobile": False}, session=session)
            shot = pipe.send("Page.captureScreenshot", {"format": "png"}, session=session,
                             timeout=timeout)
            rep.png = base64.b64decode(shot["data"])
            pipe.drain(0.2)
            for e in pipe.events:
                m, p = e.get("method"), e.get("params", {})
                if m == "Runtime.exceptionThrown":
                    d = p.get("exceptionDetails", {})
                    rep.errors.append(f"exception: {d.get('text')} "
                                      f"{(d.get('exception') or {}).get('description', '')}")
                elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                    rep.errors.append("console." + p["type"] + ": " + " ".join(
                        str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
                elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                    rep.errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
                elif m == "Network.loadingFailed":
                    rep.errors.append(f"load failed: {p.get('errorText')}")
                elif m == "Network.requestWillBeSent":
                    req = p.get("request", {}).get("url", "")
                    if req != url and not req.startswith(("data:", "about:")):
                        rep.external_requests.append(req)
            try:
                pipe.send("Browser.close", timeout=10)
            except (RuntimeError, TimeoutError):
                pass
        finally:
            os.close(cmd_w)
            os.close(out_r)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    return rep


def blank_fraction(png: bytes) -> float:
    """Share of the screenshot's pixels equal to its most common colour (1.0: blank)."""
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("not an image")
    flat = img.reshape(-1, 3)
    _, counts = np.unique(flat, axis=0, return_counts=True)
    return float(counts.max() / len(flat))
