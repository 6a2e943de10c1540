"""Gradient-based MCMC on energies: ULA, MALA, HMC (leapfrog) and U-HMC (underdamped, partial momentum refresh),
as single steps and as annealed chains over a noise schedule (the samplers of Du et al., "Reduce, Reuse,
Recycle", `anneal_samplers.py`).

Energies are per-sample pytree-callables `e(z[D], *args) -> scalar` (or an `energy.BatchedEnergy`), lower = more
likely; every function here works on a batch `z[B, D]`, accepts/rejects per sample and takes explicit keys.

Update rules (h = step size, M = mass_sqrt, a = damping, ε ~ N(0, I)):
* ULA:  z' = z − h∇E(z) + √(2h) ε.
* MALA: the ULA proposal, accepted with prob. min(1, exp(E(z) − E(z') + log q(z|z') − log q(z'|z))),
  q(b|a) = N(b; a − h∇E(a), 2h I). (R3's code divides by 2h² instead of 4h; we use the exact proposal density.)
* HMC / U-HMC step: refresh v' = a·v + √(1 − a²)·M·ε (a = 0: full refresh, i.e. plain HMC), then `num_leapfrog`
  leapfrog steps with mass M² (v += −½h∇E; z += h v/M²; v += −½h∇E). HMC accepts with
  min(1, exp(−ΔH)), H = E(z) + ‖v‖²/(2M²); on rejection z is kept and the momentum is −v' (Horowitz's generalised
  HMC, exact for every damping; R3 restores the pre-refresh momentum instead). U-HMC never rejects.
  Within an annealed level, the momentum is drawn afresh at the level's start (as R3) and carried between steps.

API (blackjax-style: the key first, the chain's whole state — HMC's momentum included — in `MCMCState`):
* `init_state(energy, z, *args, momentum=None)`; `ula_step`, `mala_step`, `hmc_step(key, energy, state,
  step_size, *args, ...)` — one step on a batch, returning `(state, StepInfo)` (per-sample acceptance).
* `mcmc_level(key, energy, z, *, method, num_steps, step_size, num_leapfrog, damping, mass_sqrt, args)` — one
  level of an annealed chain: `num_steps` steps targeting `energy(·, *args)`; returns a `LevelResult`.
* `annealed_mcmc(key, energy_t, z0, *, ts, method, steps_per_level, step_sizes, num_leapfrog, damping,
  mass_sqrt)` — levels in the order of `ts` (e.g. high noise → low noise), level i targets `energy_t(z, ts[i])`.
ULA's update is `langevin.langevin_update` (one ULA in the package).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lace_jax.samplers._common import check_batch, value_and_grad
from lace_jax.samplers.langevin import langevin_update

METHODS = ("ula", "mala", "hmc", "uhmc")


class MCMCState(NamedTuple):
    """A batch of chain states with cached energies/gradients at `z` (for the current target), and the momentum
    of (U-)HMC (None for ULA/MALA)."""
    z: jax.Array        # [B, D]
    energy: jax.Array   # [B]
    grad: jax.Array     # [B, D]  ∇E(z)
    momentum: Any = None  # [B, D] (HMC / U-HMC)


class LevelResult(NamedTuple):
    """Result of `mcmc_level`."""
    z: jax.Array                # [B, D]
    acceptance_rate: jax.Array  # [B] fraction of accepted steps per sample (1 for ULA / U-HMC)
    nfe: jax.Array              # scalar int32: gradient evaluations per sample


class StepInfo(NamedTuple):
    accepted: jax.Array       # [B] bool
    log_accept: jax.Array     # [B] log acceptance probability (0 for unadjusted steps)


class AnnealedResult(NamedTuple):
    """Result of `annealed_mcmc`: samples, per-level acceptance rates (mean over steps and batch, and per sample)."""
    z: jax.Array                          # [B, D]
    acceptance_rate: jax.Array            # [L]
    acceptance_rate_per_sample: jax.Array  # [L, B]
    energy: jax.Array                     # [B] energy at the last level's target


def init_state(energy: Any, z: jax.Array, *args, momentum: Any = None) -> MCMCState:
    """Evaluate energy and gradient at `z[B, D]` (with `momentum` for HMC)."""
    e, g = value_and_grad(energy, z, *args)
    return MCMCState(z, e, g, momentum)


def _sum_sq(x: jax.Array) -> jax.Array:
    return jnp.sum(x * x, axis=-1)


def ula_step(key: jax.Array, energy: Any, state: MCMCState, step_size, *args) -> tuple[MCMCState, StepInfo]:
    """One unadjusted Langevin step `z − h∇E + √(2h) ε` on every sample (`langevin.langevin_update`)."""
    h = jnp.asarray(step_size, jnp.float32)
    noise = jax.random.normal(key, state.z.shape, state.z.dtype)
    z = langevin_update(state.z, state.grad, noise, h, jnp.sqrt(2.0 * h))
    b = z.shape[0]
    return init_state(energy, z, *args, momentum=state.momentum), StepInfo(jnp.ones((b,), bool), jnp.zeros((b,), jnp.float32))


def _select(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


def mala_step(key: jax.Array, energy: Any, state: MCMCState, step_size, *args) -> tuple[MCMCState, StepInfo]:
    """One Metropolis-adjusted Langevin step (per-sample accept/reject)."""
    h = jnp.asarray(step_size, jnp.float32)
    k_noise, k_u = jax.random.split(key)
    noise = jax.random.normal(k_noise, state.z.shape, state.z.dtype)
    zp = state.z - h * state.grad + jnp.sqrt(2.0 * h) * noise
    ep, gp = value_and_grad(energy, zp, *args)
    log_q_fwd = -_sum_sq(zp - state.z + h * state.grad) / (4.0 * h)
    log_q_bwd = -_sum_sq(state.z - zp + h * gp) / (4.0 * h)
    log_a = state.energy - ep + log_q_bwd - log_q_fwd
    log_a = jnp.where(jnp.isfinite(log_a), jnp.minimum(log_a, 0.0), -jnp.inf)
    u = jax.random.uniform(k_u, log_a.shape)
    acc = jnp.log(u) < log_a
    new = MCMCState(_select(acc, zp, state.z), jnp.where(acc, ep, state.energy), _select(acc, gp, state.grad),
                    state.momentum)
    return new, StepInfo(acc, log_a)


def leapfrog(energy: Any, state: MCMCState, v: jax.Array, step_size, num_leapfrog: int, mass_sqrt=1.0,
             *args) -> tuple[MCMCState, jax.Array]:
    """`num_leapfrog` (static) leapfrog steps of Hamiltonian dynamics with H = E(z) + ‖v‖²/(2M²)."""
    h = jnp.asarray(step_size, jnp.float32)
    inv_mass = 1.0 / jnp.square(jnp.asarray(mass_sqrt, jnp.float32))

    def body(carry, _):
        st, v = carry
        v = v - 0.5 * h * st.grad
        z = st.z + h * v * inv_mass
        st = init_state(energy, z, *args)
        v = v - 0.5 * h * st.grad
        return (st, v), None

    (state, v), _ = jax.lax.scan(body, (state, v), None, length=int(num_leapfrog))
    return state, v


def hamiltonian(state: MCMCState, v: jax.Array, mass_sqrt=1.0) -> jax.Array:
    """H = E(z) + ‖v‖²/(2M²) per sample."""
    return state.energy + 0.5 * _sum_sq(v) / jnp.square(jnp.asarray(mass_sqrt, jnp.float32))


def hmc_step(key: jax.Array, energy: Any, state: MCMCState, step_size, *args, num_leapfrog: int = 3,
             damping=0.0, mass_sqrt=1.0, metropolis: bool = True) -> tuple[MCMCState, StepInfo]:
    """One (generalised) HMC step from `state` (its `momentum` is refreshed partially with `damping`),
    leapfrog, and (if `metropolis`) a per-sample accept/reject; `metropolis=False` is U-HMC. Returns
    `(state, info)`; the new state carries the momentum (−v' where a proposal was rejected)."""
    v = state.momentum
    a = jnp.asarray(damping, jnp.float32)
    m = jnp.asarray(mass_sqrt, jnp.float32)
    k_v, k_u = jax.random.split(key)
    eps = jax.random.normal(k_v, v.shape, v.dtype)
    v_ref = a * v + jnp.sqrt(1.0 - a * a) * m * eps
    new, v_new = leapfrog(energy, state._replace(momentum=None), v_ref, step_size, num_leapfrog, m, *args)
    b = state.z.shape[0]
    if not metropolis:
        return new._replace(momentum=v_new), StepInfo(jnp.ones((b,), bool), jnp.zeros((b,), jnp.float32))
    dh = hamiltonian(new, v_new, m) - hamiltonian(state, v_ref, m)
    log_a = jnp.where(jnp.isfinite(dh), jnp.minimum(-dh, 0.0), -jnp.inf)
    acc = jnp.log(jax.random.uniform(k_u, (b,))) < log_a
    out = MCMCState(_select(acc, new.z, state.z), jnp.where(acc, new.energy, state.energy),
                    _select(acc, new.grad, state.grad), _select(acc, v_new, -v_ref))
    return out, StepInfo(acc, log_a)


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown MCMC method {method!r}; expected one of {METHODS}")
    return method


def mcmc_level(key: jax.Array, energy: Any, z: jax.Array, *, method: str = "mala", num_steps: int = 10,
               step_size=0.01, num_leapfrog: int = 3, damping=0.0, mass_sqrt=1.0, args: tuple = (),
               ) -> LevelResult:
    """`num_steps` (static) steps of `method` targeting `energy(·, *args)` from `z[B, D]`.
    Returns a `LevelResult` (acceptance = fraction of accepted steps per sample; 1 for ULA/U-HMC).
    For HMC/U-HMC the momentum is drawn ~N(0, M²) at the start (R3: once per level)."""
    _check_method(method)
    z = check_batch(z, "z")
    if int(num_steps) < 1:
        raise ValueError(f"mcmc_level: num_steps must be >= 1, got {num_steps}")
    k_v, k_steps = jax.random.split(key)
    v = jax.random.normal(k_v, z.shape, z.dtype) * jnp.asarray(mass_sqrt, jnp.float32)
    state = init_state(energy, z, *args, momentum=v)

    def body(st, k):
        if method == "ula":
            st, info = ula_step(k, energy, st, step_size, *args)
        elif method == "mala":
            st, info = mala_step(k, energy, st, step_size, *args)
        else:
            st, info = hmc_step(k, energy, st, step_size, *args, num_leapfrog=num_leapfrog, damping=damping,
                                mass_sqrt=mass_sqrt, metropolis=(method == "hmc"))
        return st, info.accepted

    state, acc = jax.lax.scan(body, state, jax.random.split(k_steps, int(num_steps)))
    per_step = int(num_leapfrog) if method in ("hmc", "uhmc") else 1
    return LevelResult(state.z, jnp.mean(acc.astype(jnp.float32), axis=0),
                       jnp.asarray(int(num_steps) * per_step + 1, jnp.int32))


def annealed_mcmc(key: jax.Array, energy_t: Any, z0: jax.Array, *, ts, method: str = "mala",
                  steps_per_level: int = 10, step_sizes, num_leapfrog: int = 3, damping=0.0,
                  mass_sqrt=None) -> AnnealedResult:
    """Annealed MCMC over a noise schedule: for i = 0 … L−1 (in the order given), `steps_per_level` steps of
    `method` targeting `energy_t(z, ts[i])`, each level with its own `step_sizes[i]` (and `mass_sqrt[i]`,
    default 1). `ts`, `step_sizes`, `damping`, `mass_sqrt` are traced values (no recompilation when they change);
    `method`, `steps_per_level`, `num_leapfrog` and L are static."""
    _check_method(method)
    z0 = check_batch(z0)
    ts = jnp.asarray(ts)
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise ValueError(f"annealed_mcmc: ts must be a non-empty 1-D schedule, got shape {tuple(ts.shape)}")
    n = ts.shape[0]
    step_sizes = jnp.broadcast_to(jnp.asarray(step_sizes, jnp.float32), (n,))
    masses = jnp.ones((n,), jnp.float32) if mass_sqrt is None else jnp.broadcast_to(
        jnp.asarray(mass_sqrt, jnp.float32), (n,))

    def level(z, xs):
        t, h, m, k = xs
        r = mcmc_level(k, energy_t, z, method=method, num_steps=steps_per_level, step_size=h,
                       num_leapfrog=num_leapfrog, damping=damping, mass_sqrt=m, args=(t,))
        return r.z, r.acceptance_rate

    z, acc = jax.lax.scan(level, z0, (ts, step_sizes, masses, jax.random.split(key, n)))
    e, _ = value_and_grad(energy_t, z, ts[-1])
    return AnnealedResult(z, jnp.mean(acc, axis=1), acc, e)
