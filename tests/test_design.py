"""`slmscale design`: does a grid identify the law, and which next runs buy the most certainty.

Small simulations (20-30 studies) keep every test in seconds; the noise levels are chosen so the
verdicts are far from the rule's thresholds (hi / lo of alpha ~600 on one size, ~1.5 on five).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from slmscale.errors import UserError
from slmscale.laws import design as ds
from slmscale.laws import design_search, simulate
from slmscale.laws.chinchilla import ChinchillaParams, fit_chinchilla
from slmscale.laws.synthetic import PAPER_N, PAPER_RATIOS
from slmscale.paper import SPEECH_LAW

LAW = ChinchillaParams.from_dict(SPEECH_LAW)


def grid(sizes, ratios=PAPER_RATIOS, cost_per_flop=1e-18):
    """Single-epoch points sizes x ratios; cost proportional to 6 N D."""
    return [
        ds.Point(
            n, r * n, r * n, cost=6 * n * r * n * cost_per_flop, size=f"{n / 1e6:.0f}M", ratio=r
        )
        for n in sizes
        for r in ratios
    ]


def evaluate(points, noise=0.002, n_sims=30, seed=0, **kw):
    kw.setdefault("with_rstar", False)
    return ds.evaluate_grid(
        "g", points, ds.paper_prior(noise), n_sims=n_sims, seed=seed, target_flops=1e22, **kw
    )


def test_one_size_leaves_alpha_unidentified():
    res = evaluate(grid([84.9e6]))
    assert not res.constants["alpha"]["identified"]
    assert not res.constants["A"]["identified"]
    assert "one model size" in res.note
    assert not res.all_identified


def test_adding_sizes_identifies_alpha():
    res = evaluate(grid(PAPER_N))
    for k in ("E", "A", "B", "alpha", "beta", "a", "b"):
        assert res.constants[k]["identified"], (k, res.constants[k])
    lo, hi = res.constants["alpha"]["interval"]
    assert lo < 0.25 < hi


def test_paper_grid_at_one_percent_noise_does_not_pin_alpha():
    # The observation: with 1% noise the paper's grid leaves alpha roughly 0.02-0.5.
    res = evaluate(grid(PAPER_N), noise=0.01, n_sims=30)
    assert not res.constants["alpha"]["identified"]
    assert res.constants["beta"]["identified"]


def test_results_are_reproducible_for_a_seed():
    a = evaluate(grid(PAPER_N[:3]), noise=0.01, n_sims=20, seed=3).as_dict()
    b = evaluate(grid(PAPER_N[:3]), noise=0.01, n_sims=20, seed=3).as_dict()
    c = evaluate(grid(PAPER_N[:3]), noise=0.01, n_sims=20, seed=4).as_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert a["constants"]["alpha"]["interval"] != c["constants"]["alpha"]["interval"]


def test_a_run_keeps_its_noise_in_every_grid():
    # Common random numbers: a variant differs from the full grid by its runs, not by new dice.
    pts = grid(PAPER_N[:2], ratios=(2, 8))
    N, D, U = (np.array([getattr(p, k) for p in pts]) for k in "NDU")
    full = simulate.point_noise(N, D, U, 5, seed=1)
    sub = simulate.point_noise(N[1:], D[1:], U[1:], 5, seed=1)
    np.testing.assert_array_equal(full[:, 1:], sub)


def test_batched_refits_match_fit_chinchilla():
    """The design refits are the fitter's optimum (same objective, starts, box)."""
    N = np.repeat(PAPER_N, len(PAPER_RATIOS))
    D = N * np.tile(PAPER_RATIOS, len(PAPER_N))
    rng = np.random.default_rng(5)
    L = LAW.predict(N, D) * np.exp(rng.normal(0, 0.01, (6, N.size)))
    theta, obj = simulate.refit_eq4(N, D, L, 0.03)
    for s in range(len(L)):
        f = fit_chinchilla(N, D, L[s])
        assert obj[s] <= f.objective * (1 + 1e-9)
        assert obj[s] == pytest.approx(f.objective, rel=1e-6)
        np.testing.assert_allclose(
            simulate.theta_to_params(theta[s : s + 1])[0, [0, 4]],
            [f.params.E, f.params.beta],
            rtol=1e-3,
        )


