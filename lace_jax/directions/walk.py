"""The linear-walk baseline (Jahanian, Chai & Isola, "On the steerability of GANs", ICLR 2020).

One vector ``w[D]`` is learned end to end so that stepping ``α`` along it reproduces the transformation:
``min_w E_{z ~ N(0, I), α ~ U(−α_max, α_max)} err(G(z + α w), T_α(G(z)), mask)``, with the plain masked MSE
(their loss) or this package's Fourier-weighted error. Unlike the trajectory method it assumes the factor is
linear in the latent (``α`` maps to ``α·w`` everywhere), which is what the comparison is about.
Sampling uses an explicit PRNG key, the whole optimisation is one jitted ``lax.scan``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lace_jax.directions.inversion import LOSSES, as_pytree_fn, reconstruction_error

Array = jax.Array


class WalkResult(NamedTuple):
    w: Array        # [D] learned step per unit of transformation
    u: Array        # [D] unit direction w/‖w‖
    loss: Array     # [steps] mean error of each training batch


def walk_loss(generate: Callable, transform: Callable, w: Array, z: Array, alpha: Array, *,
              loss: str = "mse", sigma: float = 3.0) -> Array:
    """Mean error of ``G(z + α w)`` against ``T_α(G(z))`` (target not differentiated) over the batch."""
    target, mask = transform(jax.lax.stop_gradient(generate(z)), alpha)
    pred = generate(z + alpha[:, None] * w)
    return jnp.mean(reconstruction_error(pred, jax.lax.stop_gradient(target), mask, loss=loss, sigma=sigma))


def _train(generate, transform, key, w0, alpha_max, learning_rate, sigma, *, steps, batch, loss):
    opt = optax.adam(learning_rate)
    d = w0.shape[0]

    def step(carry, k):
        w, state = carry
        kz, ka = jax.random.split(k)
        z = jax.random.normal(kz, (batch, d), w.dtype)
        alpha = jax.random.uniform(ka, (batch,), w.dtype, -alpha_max, alpha_max)
        val, grad = jax.value_and_grad(
            lambda w_: walk_loss(generate, transform, w_, z, alpha, loss=loss, sigma=sigma))(w)
        updates, state = opt.update(grad, state, w)
        return (optax.apply_updates(w, updates), state), val

    (w, _), losses = jax.lax.scan(step, (w0, opt.init(w0)), jax.random.split(key, steps))
    return WalkResult(w, w / jnp.maximum(jnp.linalg.norm(w), 1e-12), losses)


_train_jit = jax.jit(_train, static_argnames=("steps", "batch", "loss"))


def train_linear_walk(generate: Callable, transform: Callable, key: Array, dim: int, *, steps: int = 500,
                      batch: int = 16, alpha_max: float = 0.2, learning_rate: float = 0.05, loss: str = "mse",
                      sigma: float = 3.0, w0: Array | None = None) -> WalkResult:
    """Learn the walk vector ``w[dim]`` by ``steps`` Adam steps on fresh batches ``z ~ N(0, I)``, ``α ~ U(±α_max)``.

    ``w0`` defaults to zeros (the gradient there is already informative: ``α ∇_z err``).
    """
    if loss not in LOSSES:
        raise ValueError(f"train_linear_walk: unknown loss {loss!r}; known: {LOSSES}")
    if steps < 1 or batch < 1 or dim < 1 or alpha_max <= 0:
        raise ValueError(f"train_linear_walk: need steps, batch, dim >= 1 and alpha_max > 0, "
                         f"got {steps}, {batch}, {dim}, {alpha_max}")
    w0 = jnp.zeros((dim,), jnp.float32) if w0 is None else jnp.asarray(w0, jnp.float32)
    if w0.shape != (dim,):
        raise ValueError(f"train_linear_walk: w0 must have shape ({dim},), got {w0.shape}")
    return _train_jit(as_pytree_fn(generate), as_pytree_fn(transform), key, w0,
                      jnp.asarray(alpha_max, jnp.float32), jnp.asarray(learning_rate, jnp.float32),
                      jnp.asarray(sigma, jnp.float32), steps=int(steps), batch=int(batch), loss=loss)
