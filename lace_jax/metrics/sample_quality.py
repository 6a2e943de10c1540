"""Sample quality against a known 2-D density: grid normalisation, exact grid sampling, log-likelihood, MMD,
sliced Wasserstein.

The density is given by an energy `e(x[2]) -> scalar` (unnormalised is fine: log p = −E − log Z). `log Z` is a
midpoint-rule integral on an n×n grid over `extent = (xmin, xmax, ymin, ymax)`; choose the extent so that the
mass outside is negligible. Samples from the composed density are drawn by picking a grid cell with probability
∝ exp(−E(centre)) and a uniform point inside it (exact up to the grid resolution).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Extent = tuple[float, float, float, float]


class Grid(NamedTuple):
    """Cell centres `points [n*n, 2]` (row-major, y outer: row 0 is ymin), `log_density [n, n]` normalised,
    `log_z` and the cell sides."""
    points: jax.Array
    log_density: jax.Array
    log_z: jax.Array
    dx: float
    dy: float
    extent: Extent


def grid_points(extent: Extent, n: int) -> tuple[jax.Array, float, float]:
    """Centres of an n×n grid of cells over `extent` (row-major, y outer), and the cell sides."""
    xmin, xmax, ymin, ymax = extent
    if not (xmax > xmin and ymax > ymin and n >= 2):
        raise ValueError(f"grid_points: bad extent {extent} or n={n}")
    dx, dy = (xmax - xmin) / n, (ymax - ymin) / n
    xs = xmin + dx * (np.arange(n) + 0.5)
    ys = ymin + dy * (np.arange(n) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    return jnp.asarray(np.stack([gx.ravel(), gy.ravel()], -1), jnp.float32), dx, dy


def density_grid(energy: Callable, extent: Extent, n: int = 256) -> Grid:
    """Normalise `exp(−energy)` on an n×n grid: log Z = logsumexp(−E(centres)) + log(cell area)."""
    pts, dx, dy = grid_points(extent, n)
    e = jax.lax.map(energy, pts, batch_size=4096) if pts.shape[0] > 4096 else jax.vmap(energy)(pts)
    e = jnp.where(jnp.isfinite(e), e, jnp.inf)
    log_z = jax.nn.logsumexp(-e) + np.log(dx * dy)
    return Grid(pts, (-e - log_z).reshape(n, n), log_z, dx, dy, extent)


def sample_grid(grid: Grid, key: jax.Array, num: int) -> jax.Array:
    """`num` samples from the gridded density: a cell ∝ its mass, then a uniform point inside it."""
    kc, ku = jax.random.split(key)
    # inverse CDF over the cells (memory O(cells + num), unlike categorical's O(cells × num) Gumbel draw)
    w = jnp.exp(grid.log_density.ravel() - jnp.max(grid.log_density))
    cdf = jnp.cumsum(w)
    u = jax.random.uniform(kc, (num,)) * cdf[-1]
    idx = jnp.clip(jnp.searchsorted(cdf, u, side="right"), 0, cdf.shape[0] - 1)
    jitter = (jax.random.uniform(ku, (num, 2)) - 0.5) * jnp.asarray([grid.dx, grid.dy], jnp.float32)
    return grid.points[idx] + jitter


def mean_log_likelihood(energy: Callable, log_z, samples: jax.Array, floor: float = -50.0) -> dict:
    """Average of log p(x) = −E(x) − log Z over the samples. Non-finite samples and values below `floor`
    (far outside the support) count as `floor`, so one stray sample cannot make the mean −inf; the fraction
    clipped is reported."""
    samples = jnp.asarray(samples, jnp.float32)
    finite = jnp.all(jnp.isfinite(samples), axis=-1)
    safe = jnp.where(finite[:, None], samples, 0.0)
    lp = -jax.vmap(energy)(safe) - log_z
    clipped = ~(finite & jnp.isfinite(lp)) | (lp < floor)
    lp = jnp.where(clipped, floor, lp)
    return {"mean": float(jnp.mean(lp)), "clipped_frac": float(jnp.mean(clipped))}


def _sq_dists(a, b):
    return jnp.maximum(jnp.sum(a ** 2, -1)[:, None] + jnp.sum(b ** 2, -1)[None, :] - 2 * a @ b.T, 0.0)


def mmd(x: jax.Array, y: jax.Array, bandwidths=(0.05, 0.1, 0.2, 0.5, 1.0)) -> float:
    """Unbiased squared MMD with a sum of RBF kernels exp(−‖a−b‖²/(2h²)) over `bandwidths`.
    Non-finite rows of x are replaced by a far point (1e3, 1e3) so they count as maximally wrong."""
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    x = jnp.where(jnp.all(jnp.isfinite(x), -1, keepdims=True), x, 1e3)
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"mmd: need at least 2 samples on each side, got {n} and {m}")
    h2 = 2 * jnp.asarray(bandwidths, jnp.float32)[:, None, None] ** 2

    def k(a, b):
        return jnp.sum(jnp.exp(-_sq_dists(a, b)[None] / h2), 0)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1))
    syy = (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2 * jnp.mean(kxy))


def sliced_wasserstein(x: jax.Array, y: jax.Array, key: jax.Array, num_projections: int = 128) -> float:
    """Sliced 1-Wasserstein distance: mean over random unit directions of W1 between the 1-D projections
    (equal sample counts; W1 in 1-D is the mean absolute difference of sorted values)."""
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(y, jnp.float32)
    if x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein: need equal shapes, got {x.shape} and {y.shape}")
    x = jnp.where(jnp.all(jnp.isfinite(x), -1, keepdims=True), x, 1e3)
    d = jax.random.normal(key, (num_projections, x.shape[1]))
    d = d / jnp.linalg.norm(d, axis=1, keepdims=True)
    px = jnp.sort(x @ d.T, axis=0)
    py = jnp.sort(y @ d.T, axis=0)
    return float(jnp.mean(jnp.abs(px - py)))
