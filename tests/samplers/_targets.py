"""Analytic test targets for the samplers (per-sample energies built as `Partial`s so values are pytree leaves)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial


def _mixture_energy(means, log_weights, sigma, z, *args):
    d2 = jnp.sum((z[None, :] - means) ** 2, axis=-1)
    return -jax.nn.logsumexp(log_weights - 0.5 * d2 / sigma**2)


def gaussian_mixture(means, weights, sigma):
    """E(z) = −log Σ_k w_k N(z; μ_k, σ² I) (up to a constant)."""
    return Partial(_mixture_energy, jnp.asarray(means, jnp.float32), jnp.log(jnp.asarray(weights, jnp.float32)),
                   jnp.asarray(sigma, jnp.float32))


def mixture_moments(means, weights, sigma):
    """Exact mean and covariance of the isotropic Gaussian mixture."""
    means, w = np.asarray(means, np.float64), np.asarray(weights, np.float64)
    mu = w @ means
    cov = sigma**2 * np.eye(means.shape[1]) + (means * w[:, None]).T @ means - np.outer(mu, mu)
    return mu, cov


def _gaussian_energy(mean, prec, z, *args):
    d = z - mean
    return 0.5 * d @ (prec @ d)


def gaussian(mean, cov):
    """E(z) = ½(z − μ)ᵀ Σ⁻¹ (z − μ)."""
    return Partial(_gaussian_energy, jnp.asarray(mean, jnp.float32),
                   jnp.asarray(np.linalg.inv(np.asarray(cov, np.float64)), jnp.float32))
