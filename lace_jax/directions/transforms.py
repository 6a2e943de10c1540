"""Image transformations T_δ used to find latent directions (Plumerault et al., ICLR 2020).

Every transformation maps an image batch ``images[B, C, H, W]`` (NCHW, values in [−1, 1]) and one amount per
image ``delta[B]`` to ``(transformed[B, C, H, W], mask[B, C, H, W])``. The mask (in [0, 1]) says which output
pixels are known: a translation or a zoom-out uncovers pixels that were outside the source image, and the
paper's reconstruction loss ignores them (its official code fills them with 0 and multiplies the error by the
mask). Amounts are traced values, so one jitted call serves every δ, and everything vmaps.

Units (all dimensionless, as in the paper):

* ``translate_x`` / ``translate_y``: δ is a fraction of the image width / height; δ > 0 moves the content right /
  down (image rows grow downwards). Sub-pixel amounts use bilinear interpolation.
* ``zoom``: magnification ``exp(δ)`` about the image centre (δ > 0 zooms in). The paper's code uses ``1 + δ``;
  the two agree to first order and ``exp`` stays valid for every δ and composes additively.
* ``hue``: rotation of the RGB vector about the grey axis by ``δ`` turns (δ = 1 is 360°, δ = 1/3 maps
  red → green → blue); the result is clipped to [−1, 1].
* ``brightness``: ``clip(x + δ, −1, 1)`` (the paper's form).

Border handling: ``mode="constant"`` fills unknown pixels with ``fill`` (the paper's choice, with fill 0),
``mode="edge"`` replicates the border pixels; in both modes the mask marks those pixels as unknown, so the loss
does not depend on the fill. No transformation wraps around.
"""
from __future__ import annotations

import functools
from typing import Callable, Tuple

import jax
import jax.numpy as jnp

Array = jax.Array
Transform = Callable[[Array, Array], Tuple[Array, Array]]

MODES = ("constant", "edge")


def _check(images: Array, delta: Array, where: str) -> Tuple[Array, Array]:
    images = jnp.asarray(images)
    delta = jnp.asarray(delta, dtype=images.dtype if jnp.issubdtype(images.dtype, jnp.floating) else jnp.float32)
    if images.ndim != 4:
        raise ValueError(f"{where}: images must be [B, C, H, W] (NCHW), got shape {images.shape}")
    if delta.ndim == 0:
        delta = jnp.broadcast_to(delta, (images.shape[0],))
    if delta.shape != (images.shape[0],):
        raise ValueError(f"{where}: delta must be a scalar or shape [B] = [{images.shape[0]}], got {delta.shape}")
    return images, delta


def _sample(image: Array, src_y: Array, src_x: Array, mode: str, fill: float) -> Tuple[Array, Array]:
    """Bilinear sampling of ``image[C, H, W]`` at pixel-centre coordinates ``src_y, src_x [H', W']``.

    Returns the sampled image and the fraction of interpolation weight that fell inside the source.
    """
    if mode not in MODES:
        raise ValueError(f"transforms: mode must be one of {MODES}, got {mode!r}")
    _, h, w = image.shape
    y0 = jnp.floor(src_y)
    x0 = jnp.floor(src_x)
    wy1 = src_y - y0
    wx1 = src_x - x0
    y0 = y0.astype(jnp.int32)
    x0 = x0.astype(jnp.int32)
    out = jnp.zeros((image.shape[0],) + src_y.shape, image.dtype)
    mask = jnp.zeros(src_y.shape, image.dtype)
    for dy, wy in ((0, 1.0 - wy1), (1, wy1)):
        for dx, wx in ((0, 1.0 - wx1), (1, wx1)):
            yy = y0 + dy
            xx = x0 + dx
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            vals = image[:, jnp.clip(yy, 0, h - 1), jnp.clip(xx, 0, w - 1)]
            if mode == "constant":
                vals = jnp.where(inside[None], vals, jnp.asarray(fill, image.dtype))
            weight = wy * wx
            out = out + weight[None] * vals
            mask = mask + weight * inside.astype(image.dtype)
    return out, jnp.broadcast_to(mask[None], out.shape)


