"""Helpers shared by the samplers: batched energy values/gradients and input checks."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lace_jax import energy as energy_lib


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
        return energy.energy, energy._in_axes()
    return energy, None
