"""Langevin samplers on an energy E (lower = more likely): LACE's SGLD and the unadjusted Langevin algorithm.

SGLD as LACE's `sample_q_sgld`: `z_{k+1} = z_k + (η·∇log p(z_k) + s·ε_k)` with ∇log p = −∇E, step η and noise
scale s chosen independently (LACE: η = s = 0.01); the increment is formed first and then added to z, as in the
reference. ULA ties them: s = √(2η) (an exact-in-the-limit discretisation of the Langevin diffusion).

`energy` is the FULL energy (LACE: `energy.with_prior(cond)`), per-sample, or an `energy.BatchedEnergy`.
Pre-drawn noise `noise[K, B, D]` replaces the PRNG draws (used to replay the reference trajectory).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lace_jax.samplers._common import check_batch, grad


class LangevinResult(NamedTuple):
    z: jax.Array                      # [B, D] final samples
    trajectory: Optional[jax.Array]   # [K + 1, B, D] (init + every step) if requested, else None
    nfe: jax.Array                    # scalar int32: K gradient evaluations


def langevin_update(z: jax.Array, grad_e: jax.Array, noise: jax.Array, step_size, noise_scale) -> jax.Array:
    """The Langevin update `z + (−η∇E + s·noise)` given the gradient (the increment is formed first, as LACE).
    ULA is this rule with s = √(2η) (`sample_ula` here, `mcmc.ula_step` in annealed chains)."""
    inc = jnp.asarray(step_size, jnp.float32) * -grad_e + jnp.asarray(noise_scale, jnp.float32) * noise
    return z + inc


def sgld_step(energy: Any, z: jax.Array, noise: jax.Array, step_size, noise_scale, *args) -> jax.Array:
    """One SGLD step `z + (−η∇E(z) + s·noise)` on a batch `z[B, D]` with given `noise[B, D]`."""
    return langevin_update(z, grad(energy, z, *args), noise, step_size, noise_scale)


def sample_sgld(key: Optional[jax.Array], energy: Any, z0: jax.Array, *, num_steps: Optional[int] = None,
                step_size=0.01, noise_scale=0.01, noise: Optional[jax.Array] = None,
                return_trajectory: bool = False, args: tuple = ()) -> LangevinResult:
    """LACE SGLD for `num_steps` (static) steps from `z0[B, D]`. Noise: `noise[K, B, D]` if given (then `key` may
    be None and `num_steps` defaults to K), else drawn from `key`. `args` are forwarded to the energy."""
    z0 = check_batch(z0)
    if noise is not None:
        noise = jnp.asarray(noise, jnp.float32)
        if noise.ndim != 3 or noise.shape[1:] != z0.shape:
            raise ValueError(f"sample_sgld: noise must be [K, {z0.shape[0]}, {z0.shape[1]}], got {tuple(noise.shape)}")
        if num_steps is not None and int(num_steps) != noise.shape[0]:
            raise ValueError(f"sample_sgld: num_steps={num_steps} but noise has {noise.shape[0]} steps")
        num_steps = noise.shape[0]
    else:
        if key is None or num_steps is None:
            raise ValueError("sample_sgld: give a PRNG key and num_steps, or pre-drawn noise")
        noise = jax.random.normal(key, (int(num_steps),) + z0.shape, jnp.float32)

    def body(z, eps):
        z = sgld_step(energy, z, eps, step_size, noise_scale, *args)
        return z, (z if return_trajectory else None)

    z, traj = jax.lax.scan(body, z0, noise)
    if return_trajectory:
        traj = jnp.concatenate([z0[None], traj], axis=0)
    return LangevinResult(z, traj, jnp.asarray(int(num_steps), jnp.int32))


def sample_ula(key: Optional[jax.Array], energy: Any, z0: jax.Array, *, num_steps: Optional[int] = None,
               step_size=0.01, noise: Optional[jax.Array] = None, return_trajectory: bool = False,
               args: tuple = ()) -> LangevinResult:
    """Unadjusted Langevin: SGLD with noise scale √(2η)."""
    s = jnp.sqrt(2.0 * jnp.asarray(step_size, jnp.float32))
    return sample_sgld(key, energy, z0, num_steps=num_steps, step_size=step_size, noise_scale=s, noise=noise,
                       return_trajectory=return_trajectory, args=args)