def test_multi_epoch_runs_give_rstar_rows():
    pts = grid(PAPER_N, ratios=(2, 8, 32))
    pts += [
        ds.Point(n, 16 * n, 16 * n / e, size="x", group="extra[0]", epochs=e)
        for n in PAPER_N
        for e in (2, 4, 8)
    ]
    res = evaluate(pts, n_sims=20, with_rstar=True)
    assert {"R_star_N", "R_star_D"} <= set(res.constants)
    assert res.constants["R_star_N"]["interval"] is not None
    few = evaluate(pts[:-13], n_sims=20, with_rstar=True)  # 2 multi-epoch runs left
    assert few.constants["R_star_N"]["interval"] is None
    assert not few.constants["R_star_N"]["identified"]


def test_rstar_refits_agree_with_the_point_fit():
    from slmscale.laws import data_constrained as dc

    multi = [ds.Point(n, 16 * n, 16 * n / e) for n in PAPER_N for e in (2, 4, 8, 10)]
    truths, L = ds.simulate_points(ds.paper_prior(0.01), multi, 4, seed=2)
    N, D, U = (np.array([getattr(p, k) for p in multi]) for k in "NDU")
    got = simulate.refit_rstar(truths[:, :5], N, D, U, L, 0.03)
    for s in range(len(L)):
        f = dc.fit_data_constrained(ChinchillaParams(*truths[s, :5]), N, D, U, L[s])
        np.testing.assert_allclose(got[s], [f.R_star_N, f.R_star_D], rtol=0.03)


def test_variants_drop_sizes_budgets_blocks_and_halve_the_largest():
    pts = grid(PAPER_N[:3], ratios=(2, 8))
    pts.append(
        ds.Point(
            PAPER_N[0], 16 * PAPER_N[0], 8 * PAPER_N[0], cost=1.0, group="extra[0]", epochs=2.0
        )
    )
    names = [n for n, _ in design_search.grid_variants(pts, available_tokens=1e12)]
    assert names == [
        "full grid",
        "drop 20M",
        "drop 85M",
        "drop 154M",
        "drop D/N=2",
        "drop D/N=8",
        "drop extra[0]",
        "halve 154M budgets",
    ]
    halved = dict(design_search.grid_variants(pts, available_tokens=1e12))["halve 154M budgets"]
    big = [p for p in halved if p.N == PAPER_N[2]]
    assert [p.D for p in big] == [PAPER_N[2], 4 * PAPER_N[2]]
    assert all(p.U == p.D and p.cost > 0 for p in big)


def test_next_runs_on_a_grid_missing_large_sizes_include_a_large_size():
    finished = grid(PAPER_N[:3], ratios=(2, 8, 32))
    candidates = grid(PAPER_N, ratios=(2, 8, 32))
    candidates = [c for c in candidates if c.N > PAPER_N[2] or c.ratio in (4, 16)]
    out = design_search.propose_next(
        finished, candidates, ds.paper_prior(0.01), k=3, n_sims=30, seed=0, target_flops=1e22
    )
    chosen = [c["point"] for c in out["chosen"]]
    assert chosen and any(p.N > PAPER_N[2] for p in chosen)
    gains = [c["gain"] for c in out["chosen"]]
    assert all(g > 0 for g in gains)
    assert out["end_width"] < out["start_width"]


def test_prior_from_fit_uses_bootstrap_samples_and_residual_noise():
    doc = {
        "params": {"E": 1.7, "A": 14.0, "B": 40.0, "alpha": 0.25, "beta": 0.24},
        "bootstrap": {
            "columns": ["E", "A", "B", "alpha", "beta"],
            "samples": [[1.7, 14, 40, 0.25, 0.24], [1.8, 15, 41, 0.26, 0.25]],
        },
        "quality": {"rmse_log": 0.004},
    }
    p = ds.prior_from_fit(doc, "fit.json")
    assert p.noise == 0.004
    assert p.samples.shape == (2, 7)
    assert p.center["R_star_N"] == SPEECH_LAW["R_star_N"] and p.notes
    draws = p.draws(50, seed=0)
    assert set(np.round(draws[:, 0], 3)) == {1.7, 1.8}
    with pytest.raises(UserError, match="params.alpha"):
        ds.prior_from_fit({"params": {"E": 1.0, "A": 1.0, "B": 1.0}}, "bad.json")


