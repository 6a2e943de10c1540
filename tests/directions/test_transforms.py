"""Transformations T_δ: exact geometry on synthetic images, masks, border handling, jit/vmap with traced δ."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.directions import transforms as T

S = 32


def disk(cx, cy, r, size=S):
    """[1, 3, size, size] white disk (+1, hard-edged) on −1, centre in pixel coordinates."""
    ii = np.arange(size)
    inside = ((ii[None, :] - cx) ** 2 + (ii[:, None] - cy) ** 2) <= r * r
    img = np.where(inside, 1.0, -1.0).astype(np.float32)
    return jnp.asarray(np.broadcast_to(img, (1, 3, size, size)).copy())


def mass_and_centre(images):
    w = np.asarray((images[:, 0] + 1.0) / 2.0)          # 1 on the disk, 0 on the background
    ii = np.arange(images.shape[-1])
    m = w.sum(axis=(1, 2))
    return m, (w * ii[None, None, :]).sum(axis=(1, 2)) / m, (w * ii[None, :, None]).sum(axis=(1, 2)) / m


@pytest.mark.parametrize("delta", [0.125, -0.25, 0.1, -0.0371])
def test_translate_x_moves_centre_of_mass_by_delta_width(delta):
    img = disk(15.5, 15.5, 6)
    out, mask = T.translate_x(img, jnp.array([delta]), fill=-1.0)
    m0, x0, y0 = mass_and_centre(img)
    m1, x1, y1 = mass_and_centre(out)
    # bilinear interpolation keeps the first moment exactly: centre moves by δ·W to 1e-3 px, mass conserved
    np.testing.assert_allclose(x1 - x0, delta * S, atol=1e-3)
    np.testing.assert_allclose(y1, y0, atol=1e-4)
    np.testing.assert_allclose(m1, m0, rtol=1e-5)


@pytest.mark.parametrize("delta", [0.125, -0.2, 0.07])
def test_translate_y_moves_down(delta):
    img = disk(15.5, 14.0, 5)
    out, _ = T.translate_y(img, jnp.array([delta]), fill=-1.0)
    _, x0, y0 = mass_and_centre(img)
    _, x1, y1 = mass_and_centre(out)
    np.testing.assert_allclose(y1 - y0, delta * S, atol=1e-3)
    np.testing.assert_allclose(x1, x0, atol=1e-4)


def test_integer_shift_mask_and_border_modes():
    img = jax.random.uniform(jax.random.PRNGKey(0), (2, 3, S, S), minval=-1, maxval=1)
    delta = jnp.array([4 / S, -4 / S])
    out, mask = T.translate_x(img, delta, fill=0.0)
    np.testing.assert_allclose(out[0, :, :, 4:], img[0, :, :, :-4], atol=1e-6)
    np.testing.assert_allclose(out[1, :, :, :-4], img[1, :, :, 4:], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mask[0, :, :, :4]), 0.0)     # uncovered: unknown, filled with 0
    np.testing.assert_array_equal(np.asarray(out[0, :, :, :4]), 0.0)
    np.testing.assert_array_equal(np.asarray(mask[0, :, :, 4:]), 1.0)
    np.testing.assert_array_equal(np.asarray(mask[1, :, :, -4:]), 0.0)
    edge, emask = T.translate_x(img, delta, mode="edge")
    np.testing.assert_allclose(edge[0, :, :, :4], np.repeat(np.asarray(img[0, :, :, :1]), 4, axis=-1), atol=1e-6)
    np.testing.assert_allclose(edge[1, :, :, -4:], np.repeat(np.asarray(img[1, :, :, -1:]), 4, axis=-1), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(emask), np.asarray(mask))   # the mask does not depend on the fill


def test_no_wrap_around():
    img = disk(27.0, 15.5, 4)                      # near the right border
    out, _ = T.translate_x(img, jnp.array([0.25]), fill=-1.0)
    np.testing.assert_array_equal(np.asarray(out[0, 0, :, :20]), -1.0)   # nothing re-enters on the left


@pytest.mark.parametrize("factor", [1.5, 0.7])
def test_zoom_scales_area_about_centre(factor):
    img = disk(15.5, 15.5, 7)
    out, mask = T.zoom(img, jnp.array([np.log(factor)]), fill=-1.0)
    m0, x0, y0 = mass_and_centre(img)
    m1, x1, y1 = mass_and_centre(out)
    np.testing.assert_allclose(m1 / m0, factor ** 2, rtol=0.02)          # area × s², to 2 %
    np.testing.assert_allclose([x1[0], y1[0]], [15.5, 15.5], atol=1e-3)  # about the centre
    if factor < 1:   # zoom-out uncovers the frame: mask 0 in the corners, 1 in the middle
        assert float(mask[0, 0, 0, 0]) == 0.0 and float(mask[0, 0, 16, 16]) == 1.0
    else:
        np.testing.assert_array_equal(np.asarray(mask), 1.0)


def test_hue_full_turn_is_identity_and_third_turn_permutes_primaries():
    img = jax.random.uniform(jax.random.PRNGKey(1), (2, 3, 8, 8), minval=-1, maxval=1)
    out, mask = T.hue(img, jnp.array([1.0, -1.0]))
    np.testing.assert_allclose(out, img, atol=2e-6)
    np.testing.assert_array_equal(np.asarray(mask), 1.0)
    prim = jnp.asarray(2.0 * np.eye(3, dtype=np.float32) - 1.0)[:, :, None, None]  # red, green, blue in [−1, 1]
    rot, _ = T.hue(prim, jnp.full((3,), 1.0 / 3.0))
    np.testing.assert_allclose(rot[:, :, 0, 0], np.asarray(prim[[1, 2, 0], :, 0, 0]), atol=2e-6)  # R→G, G→B, B→R
    grey = jnp.full((1, 3, 2, 2), 0.3)
    np.testing.assert_allclose(T.hue(grey, jnp.array([0.37]))[0], grey, atol=2e-6)


def test_brightness_closed_form():
    img = jnp.linspace(-1, 1, 3 * 4 * 4).reshape(1, 3, 4, 4)
    out, _ = T.brightness(img, jnp.array([0.3]))
    np.testing.assert_allclose(out, np.clip(np.asarray(img) + 0.3, -1, 1), atol=1e-7)


@pytest.mark.parametrize("name", sorted(T.TRANSFORMS))
def test_jit_and_vmap_with_traced_delta(name):
    fn = T.get_transform(name)
    img = jax.random.uniform(jax.random.PRNGKey(2), (3, 3, 16, 16), minval=-1, maxval=1)
    delta = jnp.array([0.1, -0.05, 0.2])
    eager = fn(img, delta)
    jitted = jax.jit(fn)(img, delta)
    np.testing.assert_allclose(jitted[0], eager[0], atol=1e-5)   # jit fuses exp/divisions: float32 rounding
    # vmap over a grid of amounts for the same batch
    grid = jnp.array([0.0, 0.1])
    outs, _ = jax.vmap(lambda d: fn(img, jnp.full((3,), d)))(grid)
    np.testing.assert_allclose(outs[1, 0], eager[0][0], atol=1e-5)
    if name != "brightness":   # δ = 0 is the identity (brightness too, but keep the list honest)
        np.testing.assert_allclose(outs[0], img, atol=1e-5)


def test_bad_inputs_are_named():
    img = jnp.zeros((2, 3, 8, 8))
    with pytest.raises(ValueError, match="translate_x: images must be"):
        T.translate_x(jnp.zeros((3, 8, 8)), 0.1)
    with pytest.raises(ValueError, match="zoom: delta must be"):
        T.zoom(img, jnp.zeros(3))
    with pytest.raises(ValueError, match="hue: images must have 3"):
        T.hue(jnp.zeros((1, 1, 4, 4)), 0.1)
    with pytest.raises(ValueError, match="mode must be one of"):
        T.translate_x(img, 0.1, mode="wrap")
    with pytest.raises(ValueError, match="unknown transformation 'rotate'"):
        T.get_transform("rotate")
