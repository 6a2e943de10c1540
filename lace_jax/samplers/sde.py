"""VP-SDE predictor–corrector sampling (Song et al., score_sde): reverse-diffusion predictor + Langevin corrector
with a target signal-to-noise ratio, on an energy whose negative gradient is the score.

Score. The sampler uses s(x, t) = −∇_x E(x, t) (or −∇_x E(x) for `time_dependent=False`). What this means for
LACE: the VP diffusion keeps the prior N(0, I) fixed, and LACE's PF-ODE uses the score −x − ∇E_cond(x) at every t
(prior score exact, classifier energy NOT diffused; its drift −½β(x + s) = ½β∇E_cond is `ode.vp_drift`). Passing
the FULL energy `energy.with_prior(cond)` here gives the stochastic counterpart of exactly that drift (same
approximation; it is exact when E_cond = 0, and exact for any target when the energy is the true diffused one,
e.g. a time-dependent energy from `lace_jax.diffusion`).

Discretisation (N steps, t_i = linspace(t_start, t_end, N), β_i = β(t_i)/N, α_i = 1 − β_i, as score_sde's
discrete VP-SDE):
* predictor (reverse diffusion): x̄ = (2 − √α_i)·x + β_i·s(x, t_i);  x = x̄ + √β_i·ε;
* corrector (Langevin, `n_corrector` times): h = 2α_i(r‖ε‖/‖s‖)², x̄ = x + h·s(x, t_i), x = x̄ + √(2h)·ε.
  r is the target SNR; ‖ε‖ and ‖s‖ are per-sample norms averaged over the batch, as score_sde does (so the corrector
  step, and hence each sample, depends on the batch; per-sample norms blow up in low dimension where ‖s‖ ≈ 0
  happens near a mode).
The corrector runs before the predictor at each level (score_sde's PC order); with `denoise` the final noise-free
mean x̄ is returned.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lace_jax import energy as energy_lib
from lace_jax.samplers._common import check_batch, grad
from lace_jax.samplers.schedule import VP, VPSchedule


class SDEResult(NamedTuple):
    z: jax.Array        # [B, D] final samples (the last mean x̄ if denoise)
    z_noisy: jax.Array  # [B, D] the last x including its noise
    nfe: jax.Array      # int32 score evaluations (per sample)


def _score(energy, x, t, time_dependent):
    return -(grad(energy, x, t) if time_dependent else grad(energy, x))


def sample_sde_pc(key: jax.Array, energy: Any, z0: jax.Array, *, num_steps: int = 1000, t_start: float = 1.0,
                  t_end: float = 1e-3, snr=0.16, n_corrector: int = 1, time_dependent: bool = False,
                  denoise: bool = True, schedule: VPSchedule = VP) -> SDEResult:
    """Predictor–corrector sampling of the VP reverse SDE from `z0[B, D]` (≈ N(0, I) at t_start) down to t_end.
    Static: `num_steps`, `n_corrector`, `time_dependent`, `denoise`; `snr`, β and the energy are traced."""
    z0 = check_batch(z0)
    n = int(num_steps)
    if n < 1:
        raise ValueError(f"sample_sde_pc: num_steps must be >= 1, got {num_steps}")
    if int(n_corrector) < 0:
        raise ValueError(f"sample_sde_pc: n_corrector must be >= 0, got {n_corrector}")
    if isinstance(schedule.beta_max, (int, float)) and n < schedule.beta_max:
        raise ValueError(f"sample_sde_pc: num_steps must be >= beta_max = {schedule.beta_max:g} (the discrete VP-SDE's "
                         f"per-step β(t)/N must not exceed 1, else √(1 − β/N) is NaN), got {n}")
    ts = jnp.linspace(jnp.float32(t_start), jnp.float32(t_end), n)
    snr = jnp.asarray(snr, jnp.float32)

    def level(carry, xs):
        x, _ = carry
        t, k = xs
        b = schedule.beta(t) / n
        a = 1.0 - b
        keys = jax.random.split(k, int(n_corrector) + 1)
        xm = x
        for j in range(int(n_corrector)):
            s = _score(energy, x, t, time_dependent)
            eps = jax.random.normal(keys[j], x.shape, x.dtype)
            ratio = snr * jnp.mean(jnp.linalg.norm(eps, axis=-1)) / jnp.maximum(
                jnp.mean(jnp.linalg.norm(s, axis=-1)), 1e-12)
            h = 2.0 * a * ratio**2
            xm = x + h * s
            x = xm + jnp.sqrt(2.0 * h) * eps
        s = _score(energy, x, t, time_dependent)
        xm = (2.0 - jnp.sqrt(a)) * x + b * s
        x = xm + jnp.sqrt(b) * jax.random.normal(keys[-1], x.shape, x.dtype)
        return (x, xm), None

    (x, xm), _ = jax.lax.scan(level, (z0, z0), (ts, jax.random.split(key, n)))
    return SDEResult(xm if denoise else x, x, jnp.asarray(n * (int(n_corrector) + 1), jnp.int32))


def sample_vpsde_pc(key: jax.Array, cond_energy: Any, z0: jax.Array, *, num_steps: int = 100,
                    snr=0.16, corrector_steps: int = 1, t_start: float = 1.0, t_end: float = 1e-3,
                    denoise: bool = True, schedule: VPSchedule = VP) -> SDEResult:
    """LACE's latent VP-SDE, called like the PF-ODE with the CONDITIONAL energy: the prior ½‖z‖² is added here
    (score −z − ∇E_cond(z), the stochastic counterpart of `ode.vp_drift`); see `sample_sde_pc`."""
    return sample_sde_pc(key, energy_lib.with_prior(cond_energy), z0, num_steps=num_steps, t_start=t_start,
                         t_end=t_end, snr=snr, n_corrector=corrector_steps, time_dependent=False, denoise=denoise,
                         schedule=schedule)