def test_report_section_from_a_fit():
    from slmscale.laws.study import run_study
    from slmscale.laws.synthetic import synthetic_runs
    from slmscale.laws.table import validate_runs

    runs, _ = synthetic_runs(LAW, noise=0.003, seed=1)
    table, excluded = validate_runs(runs, "synthetic")
    study = run_study(table, excluded, source={"label": "synthetic"}, n_bootstrap=0)
    blocks = ds.identification_blocks(study.doc, study.single, None, n_sims=20)
    assert blocks[0][0] == "h2"
    table_block = next(b for b in blocks if b[0] == "table")
    assert [r[0] for r in table_block[2]] == ["E", "A", "B", "alpha", "beta", "G", "a", "b"]


# --- the command ---------------------------------------------------------------------------------

SPEC = """\
name: designtest
units:
  - {path: data/units/not_here}
available_tokens: 10.89e9
n_units: 500
models: [20M, 85M, 155M, 309M, 823M]
d_over_n: [2, 8, 32]
epochs: [auto]
throughput: {mfu: 0.40, peak_flops: 989.0e12}
batch_size: {20M: 64, 85M: 128, 155M: 256, 309M: 256, 823M: 512}
"""


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "slmscale.cli", "design", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture
def spec_dir(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    from slmscale.commands.design_spec import planned_points
    from slmscale.grid.plan import load_plan

    rows = planned_points(load_plan(str(tmp_path / "spec.yaml")))
    with open(tmp_path / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run_id", "params", "tokens", "unique_tokens", "loss", "model_size"])
        for i, (p, *_rest) in enumerate(rows):
            if p.size in ("20M", "85M", "155M"):
                w.writerow([f"r{i}", p.N, p.D, p.U, float(LAW.predict(p.N, p.D)), p.size])
    return tmp_path


def test_cli_proposes_large_sizes_and_writes_a_spec_grid_runs_exactly(spec_dir):
    args = ["spec.yaml", "--runs", "runs.csv", "--sims", "20", "--no-variants"]
    out = run_cli(*args, "--write-spec", "next.yaml", "--json", "d.json", cwd=spec_dir)
    assert out.returncode == 0, out.stderr
    design = json.loads((spec_dir / "d.json").read_text())
    chosen = design["next_runs"]["chosen"]
    assert len(chosen) == 3 and any(c["label"].startswith(("309M", "823M")) for c in chosen)
    assert "from the 9 finished run(s)" in design["next_runs"]["basis"]
    dry = subprocess.run(
        [
            sys.executable,
            "-m",
            "slmscale.cli",
            "grid",
            "next.yaml",
            "--dry-run",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=spec_dir,
        timeout=600,
    )
    assert dry.returncode == 0, dry.stderr
    assert sorted(t["trial_key"] for t in json.loads(dry.stdout)) == sorted(
        c["key"] for c in chosen
    )
    again = run_cli(*args, "--json", "d2.json", "--next", "3", cwd=spec_dir)
    assert again.returncode == 0, again.stderr
    d2 = json.loads((spec_dir / "d2.json").read_text())
    assert d2["grids"] == design["grids"] and d2["next_runs"]["chosen"] == chosen


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prior", "missing.json"], "missing.json: fit file not found"),
        (["--sims", "5"], "--sims 5"),
        (["--noise", "2"], "--noise 2"),
        (["--runs", "nope.csv"], "nope.csv: runs table file not found"),
        (["--write-spec", "x.yaml", "--next", "0"], "--write-spec"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(spec_dir, args, message):
    out = run_cli("spec.yaml", "--no-variants", "--sims", "20", *args, cwd=spec_dir)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not (spec_dir / "x.yaml").exists()


def test_cli_names_a_bad_spec(tmp_path):
    (tmp_path / "s.yaml").write_text(textwrap.dedent(SPEC).replace("[2, 8, 32]", "[2, -1]"))
    out = run_cli("s.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "s.yaml" in out.stderr and "Traceback" not in out.stderr


def test_cli_prior_from_a_fit_uses_its_bootstrap(spec_dir):
    from slmscale.cli import main

    fit = ["fit", "--runs", str(spec_dir / "runs.csv"), "--bootstrap", "20"]
    assert main([*fit, "--json", str(spec_dir / "fit.json")]) == 0
    out = run_cli(
        "spec.yaml",
        "--prior",
        "fit.json",
        "--sims",
        "20",
        "--no-variants",
        "--next",
        "0",
        "--json",
        "d.json",
        cwd=spec_dir,
    )
    assert out.returncode == 0, out.stderr
    prior = json.loads((spec_dir / "d.json").read_text())["prior"]
    assert prior["source"] == "fit fit.json" and prior["n_samples"] > 0
    rmse = json.loads((spec_dir / "fit.json").read_text())["quality"]["rmse_log"]
    assert prior["noise"] == pytest.approx(rmse, rel=1e-5)  # the fit's residual noise


@pytest.mark.slow
def test_next_runs_from_the_finished_runs_in_mlflow(spec_dir):
    """Finished runs read from the store (matched by trial key) are the starting point."""
    from mlflow.entities import Metric, Param

    from slmscale.cli import main
    from slmscale.commands.design_spec import planned_points
    from slmscale.grid.plan import load_plan
    from slmscale.tracking import schema
    from slmscale.tracking.store import client, get_or_create_experiment

    uri = f"sqlite:///{spec_dir / 'mlflow.db'}"
    c = client(uri)
    exp = get_or_create_experiment(uri, "designtest")
    small = [r[0] for r in planned_points(load_plan(str(spec_dir / "spec.yaml"))) if r[0].N < 2e8]
    for p in small:
        tags = {schema.TAG_KIND: schema.KIND_TRAIN, schema.TAG_TRIAL_KEY: p.key}
        run_id = c.create_run(exp, tags=tags).info.run_id
        params = {"n_params": p.N, "tokens": p.D, "unique_tokens": p.U, "model_size": p.size}
        loss = float(LAW.predict(p.N, p.D))
        c.log_batch(
            run_id,
            metrics=[Metric(schema.M_TEST_LOSS_FINAL, loss, 0, 0)],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        c.set_terminated(run_id, status="FINISHED")
    args = ["design", str(spec_dir / "spec.yaml"), "--experiment", "designtest"]
    args += [
        "--tracking-uri",
        uri,
        "--sims",
        "20",
        "--no-variants",
        "--json",
        str(spec_dir / "m.json"),
    ]
    assert main(args) == 0
    nxt = json.loads((spec_dir / "m.json").read_text())["next_runs"]
    assert nxt["basis"] == "from the 9 finished run(s)"
    assert {c["key"] for c in nxt["chosen"]}.isdisjoint(p.key for p in small)
    assert any(c["label"].startswith(("309M", "823M")) for c in nxt["chosen"])


def test_report_has_the_identification_section(spec_dir):
    from slmscale.cli import main

    out = spec_dir / "rep"
    assert (
        main(
            ["report", "--runs", str(spec_dir / "runs.csv"), "--bootstrap", "0", "--out", str(out)]
        )
        == 0
    )
    md = (out / "report.md").read_text()
    assert "## How well these runs identify the law (simulated studies)" in md
    assert "| alpha |" in md and "Extrapolated compute-optimal loss" in md


def test_design_core_imports_neither_ray_nor_mlflow():
    code = (
        "import sys, slmscale.laws.design, slmscale.laws.design_search, slmscale.laws.simulate\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow', 'torch'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_cli_one_size_via_an_override_marks_alpha(spec_dir):
    out = run_cli(
        "spec.yaml",
        "models=[85M]",
        "batch_size=128",
        "d_over_n=[2,4,8,16,32,64]",
        "--noise",
        "0.002",
        "--sims",
        "20",
        "--next",
        "0",
        "--json",
        "one.json",
        cwd=spec_dir,
    )
    assert out.returncode == 0, out.stderr
    design = json.loads((spec_dir / "one.json").read_text())
    full = design["grids"][0]
    assert full["n_runs"] == 6 and not full["constants"]["alpha"]["identified"]
    assert "one model size" in full["note"] and "alpha" in out.stdout
