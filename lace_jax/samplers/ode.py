"""LACE's VP probability-flow ODE in latent space, solved with Diffrax or a torchdiffeq-compatible Dopri5.

    dz/dt = ½ β(t) ∇_z E_cond(z),   β(t) = β_min + t(β_max − β_min),   t: t_start (= 1) → t_end (0 or 1e-3)

`energy` is the per-sample *conditional* energy (the prior's contribution cancels in LACE's ODE), or an
`energy.BatchedEnergy` (per-sample targets). Integration runs in the solver frame s = −t (as torchdiffeq does for
decreasing times), so s increases from −t_start to −t_end and the energy sees t = −s as float32.

Batch modes:
* ``joint`` — the whole batch is one state: one step size for all samples, the error norm is the RMS over the
  batch (torchdiffeq's behaviour, LACE's numbers). Solver statistics are shared by every row.
* ``independent`` — one adaptive solve per sample under `vmap` (each sample its own steps and result code).

Solvers: ``dopri5``, ``tsit5`` (adaptive with `PIDController(rtol, atol)` unless a fixed step is given),
``heun``, ``euler`` (fixed step: `step_size` or `num_steps`). A fixed-step grid is built as torchdiffeq's
`step_size` grid: `s_k = s_0 + k·h` in float32, `ceil((s_1 − s_0)/h + 1)` points, the last one replaced by s_1
(so a final partial step, e.g. 0.009 when t_end = 1e-3); `num_steps` gives an even float32 grid.
``torchdiffeq_compat=True`` (dopri5 only, joint only) uses `_dopri5_compat`: torchdiffeq 0.2.5's controller step
for step, including its initial step, its unclipped last step and the dense-output read-out at t_end; it
reproduces LACE's reference NFE and z.

Failures: a sample whose solve did not succeed (max_steps reached, NaN/inf in the state, any non-zero result
code) has `success[i] = False` and its row of `z` is NaN — a failed solve is never returned as a sample. The
unmasked end state is kept in `z_unchecked` for debugging.

NFE: counted from the evaluation schedule (exact, checked by a test that counts calls): compat dopri5
2 + 6·(accepted + rejected); Diffrax dopri5/tsit5 (FSAL) 1 + 6·steps (also when Diffrax picks the first step
itself: counted, its selection adds no evaluation of the energy here); heun 2·steps; euler 1·steps.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lace_jax.samplers import _dopri5_compat, _solvers
from lace_jax.samplers._common import BATCH_MODES, ODEResult, check_batch, finish_ode, grad, split_for_vmap
from lace_jax.samplers.schedule import VP, VPSchedule


def vp_drift(energy: Any, z: jax.Array, t, schedule: VPSchedule = VP) -> jax.Array:
    """LACE's PF-ODE drift for a batch `z[B, D]` at time t: `½β(t)∇E_cond(z)`."""
    return 0.5 * schedule.beta(t) * grad(energy, z)


def fixed_grid(t_start: float, t_end: float, *, step_size: Optional[float] = None,
               num_steps: Optional[int] = None) -> np.ndarray:
    """The float32 solver-frame grid s = −t of a fixed-step solve (torchdiffeq's `step_size` grid, or an even
    grid of `num_steps` steps)."""
    s0, s1 = -np.float32(t_start), -np.float32(t_end)
    if (step_size is None) == (num_steps is None):
        raise ValueError("fixed_grid: give exactly one of step_size and num_steps")
    if step_size is not None:
        h = np.float32(step_size)
        if not h > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        n = int(math.ceil(float(np.float32((s1 - s0) / h) + np.float32(1.0))))
        grid = np.arange(n, dtype=np.float32) * h + s0
    else:
        if int(num_steps) < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        grid = np.linspace(s0, s1, int(num_steps) + 1, dtype=np.float32)
    grid[-1] = s1
    return grid


def _vf_batch(s, z, args):
    energy, sched = args
    t = -s
    return -(0.5 * sched.beta(t) * grad(energy, z))


def _vf_single(s, z, args):
    energy, sched = args
    t = -s
    return -(0.5 * sched.beta(t) * jax.grad(energy)(z))


def _vf_batch_diffused(s, z, args):
    energy, sched = args
    t = -s
    return -(-0.5 * sched.beta(t) * (z - grad(energy, z, t)))


def _vf_single_diffused(s, z, args):
    energy, sched = args
    t = -s
    return -(-0.5 * sched.beta(t) * (z - jax.grad(energy)(z, t)))


def _diffrax_solve(vf, y0, args, *, solver: str, s0: float, s1: float, grid, rtol, atol, dt0, max_steps):
    import diffrax

    term = diffrax.ODETerm(vf)
    if grid is not None:
        controller = diffrax.StepTo(ts=jnp.asarray(grid))
        dt0_ = None
    else:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        dt0_ = dt0
    sol = diffrax.diffeqsolve(term, _solvers.SOLVERS[solver].make(), s0, s1, dt0_, y0, args=args,
                              saveat=diffrax.SaveAt(t1=True), stepsize_controller=controller,
                              max_steps=max_steps, throw=False)
    nfe = _solvers.nfe(solver, jnp.asarray(sol.stats["num_steps"], jnp.int32))
    return (sol.ys[0], jnp.asarray(sol.result._value, jnp.int32), nfe,
            jnp.asarray(sol.stats["num_accepted_steps"], jnp.int32),
            jnp.asarray(sol.stats["num_rejected_steps"], jnp.int32))


