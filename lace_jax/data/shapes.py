"""The procedural *shapes* world: one anti-aliased coloured object on a plain background, rendered in JAX.

Every image is a pure function of its factors, and the factors are a pure function of a PRNG key, so a batch is
reproducible from `(key, batch_size)` alone and renders under `jit`/`vmap`.

Factors (all sampled independently and uniformly):

==============  ========  ===========================================================================
name            kind      meaning
==============  ========  ===========================================================================
``shape``       discrete  0 square, 1 circle, 2 triangle, 3 star (5 points)
``background``  discrete  0 black (0.06), 1 mid grey (0.45), 2 white (0.92)
``size``        [0, 1]    object radius ``R = 4.5 + 4.5·size`` pixels (at 32 px; scales with resolution)
``x``, ``y``    [0, 1]    centre at ``0.3125 + 0.375·u`` of the width/height (10..22 px at 32 px);
                          ``y`` grows downwards (image rows)
``rotation``    [0, 1]    angle ``(rotation − ½)·60°``; within every shape's symmetry period, so it is
                          identifiable for all shapes except the circle (where it changes nothing)
``hue``         [0, 1]    object hue ``0.75·hue`` in HSV (red → yellow → green → cyan → blue → violet;
                          the range stops before violet wraps back to red), saturation 0.85, value 0.95
==============  ========  ===========================================================================

Shape geometry for radius R: circle of radius R; square of half-side 0.85·R; equilateral triangle of
circumradius 1.2·R (pointing up at rotation ½); star of outer radius 1.3·R and inner radius 0.5·outer.
All objects fit inside the image for every factor value (max extent 11.7 px from a centre ≥ 10 px from a border
at 32 px, so star tips may touch the border by < 2 px).

Anti-aliasing is analytic: pixel coverage = clip(½ − d, 0, 1) where d is the exact signed distance (in pixels)
from the pixel centre to the shape's boundary (negative inside). Images are NCHW float32 in [−1, 1], the
generator's convention at the module boundary.
"""
from __future__ import annotations

import functools
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SHAPES = ("square", "circle", "triangle", "star")
BACKGROUNDS = ("black", "grey", "white")
BACKGROUND_LEVELS = (0.06, 0.45, 0.92)
DISCRETE = {"shape": SHAPES, "background": BACKGROUNDS}
CONTINUOUS = ("size", "x", "y", "rotation", "hue")
FACTOR_NAMES = tuple(DISCRETE) + CONTINUOUS

# Physical ranges of the continuous factors at 32 px (documented above; kept here for the model card).
RADIUS_PX_32 = (4.5, 9.0)
CENTRE_FRACTION = (0.3125, 0.6875)
ROTATION_DEG = (-30.0, 30.0)
HUE_RANGE = (0.0, 0.75)
SATURATION, VALUE = 0.85, 0.95


class Factors(NamedTuple):
    """Ground-truth factors of a batch: integer class indices and continuous values in [0, 1]."""
    shape: jax.Array       # [B] int32
    background: jax.Array  # [B] int32
    size: jax.Array        # [B] float32
    x: jax.Array
    y: jax.Array
    rotation: jax.Array
    hue: jax.Array


def sample_factors(key: jax.Array, batch_size: int) -> Factors:
    """Independent uniform factors for `batch_size` images."""
    ks = jax.random.split(key, 7)
    shape = jax.random.randint(ks[0], (batch_size,), 0, len(SHAPES), dtype=jnp.int32)
    bg = jax.random.randint(ks[1], (batch_size,), 0, len(BACKGROUNDS), dtype=jnp.int32)
    cont = [jax.random.uniform(k, (batch_size,), jnp.float32) for k in ks[2:]]
    return Factors(shape, bg, *cont)