def _affine(images: Array, scale: Array, shift_y: Array, shift_x: Array, mode: str, fill: float):
    """Per image: output(p) = input(c + (p − c)/scale − shift), c the image centre, shifts in pixels."""
    _, _, h, w = images.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    rows = jnp.arange(h, dtype=images.dtype)[:, None]
    cols = jnp.arange(w, dtype=images.dtype)[None, :]

    def one(img, s, sy, sx):
        src_y = cy + (rows - cy) / s - sy + jnp.zeros_like(cols)
        src_x = cx + (cols - cx) / s - sx + jnp.zeros_like(rows)
        return _sample(img, src_y, src_x, mode, fill)

    return jax.vmap(one)(images, scale, shift_y, shift_x)


@functools.partial(jax.jit, static_argnames=('mode',))
def translate_x(images: Array, delta: Array, *, mode: str = "constant", fill: float = 0.0):
    """Move the content right by ``delta·W`` pixels (sub-pixel, bilinear); returns (images, mask)."""
    images, delta = _check(images, delta, "translate_x")
    ones = jnp.ones_like(delta)
    return _affine(images, ones, 0.0 * delta, delta * images.shape[3], mode, fill)


@functools.partial(jax.jit, static_argnames=('mode',))
def translate_y(images: Array, delta: Array, *, mode: str = "constant", fill: float = 0.0):
    """Move the content down by ``delta·H`` pixels (sub-pixel, bilinear); returns (images, mask)."""
    images, delta = _check(images, delta, "translate_y")
    ones = jnp.ones_like(delta)
    return _affine(images, ones, delta * images.shape[2], 0.0 * delta, mode, fill)


@functools.partial(jax.jit, static_argnames=('mode',))
def zoom(images: Array, delta: Array, *, mode: str = "constant", fill: float = 0.0):
    """Magnify by ``exp(delta)`` about the image centre (bilinear); returns (images, mask)."""
    images, delta = _check(images, delta, "zoom")
    zeros = jnp.zeros_like(delta)
    return _affine(images, jnp.exp(delta), zeros, zeros, mode, fill)


def hue_matrix(turns: Array) -> Array:
    """3×3 rotation about the grey axis (1, 1, 1)/√3 by ``turns`` full turns (Rodrigues' formula)."""
    theta = 2.0 * jnp.pi * jnp.asarray(turns, jnp.float32)
    k = jnp.ones(3, jnp.float32) / jnp.sqrt(3.0)
    cross = jnp.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return (jnp.cos(theta) * jnp.eye(3) + jnp.sin(theta) * cross
            + (1.0 - jnp.cos(theta)) * jnp.outer(k, k))


@jax.jit
def hue(images: Array, delta: Array):
    """Rotate hue by ``delta`` turns (RGB rotation about the grey axis, clipped to [−1, 1]); returns (images, mask).

    The grey axis passes through 0 in [−1, 1] coordinates, so greys are fixed and 1/3 turn maps the pure
    primaries red → green → blue → red exactly.
    """
    images, delta = _check(images, delta, "hue")
    if images.shape[1] != 3:
        raise ValueError(f"hue: images must have 3 (RGB) channels, got {images.shape[1]} in shape {images.shape}")
    mats = jax.vmap(hue_matrix)(delta).astype(images.dtype)
    out = jnp.einsum("bij,bjhw->bihw", mats, images)
    return jnp.clip(out, -1.0, 1.0), jnp.ones_like(images)


@jax.jit
def brightness(images: Array, delta: Array):
    """Add ``delta`` to every pixel and clip to [−1, 1] (the paper's form); returns (images, mask)."""
    images, delta = _check(images, delta, "brightness")
    return jnp.clip(images + delta[:, None, None, None], -1.0, 1.0), jnp.ones_like(images)


TRANSFORMS = {
    "x": translate_x,
    "y": translate_y,
    "zoom": zoom,
    "hue": hue,
    "brightness": brightness,
}


def get_transform(name: str) -> Transform:
    """The transformation called ``name`` (one of ``TRANSFORMS``), with a clear error for unknown names."""
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise ValueError(f"unknown transformation {name!r}; known: {sorted(TRANSFORMS)}") from None
