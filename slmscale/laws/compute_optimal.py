"""Eq. 6: the compute-optimal allocation of C = 6 N D between parameters and tokens.

Minimising Eq. 4 subject to 6 N D = C gives

    N_opt(C) = G (C/6)^a,    D_opt(C) = G^-1 (C/6)^b,
    G = (alpha A / (beta B))^(1/(alpha+beta)),  a = beta/(alpha+beta),  b = alpha/(alpha+beta).

`u_n` is the U_N of Eq. 8: the compute-optimal model size for U_D unique tokens, found by solving
D_opt(C) = U_D for C and taking N_opt(C).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slmscale.laws.chinchilla import ChinchillaParams


@dataclass(frozen=True)
class ComputeOptimal:
    G: float
    a: float
    b: float

    @classmethod
    def from_params(cls, p: ChinchillaParams) -> ComputeOptimal:
        s = p.alpha + p.beta
        return cls(G=(p.alpha * p.A / (p.beta * p.B)) ** (1.0 / s), a=p.beta / s, b=p.alpha / s)

    def n_opt(self, C):
        return self.G * (np.asarray(C, float) / 6.0) ** self.a

    def d_opt(self, C):
        return (np.asarray(C, float) / 6.0) ** self.b / self.G

    def compute_for_tokens(self, D):
        """The C whose compute-optimal token count is D (inverse of `d_opt`)."""
        return 6.0 * (self.G * np.asarray(D, float)) ** (1.0 / self.b)

    def u_n(self, U_D):
        """U_N of Eq. 8: N_opt(C) at the C where D_opt(C) = U_D."""
        return self.n_opt(self.compute_for_tokens(U_D))

    def as_dict(self) -> dict[str, float]:
        return {"G": float(self.G), "a": float(self.a), "b": float(self.b)}


def optimal_loss(p: ChinchillaParams, C) -> np.ndarray:
    """Eq. 4 at the compute-optimal allocation of C."""
    co = ComputeOptimal.from_params(p)
    return p.predict(co.n_opt(C), co.d_opt(C))
