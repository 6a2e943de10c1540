"""toy2d targets and metrics.sample_quality: normalised densities, exact samplers, composition densities on a grid
against closed forms, and the metrics' closed-form values."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy as E
from lace_jax import densities2d
from lace_jax.metrics import sample_quality as sq

EXT = (-7.0, 7.0, -7.0, 7.0)  # the bar (σ_y = 1.5) has 0.8% of its mass outside ±4
N_SAMPLES = 20000


def _grid_moments(grid):
    p = np.exp(np.asarray(grid.log_density)).ravel() * grid.dx * grid.dy
    pts = np.asarray(grid.points, np.float64)
    mean = p @ pts
    second = (pts * p[:, None]).T @ pts
    return mean, second


@pytest.mark.parametrize("target", [densities2d.gmm_ring(), densities2d.gaussian(), densities2d.ring(), densities2d.checkerboard(),
                                    densities2d.gmm_ring(count=3, first=2)], ids=lambda t: t.name)
def test_density_normalised_and_sampler_matches(target):
    grid = sq.density_grid(target.energy, EXT, 600)
    # normalised densities: the grid integral of exp(-E) is 1 (midpoint rule; 1e-3 covers the grid error)
    np.testing.assert_allclose(float(grid.log_z), 0.0, atol=2e-3)
    # the exact sampler has the density's first and second moments (tolerance: 5 Monte-Carlo standard errors)
    x = np.asarray(target.sample(jax.random.PRNGKey(0), N_SAMPLES), np.float64)
    mean, second = _grid_moments(grid)
    se1 = x.std(0) / np.sqrt(N_SAMPLES)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 5 * se1 + 1e-3)
    emp2 = x.T @ x / N_SAMPLES
    se2 = np.sqrt(np.var(x[:, :, None] * x[:, None, :], axis=0) / N_SAMPLES)
    np.testing.assert_array_less(np.abs(emp2 - second), 5 * se2 + 2e-3)


def _gauss(mean, std):
    return densities2d.gaussian(mean, std, name="g")


def _closed_form_logpdf(pts, mean, cov):
    d = pts - mean
    prec = np.linalg.inv(cov)
    return -0.5 * np.einsum("ni,ij,nj->n", d, prec, d) - np.log(2 * np.pi) - 0.5 * np.log(np.linalg.det(cov))


G1 = (np.array([0.5, -0.3]), np.array([0.6, 0.9]))
G2 = (np.array([-0.4, 0.2]), np.array([1.0, 0.5]))


def test_product_density_on_grid_is_the_gaussian_product():
    e = E.and_(_gauss(*G1).energy, _gauss(*G2).energy)
    grid = sq.density_grid(e, (-5, 5, -5, 5), 300)
    l1, l2 = 1 / G1[1] ** 2, 1 / G2[1] ** 2
    cov = np.diag(1 / (l1 + l2))
    mean = (l1 * G1[0] + l2 * G2[0]) / (l1 + l2)
    want = _closed_form_logpdf(np.asarray(grid.points, np.float64), mean, cov)
    got = np.asarray(grid.log_density).ravel()
    mask = want > -12
    np.testing.assert_allclose(got[mask], want[mask], atol=2e-3)


def test_negation_density_on_grid():
    # p ∝ p1^(1+w) / p2^w with broad p2 is Gaussian with precision (1+w)Λ1 − wΛ2
    w = 0.3
    g2 = (G2[0], np.array([2.0, 2.5]))
    e = E.and_(E.weighted(_gauss(*G1).energy, 1 + w), E.not_(_gauss(*g2).energy, w))
    grid = sq.density_grid(e, (-5, 5, -5, 5), 300)
    l1, l2 = 1 / G1[1] ** 2, 1 / g2[1] ** 2
    prec = (1 + w) * l1 - w * l2
    mean = ((1 + w) * l1 * G1[0] - w * l2 * g2[0]) / prec
    want = _closed_form_logpdf(np.asarray(grid.points, np.float64), mean, np.diag(1 / prec))
    got = np.asarray(grid.log_density).ravel()
    mask = want > -12
    np.testing.assert_allclose(got[mask], want[mask], atol=2e-3)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_mixture_density_on_grid(temperature):
    # −T·logsumexp(−E_i/T) of normalised energies: p ∝ (p1^(1/T) + p2^(1/T))^T; T = 1 is ½(p1 + p2)
    e = E.or_(_gauss(*G1).energy, _gauss(*G2).energy, temperature=temperature)
    grid = sq.density_grid(e, (-5, 5, -5, 5), 300)
    pts = np.asarray(grid.points, np.float64)
    lp1 = _closed_form_logpdf(pts, G1[0], np.diag(G1[1] ** 2))
    lp2 = _closed_form_logpdf(pts, G2[0], np.diag(G2[1] ** 2))
    un = temperature * np.logaddexp(lp1 / temperature, lp2 / temperature)
    cell = grid.dx * grid.dy
    want = un - (np.log(np.sum(np.exp(un))) + np.log(cell))
    got = np.asarray(grid.log_density).ravel()
    mask = want > -12
    np.testing.assert_allclose(got[mask], want[mask], atol=2e-3)
    if temperature == 1.0:
        np.testing.assert_allclose(want[mask], np.logaddexp(lp1, lp2)[mask] - np.log(2), atol=1e-3)


def test_grid_sampler_and_log_likelihood():
    g = _gauss(np.array([0.3, -0.2]), np.array([0.5, 0.8]))
    grid = sq.density_grid(g.energy, EXT, 400)
    x = np.asarray(sq.sample_grid(grid, jax.random.PRNGKey(1), N_SAMPLES))
    np.testing.assert_allclose(x.mean(0), [0.3, -0.2], atol=5 * 0.8 / np.sqrt(N_SAMPLES))
    np.testing.assert_allclose(x.std(0), [0.5, 0.8], rtol=0.02)
    # mean log-likelihood of exact samples = −entropy = −(log 2πe + log σ1σ2), up to Monte-Carlo error (σ = 1/√n)
    ll = sq.mean_log_likelihood(g.energy, grid.log_z, x)
    want = -(np.log(2 * np.pi * np.e) + np.log(0.5 * 0.8))
    np.testing.assert_allclose(ll["mean"], want, atol=4 / np.sqrt(N_SAMPLES))
    assert ll["clipped_frac"] == 0.0
    # far-away and non-finite samples are floored, not -inf
    bad = sq.mean_log_likelihood(g.energy, grid.log_z, np.array([[100.0, 0.0], [np.nan, 0.0]]))
    assert bad["mean"] == -50.0 and bad["clipped_frac"] == 1.0


def test_mmd_and_sliced_wasserstein_closed_forms():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(2), 3)
    x = jax.random.normal(k1, (2000, 2))
    y = jax.random.normal(k2, (2000, 2))
    # same distribution: unbiased MMD² ≈ 0; a shift gives a clearly positive value
    assert abs(sq.mmd(x, y)) < 2e-3
    # closed form for N(δ, I) vs N(0, I) in 2-D, kernel exp(−‖a−b‖²/2h²): Σ_h 2c_h(1 − exp(−‖δ‖²/(2(h²+2)))),
    # c_h = h²/(h²+2)
    h2 = np.array([0.05, 0.1, 0.2, 0.5, 1.0]) ** 2
    want = np.sum(2 * h2 / (h2 + 2) * (1 - np.exp(-0.25 / (2 * (h2 + 2)))))
    np.testing.assert_allclose(sq.mmd(x + jnp.array([0.5, 0.0]), y), want, rtol=0.15)
    # sliced W1 of a shift d·e1: E_u |d·u1| over uniform unit directions in 2-D = 2d/π
    d = 0.8
    swd = sq.sliced_wasserstein(x + jnp.array([d, 0.0]), x, k3, num_projections=2000)
    np.testing.assert_allclose(swd, 2 * d / np.pi, rtol=0.03)
    with pytest.raises(ValueError, match="equal shapes"):
        sq.sliced_wasserstein(x, y[:10], k3)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="radius/std"):
        densities2d.ring(1.0, 0.5)
    with pytest.raises(KeyError, match="unknown target"):
        densities2d.make("spiral")
    with pytest.raises(ValueError, match="bad extent"):
        sq.grid_points((1, 0, 0, 1), 10)
