"""Headless Chromium driven over the DevTools protocol, for the scripts that check pages by eye.

    async with Browser(width=1600, height=1000) as b:
        await b.open(url, ready="document.body.innerText.includes('x')")
        await b.js("...")
        await b.screenshot(Path("shot.png"))

Why not `chromium --screenshot`: pages like MLflow's runs table need clicks and scrolling before
they show what is to be checked.  Chromium (`apt-get install -y chromium`) runs with a fresh
profile it deletes after, no GPU, no sandbox and no background network; it talks to
127.0.0.1 only.  The websocket is aiohttp's (an MLflow dependency).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium found (apt-get install -y chromium)")


class Browser:
    def __init__(self, width: int = 1600, height: int = 1000):
        self.port, self.n = free_port(), 0
        self.profile = tempfile.mkdtemp(prefix="slmscale-chromium-")
        self.proc = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={self.profile}",
             f"--window-size={width},{height}", f"--remote-debugging-port={self.port}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    async def __aenter__(self):
        import aiohttp

        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{self.port}/json/list"
                with urllib.request.urlopen(url, timeout=5) as r:
                    tabs = json.loads(r.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        tab = next(t for t in tabs if t["type"] == "page")
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0)
        await self.call("Page.enable")
        return self

    async def __aexit__(self, *exc):
        await self.session.close()
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)
        shutil.rmtree(self.profile, ignore_errors=True)

    async def call(self, method: str, **params):
        self.n += 1
        await self.ws.send_json({"id": self.n, "method": method, "params": params})
        while True:
            msg = await self.ws.receive_json(timeout=300)
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expression: str):
        r = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"script failed: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 120.0) -> bool:
        """Poll a JS condition until it is true (pages render after their API calls return)."""
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
        while time.monotonic() < deadline:
            if await self.js(guarded):
                return True
            await asyncio.sleep(0.5)
        return False

    async def open(self, url: str, ready: str) -> None:
        """Load `url` afresh (through about:blank: a change of the #fragment alone would not
        reload a single-page app) and wait until `ready` (a JS expression) is true."""
        await self.call("Page.navigate", url="about:blank")
        await self.call("Page.navigate", url=url)
        if not await self.wait_for(ready):
            raise RuntimeError(f"page never became ready: {url}")

    async def screenshot(self, out: Path) -> None:
        png = await self.call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(png["data"]))
        print(f"  {out}")
