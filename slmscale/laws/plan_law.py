"""The law `slmscale plan` answers with, vectorised over bootstrap samples (pure arithmetic).

Rows of P (S, 7) are laws: E, A, B, alpha, beta, R*_N, R*_D (R* NaN for a chinchilla fit).
`loss` is Eq. 7/8 (Eq. 4 where U_D is None or a row has no R*); `best_allocation` minimises it
on the iso-FLOP line of C (6 N D = C, or k N^p D = C under the full count, `per_token`);
`compute_for_losses` inverts it by bisection on log C.  The answers are in `plan.py`.
"""

from __future__ import annotations

import numpy as np

from slmscale.laws.chinchilla import PARAM_NAMES

LOG_C_RANGE = (np.log(1e6), np.log(1e40))
COLUMNS = (*PARAM_NAMES, "R_star_N", "R_star_D")
_COARSE = np.linspace(np.log(1e-3), np.log(1e3), 121)  # log(N / N_opt) searched


def law_rows(doc: dict) -> tuple[np.ndarray, np.ndarray]:
    """(1, 7) point estimate and (S, 7) bootstrap rows: E, A, B, alpha, beta, R*_N, R*_D.

    R* are NaN when the fit has none (law chinchilla).
    """
    p = doc["params"]
    point = np.array([[float(p.get(k, np.nan)) for k in COLUMNS]])
    boot = doc.get("bootstrap") or {}
    cols = list(boot.get("columns") or PARAM_NAMES)
    raw = np.asarray(boot.get("samples") or np.empty((0, len(cols))), float)
    rows = np.full((len(raw), len(COLUMNS)), np.nan)
    for j, k in enumerate(COLUMNS):
        if k in cols:
            rows[:, j] = raw[:, cols.index(k)]
    return point, rows


def per_token(doc: dict) -> tuple[float, float]:
    """(k, p) of the iso-FLOP line: C = k N^p D (6 N D: k = 6, p = 1)."""
    fpt = doc.get("flops_per_token") or {}
    if fpt.get("definition") == "full" and fpt.get("k") and fpt.get("p"):
        return float(fpt["k"]), float(fpt["p"])
    return 6.0, 1.0


def tokens_for(C, N, fpt=(6.0, 1.0)):
    """D on the iso-FLOP line of C at N."""
    k, p = fpt
    return np.asarray(C, float) / (k * np.asarray(N, float) ** p)


def _eq6(P):
    E, A, B, al, be = (P[:, i : i + 1] for i in range(5))
    s = al + be
    return (al * A / (be * B)) ** (1.0 / s), be / s, al / s


def eq6_allocation(P, C):
    """N_opt, D_opt of Eq. 6 per row of P (S, 7) at C (scalar or (S,)): (S,) each."""
    G, a, b = _eq6(P)
    C = np.broadcast_to(np.asarray(C, float), (P.shape[0],))[:, None]
    return (G * (C / 6.0) ** a)[:, 0], ((C / 6.0) ** b / G)[:, 0]


def data_limited(P) -> np.ndarray:
    """(S,) whether each row has R* to price repeated data and excess parameters."""
    return np.isfinite(P[:, 5]) & np.isfinite(P[:, 6])


def loss(P, N, D, U_D: float | None):
    """Eq. 7/8 per row of P (S, 7) at N, D (S, K); Eq. 4 where U_D is None or R* is absent.

    The run uses min(U_D, D) unique tokens; U_N is Eq. 6's size for them (capped at N).
    """
    E, A, B, al, be, rn, rd = (P[:, i : i + 1] for i in range(7))
    N, D = np.asarray(N, float), np.asarray(D, float)
    if U_D is None:
        return E + A / N**al + B / D**be
    G, a, b = _eq6(P)
    U = np.minimum(U_D, D)
    R_D = np.maximum(D / U - 1.0, 0.0)
    U_N = np.minimum(G * ((G * U) ** (1.0 / b)) ** a, N)  # N_opt at the C whose D_opt is U
    R_N = np.maximum(N / U_N - 1.0, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        Dp = U + U * rd * (1.0 - np.exp(-R_D / rd))
        Np = U_N + U_N * rn * (1.0 - np.exp(-R_N / rn))
    limited = data_limited(P)[:, None]
    Np, Dp = np.where(limited, Np, N), np.where(limited, Dp, D)
    return E + A / Np**al + B / Dp**be


def best_allocation(P, C, U_D: float | None, fpt=(6.0, 1.0)):
    """Minimise `loss` over N on the iso-FLOP line of C, per row: (N, D, loss, at_edge) each (S,).

    A coarse grid of N / N_opt over 1e-3 .. 1e3 (0.05 decades), then a fine grid of 41 points
    between the coarse neighbours of the best cell.  `at_edge` flags a best N on the search's
    edge.
    """
    S = P.shape[0]
    C = np.broadcast_to(np.asarray(C, float), (S,))
    n6, _ = eq6_allocation(P, C)
    logN = np.log(n6)[:, None] + _COARSE[None, :]
    L = loss(P, np.exp(logN), tokens_for(C[:, None], np.exp(logN), fpt), U_D)
    L = np.where(np.isfinite(L), L, np.inf)
    j = np.argmin(L, axis=1)
    at_edge = (j == 0) | (j == _COARSE.size - 1)
    step = _COARSE[1] - _COARSE[0]
    centre = logN[np.arange(S), j]
    fine = centre[:, None] + np.linspace(-step, step, 41)[None, :]
    Lf = loss(P, np.exp(fine), tokens_for(C[:, None], np.exp(fine), fpt), U_D)
    Lf = np.where(np.isfinite(Lf), Lf, np.inf)
    k = np.argmin(Lf, axis=1)
    N = np.exp(fine[np.arange(S), k])
    return N, tokens_for(C, N, fpt), Lf[np.arange(S), k], at_edge


def _optimal_loss(P, C, U_D, fpt=(6.0, 1.0)):
    if U_D is None and fpt == (6.0, 1.0):
        n, d = eq6_allocation(P, C)
        return loss(P, n[:, None], d[:, None], None)[:, 0]
    return best_allocation(P, C, U_D, fpt)[2]


def compute_for_losses(P, target, U_D: float | None, iters: int = 64, fpt=(6.0, 1.0)) -> np.ndarray:
    """(S,) least C whose best allocation reaches `target` (scalar or (S,)); inf if none does."""
    S = P.shape[0]
    target = np.broadcast_to(np.asarray(target, float), (S,))
    lo, hi = np.full(S, LOG_C_RANGE[0]), np.full(S, LOG_C_RANGE[1])
    reach_hi = _optimal_loss(P, np.exp(hi), U_D, fpt) <= target
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok = _optimal_loss(P, np.exp(mid), U_D, fpt) <= target
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return np.where(reach_hi, np.exp(hi), np.inf)


def loss_floor(P, U_D: float) -> np.ndarray:
    """(S,) Eq. 7/8 as C -> infinity with U_D unique tokens: D' -> U_D (1 + R*_D), N' -> U_N (1 + R*_N)."""
    E, A, B, al, be, rn, rd = (P[:, i] for i in range(7))
    G, a, b = (x[:, 0] for x in _eq6(P))
    U_N = G * ((G * U_D) ** (1.0 / b)) ** a
    return E + A / (U_N * (1.0 + rn)) ** al + B / (U_D * (1.0 + rd)) ** be
