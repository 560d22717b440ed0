"""The ablations of a study as "arms": sets of runs that differ in corpus or in tokenizer.

An arm is one experiment's single-epoch runs of one tokenizer, with the Eq. 4 fit the laws made
of them (its fit block: params, ci95, verdicts, envelope, downstream chance verdicts) or the
reason there is none.  The report sets the arms against the main one (the main study's
tokenizer in the main experiment):

- same tokenizer, another experiment: another corpus -> the paper's Figure 3 (data ablation):
  downstream accuracy at the same model sizes and token budgets, per corpus;
- another tokenizer (in the main experiment, or another one): the paper's Figure 5 (tokenizer
  ablation): loss and downstream envelopes per tokenizer, and Eq. 4 per tokenizer.

Pure: built from `Study` objects and runs tables (slmscale.report.compare reads MLflow).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import binomtest

from slmscale.laws.table import RunsTable

EQ4 = ("E", "A", "B", "alpha", "beta")


@dataclass
class Arm:
    label: str
    experiment: str
    tokenizer: str
    table: RunsTable  # single-epoch runs of this tokenizer
    C: np.ndarray  # loss envelope points: compute
    L: np.ndarray  # and test loss (eval points when the runs have curves)
    fit: dict | None  # the laws' fit block (see module docstring); None: `reason`
    reason: str | None = None
    main: bool = False
    n_items: dict = field(default_factory=dict)  # run_id -> {metric: items scored}

    def _downstream(self, metric: str) -> dict:
        return ((self.fit or {}).get("downstream") or {}).get(metric) or {}

    def at_chance(self, metric: str) -> bool | None:
        """The laws' chance verdict for `metric` on this arm (None: not tested)."""
        return self._downstream(metric).get("at_chance")

    def chance(self, metric: str) -> float:
        return float(self._downstream(metric).get("chance", 0.5))


def main_fit_block(doc: dict) -> dict:
    """The main study's fit as an arm's fit block (the same keys a `tokenizers[t]` entry has)."""
    keys = (*EQ4, "envelope_gamma")
    block = {
        "n_runs": len(doc.get("runs_used") or []),
        "params": {k: doc["params"].get(k) for k in EQ4},
        "ci95": {k: (doc.get("ci95") or {}).get(k) for k in keys},
        "envelope": (doc.get("envelope") or {}).get("law"),
        "downstream": doc.get("downstream") or {},
    }
    if isinstance(doc.get("verdicts"), dict):
        block["verdicts"] = {k: v for k, v in doc["verdicts"].items() if k in keys}
    elif "not_identified" in doc:
        block["not_identified"] = doc["not_identified"]
        block["at_bounds"] = doc.get("at_bounds") or []
    return block


def arms_of_study(experiment: str, study, several_experiments: bool) -> list[Arm]:
    """The arms of one fitted study: its main tokenizer, then each other tokenizer it holds."""
    doc = study.doc
    main_tok = doc.get("tokenizer") or ""
    label = experiment if several_experiments else (main_tok or experiment)
    if several_experiments and study.tokenizers:
        label = f"{experiment}: {main_tok}"
    env = study.envelope
    arms = [Arm(label, experiment, main_tok, study.single, env["C"], env["L"], main_fit_block(doc))]
    for name, t in sorted(study.tokenizers.items()):
        if name == main_tok or (name == "(unnamed)" and not main_tok):
            continue
        block = (doc.get("tokenizers") or {}).get(name) or {}
        reason = block.get("not_identified_reason") or block.get("reason")
        e = t["envelope"]
        arms.append(
            Arm(
                f"{experiment}: {name}" if several_experiments else name,
                experiment,
                name,
                t["table"],
                e["C"],
                e["L"],
                block if block.get("params") else None,
                reason,
            )
        )
    return arms


def arms_without_fit(experiment: str, table: RunsTable, reason: str) -> list[Arm]:
    """Arms of an experiment the laws could not fit (e.g. 3 runs for 5 constants): final
    losses only, one arm per tokenizer."""
    single = table.subset(table.single_epoch)
    out = []
    for name in sorted(set(single.tokenizer)):
        t = single.subset([i for i, tk in enumerate(single.tokenizer) if tk == name])
        out.append(Arm(experiment, experiment, name, t, t.flops, t.loss, None, reason))
    return out


# ---- Figure 3: the data ablation ----------------------------------------------------------------