def sample_ode(key: Optional[jax.Array], energy: Any, z0: jax.Array, *, t_start: float = 1.0, t_end: float = 0.0,
               solver: str = "dopri5", rtol: float = 1e-3, atol: float = 1e-3, step_size: Optional[float] = None,
               num_steps: Optional[int] = None, dt0: Optional[float] = None, max_steps: int = 4096,
               batch_mode: str = "joint", torchdiffeq_compat: bool = False, schedule: VPSchedule = VP,
               drift: str = "lace") -> ODEResult:
    """Solve LACE's PF-ODE from `z0[B, D]` at t_start down to t_end (see the module docstring). `key` is
    unused (the solve is deterministic; it is there so every sampler is called `sampler(key, energy, z0, …)`).
    `drift="lace"`: `energy` is the conditional energy E_cond(z), drift ½β∇E_cond (LACE). `drift="diffused"`:
    `energy` is the FULL energy of the VP-diffused density, called `energy(z, t)`, and the drift is the exact
    VP probability flow −½β(t)(z − ∇_z E(z, t)) (then N(0, I) at t = 1 is carried to exp(−E(·, t_end))).
    Static: t_start, t_end, solver, step options, max_steps, batch_mode, compat flag. rtol/atol may be traced
    (Diffrax's controller only does arithmetic with them; tests/test_sweeps.py checks identical results). Traced: energy
    (its leaves: weights, targets), z0 — so one jit serves new attribute values, weights and inputs."""
    del key
    z0 = check_batch(z0)
    _solvers.get(solver, _solvers.ODE_SOLVERS)
    if batch_mode not in BATCH_MODES:
        raise ValueError(f"unknown batch_mode {batch_mode!r}; expected one of {BATCH_MODES}")
    if not float(t_start) > float(t_end):
        raise ValueError(f"sample_ode integrates downwards: need t_start > t_end, got {t_start} and {t_end}")
    fixed = step_size is not None or num_steps is not None
    if not _solvers.SOLVERS[solver].adaptive and not fixed:
        raise ValueError(f"solver {solver!r} is fixed-step here: give step_size or num_steps")
    if drift not in ("lace", "diffused"):
        raise ValueError(f"unknown drift {drift!r}; expected 'lace' or 'diffused'")
    if torchdiffeq_compat and drift != "lace":
        raise ValueError("torchdiffeq_compat is LACE's ODE: use drift='lace'")
    if int(max_steps) < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    b = z0.shape[0]
    sched = VPSchedule(jnp.float32(schedule.beta_min), jnp.float32(schedule.beta_max))

    if torchdiffeq_compat:
        if solver != "dopri5" or fixed or batch_mode != "joint":
            raise ValueError("torchdiffeq_compat reproduces torchdiffeq's adaptive dopri5 on the joint batch only "
                             "(solver='dopri5', batch_mode='joint', no step_size/num_steps)")

        def func(t, z, e):
            return 0.5 * sched.beta(t) * grad(e, z)

        r = _dopri5_compat.dopri5_torchdiffeq(func, z0, float(t_start), float(t_end), energy, rtol=rtol,
                                              atol=atol, max_steps=int(max_steps))
        return finish_ode(r.z, jnp.full((b,), r.result), jnp.full((b,), r.nfe), jnp.full((b,), r.num_accepted),
                          jnp.full((b,), r.num_rejected), t_evals=r.t_evals)

    s0, s1 = -float(np.float32(t_start)), -float(np.float32(t_end))
    grid = fixed_grid(t_start, t_end, step_size=step_size, num_steps=num_steps) if fixed else None
    if grid is not None and len(grid) - 1 > int(max_steps):
        raise ValueError(f"fixed grid has {len(grid) - 1} steps > max_steps={max_steps}")
    kw = dict(solver=solver, s0=s0, s1=s1, grid=grid, rtol=rtol, atol=atol, dt0=dt0, max_steps=int(max_steps))

    if batch_mode == "joint":
        vf = _vf_batch if drift == "lace" else _vf_batch_diffused
        z, res, nfe, acc, rej = _diffrax_solve(vf, z0, (energy, sched), **kw)
        full = lambda x: jnp.full((b,), x)
        return finish_ode(z, full(res), full(nfe), full(acc), full(rej))

    tree, axes = split_for_vmap(energy)

    vf1 = _vf_single if drift == "lace" else _vf_single_diffused

    def one(e, z):
        return _diffrax_solve(vf1, z, (e, sched), **kw)

    z, res, nfe, acc, rej = jax.vmap(one, in_axes=(axes, 0))(tree, z0)
    return finish_ode(z, res, nfe, acc, rej)
