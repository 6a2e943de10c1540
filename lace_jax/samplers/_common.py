"""Helpers shared by the samplers: batched energy values/gradients and input checks."""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from lace_jax import energy as energy_lib
from lace_jax.samplers._dopri5_compat import RESULT_NONFINITE


def check_batch(z0, name: str = "z0") -> jax.Array:
    """`z0` as a float32 `[B, D]` array, or a ValueError that says what was passed."""
    z0 = jnp.asarray(z0)
    if z0.ndim != 2:
        raise ValueError(f"{name} must be a batch of latents [B, D], got shape {tuple(z0.shape)}")
    if not jnp.issubdtype(z0.dtype, jnp.floating):
        raise ValueError(f"{name} must be floating point, got {z0.dtype}")
    return z0.astype(jnp.float32)


def value_and_grad(energy: Any, z: jax.Array, *args) -> tuple[jax.Array, jax.Array]:
    """`(E [B], ∇E [B, D])` for a per-sample energy or an `energy.BatchedEnergy`."""
    return energy_lib.value_and_grad(energy, z, *args)


def grad(energy: Any, z: jax.Array, *args) -> jax.Array:
    """`∇E [B, D]` for a per-sample energy or an `energy.BatchedEnergy`."""
    return energy_lib.grad(energy, z, *args)


def split_for_vmap(energy: Any) -> tuple[Any, Any]:
    """`(pytree, in_axes)` to vmap a per-sample solve over a batch: a `BatchedEnergy` maps its batched leaves,
    a plain energy is shared (`in_axes=None`)."""
    if isinstance(energy, energy_lib.BatchedEnergy):
        return energy.energy, energy.in_axes()
    return energy, None


BATCH_MODES = ("joint", "independent")


class ODEResult(NamedTuple):
    """PF-ODE result. Per-sample fields are `[B]`; in joint mode the solver statistics repeat on every row."""
    z: jax.Array             # [B, D] z(t_end); NaN rows where success is False
    success: jax.Array       # [B] bool
    result: jax.Array        # [B] int32: Diffrax result code (0 successful, 1 max steps, …), 100 = non-finite
    nfe: jax.Array           # [B] int32 drift evaluations (per sample; joint: of the whole batch)
    num_accepted: jax.Array  # [B] int32
    num_rejected: jax.Array  # [B] int32
    z_unchecked: jax.Array   # [B, D] the end state without masking
    t_evals: Optional[jax.Array] = None  # compat only: [2 + 6·max_steps] float32 evaluation times, NaN-padded


def finish_ode(z, result, nfe, acc, rej, t_evals=None) -> ODEResult:
    """An `ODEResult` whose failed rows (non-zero result, or a non-finite end state) are NaN in `z`."""
    finite = jnp.all(jnp.isfinite(z), axis=-1)
    result = jnp.where((result == 0) & ~finite, RESULT_NONFINITE, result).astype(jnp.int32)
    success = result == 0
    z_masked = jnp.where(success[:, None], z, jnp.nan)
    return ODEResult(z_masked, success, result, nfe.astype(jnp.int32), acc.astype(jnp.int32),
                     rej.astype(jnp.int32), z, t_evals)