def binomial_ci(acc: float, n: int | None) -> tuple[float, float] | None:
    """95% Wilson interval of an accuracy measured on `n` items (None without a count)."""
    if n is None or not n > 0 or not np.isfinite(acc):
        return None
    k = int(round(acc * n))
    ci = binomtest(min(max(k, 0), n), n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def data_arms(arms: list[Arm]) -> list[Arm]:
    """The main arm and the arms on other corpora (same tokenizer, other experiment)."""
    return _main_and(
        arms, lambda a, main: a.tokenizer == main.tokenizer and a.experiment != main.experiment
    )


def tokenizer_arms(arms: list[Arm]) -> list[Arm]:
    """The main arm and the arms of other tokenizers."""
    return _main_and(arms, lambda a, main: a.tokenizer != main.tokenizer)


def _main_and(arms: list[Arm], other) -> list[Arm]:
    """The main arm and the arms `other(arm, main)` picks; none when it picks none."""
    main = next(a for a in arms if a.main)
    others = [a for a in arms if other(a, main)]
    return [main, *others] if others else []


def _points(arm: Arm) -> dict[tuple[float, float], list[int]]:
    out: dict = {}
    for i, (n, d) in enumerate(zip(arm.table.N, arm.table.D, strict=True)):
        out.setdefault((float(n), float(d)), []).append(i)
    return out


def data_ablation_rows(arms: list[Arm]) -> list[dict]:
    """One row per (arm, model size, budget) the arms all trained: loss and each metric's
    accuracy (mean over repeats) with its binomial interval over the items scored."""
    if not arms:
        return []
    per = [_points(a) for a in arms]
    shared = sorted(set.intersection(*(set(p) for p in per)))
    metrics = sorted(set.intersection(*(set(a.table.metrics) for a in arms)))
    rows = []
    for key in shared:
        for arm, pts in zip(arms, per, strict=True):
            idx = pts[key]
            t = arm.table
            row = {
                "arm": arm.label,
                "experiment": arm.experiment,
                "model_size": t.model_size[idx[0]],
                "params": key[0],
                "tokens": key[1],
                "runs": [t.run_id[i] for i in idx],
                "loss": float(np.mean(t.loss[idx])),
                "metrics": {},
            }
            for m in metrics:
                vals = t.metrics[m][idx]
                if not np.isfinite(vals).any():
                    continue
                counts = [_items(arm, i, m) for i in idx]
                n = sum(counts) if all(c for c in counts) else None
                acc = float(np.nanmean(vals))
                row["metrics"][m] = {"acc": acc, "n_items": n, "ci95": binomial_ci(acc, n)}
            rows.append(row)
    return rows


def _items(arm: Arm, i: int, metric: str) -> int | None:
    """Items run i scored on `metric`: its eval details, else the runs table's count."""
    n = arm.n_items.get(arm.table.run_id[i], {}).get(metric)
    if n:
        return int(n)
    col = (getattr(arm.table, "n_items", None) or {}).get(metric)
    if col is not None and np.isfinite(col[i]) and col[i] > 0:
        return int(col[i])
    return None


def data_ablation_claims(arms: list[Arm], rows: list[dict]) -> dict[str, str]:
    """Per metric, what the runs say about the main corpus against each other one.

    A benchmark the laws find at chance (main arm, or the other when it was tested) gets no
    claim; otherwise the sizes where one corpus is ahead, and how many of those are beyond both
    95% binomial intervals (the rest are within item noise).
    """
    if not rows:
        return {}
    main, others = arms[0], arms[1:]
    metrics = sorted({m for r in rows for m in r["metrics"]})
    out = {}
    for m in metrics:
        chance_arms = [a.label for a in arms if a.at_chance(m)]
        if chance_arms:
            out[m] = f"at chance in {', '.join(chance_arms)} (the laws' binomial test): no claim"
            continue
        out[m] = "; ".join(_claim(rows, main.label, other.label, m) for other in others)
    return out


def _claim(rows: list[dict], first: str, second: str, m: str) -> str:
    """`first ahead of second at k of n sizes (j beyond both 95% binomial intervals)`, and
    where `second` is ahead, how often."""
    count = {"ahead": 0, "apart": 0, "behind": 0, "apart_behind": 0, "total": 0}
    for key in sorted({(r["params"], r["tokens"]) for r in rows}):
        a, b = (row_at(rows, arm, key)["metrics"].get(m) for arm in (first, second))
        if a is None or b is None:
            continue
        count["total"] += 1
        both = bool(a["ci95"] and b["ci95"])
        if a["acc"] > b["acc"]:
            count["ahead"] += 1
            count["apart"] += both and a["ci95"][0] > b["ci95"][1]
        elif a["acc"] < b["acc"]:
            count["behind"] += 1
            count["apart_behind"] += both and b["ci95"][0] > a["ci95"][1]
    text = (
        f"{first} ahead of {second} at {count['ahead']} of {count['total']} sizes "
        f"({count['apart']} beyond both 95% binomial intervals)"
    )
    if count["behind"]:
        text += f", behind at {count['behind']} ({count['apart_behind']} beyond them)"
    return text


def row_at(rows: list[dict], label: str, key) -> dict:
    """The row of arm `label` at (params, tokens) `key` (every arm has one at every key)."""
    return next(r for r in rows if r["arm"] == label and (r["params"], r["tokens"]) == key)
