"""Fréchet distance: zero on itself, closed forms for Gaussians, numpy-only matrix square root."""
import numpy as np
import pytest

from lace_jax.metrics import frechet


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_psd_sqrt_squares_back():
    rng = np.random.default_rng(0)
    s = _random_spd(rng, 12)
    r = frechet.psd_sqrt(s)
    np.testing.assert_allclose(r @ r, s, atol=1e-10)
    np.testing.assert_allclose(r, r.T, atol=1e-12)


def test_set_with_itself_is_zero():
    x = np.random.default_rng(1).normal(size=(500, 16)) @ np.random.default_rng(2).normal(size=(16, 16))
    assert abs(frechet.frechet_distance(x, x)) < 1e-6


def test_closed_form_commuting_and_general():
    rng = np.random.default_rng(3)
    d = 8
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # diagonal covariances: FD = ‖Δμ‖² + Σ (√a − √b)²
    a, b = rng.uniform(0.2, 3, d), rng.uniform(0.2, 3, d)
    expect = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    np.testing.assert_allclose(frechet.frechet_distance_from_stats(mu1, np.diag(a), mu2, np.diag(b)), expect,
                               rtol=1e-10)
    # general SPD pair: tr((Σ₁Σ₂)^½) = Σ √eig(Σ₁Σ₂) (the eigenvalues of Σ₁Σ₂ are real and positive)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    tr_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expect = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    np.testing.assert_allclose(frechet.frechet_distance_from_stats(mu1, s1, mu2, s2), expect, rtol=1e-9)


def test_samples_of_two_gaussians_match_closed_form():
    rng = np.random.default_rng(4)
    n = 200_000
    x = rng.normal(size=(n, 2)) * [1.0, 2.0]
    y = rng.normal(size=(n, 2)) * [3.0, 0.5] + [1.0, -1.0]
    expect = 2.0 + (1 - 3) ** 2 + (2 - 0.5) ** 2          # = 8.25
    np.testing.assert_allclose(frechet.frechet_distance(x, y), expect, rtol=0.01)


def test_shape_errors():
    with pytest.raises(ValueError, match="equal D"):
        frechet.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet.gaussian_stats(np.zeros((1, 3)))
