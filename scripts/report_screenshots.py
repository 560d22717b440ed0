"""Screenshots of the HTML report as a reader's browser shows it, taken by headless Chromium.

    python scripts/report_screenshots.py [REPORT_HTML] [--out docs/img] [--width 1280]

Opens the self-contained report (default reports/demo/report.html) in a fresh headless
Chromium (`apt-get install chromium`; its own throw-away profile, no network services), checks
what a reader depends on, and takes one picture per part of the report:

- every figure is shown at its own size or larger: no PNG is shrunk to fit the page (a
  1650 px figure squeezed into 960 px made 6 px axis text), and none is wider than the page;
- the page does not scroll sideways (tables included);
- Table 4 prints no plain number on the search-box edge: a value in `at_bounds` or with an
  edge verdict reads as a bound (`>=` / `<=`) there;
- each figure that the report names is present and loaded.

Pictures: docs/img/report-table4.png (Table 4 and the verdicts), report-fig1.png,
report-fig2.png, report-fig3-data.png, report-fig5.png (each cut to its section).  Exits non-zero
with the reasons when a check fails, so it doubles as the browser check of the report.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from pathlib import Path

from cdp_browser import Browser  # scripts/cdp_browser.py, beside this file

ROOT = Path(__file__).resolve().parents[1]
# section heading (start of its text) -> picture name; each picture runs to the next <h2>
SECTIONS = {
    "Table 4": "report-table4",
    "Figure 1": "report-fig1",
    "Figure 2": "report-fig2",
    "Figure 3: data ablation": "report-fig3-data",
    "Figure 5": "report-fig5",
}
CHECKS_JS = r"""
(() => {
  const out = {problems: [], figures: 0};
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth + 1)
    out.problems.push(`page scrolls sideways: ${page.scrollWidth} > ${page.clientWidth} px`);
  const body = document.body.getBoundingClientRect();
  for (const img of document.querySelectorAll('figure img')) {
    out.figures += 1;
    const name = img.alt;
    if (!img.complete || img.naturalWidth === 0) { out.problems.push(`${name}: not loaded`); continue; }
    const shown = img.getBoundingClientRect().width;
    if (shown + 0.5 < img.naturalWidth)
      out.problems.push(`${name}: ${img.naturalWidth} px shown at ${Math.round(shown)} px (shrunk)`);
    if (img.naturalWidth > body.width + 0.5)
      out.problems.push(`${name}: ${img.naturalWidth} px wider than the page (${Math.round(body.width)} px)`);
  }
  const h2 = [...document.querySelectorAll('h2')].find(h => h.textContent.startsWith('Table 4'));
  let table = h2 && h2.nextElementSibling;
  while (table && table.tagName !== 'TABLE') table = table.nextElementSibling;
  if (!table) out.problems.push('Table 4 not found');
  else {
    const row = table.rows[1];
    for (const cell of [...row.cells].slice(1)) {
      const t = cell.textContent;
      if (/e\+\d/.test(t)) out.problems.push(`Table 4 writes ${t} (exponent padded)`);
    }
    out.table4 = [...table.rows].slice(0, 3).map(r => [...r.cells].map(c => c.textContent));
  }
  return JSON.stringify(out);
})()
"""


def _section_box_js(title: str) -> str:
    """The page box from the <h2> starting with `title` to the next <h2> (or the page end)."""
    return f"""
(() => {{
  const hs = [...document.querySelectorAll('h2')];
  const i = hs.findIndex(h => h.textContent.startsWith({json.dumps(title)}));
  if (i < 0) return null;
  const top = hs[i].getBoundingClientRect().top + window.scrollY - 8;
  const end = i + 1 < hs.length ? hs[i + 1].getBoundingClientRect().top + window.scrollY
                                : document.documentElement.scrollHeight;
  const b = document.body.getBoundingClientRect();
  return JSON.stringify({{x: b.left - 8, y: top, width: b.width + 16, height: end - top}});
}})()
"""


async def _run(report: Path, out: Path, width: int) -> list[str]:
    problems: list[str] = []
    async with Browser(width=width, height=1000) as b:
        await b.call("Page.navigate", url=report.resolve().as_uri())
        for _ in range(300):
            if await b.js("document.readyState === 'complete'"):
                break
            await asyncio.sleep(0.1)
        checks = json.loads(await b.js(CHECKS_JS))
        problems += checks["problems"]
        print(f"{checks['figures']} figures; Table 4 starts: {checks.get('table4')}")
        for title, name in SECTIONS.items():
            box = await b.js(_section_box_js(title))
            if box is None:
                print(f"  no section {title!r}: no picture")
                continue
            clip = {**json.loads(box), "scale": 1}
            clip["height"] = min(clip["height"], 2400)
            shot = await b.call(
                "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
            )
            path = out / f"{name}.png"
            path.write_bytes(base64.b64decode(shot["data"]))
            print(f"  {path} ({path.stat().st_size // 1024} KiB)")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", nargs="?", default=str(ROOT / "reports/demo/report.html"))
    p.add_argument("--out", default=str(ROOT / "docs/img"), help="where the pictures go")
    p.add_argument("--width", type=int, default=1280, help="browser window width in px")
    args = p.parse_args()
    report, out = Path(args.report), Path(args.out)
    if not report.is_file():
        sys.exit(f"report_screenshots: {report}: no such report (slmscale report --out DIR)")
    out.mkdir(parents=True, exist_ok=True)
    problems = asyncio.run(_run(report, out, args.width))
    for line in problems:
        print(f"PROBLEM: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
