"""Screenshots of a finished smoke grid in the MLflow UI, taken by headless Chromium.

    python scripts/mlflow_screenshots.py [--out docs/img] [--keep DIR]

What it does, all on this machine (127.0.0.1 only): builds the tiny synthetic units dataset the
tests use, runs `slmscale grid tune_spaces/smoke.yaml` into a fresh SQLite store, starts
`mlflow server` against it, and has Chromium (`apt-get install chromium`) take three pictures:
the runs table as it opens, the grid's saved view (`?viewStateShareKey=...`: the grid's columns,
trials nested under the grid's parent run), and one trial's run page.  It checks through the REST
API what the pictures should show (a parent run, every trial nested under it, the view's tag) and
exits non-zero when something is missing, so it doubles as an end-to-end check of the MLflow view.
"""

from __future__ import annotations

import argparse
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

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("mlflow_screenshots: no Chromium found (apt-get install chromium)")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


class _Browser:
    """Headless Chromium driven over the DevTools protocol (aiohttp's websocket client).

    A plain `chromium --screenshot` cannot click; the runs table shows a grid's trials only once
    the parent row is unfolded, so the pictures are taken after clicking, as a person would.
    """

    def __init__(self, chromium: str, size=(1920, 1080)):
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--window-size={size[0]},{size[1]}", f"--remote-debugging-port={self.port}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.n = 0

    async def __aenter__(self):
        import aiohttp

        for _ in range(300):
            try:
                tabs = _get(f"http://127.0.0.1:{self.port}/json/list")
                break
            except OSError:
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
        return r.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 120.0):
        """Poll a JS condition until it is true (the UI renders after its API calls return)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.js(expression):
                return True
            await asyncio.sleep(0.5)
        return False

    async def shot(self, url: str, out: Path, ready: str, click: str | None = None) -> None:
        await self.call("Page.navigate", url=url)
        if not await self.wait_for(ready):
            raise RuntimeError(f"page never became ready: {url}")
        await self.js(CLOSE_ASSISTANT)
        if click:
            await self.js(click)
            await asyncio.sleep(2.0)
        await asyncio.sleep(1.0)
        png = await self.call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(png["data"]))
        print(f"  {out} <- {url}")


#: The MLflow Assistant side panel opens by default and hides half the table.
CLOSE_ASSISTANT = (
    "(() => { const b = Array.from(document.querySelectorAll('button'))"
    ".find(b => b.getAttribute('aria-label') === 'Close'); if (b) b.click(); })()"
)
#: The "+" beside the grid's parent run unfolds its nested trial runs.
UNFOLD_GRID = (
    "(() => { document.querySelectorAll('button[data-component-id*=\"runnamecellrenderer\"]')"
    ".forEach(b => b.click()); })()"
)


def _text_has(*words: str) -> str:
    checks = " && ".join(f"document.body.innerText.includes({json.dumps(w)})" for w in words)
    return f"!!document.body && {checks}"


async def _screenshots(chromium, ui, exp_id, view, trial_id, trial_names, out) -> list[str]:
    """Take the pictures; return what a person would not see in them."""
    problems = []
    async with _Browser(chromium) as b:
        runs = f"{ui}/#/experiments/{exp_id}/runs"
        await b.shot(runs, out / "mlflow-runs-default.png", _text_has("grid-smoke"))
        await b.shot(
            f"{runs}?viewStateShareKey={view}",
            out / "mlflow-runs-grid-view.png",
            _text_has("grid-smoke", "test_loss_final"),
            click=UNFOLD_GRID,
        )
        text = await b.js("document.body.innerText")
        for column in ("model_size", "tokens", "epochs", "test_loss_final"):
            if column not in text:
                problems.append(f"the grid view does not show the column {column}")
        hidden = [n for n in trial_names if n not in text]
        if hidden:
            problems.append(f"nested trial runs not shown under the parent: {hidden}")
        await b.shot(
            f"{ui}/#/experiments/{exp_id}/runs/{trial_id}",
            out / "mlflow-run.png",
            _text_has("test_loss_final"),
        )
        await b.shot(
            f"{ui}/#/experiments/{exp_id}/runs/{trial_id}/model-metrics",
            out / "mlflow-run-metrics.png",
            _text_has("test_loss"),
        )
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"), help="where the PNGs go")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temp folder)")
    args = ap.parse_args()
    chromium = _chromium()
    work = Path(args.keep or tempfile.mkdtemp(prefix="slmscale-shots-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SLMSCALE_CACHE": str(work / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    uri = f"sqlite:///{work / 'mlflow.db'}"

    from slmscale.train.synthetic import write_synthetic_units

    if not (work / "units" / "smoke").exists():
        write_synthetic_units(work / "units" / "smoke")
    shutil.copy(ROOT / "tune_spaces" / "smoke.yaml", work / "smoke.yaml")
    print("training the smoke grid ...", flush=True)
    grid = subprocess.run(
        [str(BIN / "slmscale"), "grid", "smoke.yaml", "--tracking-uri", uri],
        cwd=work, env=env, timeout=1800,
    )  # fmt: skip
    if grid.returncode != 0:
        return grid.returncode

    port = _free_port()
    ui = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{ui}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        api = f"{ui}/api/2.0/mlflow"
        exp = _get(f"{api}/experiments/get-by-name?experiment_name=smoke")["experiment"]
        exp_id = exp["experiment_id"]
        runs = _post(f"{api}/runs/search", {"experiment_ids": [exp_id], "max_results": 100})
        runs = runs["runs"]
        tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
        parents = [r for r, t in zip(runs, tags, strict=True) if t.get("slmscale.kind") == "grid"]
        trials = [t for t in tags if t.get("slmscale.kind") == "train"]
        problems = []
        if len(parents) != 1:
            problems.append(f"{len(parents)} grid parent runs (want 1)")
        parent_id = parents[0]["info"]["run_id"] if parents else None
        if not trials or any(t.get("mlflow.parentRunId") != parent_id for t in trials):
            problems.append("not every trial run is nested under the grid's parent")
        exp_tags = {t["key"]: t["value"] for t in exp.get("tags", [])}
        view = "slmscale-grid-smoke"
        if f"mlflow.sharedViewState.{view}" not in exp_tags:
            problems.append("the grid's saved view is missing from the experiment tags")
        print(f"{len(trials)} trial runs under parent {parent_id}; experiment {exp_id}")
        trial_id = next(
            r["info"]["run_id"]
            for r, t in zip(runs, tags, strict=True)
            if t.get("slmscale.kind") == "train"
        )
        trial_names = [
            t.get("mlflow.runName", "") for t in tags if t.get("slmscale.kind") == "train"
        ]
        problems += asyncio.run(
            _screenshots(chromium, ui, exp_id, view, trial_id, trial_names, out)
        )
        for p in problems:
            print(f"mlflow_screenshots: {p}", file=sys.stderr)
        return 1 if problems else 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
