"""Scaling laws and their fits (pure core: numpy and scipy only, no Ray, no MLflow).

- `chinchilla`: Eq. 4 (Hoffmann et al.), the log-sum-exp / Huber fit from a grid of starts.
- `batchfit`: many Eq. 4 fits, and many R* fits, at once (vectorised damped Gauss-Newton).
- `compute_optimal`: Eq. 6, N_opt(C), D_opt(C), and U_N for a unique-token budget.
- `data_constrained`: Eq. 7/8 (Muennighoff et al.), R*_N and R*_D with Eq. 4 frozen.
- `powerlaw`: frontiers (envelopes) and power laws y = k C^gamma.
- `downstream`: the linear loss-to-metric relation over the unsaturated range.
- `gamma`: gamma_q of Table 3, one definition for speech and text.
- `reference`: the text-LLM table (vendored Pythia v0, or the user's).
- `bootstrap`: one bootstrap over runs refitting both stages.
- `intervals`: every reported number's 95% interval from that bootstrap.
- `identify`: the stated rule for "not identified".
- `table`: validating a runs table (the fitter's input) and listing what was excluded.
- `table3`: Table 3 rows of fit.json.
- `study`: everything above on one runs table -> the fit.json document.
- `plan`: compute-budget questions answered from a fit (Eq. 7/8 with the data limit, Eq. 6).
- `design`: simulating a planned grid before training it.

Stable entry points for other modules: `chinchilla.fit_chinchilla(N, D, L) -> ChinchillaFit`
(one Eq. 4 fit), `batchfit.fit_chinchilla_batch` / `batchfit.best_of_starts` (Eq. 4 for a
batch of weight vectors), `data_constrained.fit_data_constrained(law, N, D, U_D, L)` and
`batchfit.fit_rstar_batch(params, N, D, U_D, L, weights)` (the R* stage).
"""
