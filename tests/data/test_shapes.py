"""The shapes renderer: deterministic, factors land where documented, analytic anti-aliasing is right."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.data import shapes


def _factors(**kw):
    base = dict(shape=1, background=0, size=0.5, x=0.5, y=0.5, rotation=0.5, hue=0.0)
    base.update(kw)
    return shapes.factors_from_mapping({k: np.asarray([v]) for k, v in base.items()})


def test_deterministic_in_key():
    a, fa = shapes.sample(jax.random.PRNGKey(3), 16)
    b, fb = shapes.sample(jax.random.PRNGKey(3), 16)
    c, _ = shapes.sample(jax.random.PRNGKey(4), 16)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for u, v in zip(fa, fb):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 0.5
    assert a.shape == (16, 3, 32, 32) and a.dtype == jnp.float32
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0


def _coverage(img, bg_level):
    """Object coverage per pixel from the blue-free red channel of a red object on a black background."""
    red = (np.asarray(img)[0, 0] + 1) / 2           # [H, W] in [0, 1]
    obj = shapes.object_colour(jnp.asarray(0.0))[0]  # red channel of hue 0
    return (red - bg_level) / (float(obj) - bg_level)


@pytest.mark.parametrize("x,y,size", [(0.5, 0.5, 0.5), (0.2, 0.8, 1.0), (0.9, 0.1, 0.0)])
def test_disk_centre_of_mass_and_area(x, y, size):
    img = shapes.render(_factors(x=x, y=y, size=size))
    cov = _coverage(img, shapes.BACKGROUND_LEVELS[0])
    r = float(shapes.radius_px(size))
    np.testing.assert_allclose(cov.sum(), np.pi * r * r, rtol=0.01)         # area ≈ πR² (analytic AA)
    rows, cols = np.mgrid[0:32, 0:32] + 0.5
    cx = (shapes.CENTRE_FRACTION[0] + (shapes.CENTRE_FRACTION[1] - shapes.CENTRE_FRACTION[0]) * x) * 32
    cy = (shapes.CENTRE_FRACTION[0] + (shapes.CENTRE_FRACTION[1] - shapes.CENTRE_FRACTION[0]) * y) * 32
    np.testing.assert_allclose((cov * cols).sum() / cov.sum(), cx, atol=0.02)
    np.testing.assert_allclose((cov * rows).sum() / cov.sum(), cy, atol=0.02)
    assert 0.0 <= cov.min() and cov.max() <= 1.0 + 1e-6
    assert ((cov > 0.02) & (cov < 0.98)).sum() > 0        # edge pixels are partially covered


def test_square_area_and_rotation_invariance_of_area():
    r = float(shapes.radius_px(0.5))
    for rot in (0.0, 0.3, 1.0):
        cov = _coverage(shapes.render(_factors(shape=0, rotation=rot)), shapes.BACKGROUND_LEVELS[0])
        np.testing.assert_allclose(cov.sum(), (2 * 0.85 * r) ** 2, rtol=0.01)
    # triangle area = (3√3/4) (1.2 R)²
    cov = _coverage(shapes.render(_factors(shape=2)), shapes.BACKGROUND_LEVELS[0])
    np.testing.assert_allclose(cov.sum(), 3 * np.sqrt(3) / 4 * (1.2 * r) ** 2, rtol=0.01)


def test_polygon_sdf_signs_and_distance():
    sq = jnp.asarray([[-1, -1], [1, -1], [1, 1], [-1, 1]], jnp.float32)
    p = jnp.asarray([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.5, 0.0]])
    np.testing.assert_allclose(np.asarray(shapes.polygon_sdf(p, sq)), [-1.0, 1.0, np.sqrt(2), -0.5], atol=1e-6)


def test_background_and_hue():
    img = np.asarray(shapes.render(_factors(background=2, hue=1 / 3, size=0.0)))
    np.testing.assert_allclose((img[:, :, 0, 0] + 1) / 2, [[0.92] * 3], atol=1e-6)   # corner = background
    centre = (img[0, :, 16, 16] + 1) / 2
    expect = np.asarray(shapes.hsv_to_rgb(jnp.asarray(0.25), shapes.SATURATION, shapes.VALUE))
    np.testing.assert_allclose(centre, expect, atol=1e-6)
    np.testing.assert_allclose(expect, [0.95 * (1 - 0.85 / 2), 0.95, 0.95 * (1 - 0.85)], atol=1e-6)  # 90°


def test_factor_statistics_uniform():
    f = shapes.sample_factors(jax.random.PRNGKey(0), 20000)
    counts = np.bincount(np.asarray(f.shape), minlength=4) / 20000
    np.testing.assert_allclose(counts, 0.25, atol=0.015)
    for name in shapes.CONTINUOUS:
        v = np.asarray(getattr(f, name))
        np.testing.assert_allclose(v.mean(), 0.5, atol=0.01)
    # independent: correlation of x and size near 0
    assert abs(np.corrcoef(np.asarray(f.x), np.asarray(f.size))[0, 1]) < 0.03


def test_render_rejects_tiny_resolution():
    with pytest.raises(ValueError, match="resolution"):
        shapes.render(_factors(), resolution=4)
