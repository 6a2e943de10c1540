"""Latent trajectories that follow a transformation (step I of Plumerault et al.).

From latents ``z0`` the image ``x0 = G(z0)`` is transformed by growing amounts ``δ_1, δ_2, …`` and the generator is
inverted on each target ``T_{δ_k}(x0)``, starting from the latent found for ``δ_{k−1}`` (with a fresh Adam state,
as the paper's code does). Small steps keep every inversion close to its start, so the trajectory stays on the
generator's manifold. Each *leg* (a row of ``deltas``) starts again from ``z0``; the paper runs two legs,
``±(0.1, 0.2, …, 0.5)``. Latents are projected into the prior's typical set after every optimiser step.

The result holds, for every start, leg and step, the pair ``(z0, z)``, the amount ``δ`` and the final
reconstruction error; ``pairs()`` flattens it for fitting, and ``error_filter`` drops the worst inversions
(the paper drops the last decile).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from lace_jax.directions.inversion import CONSTRAINTS, LOSSES, as_pytree_fn, invert_steps, project

Array = jax.Array


class Trajectories(NamedTuple):
    z0: Array      # [B, D] starting latents (after projection)
    z: Array       # [B, L, K, D] latent after inverting T_{δ[l, k]}(G(z0))
    delta: Array   # [B, L, K] transformation amount of each point
    error: Array   # [B, L, K] final reconstruction error of each point

    def pairs(self):
        """Flatten to ``(z0[N, D], z[N, D], delta[N], error[N])`` with N = B·L·K."""
        b, l, k, d = self.z.shape
        z0 = jnp.broadcast_to(self.z0[:, None, None, :], self.z.shape).reshape(-1, d)
        return z0, self.z.reshape(-1, d), self.delta.reshape(-1), self.error.reshape(-1)


def paper_deltas(max_delta: float = 0.5, steps: int = 5) -> Array:
    """The paper's two legs: ``[−linspace(max/steps, max, steps), +linspace(…)]``, shape ``[2, steps]``."""
    mags = jnp.linspace(max_delta / steps, max_delta, steps)
    return jnp.stack([-mags, mags])


def _build(generate, transform, z0, deltas, sigma, learning_rate, *, steps, loss, constraint):
    b, d = z0.shape
    n_legs, n_steps = deltas.shape
    z0 = project(z0, constraint)
    x0 = generate(z0)
    x0_rep = jnp.tile(x0, (n_legs, 1, 1, 1))          # leg-major: [L·B, C, H, W]
    z_rep = jnp.tile(z0, (n_legs, 1))

    def one_step(z, delta_k):                          # delta_k: [L]
        amount = jnp.repeat(delta_k, b)                # [L·B]
        target, mask = transform(x0_rep, amount)
        res = invert_steps(generate, z, target, mask, sigma, learning_rate,
                      steps=steps, loss=loss, constraint=constraint)
        return res.z, (res.z, res.loss)

    _, (zs, errs) = jax.lax.scan(one_step, z_rep, deltas.T)   # zs: [K, L·B, D]
    zs = zs.reshape(n_steps, n_legs, b, d).transpose(2, 1, 0, 3)
    errs = errs.reshape(n_steps, n_legs, b).transpose(2, 1, 0)
    delta = jnp.broadcast_to(deltas[None], (b, n_legs, n_steps)).astype(z0.dtype)
    return Trajectories(z0, zs, delta, errs)


_build_jit = jax.jit(_build, static_argnames=("steps", "loss", "constraint"))


def build_trajectories(generate: Callable, transform: Callable, z0: Array, deltas: Array, *,
                       steps: int = 100, learning_rate: float = 0.01, loss: str = "fourier",
                       sigma: float = 3.0, constraint: str = "ball") -> Trajectories:
    """Trajectories from every latent of ``z0[B, D]`` along ``transform`` for the amounts ``deltas[L, K]``.

    ``transform(images, delta[B]) -> (images, mask)`` is one of ``lace_jax.directions.transforms`` (bind keyword
    options with ``functools.partial``). ``steps`` Adam steps per point; see ``inversion.invert`` for the rest.
    """
    z0 = jnp.asarray(z0)
    deltas = jnp.asarray(deltas, jnp.float32)
    if deltas.ndim == 1:
        deltas = deltas[None]
    if z0.ndim != 2:
        raise ValueError(f"build_trajectories: z0 must be [B, D], got {z0.shape}")
    if deltas.ndim != 2 or deltas.shape[1] < 1:
        raise ValueError(f"build_trajectories: deltas must be [L, K] (legs × steps), got {deltas.shape}")
    if loss not in LOSSES or constraint not in CONSTRAINTS:
        raise ValueError(f"build_trajectories: loss must be in {LOSSES} and constraint in {CONSTRAINTS}, "
                         f"got {loss!r}, {constraint!r}")
    return _build_jit(as_pytree_fn(generate), as_pytree_fn(transform), z0, deltas,
                      jnp.asarray(sigma, jnp.float32), jnp.asarray(learning_rate, jnp.float32),
                      steps=int(steps), loss=loss, constraint=constraint)


def error_filter(error: Array, keep: float = 0.9) -> Array:
    """Boolean mask keeping points whose error is below the ``keep`` quantile (paper: drop the last decile)."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"error_filter: keep must be in (0, 1], got {keep}")
    error = jnp.asarray(error)
    if keep == 1.0:
        return jnp.ones(error.shape, bool)
    flat = jnp.sort(error.reshape(-1))
    threshold = flat[int(keep * flat.shape[0])]
    return error < threshold
