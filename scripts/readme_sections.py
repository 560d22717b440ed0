"""README sections made by the code, so the README cannot drift from it.

    python scripts/readme_sections.py           # exit 1 and name the stale sections
    python scripts/readme_sections.py --write   # rewrite them in README.md

A generated section sits between two markers in README.md:

    <!-- generated: NAME (python scripts/readme_sections.py --write) -->
    ...
    <!-- end generated: NAME -->

and is rewritten whole by `SECTIONS[NAME]()`.  Why: README's dry-run example once said 1,178.9
GPU-h and a 155M key 9e2256c4... while the code printed 1,281.3 GPU-h and 68d8f65d...; its
benchmark table kept a row ("2 processes") after the bench had changed.  tests/test_readme.py
fails when a section is stale.  Only commands that need no training and no data run here.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = re.compile(
    r"(<!-- generated: (?P<name>[\w-]+) \(python scripts/readme_sections.py --write\) -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- end generated: (?P=name) -->)",
    re.S,
)


#: Environment that changes what a command prints (where stores and caches are): left out, so the
#: README shows the defaults.
USER_SETTINGS = ("MLFLOW_TRACKING_URI", "SLMSCALE_HOME", "SLMSCALE_CACHE")


def slmscale(*argv: str) -> list[str]:
    """What `slmscale ARGV` prints (stdout, then stderr), run in this process from the repo root."""
    from slmscale.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = os.getcwd()
    env = {k: os.environ.pop(k) for k in USER_SETTINGS if k in os.environ}
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(argv))
    finally:
        os.chdir(saved)
        os.environ.update(env)
    return [line.rstrip() for line in (out.getvalue() + err.getvalue()).splitlines()]


def _example(argv: list[str], keep: list[str]) -> str:
    """A console example: `$ slmscale ARGV`, then the output lines matching `keep` (regexes, in
    output order), with `...` where lines were left out."""
    lines = slmscale(*argv)
    shown, skipped = [], False
    for line in lines:
        if any(re.search(k, line) for k in keep):
            shown += ["..."] if skipped else []
            shown.append(line)
            skipped = False
        else:
            skipped = True
    shown += ["..."] if skipped else []
    command = " ".join(f"'{a}'" if any(c in a for c in "[]*, ") else a for a in argv)
    return "```\n$ slmscale " + command + "\n" + "\n".join(shown) + "\n```\n"


def paper_dry_run() -> str:
    """The paper's grid as `--dry-run` plans it: header, the 155M run the paper says takes 1.82
    epochs, the total and the token store."""
    return _example(
        ["grid", "tune_spaces/paper.yaml", "--dry-run"],
        [
            r"^grid paper:",
            r"^trial_key",
            r"^-+ ",
            r"^\w{16}\s+155M\s.*\s1\.82\s",
            r"^TOTAL",
            r"^token store:",
        ],
    )


def spec_error() -> str:
    """A spec mistake: one line naming the file, the field and what is allowed."""
    return _example(["grid", "tune_spaces/paper.yaml", "models=[20M,85M,30M]", "--dry-run"], ["."])


def demo_grid() -> str:
    """The demo's grid in one sentence, counted from the plan of tune_spaces/demo.yaml."""
    from slmscale.grid.plan import load_plan

    units = "units=[{path: units/demo, available_tokens: 1080000}]"  # declared: no data needed
    plan = load_plan(str(ROOT / "tune_spaces" / "demo.yaml"), [units])
    spec, trials = plan.spec, plan.trials
    multi = sum(t.epochs > 1 for t in trials)
    repeats = sum(t.seed != spec.seed for t in trials)
    lo, hi = int(min(spec.tokens)), int(max(spec.tokens))
    return (
        f"The demo's grid (`tune_spaces/demo.yaml`): {len(spec.models)} model sizes x "
        f"{len(spec.tokens)} data budgets ({lo:,} to {hi:,} units), single epoch, plus {multi} "
        f"multi-epoch runs and {repeats} seed repeats: {len(trials)} trials.\n"
    )


def _bench_reports() -> list[dict]:
    """reports/bench/*.json, newest first (by the date of the run)."""
    docs = [json.loads(p.read_text()) for p in sorted((ROOT / "reports" / "bench").glob("*.json"))]
    return sorted(docs, key=lambda d: d["machine"]["date"], reverse=True)


def _figure_row(f: dict, machine: dict) -> str:
    unit = f["unit"]
    value = f"{f['value']:.4g} {unit}".strip()
    base = f"{f['baseline']:.4g} {unit} ({f['baseline_name']})" if f.get("baseline") else ""
    ratio = f"{f['ratio']:.3g}x" if f.get("ratio") else ""
    met = {True: "yes", False: "**no**", None: "-"}[f.get("met")]
    where = f"{machine['cpu']}, {machine['date'][:10]}"
    return f"| {f['name']} | {value} | {base} | {ratio} | {f.get('target', '')} | {met} | {where} |"


def benchmarks() -> str:
    """Each bench section's figures from the newest report that measured it (reports/bench/)."""
    rows, unmeasured, taken = [], [], set()
    for doc in _bench_reports():
        for section in dict.fromkeys(f["section"] for f in doc["figures"]):
            if section in taken:
                continue
            taken.add(section)
            for f in (f for f in doc["figures"] if f["section"] == section):
                if f["value"] is None:
                    unmeasured.append(f["name"])
                else:
                    rows.append(_figure_row(f, doc["machine"]))
    head = "| figure | value | baseline (same run) | ratio | target | met | machine, date |"
    table = [head, "|---|---|---|---|---|---|---|", *rows]
    if unmeasured:
        table += ["", "Not measured on these machines (no GPU): " + "; ".join(unmeasured) + "."]
    return "\n".join(table) + "\n"


SECTIONS: dict[str, Callable[[], str]] = {
    "paper-dry-run": paper_dry_run,
    "spec-error": spec_error,
    "demo-grid": demo_grid,
    "benchmarks": benchmarks,
}


def render(text: str) -> tuple[str, list[str]]:
    """README text with every generated section made anew; the names of those that changed."""
    stale: list[str] = []

    def fill(m: re.Match) -> str:
        name = m["name"]
        if name not in SECTIONS:
            raise SystemExit(f"README.md: unknown generated section {name!r}")
        body = SECTIONS[name]()
        if body != m["body"]:
            stale.append(name)
        return m.group(1) + body + m.group(4)

    return MARK.sub(fill, text), stale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the stale sections in README.md")
    args = ap.parse_args()
    text = README.read_text()
    new, stale = render(text)
    if args.write and stale:
        tmp = README.with_suffix(".md.tmp")
        tmp.write_text(new)
        tmp.replace(README)
    for name in stale:
        print(f"README.md: section {name!r} {'rewritten' if args.write else 'is stale'}")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
