"""MCMC samplers (ULA, MALA, HMC, U-HMC, annealed chains) on closed-form targets with fixed keys."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.samplers import mcmc
from tests.samplers._targets import gaussian, gaussian_mixture, mixture_moments

MEANS = np.array([[-1.2, 0.0], [1.2, 0.0]])
WEIGHTS = np.array([0.3, 0.7])
SIGMA = 0.6
N_CHAINS = 4096


def _level(method, step, num_steps, key=0, **kw):
    e = gaussian_mixture(MEANS, WEIGHTS, SIGMA)
    z0 = jax.random.normal(jax.random.PRNGKey(100), (N_CHAINS, 2))
    f = jax.jit(lambda e, z, k: mcmc.mcmc_level(k, e, z, method=method, num_steps=num_steps, step_size=step, **kw)[:2])
    return f(e, z0, jax.random.PRNGKey(key))


# (method, step size, steps, extra). Measured (mean_x, var_x, var_y, P(x>0)) vs exact (0.48, 1.570, 0.36, 0.7):
# ULA (0.467, 1.591, 0.357, 0.682), MALA (0.451, 1.609, 0.367, 0.684), HMC (0.488, 1.547, 0.376, 0.695),
# U-HMC (0.467, 1.571, 0.355, 0.685). ULA's O(h) bias at h = 0.03 is inside the tolerances.
CASES = [("ula", 0.03, 500, {}), ("mala", 0.15, 300, {}), ("hmc", 0.2, 150, dict(num_leapfrog=5)),
         ("uhmc", 0.05, 300, dict(num_leapfrog=3, damping=0.9))]


@pytest.mark.parametrize("method,step,n,kw", CASES)
def test_mixture_moments_and_mode_weights(method, step, n, kw):
    z, acc = _level(method, step, n, **kw)
    z = np.asarray(z, np.float64)
    mu, cov = mixture_moments(MEANS, WEIGHTS, SIGMA)
    # Monte-Carlo standard errors with 4096 chains: mean ~0.02, var ~0.03, mode weight ~0.007 (4-5 sigma below)
    np.testing.assert_allclose(z.mean(0), mu, atol=0.07)
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.12)
    np.testing.assert_allclose(np.mean(z[:, 0] > 0), 0.7, atol=0.035)
    acc = np.asarray(acc)
    if method in ("mala", "hmc"):
        assert 0.3 < acc.mean() < 1.0, acc.mean()
    else:
        np.testing.assert_array_equal(acc, 1.0)


def test_mala_acceptance_strictly_between_0_and_1_and_falls_with_step():
    """Measured rates 0.977, 0.529, 0.029 (step 0.05, 0.5, 2; one compilation, the step is traced)."""
    e = gaussian_mixture(MEANS, WEIGHTS, SIGMA)
    z0 = jax.random.normal(jax.random.PRNGKey(100), (512, 2))
    f = jax.jit(lambda e, z, k, h: mcmc.mcmc_level(k, e, z, method="mala", num_steps=20, step_size=h)[:2])
    rates = [float(f(e, z0, jax.random.PRNGKey(0), h)[1].mean()) for h in (0.05, 0.5, 2.0)]
    assert all(0.0 < r < 1.0 for r in rates), rates
    assert rates[0] > rates[1] > rates[2], rates


def test_hmc_energy_error_shrinks_with_step():
    """Leapfrog is second order: the mean |ΔH| over a fixed trajectory length falls ~h² (factor ~4 per halving)."""
    e = gaussian(np.zeros(2), np.array([[1.0, 0.5], [0.5, 2.0]]))
    z = jax.random.normal(jax.random.PRNGKey(1), (512, 2))
    v = jax.random.normal(jax.random.PRNGKey(2), (512, 2))
    errs = []
    for h, n in ((0.2, 5), (0.1, 10), (0.05, 20)):
        st = mcmc.init_state(e, z)
        new, v1 = mcmc.leapfrog(e, st, v, h, n)
        errs.append(float(jnp.mean(jnp.abs(mcmc.hamiltonian(new, v1) - mcmc.hamiltonian(st, v)))))
    assert errs[0] / errs[1] > 3.0 and errs[1] / errs[2] > 3.0, errs


def test_hmc_rejection_keeps_state_and_flips_momentum():
    """With a huge step every proposal on a steep Gaussian is rejected: z stays, v becomes −v'."""
    e = gaussian(np.zeros(2), np.eye(2) * 1e-3)
    z = jnp.ones((4, 2))
    v = jnp.zeros((4, 2))
    st = mcmc.init_state(e, z, momentum=v)
    new, info = mcmc.hmc_step(jax.random.PRNGKey(0), e, st, 5.0, num_leapfrog=2, damping=0.0)
    v_new = new.momentum
    assert not np.any(np.asarray(info.accepted))
    np.testing.assert_array_equal(np.asarray(new.z), np.asarray(z))
    eps = jax.random.normal(jax.random.split(jax.random.PRNGKey(0))[0], v.shape)
    np.testing.assert_allclose(np.asarray(v_new), -np.asarray(eps), rtol=1e-6)


