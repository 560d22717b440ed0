"""Scaling laws and their fits (pure core: numpy and scipy only, no Ray, no MLflow).

- `chinchilla`: Eq. 4 (Hoffmann et al.), the log-sum-exp / Huber fit from a grid of starts.
- `compute_optimal`: Eq. 6, N_opt(C), D_opt(C), and U_N for a unique-token budget.
- `data_constrained`: Eq. 7/8 (Muennighoff et al.), R*_N and R*_D with Eq. 4 frozen.
- `powerlaw`: frontiers (envelopes) and power laws y = k C^gamma.
- `downstream`: the linear loss-to-metric relation over the unsaturated range.
- `bootstrap`: resampling runs for 95% intervals.
- `table`: validating a runs table (the fitter's input) and listing what was excluded.
- `study`: everything above on one runs table -> the fit.json document.
- `plan`: compute-budget questions answered from a fit.
"""
