"""2-D target distributions with exact, normalised densities and exact samplers (Du et al.'s toy world).

Each target is a `Target`: `energy` is a pytree-callable `e(x[2], *args) -> −log p(x)` (normalised, so the
energy algebra of `lace_jax.energy` applies directly and `exp(−E)` integrates to 1), and `sample(key, n)`
draws exact samples with static shapes (jit-able, used inside the training loop).

* `gmm_ring`     — n equal-weight isotropic Gaussians on a circle (radius R, std s).
* `gaussian`     — an axis-aligned Gaussian N(μ, diag(σ²)) (a soft "bar" when one σ is small).
* `ring`         — an annulus: angle uniform, radius ~ N(R, s²) (R/s ≥ 5, so the mass below r = 0 is < 3e-7
                   and is ignored); density N(|x|; R, s) / (2π|x|).
* `checkerboard` — a uniform point on one of the 8 dark cells of a 4×4 board on [−2, 2]² convolved with
                   N(0, s²I): density Σ_cells Π_axes [Φ((x−lo)/s) − Φ((x−hi)/s)] / 8 (cell area 1).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf
from jax.tree_util import Partial


class Target(NamedTuple):
    """A 2-D distribution: `energy(x[2]) = −log p(x)` (normalised) and `sample(key, n) -> [n, 2]`."""
    name: str
    energy: Callable
    sample: Callable


_LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------------------------------------------------
# Gaussian mixture on a circle

def _gmm_energy(means, std, x, *args):
    d2 = jnp.sum((x[None, :] - means) ** 2, axis=-1)
    logp = jax.nn.logsumexp(-0.5 * d2 / std ** 2) - jnp.log(means.shape[0]) - _LOG_2PI - 2 * jnp.log(std)
    return -logp


def _gmm_sample(means, std, key, n):
    kc, kn = jax.random.split(key)
    idx = jax.random.randint(kc, (n,), 0, means.shape[0])
    return means[idx] + std * jax.random.normal(kn, (n, 2))


def gmm_ring(n_modes: int = 8, radius: float = 1.5, std: float = 0.15, first: int = 0,
             count: int | None = None) -> Target:
    """Equal-weight Gaussians at angles 2πi/n_modes, i = first … first+count−1 (all by default)."""
    if n_modes < 1 or std <= 0 or radius < 0:
        raise ValueError(f"gmm_ring: need n_modes ≥ 1, std > 0, radius ≥ 0 (got {n_modes}, {std}, {radius})")
    count = n_modes if count is None else count
    ang = 2 * np.pi * (np.arange(first, first + count) % n_modes) / n_modes
    means = jnp.asarray(radius * np.stack([np.cos(ang), np.sin(ang)], -1), jnp.float32)
    std = jnp.float32(std)
    return Target(f"gmm{count}", Partial(_gmm_energy, means, std), Partial(_gmm_sample, means, std))


# ---------------------------------------------------------------------------------------------------------------
# Axis-aligned Gaussian

def _gauss_energy(mean, std, x, *args):
    return 0.5 * jnp.sum(((x - mean) / std) ** 2) + jnp.sum(jnp.log(std)) + _LOG_2PI


def _gauss_sample(mean, std, key, n):
    return mean + std * jax.random.normal(key, (n, 2))


def gaussian(mean=(0.0, 0.0), std=(0.3, 1.5), name: str = "bar") -> Target:
    """N(mean, diag(std²)); the default is a vertical soft bar."""
    std = jnp.asarray(std, jnp.float32)
    if std.shape != (2,) or bool(jnp.any(std <= 0)):
        raise ValueError(f"gaussian: std must be two positive numbers, got {std}")
    mean = jnp.asarray(mean, jnp.float32)
    return Target(name, Partial(_gauss_energy, mean, std), Partial(_gauss_sample, mean, std))


# ---------------------------------------------------------------------------------------------------------------
# Ring (annulus)

def _ring_energy(radius, std, x, *args):
    r = jnp.sqrt(jnp.sum(x ** 2) + 1e-12)
    return 0.5 * ((r - radius) / std) ** 2 + jnp.log(std) + 0.5 * _LOG_2PI + _LOG_2PI + jnp.log(r)


def _ring_sample(radius, std, key, n):
    kr, ka = jax.random.split(key)
    r = jnp.abs(radius + std * jax.random.normal(kr, (n,)))
    a = jax.random.uniform(ka, (n,), maxval=2 * jnp.pi)
    return jnp.stack([r * jnp.cos(a), r * jnp.sin(a)], -1)


def ring(radius: float = 1.5, std: float = 0.1) -> Target:
    """Annulus: uniform angle, radius ~ N(radius, std²)."""
    if std <= 0 or radius / std < 5:
        raise ValueError(f"ring: need std > 0 and radius/std ≥ 5 so the density is exact (got {radius}, {std})")
    return Target("ring", Partial(_ring_energy, jnp.float32(radius), jnp.float32(std)),
                  Partial(_ring_sample, jnp.float32(radius), jnp.float32(std)))


# ---------------------------------------------------------------------------------------------------------------
# Smoothed checkerboard

def _dark_cells(n: int, lo: float) -> np.ndarray:
    cells = [(lo + i, lo + j) for i in range(n) for j in range(n) if (i + j) % 2 == 0]
    return np.asarray(cells, np.float32)  # lower-left corners, side 1


def _checker_energy(corners, std, x, *args):
    def axis_mass(v, lo):
        return 0.5 * (erf((v - lo) / (std * np.sqrt(2))) - erf((v - lo - 1.0) / (std * np.sqrt(2))))
    px = axis_mass(x[0], corners[:, 0]) * axis_mass(x[1], corners[:, 1])
    return -jnp.log(jnp.mean(px) + 1e-30)


def _checker_sample(corners, std, key, n):
    kc, ku, kn = jax.random.split(key, 3)
    idx = jax.random.randint(kc, (n,), 0, corners.shape[0])
    return corners[idx] + jax.random.uniform(ku, (n, 2)) + std * jax.random.normal(kn, (n, 2))


def checkerboard(std: float = 0.05) -> Target:
    """8 dark unit cells of a 4×4 board on [−2, 2]² (cell (0,0) at the lower left is dark), blurred by std."""
    if std <= 0:
        raise ValueError(f"checkerboard: std must be > 0, got {std}")
    corners = jnp.asarray(_dark_cells(4, -2.0))
    return Target("checker", Partial(_checker_energy, corners, jnp.float32(std)),
                  Partial(_checker_sample, corners, jnp.float32(std)))


TARGETS: dict[str, Callable[..., Target]] = {
    "gmm_ring": gmm_ring, "gaussian": gaussian, "ring": ring, "checkerboard": checkerboard}


def make(name: str, **kwargs) -> Target:
    """A target by constructor name (`gmm_ring`, `gaussian`, `ring`, `checkerboard`) and keyword arguments."""
    if name not in TARGETS:
        raise KeyError(f"toy2d.make: unknown target {name!r}; known: {sorted(TARGETS)}")
    return TARGETS[name](**kwargs)
