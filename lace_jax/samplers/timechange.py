"""LACE's VP probability-flow ODE solved in the autonomous time variable s (fewer evaluations, same end point).

LACE's ODE (`ode.py`) is `dz/dt = ½ β(t) ∇E_cond(z)`, β(t) = β_min + t(β_max − β_min), integrated from t = 1
down to t_end. The drift factorises into a time factor and a time-independent field, so the substitution

    s(t) = ½ ∫_t^1 β(τ) dτ        (ds/dt = −½ β(t) < 0: s increases from 0 while t decreases from 1)

gives `dz/ds = (dz/dt) / (ds/dt) = −∇E_cond(z)`, an *autonomous* gradient flow on the conditional energy, run for

    S(t_end) = ½ [β_min (1 − t_end) + ½ (β_max − β_min)(1 − t_end²)]      (= 5.025 for LACE's CIFAR setting).

z(t_end) of the original ODE is z(S(t_end)) of this one (exactly, in exact arithmetic). The adaptive controller no
longer has to follow the 200-fold swing of β(t) (0.1 → 20), and the step-size selection sees one smooth field.

Batch modes (as `ode.py`): `joint` solves the whole batch `[B, D]` as one state with one step size and the error
norm taken over the whole batch (what torchdiffeq does); its vector field is ONE batched backward pass through
`Σ_b E_b(z_b)` (the gradient of the sum is the per-sample gradient). `independent` gives each sample its own
adaptive steps (`jax.vmap` of a per-sample solve).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lace_jax import energy as energy_lib
from lace_jax.samplers import _solvers
from lace_jax.samplers._common import ODEResult, check_batch, finish_ode, split_for_vmap
from lace_jax.samplers.schedule import VP, VPSchedule


def _solve(field, y0, args, s_end, solver_name, rtol, atol, dt0, max_steps, adaptive):
    import diffrax

    if adaptive:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
    else:
        controller = diffrax.ConstantStepSize()
        if dt0 is None:
            raise ValueError("timechange: a fixed-step solve needs dt0 (or num_steps)")
    sol = diffrax.diffeqsolve(diffrax.ODETerm(field), _solvers.SOLVERS[solver_name].make(), t0=0.0, t1=s_end,
                              dt0=dt0, y0=y0, args=args, stepsize_controller=controller,
                              saveat=diffrax.SaveAt(t1=True), max_steps=max_steps, throw=False)
    acc = sol.stats["num_accepted_steps"]
    rej = sol.stats["num_rejected_steps"]
    return sol.ys[-1], _solvers.nfe(solver_name, acc + rej), acc, rej, sol.result


def sample_ode_timechange(key: jax.Array | None, energy: Any, z0, *, t_end: float = 0.0, solver: str = "dopri5",
                          rtol: float = 1e-3, atol: float = 1e-3, batch_mode: str = "joint",
                          dt0: float | None = None, num_steps: int | None = None, max_steps: int = 4096,
                          schedule: VPSchedule = VP) -> ODEResult:
    """z(t_end) of LACE's PF-ODE `dz/dt = ½β(t)∇E_cond(z)` (t: 1 → t_end) via the autonomous flow
    `dz/ds = −∇E_cond(z)`, s ∈ [0, S(t_end)].

    `energy`: the per-sample conditional energy `z[D] -> scalar` (or an `energy.BatchedEnergy` for per-sample
    targets); `z0 [B, D]`; `key` is unused (the solve is deterministic; every sampler is called
    `sampler(key, energy, z0, …)`).
    `solver`: dopri5 | tsit5 | bosh3 | dopri8 | heun | euler; adaptive (PID, `rtol`/`atol`) unless `num_steps` is
    given (fixed steps of S/num_steps). Returns `ode.ODEResult` (rows of failed solves are NaN, as in `ode.py`). `batch_mode`: 'joint' (one step size for the batch, RMS error norm over the
    whole batch) or 'independent' (per-sample adaptive steps under vmap). jit-friendly: wrap it in `jax.jit` with
    the string/number options static, or use `make_sampler`."""
    del key
    z0 = check_batch(z0)
    _solvers.get(solver.lower(), what="solver")
    solver = solver.lower()
    if batch_mode not in ("joint", "independent"):
        raise ValueError(f"timechange: batch_mode must be 'joint' or 'independent', got {batch_mode!r}")
    s_end = float(schedule.s_of_t(float(t_end)))
    if not s_end > 0:
        raise ValueError(f"timechange: t_end = {t_end} gives S = {s_end}; need t_end < 1 with β > 0 on [t_end, 1]")
    adaptive = num_steps is None
    if not adaptive:
        dt0 = s_end / int(num_steps)
        max_steps = int(num_steps)
    b = z0.shape[0]

    if batch_mode == "joint":
        def field(s, z, e):
            return -energy_lib.grad(e, z)

        z, nfe, acc, rej, res = _solve(field, z0, energy, s_end, solver, rtol, atol, dt0, max_steps, adaptive)
        rep = lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.int32), (b,))
        nfe, acc, rej = rep(nfe), rep(acc), rep(rej)
        code = rep(res._value)
    else:
        tree, axes = split_for_vmap(energy)

        def one(e, zi):
            def field(s, z, e):
                return -jax.grad(e)(z)
            z, nfe, acc, rej, res = _solve(field, zi, e, s_end, solver, rtol, atol, dt0, max_steps, adaptive)
            return z, nfe, acc, rej, res._value

        z, nfe, acc, rej, code = jax.vmap(one, in_axes=(axes, 0))(tree, z0)
        nfe, acc, rej, code = (jnp.asarray(x, jnp.int32) for x in (nfe, acc, rej, code))
    return finish_ode(z.astype(jnp.float32), code, nfe, acc, rej)


def make_sampler(**options):
    """`jax.jit(lambda energy, z0: sample_ode_timechange(energy, z0, **options))`: compiled once per option set and
    input shape; energies (weights, targets) are traced arguments, so new targets do not recompile."""
    return jax.jit(lambda energy, z0: sample_ode_timechange(None, energy, z0, **options))


__all__ = ["sample_ode_timechange", "make_sampler"]