def _segment_distance(p: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
    """Distance from points p[..., 2] to segments a[N, 2]→b[N, 2]; returns [..., N]."""
    pa = p[..., None, :] - a
    ba = b - a
    h = jnp.clip(jnp.sum(pa * ba, -1) / jnp.sum(ba * ba, -1), 0.0, 1.0)
    return jnp.linalg.norm(pa - h[..., None] * ba, axis=-1)


def polygon_sdf(p: jax.Array, vertices: jax.Array) -> jax.Array:
    """Exact signed distance from points p[..., 2] to a simple closed polygon (negative inside).

    Distance = min over edges of the point-segment distance; the sign comes from the even-odd crossing rule.
    """
    a = vertices
    b = jnp.roll(vertices, -1, axis=0)
    dist = jnp.min(_segment_distance(p, a, b), axis=-1)
    py = p[..., 1:2]
    px = p[..., 0:1]
    straddles = (a[:, 1] > py) != (b[:, 1] > py)
    denom = jnp.where(b[:, 1] == a[:, 1], 1.0, b[:, 1] - a[:, 1])
    x_cross = a[:, 0] + (py - a[:, 1]) * (b[:, 0] - a[:, 0]) / denom
    crossings = jnp.sum(straddles & (px < x_cross), axis=-1)
    inside = (crossings % 2) == 1
    return jnp.where(inside, -dist, dist)


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    ang = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([np.cos(ang), np.sin(ang)], -1) * radius


def _unit_polygons() -> dict:
    """Vertices for R = 1, centred, unrotated; y points down (image rows), so −90° is 'up'."""
    up = -np.pi / 2
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * 0.85
    triangle = _regular(3, 1.2, up)
    outer = _regular(5, 1.3, up)
    inner = _regular(5, 0.65, up + np.pi / 5)
    star = np.stack([outer, inner], 1).reshape(10, 2)
    return {"square": square.astype(np.float32), "triangle": triangle.astype(np.float32),
            "star": star.astype(np.float32)}


_POLYS = _unit_polygons()


def unit_polygon(shape: str) -> np.ndarray:
    """Vertices [N, 2] (a float32 copy) of a polygonal shape ('square', 'triangle' or 'star') for R = 1, centred and
    unrotated, y down, in order of increasing angle: the outline `render` scales by R, rotates and translates."""
    return _POLYS[shape].copy()


def hsv_to_rgb(h: jax.Array, s: float, v: float) -> jax.Array:
    """HSV → RGB for hue h in [0, 1) (any shape); returns [..., 3]."""
    k = jnp.stack([5.0, 3.0, 1.0])
    kk = jnp.mod(k + h[..., None] * 6.0, 6.0)
    return v - v * s * jnp.clip(jnp.minimum(kk, 4.0 - kk), 0.0, 1.0)


def object_colour(hue: jax.Array) -> jax.Array:
    """RGB in [0, 1] of an object with normalised hue factor `hue` in [0, 1]."""
    return hsv_to_rgb(HUE_RANGE[0] + (HUE_RANGE[1] - HUE_RANGE[0]) * hue, SATURATION, VALUE)


def _render_one(f: Factors, resolution: int) -> jax.Array:
    """One image [3, H, W] in [−1, 1] from scalar factors."""
    scale = resolution / 32.0
    radius = (RADIUS_PX_32[0] + (RADIUS_PX_32[1] - RADIUS_PX_32[0]) * f.size) * scale
    cx = (CENTRE_FRACTION[0] + (CENTRE_FRACTION[1] - CENTRE_FRACTION[0]) * f.x) * resolution
    cy = (CENTRE_FRACTION[0] + (CENTRE_FRACTION[1] - CENTRE_FRACTION[0]) * f.y) * resolution
    theta = jnp.deg2rad(ROTATION_DEG[0] + (ROTATION_DEG[1] - ROTATION_DEG[0]) * f.rotation)
    coords = jnp.arange(resolution, dtype=jnp.float32) + 0.5
    px, py = jnp.meshgrid(coords, coords, indexing="xy")          # [H, W] each, pixel centres
    dx, dy = px - cx, py - cy
    c, s = jnp.cos(theta), jnp.sin(theta)
    # rotate points by −θ into the shape's frame, in units of R (distances then scaled back to pixels)
    local = jnp.stack([c * dx + s * dy, -s * dx + c * dy], -1) / radius
    d_circle = jnp.linalg.norm(local, axis=-1) - 1.0
    d_square = polygon_sdf(local, jnp.asarray(_POLYS["square"]))
    d_tri = polygon_sdf(local, jnp.asarray(_POLYS["triangle"]))
    d_star = polygon_sdf(local, jnp.asarray(_POLYS["star"]))
    sdf = jnp.stack([d_square, d_circle, d_tri, d_star])[f.shape] * radius
    coverage = jnp.clip(0.5 - sdf, 0.0, 1.0)[..., None]                # [H, W, 1]
    bg = jnp.asarray(BACKGROUND_LEVELS, jnp.float32)[f.background]
    rgb = coverage * object_colour(f.hue) + (1.0 - coverage) * bg        # [H, W, 3] in [0, 1]
    return jnp.transpose(rgb * 2.0 - 1.0, (2, 0, 1))


@functools.partial(jax.jit, static_argnums=1)
def _render_batch(f: Factors, resolution: int) -> jax.Array:
    return jax.vmap(lambda one: _render_one(one, resolution))(f)


def render(factors: Factors, resolution: int = 32) -> jax.Array:
    """Images [B, 3, H, W] float32 in [−1, 1] for a batch of factors. Compiled once per shape and resolution
    (called eagerly, op by op, every primitive would be dispatched on its own); fine inside `jax.jit` too."""
    if resolution < 8:
        raise ValueError(f"shapes.render: resolution must be >= 8, got {resolution}")
    f = Factors(*(jnp.asarray(v) for v in factors))
    return _render_batch(f, int(resolution))


def sample(key: jax.Array, batch_size: int, resolution: int = 32) -> tuple[jax.Array, Factors]:
    """A batch of random images [B, 3, H, W] and their factors, deterministic in `key`."""
    factors = sample_factors(key, batch_size)
    return render(factors, resolution), factors


def factors_to_numpy(factors: Factors) -> dict:
    """The factors as a dict of numpy arrays (for saving)."""
    return {k: np.asarray(v) for k, v in factors._asdict().items()}


def factors_from_mapping(values: Mapping[str, np.ndarray]) -> Factors:
    """Build `Factors` from a dict with every factor name; errors name the missing one."""
    missing = [n for n in Factors._fields if n not in values]
    if missing:
        raise KeyError(f"factors_from_mapping: missing factor(s) {missing}")
    return Factors(*(jnp.asarray(values[n], jnp.int32 if n in DISCRETE else jnp.float32)
                     for n in Factors._fields))


def attribute_specs() -> list[dict]:
    """Names, kinds, classes and value meanings of the shapes factors (for model cards and classifiers)."""
    specs = [{"name": n, "kind": "discrete", "classes": list(c)} for n, c in DISCRETE.items()]
    meaning = {
        "size": f"radius {RADIUS_PX_32[0]}..{RADIUS_PX_32[1]} px at 32 px",
        "x": f"centre {CENTRE_FRACTION[0]}..{CENTRE_FRACTION[1]} of the width (left → right)",
        "y": f"centre {CENTRE_FRACTION[0]}..{CENTRE_FRACTION[1]} of the height (top → bottom)",
        "rotation": f"{ROTATION_DEG[0]}..{ROTATION_DEG[1]} degrees (undefined for circles)",
        "hue": f"HSV hue {HUE_RANGE[0]}..{HUE_RANGE[1]} (red → violet)",
    }
    specs += [{"name": n, "kind": "continuous", "range": [0.0, 1.0], "meaning": meaning[n]} for n in CONTINUOUS]
    return specs


def radius_px(size: jax.Array | float, resolution: int = 32) -> jax.Array:
    """Object radius R in pixels for a size factor."""
    return (RADIUS_PX_32[0] + (RADIUS_PX_32[1] - RADIUS_PX_32[0]) * jnp.asarray(size)) * resolution / 32.0

