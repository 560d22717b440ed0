"""The MLflow UI checked in a real browser, and pictured: what a researcher sees of a grid.

    python scripts/mlflow_screenshots.py [--out docs/img] [--keep DIR] [--no-train]

All on this machine (127.0.0.1 only), in a fresh SQLite store:
1. trains the smoke grid (`slmscale grid tune_spaces/smoke.yaml`: real runs, for the run pages);
2. writes the demo's grid (over 100 trials) the way a grid writes it, losses simulated
   (scripts/mlflow_simulated_grid.py), and fits it with `slmscale fit --experiment demo`;
3. starts `mlflow server` and has headless Chromium (scripts/cdp_browser.py) check, as a
   person would look:
   - the grid's saved view lists the grid's trials flat, none folded under the parent, the
     first page full (MLflow loads 100 runs at a time) and every trial after "Load more";
   - run names are whole (not cut off), losses and accuracies rounded, epochs `1` not `1.0`;
   - the fit run is nested under the grid it fitted (unfolding the grid in the runs table
     shows it), and the grid's parent run shows the fit's headline numbers (`fit.E`, ...);
   - the parent's `grid/trials.csv` holds every trial;
4. takes docs/img/mlflow-runs-default.png (the runs table, grid unfolded, fit under it),
   mlflow-runs-grid-view.png (the saved view), mlflow-grid-parent.png (the parent run) and
   mlflow-run.png / mlflow-run-metrics.png (a trained smoke trial).

Exits non-zero naming what a person would not see, so it doubles as the end-to-end check of
the MLflow view.  `--no-train` skips step 1 (the run pages then show a simulated trial).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cdp_browser import Browser, free_port  # noqa: E402
from mlflow_simulated_grid import simulate_grid  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TRIAL_NAME = r"^demo-\d+k-D\d+k?M?-e\d+$"

#: The MLflow Assistant side panel opens by default and hides half the table.
CLOSE_ASSISTANT = (
    "(() => { const b = Array.from(document.querySelectorAll('button'))"
    ".find(b => b.getAttribute('aria-label') === 'Close'); if (b) b.click(); })()"
)
#: The "+" beside a parent run (the grid) unfolds its nested runs.
UNFOLD = (
    "(() => { document.querySelectorAll('button[data-component-id*=\"runnamecellrenderer\"]')"
    ".forEach(b => b.click()); })()"
)
#: What the runs table shows: each row's level, name (and whether it is cut off), and the text
#: of each cell by column id.
TABLE = """JSON.stringify((() => {
  const rows = {};
  for (const row of document.querySelectorAll('.ag-row[row-index]')) {
    const i = row.getAttribute('row-index');
    const r = rows[i] || (rows[i] = {cells: {}});
    for (const cell of row.querySelectorAll('.ag-cell[col-id]')) {
      const id = cell.getAttribute('col-id');
      r.cells[id] = cell.innerText.trim();
      if (id === 'attributes.`Run Name`') {
        const link = cell.querySelector('a') || cell;
        r.name = link.innerText.trim();
        r.cut = link.scrollWidth > link.clientWidth + 1;
        r.expander = !!cell.querySelector('button');
        r.indent = Math.round(link.getBoundingClientRect().left - cell.getBoundingClientRect().left);
      }
    }
  }
  const more = [...document.querySelectorAll('button')].some(b => b.innerText.trim() === 'Load more');
  const view = document.querySelector('.ag-body-viewport');
  return {rows: rows, loadMore: more, top: view ? view.scrollTop : 0,
          bottom: view ? view.scrollTop + view.clientHeight >= view.scrollHeight - 2 : true};
})())"""
SCROLL = (
    "(() => { const v = document.querySelector('.ag-body-viewport');"
    " v.scrollTop = %s; return v.scrollTop; })()"
)
#: The run's charts are in name order; the loss curves are what a reader looks for: type "loss"
#: into the chart search box (through the native setter, so React sees the input).
SHOW_TEST_LOSS = (
    "(() => { const i = document.querySelector('input[placeholder=\"Search metric charts\"]');"
    " if (!i) return false; Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value')"
    ".set.call(i, 'loss'); i.dispatchEvent(new Event('input', {bubbles: true})); return true; })()"
)
CLICK_LOAD_MORE = (
    "(() => { const b = [...document.querySelectorAll('button')]"
    ".find(b => b.innerText.trim() === 'Load more'); if (b) b.click(); return !!b; })()"
)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _runs(api: str, exp_id: str) -> list[dict]:
    out, token = [], None
    while True:
        body = {"experiment_ids": [exp_id], "max_results": 1000}
        if token:
            body["page_token"] = token
        page = _post(f"{api}/runs/search", body)
        out += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return out


def _store_problems(api: str, exp_id: str) -> tuple[list[str], dict]:
    """What the store must hold for the pictures to be right (through the server's REST API)."""
    runs = _runs(api, exp_id)
    kinds = {r["info"]["run_id"]: _tags(r).get("slmscale.kind") for r in runs}
    grids = [r for r in runs if kinds[r["info"]["run_id"]] == "grid"]
    trials = [r for r in runs if kinds[r["info"]["run_id"]] == "train"]
    fits = [r for r in runs if kinds[r["info"]["run_id"]] == "fit"]
    problems = []
    if len(grids) != 1:
        return [f"{len(grids)} grid parent runs in the demo experiment (want 1)"], {}
    parent = grids[0]
    pid = parent["info"]["run_id"]
    if any(_tags(t).get("mlflow.parentRunId") != pid for t in trials):
        problems.append("not every trial run is nested under the grid's parent")
    if not fits or any(_tags(f).get("mlflow.parentRunId") != pid for f in fits):
        problems.append("the fit run is not nested under the grid it fitted")
    headline = {m["key"] for m in parent["data"].get("metrics", [])}
    if not {"fit.E", "fit.alpha", "fit.beta"} <= headline:
        problems.append(f"the grid's parent shows no fit headline numbers ({sorted(headline)})")
    names = sorted(r["info"]["run_name"] for r in trials)
    fit_names = [f["info"]["run_name"] for f in fits]
    return problems, {"parent": parent, "trial_names": names, "fit_names": fit_names}


async def _table(b: Browser) -> dict:
    """Every row of the runs table: the grid draws only the rows in sight, so scroll through."""
    await b.js(SCROLL % 0)
    await asyncio.sleep(0.5)
    rows, seen = {}, None
    while True:
        part = json.loads(await b.js(TABLE))
        for i, row in part["rows"].items():
            rows.setdefault(i, {"cells": {}})
            rows[i].update({k: v for k, v in row.items() if k != "cells"})
            rows[i]["cells"].update(row["cells"])
        if part["bottom"] or part["top"] == seen:
            break
        seen = part["top"]
        await b.js(SCROLL % f"{part['top']} + 600")
        await asyncio.sleep(0.5)
    await b.js(SCROLL % 0)
    ordered = [rows[i] for i in sorted(rows, key=int)]
    return {"rows": ordered, "loadMore": part["loadMore"]}


def _view_problems(first: dict, after: dict, names: list[str]) -> list[str]:
    """What the saved view should show: every trial flat, whole names, rounded values."""
    import re

    problems = []
    shown = [r for r in first["rows"] if r.get("name")]
    want_first = min(100, len(names))
    if len(shown) != want_first:
        problems.append(f"the view opens with {len(shown)} trials (want the first {want_first})")
    if any(r.get("expander") for r in shown) or len({r.get("indent") for r in shown}) > 1:
        problems.append("the view shows trials folded under a parent")
    every = sorted(r["name"] for r in after["rows"] if r.get("name"))
    if every != names:
        problems.append(f"after Load more the view lists {len(every)} runs, not the grid's trials")
    if after["loadMore"]:
        problems.append("a Load more button is still there after every trial is listed")
    cut = [r["name"] for r in shown if r.get("cut")]
    if cut:
        problems.append(f"run names cut off: {cut[:3]}")
    for r in shown:
        cells = r["cells"]
        loss, epochs = cells.get("tags.`test_loss_final`", ""), cells.get("params.`epochs`", "")
        if not re.fullmatch(r"\d+\.\d{4}", loss):
            problems.append(f"{r['name']}: test_loss_final shows {loss!r} (want 4 decimals)")
        if not re.fullmatch(r"\d+", epochs):
            problems.append(f"{r['name']}: epochs shows {epochs!r} (want a whole number)")
        acc = cells.get("tags.`sblimp_acc`")
        if acc is not None and not re.fullmatch(r"\d\.\d{3}", acc):
            problems.append(f"{r['name']}: sblimp_acc shows {acc!r} (want 3 decimals)")
        if len(problems) > 8:
            break
    return problems


async def _browse(ui: str, exp_id: str, view: str, facts: dict, trial: tuple, out: Path):
    problems = []
    runs_url = f"{ui}/#/experiments/{exp_id}/runs"
    parent_id = facts["parent"]["info"]["run_id"]
    async with Browser(1920, 1080) as b:
        await b.open(f"{runs_url}?viewStateShareKey={view}", "!!document.querySelector('.ag-row')")
        await b.js(CLOSE_ASSISTANT)
        await b.wait_for("document.querySelectorAll('.ag-row[row-index]').length >= 20")
        await asyncio.sleep(2.0)
        first = await _table(b)
        await b.screenshot(out / "mlflow-runs-grid-view.png")
        n = len(facts["trial_names"])
        for _ in range(3):  # a click while the table is busy can be lost: try again
            if not await b.js(CLICK_LOAD_MORE):
                break
            if await b.wait_for(f"document.body.innerText.includes('{n} matching runs')", 60):
                await asyncio.sleep(2.0)
                break
        problems += _view_problems(first, await _table(b), facts["trial_names"])

        await b.open(runs_url, "document.body.innerText.includes('grid-demo')")
        await b.js(CLOSE_ASSISTANT)
        await b.js(UNFOLD)
        await asyncio.sleep(3.0)
        unfolded = [r for r in (await _table(b))["rows"] if r.get("name")]
        top = min(r["indent"] for r in unfolded)  # the grid's run; its children sit further in
        nested = {r["name"] for r in unfolded if r["indent"] > top}
        if not set(facts["fit_names"]) <= nested:
            problems.append("unfolding the grid's run does not show its fit run under it")
        await b.screenshot(out / "mlflow-runs-default.png")

        await b.open(f"{runs_url}/{parent_id}", "document.body.innerText.includes('fit.E')")
        await b.js(CLOSE_ASSISTANT)
        await asyncio.sleep(1.0)
        await b.screenshot(out / "mlflow-grid-parent.png")

        exp, run_id = trial
        await b.open(f"{ui}/#/experiments/{exp}/runs/{run_id}", "document.body.innerText.includes('test_loss_final')")  # fmt: skip
        await b.js(CLOSE_ASSISTANT)
        await asyncio.sleep(1.0)
        await b.screenshot(out / "mlflow-run.png")
        await b.open(f"{ui}/#/experiments/{exp}/runs/{run_id}/model-metrics", "document.body.innerText.includes('Add chart')")  # fmt: skip
        await b.js(CLOSE_ASSISTANT)
        await b.js(SHOW_TEST_LOSS)
        await asyncio.sleep(3.0)
        await b.screenshot(out / "mlflow-run-metrics.png")
    return problems


def _train_smoke(work: Path, uri: str, env: dict) -> int:
    from slmscale.train.synthetic import write_synthetic_units

    if not (work / "units" / "smoke").exists():
        write_synthetic_units(work / "units" / "smoke")
    shutil.copy(ROOT / "tune_spaces" / "smoke.yaml", work / "smoke.yaml")
    print("training the smoke grid ...", flush=True)
    cmd = [str(BIN / "slmscale"), "grid", "smoke.yaml", "--tracking-uri", uri]
    return subprocess.run(cmd, cwd=work, env=env, timeout=3600).returncode


def _make_store(work: Path, uri: str, env: dict, train: bool) -> int:
    """The smoke grid trained (if `train`), the demo grid written and fitted: 0 when done."""
    if train and _train_smoke(work, uri, env) != 0:
        return 1
    print("writing the demo grid (simulated losses) and fitting it ...", flush=True)
    simulate_grid(uri, "demo")
    fit = [str(BIN / "slmscale"), "fit", "--experiment", "demo", "--tracking-uri", uri]
    return subprocess.run([*fit, "--bootstrap", "20"], cwd=work, env=env, timeout=1800).returncode


def _server(work: Path, uri: str, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{ui}/health", timeout=5)
            return server, ui
        except OSError:
            time.sleep(1.0)
    raise RuntimeError("mlflow server did not start in 10 minutes")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"), help="where the PNGs go")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temp folder)")
    ap.add_argument("--no-train", action="store_true", help="skip the trained smoke grid")
    ap.add_argument(
        "--check-only",
        action="store_true",
        help="with --keep DIR of an earlier run: serve its store, check and picture it again",
    )
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="slmscale-shots-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SLMSCALE_CACHE": str(work / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    if not args.check_only and _make_store(work, uri, env, train=not args.no_train):
        return 1
    server, ui = _server(work, uri, env)
    try:
        api = f"{ui}/api/2.0/mlflow"
        exp_id = _get(f"{api}/experiments/get-by-name?experiment_name=demo")["experiment"][
            "experiment_id"
        ]
        problems, facts = _store_problems(api, exp_id)
        if facts:
            name = "smoke" if not args.no_train else "demo"
            exp = _get(f"{api}/experiments/get-by-name?experiment_name={name}")["experiment"]
            trial = next(
                r
                for r in _runs(api, exp["experiment_id"])
                if _tags(r).get("slmscale.kind") == "train"
            )
            parent = facts["parent"]["info"]["run_id"]
            table = urllib.request.urlopen(
                f"{ui}/get-artifact?path=grid/trials.csv&run_uuid={parent}", timeout=60
            ).read()
            if len(table.decode().splitlines()) != len(facts["trial_names"]) + 1:
                problems.append("the parent's grid/trials.csv does not list every trial")
            problems += asyncio.run(
                _browse(
                    ui,
                    exp_id,
                    "slmscale-grid-demo",
                    facts,
                    (exp["experiment_id"], trial["info"]["run_id"]),
                    out,
                )
            )
        for p in problems:
            print(f"mlflow_screenshots: {p}", file=sys.stderr)
        print("mlflow_screenshots: " + ("FAILED" if problems else "every check passed"))
        return 1 if problems else 0
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
