"""Direction fitting and editing on synthetic trajectory pairs with a known direction and a known law."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.directions import fitting as F

D = 12


def synthetic_pairs(key, n=200, noise=0.002):
    """Pairs (z0, z, δ) with δ = g(⟨z,u⟩) − g(⟨z0,u⟩), g(a) = 0.3·tanh(a/2), u a fixed random unit vector;
    z − z0 has a component along u plus small isotropic jitter (the inversion's drift)."""
    ku, k0, ka, kj, kn = jax.random.split(key, 5)
    u = jax.random.normal(ku, (D,))
    u = u / jnp.linalg.norm(u)
    z0 = jax.random.normal(k0, (n, D))
    step = jax.random.uniform(ka, (n,), minval=-1.5, maxval=1.5)
    z = z0 + step[:, None] * u + 0.05 * jax.random.normal(kj, (n, D))
    g = lambda a: 0.3 * jnp.tanh(a / 2.0)
    delta = g(z @ u) - g(z0 @ u) + noise * jax.random.normal(kn, (n,))
    return u, g, z0, z, delta


def test_monotone_fit_recovers_direction_and_law():
    u, g, z0, z, delta = synthetic_pairs(jax.random.PRNGKey(0))
    lin = F.fit_linear(z0, z, delta)
    fit = F.fit_monotone(z0, z, delta, steps=500)
    d = fit.direction
    assert float(lin.u @ u) > 0.99                       # moment direction alone: measured 0.99975
    assert float(d.u @ u) > 0.995, float(d.u @ u)        # measured 0.99988
    a = jnp.linspace(-2.0, 2.0, 21)
    np.testing.assert_allclose(F.g_of(d, a), g(a), atol=0.004)  # the tanh law, not a line; measured 8e-4
    assert float(fit.residual) < 0.005
    assert float(fit.loss[-1]) < 0.1 * float(fit.loss[0])
    assert bool(jnp.all(d.slopes >= 0))


def test_fit_flips_direction_for_decreasing_factor():
    u, g, z0, z, delta = synthetic_pairs(jax.random.PRNGKey(1))
    fit = F.fit_monotone(z0, z, -delta, steps=500)
    assert float(fit.direction.u @ u) < -0.98            # u points where the amount grows


def test_editing_is_exact_in_model_space():
    u, g, z0, z, delta = synthetic_pairs(jax.random.PRNGKey(2))
    d = F.fit_monotone(z0, z, delta, steps=500).direction
    zs = jax.random.normal(jax.random.PRNGKey(3), (8, D))
    moved = F.edit_by(zs, d, 0.05)
    np.testing.assert_allclose(F.factor(d, moved) - F.factor(d, zs), 0.05, atol=1e-5)
    # only the coordinate along u changes
    perp = lambda x: x - (x @ d.u)[:, None] * d.u
    np.testing.assert_allclose(perp(moved), perp(zs), atol=1e-5)
    # edit_to after calibrate: absolute targets
    cal = F.calibrate(d, zs[:1], jnp.array([0.7]))
    np.testing.assert_allclose(F.factor(cal, zs[:1]), [0.7], atol=1e-6)
    to = F.edit_to(zs, cal, 0.8)
    np.testing.assert_allclose(F.factor(cal, to), 0.8, atol=1e-5)
    # unreachable targets go to the end of g's range
    lo, hi = F.factor_range(cal)
    np.testing.assert_allclose(F.factor(cal, F.edit_to(zs, cal, float(hi) + 5.0)), float(hi), atol=1e-5)
    # g_inverse round trip and jit
    a = jnp.linspace(-3.0, 3.0, 13)
    np.testing.assert_allclose(jax.jit(F.g_inverse)(d, F.g_of(d, a)), a, atol=1e-4)


def test_linear_direction_and_traverse():
    u = jnp.zeros(D).at[3].set(1.0)
    d = F.linear_direction(u, 0.2)
    z = jax.random.normal(jax.random.PRNGKey(4), (5, D))
    np.testing.assert_allclose(F.factor(d, z), 0.2 * z[:, 3], rtol=1e-6)
    np.testing.assert_allclose(F.edit_by(z, d, 0.1)[:, 3], z[:, 3] + 0.5, atol=1e-5)
    tr = F.traverse(z, d, jnp.array([-1.0, 0.0, 2.0]))
    assert tr.shape == (5, 3, D)
    np.testing.assert_allclose(tr[:, :, 3], np.broadcast_to([-1.0, 0.0, 2.0], (5, 3)), atol=1e-6)
    np.testing.assert_allclose(tr[:, 1, :3], z[:, :3], atol=1e-6)


def test_bad_pairs_are_named():
    with pytest.raises(ValueError, match="fit_monotone: need z0"):
        F.fit_monotone(jnp.zeros((4, 3)), jnp.zeros((4, 2)), jnp.zeros(4))
