"""A 2-D toy world for the first demo and for tests: latent classifiers defined in code on z ∈ R².

The prior is N(0, I). Attribute classifiers (pure functions with their parameters as pytree leaves):
* `cluster` (discrete, 4 classes `ne`, `nw`, `sw`, `se`): the posterior of a Gaussian mixture with components at
  (±1.5, ±1.5), σ = 0.5: logits_k = −‖z − μ_k‖² / (2σ²).
* `right`, `top` (discrete, classes `no`, `yes`): logistic classifiers of sign(z₀), sign(z₁) with slope 4.
* `radius` (continuous, range [0, 3]): ‖z‖.  `x` (continuous, range [−3, 3]): z₀.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from lace_jax import energy as en

CENTRES = np.array([[1.5, 1.5], [-1.5, 1.5], [-1.5, -1.5], [1.5, -1.5]], np.float32)
EXTENT = (-3.5, 3.5, -3.5, 3.5)
CLUSTER_COLOURS = np.array([[214, 39, 40], [31, 119, 180], [44, 160, 44], [255, 127, 14]], np.uint8)


def _cluster_logits(centres: jnp.ndarray, sigma: jnp.ndarray, z: jnp.ndarray) -> jnp.ndarray:
    return -jnp.sum((z[None, :] - centres) ** 2, axis=-1) / (2 * sigma ** 2)


def _sign_logits(axis: int, slope: jnp.ndarray, z: jnp.ndarray) -> jnp.ndarray:
    return jnp.stack([-slope * z[axis], slope * z[axis]]) / 2


def _radius(z: jnp.ndarray) -> jnp.ndarray:
    return jnp.sqrt(jnp.sum(z ** 2) + 1e-12)[None]


def _coord(axis: int, z: jnp.ndarray) -> jnp.ndarray:
    return z[axis][None]


def classifier_fns() -> dict:
    """name → (kind, fn(z[2]) -> logits or prediction, class names or value range)."""
    return {
        "cluster": ("discrete", Partial(_cluster_logits, jnp.asarray(CENTRES), jnp.float32(0.5)),
                    ("ne", "nw", "sw", "se")),
        "right": ("discrete", Partial(_sign_logits, 0, jnp.float32(4.0)), ("no", "yes")),
        "top": ("discrete", Partial(_sign_logits, 1, jnp.float32(4.0)), ("no", "yes")),
        "radius": ("continuous", Partial(_radius), (0.0, 3.0)),
        "x": ("continuous", Partial(_coord, 0), (-3.0, 3.0)),
    }


def attributes() -> dict[str, en.Attribute]:
    """The demo world's attributes, ready for `energy.parse`."""
    out = {}
    for name, (kind, fn, meta) in classifier_fns().items():
        if kind == "discrete":
            out[name] = en.Attribute.discrete(fn, classes=meta)
        else:
            out[name] = en.Attribute.continuous(fn, value_range=meta)
    return out


def density_grid(cond_energy, n: int = 160) -> np.ndarray:
    """exp(−E) of the full energy (prior + `cond_energy`) on an n×n grid over EXTENT, scaled to max 1.
    Row 0 is the lowest y."""
    xs = np.linspace(EXTENT[0], EXTENT[1], n, dtype=np.float32)
    ys = np.linspace(EXTENT[2], EXTENT[3], n, dtype=np.float32)
    pts = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    e = np.asarray(jax.jit(jax.vmap(en.with_prior(cond_energy)))(jnp.asarray(pts))).reshape(n, n)
    e = np.where(np.isfinite(e), e, np.inf)
    p = np.exp(-(e - e.min()))
    return p / p.max()


def summary(attrs: dict[str, en.Attribute], z: np.ndarray) -> dict:
    """Per attribute: class frequencies (discrete, by argmax) or mean/std of the prediction (continuous)."""
    out = {}
    if len(z) == 0:
        return out
    zj = jnp.asarray(z)
    for name, a in attrs.items():
        pred = np.asarray(jax.vmap(a.fn)(zj))
        if a.kind == "discrete":
            counts = np.bincount(pred.argmax(-1), minlength=a.num_classes) / len(z)
            out[name] = {c: float(f) for c, f in zip(a.classes, counts)}
        else:
            out[name] = {"mean": float(pred.mean()), "std": float(pred.std())}
    return out