def _time_gaussian(scale, z, t):
    """A time-dependent target: N(0, (1 + t)·scale² I)."""
    return 0.5 * jnp.sum(z * z) / ((1.0 + t) * scale**2)


@pytest.mark.parametrize("method", ["mala", "hmc", "uhmc", "ula"])
def test_annealed_chain_reaches_last_level_and_reports_per_level_rates(method):
    e = jax.tree_util.Partial(_time_gaussian, jnp.float32(0.5))
    ts = jnp.array([4.0, 2.0, 1.0, 0.0])  # variances 1.25, 0.75, 0.5, 0.25
    z0 = jax.random.normal(jax.random.PRNGKey(3), (2048, 2)) * 2.0
    res = mcmc.annealed_mcmc(jax.random.PRNGKey(4), e, z0, ts=ts, method=method, steps_per_level=60,
                             step_sizes=jnp.array([0.2, 0.1, 0.08, 0.05]), num_leapfrog=3, damping=0.5)
    assert res.acceptance_rate.shape == (4,) and res.acceptance_rate_per_sample.shape == (4, 2048)
    var = np.var(np.asarray(res.z), axis=0)
    # exact 0.25; ULA's stationary variance at h = 0.05 is 0.25/(1 − h/(2·0.25)) ≈ 0.278 (O(h) bias)
    np.testing.assert_allclose(var, 0.25 if method != "ula" else 0.278, rtol=0.08)
    if method in ("mala", "hmc"):
        assert np.all((np.asarray(res.acceptance_rate) > 0.5) & (np.asarray(res.acceptance_rate) < 1.0))
    np.testing.assert_allclose(np.asarray(res.energy), 0.5 * np.sum(np.asarray(res.z) ** 2, 1) / 0.25, rtol=1e-5)


def test_annealed_jit_once_for_new_values_and_batch_row_equality():
    traces = []

    def run(e, z0, key, ts, hs):
        traces.append(1)
        return mcmc.annealed_mcmc(key, e, z0, ts=ts, method="mala", steps_per_level=5, step_sizes=hs)

    f = jax.jit(run)
    z0 = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
    e1 = jax.tree_util.Partial(_time_gaussian, jnp.float32(0.5))
    e2 = jax.tree_util.Partial(_time_gaussian, jnp.float32(0.9))
    r1 = f(e1, z0, jax.random.PRNGKey(1), jnp.array([1.0, 0.0]), jnp.array([0.1, 0.05]))
    f(e2, z0 + 1, jax.random.PRNGKey(2), jnp.array([2.0, 0.5]), jnp.array([0.3, 0.01]))
    assert len(traces) == 1
    # a batch of 1 equals a row of a batch of 8 when given the same randomness: check via a deterministic kernel
    st8 = mcmc.init_state(e1, z0, 0.5)
    st1 = mcmc.init_state(e1, z0[3:4], 0.5)
    new8, _ = mcmc.ula_step(jax.random.PRNGKey(5), e1, st8, 0.1, 0.5)
    noise = jax.random.normal(jax.random.PRNGKey(5), z0.shape)
    np.testing.assert_allclose(np.asarray(new8.z[3]), np.asarray(z0[3] - 0.1 * st1.grad[0] + np.sqrt(0.2) * noise[3]),
                               rtol=1e-6, atol=1e-6)
    assert r1.z.shape == (8, 2)


def test_bad_method_and_shapes_raise():
    e = gaussian(np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="unknown MCMC method"):
        mcmc.mcmc_level(jax.random.PRNGKey(0), e, jnp.zeros((2, 2)), method="nuts")
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        mcmc.mcmc_level(jax.random.PRNGKey(0), e, jnp.zeros((2,)))


@pytest.mark.parametrize("method", ["mala", pytest.param("hmc", marks=pytest.mark.slow)])
def test_vmap_over_single_chains_equals_direct_calls(method):
    """Per-sample keys under vmap: row i of the vmapped batch equals a batch-of-1 call with key i."""
    e = gaussian_mixture(MEANS, WEIGHTS, SIGMA)
    z = jax.random.normal(jax.random.PRNGKey(0), (8, 1, 2))
    keys = jax.random.split(jax.random.PRNGKey(1), 8)
    run = lambda z1, k: mcmc.mcmc_level(k, e, z1, method=method, num_steps=10, step_size=0.2)[:2]
    zb, accb = jax.jit(jax.vmap(run))(z, keys)
    z3, acc3 = jax.jit(run)(z[3], keys[3])
    np.testing.assert_allclose(np.asarray(zb[3]), np.asarray(z3), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(accb[3]), np.asarray(acc3))
    assert 0.0 < float(accb.mean()) <= 1.0
