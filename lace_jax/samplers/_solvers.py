"""The one table of ODE solvers: Diffrax class, new vector-field evaluations per attempted step, stages, and which
of the two PF-ODE samplers take it. NFE of a solve = per_step · (accepted + rejected) + 1 for first-same-as-last
schemes (their first stage is evaluated once up front; Diffrax's initial step-size selection adds none here)."""
from __future__ import annotations

from typing import NamedTuple


class Solver(NamedTuple):
    diffrax_name: str      # the Diffrax class (imported when a solve is built: diffrax takes ~0.5 s to import)
    per_step: int          # new evaluations per attempted step
    stages: int
    adaptive: bool         # False: fixed steps only (`num_steps` / `step_size`) in the t-parameterised 'ode'
    in_ode: bool           # offered by the t-parameterised 'ode' sampler (all are offered by 'ode_tc')

    def make(self):
        """A new instance of the Diffrax solver."""
        import diffrax

        return getattr(diffrax, self.diffrax_name)()


SOLVERS = {
    "dopri5": Solver("Dopri5", 6, 7, True, True),
    "tsit5": Solver("Tsit5", 6, 7, True, True),
    "bosh3": Solver("Bosh3", 3, 4, True, False),
    "dopri8": Solver("Dopri8", 12, 12, True, False),
    "heun": Solver("Heun", 2, 2, False, True),
    "euler": Solver("Euler", 1, 1, False, True),
}
ODE_SOLVERS = tuple(n for n, s in SOLVERS.items() if s.in_ode)
TC_SOLVERS = tuple(SOLVERS)


def get(name: str, allowed: tuple = TC_SOLVERS, what: str = "ODE solver") -> Solver:
    """The table entry of `name`, or a ValueError listing the allowed names."""
    if name not in allowed:
        raise ValueError(f"unknown {what} {name!r}; expected one of {', '.join(allowed)}")
    return SOLVERS[name]


def nfe(name: str, steps):
    """Vector-field evaluations of a solve that attempted `steps` steps."""
    s = SOLVERS[name]
    return s.per_step * steps + (1 if s.per_step < s.stages else 0)
