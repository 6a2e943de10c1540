"""lace_jax.diffusion: schedules, the two parameterisations, composition (and its errors), reverse diffusion and
annealed MCMC on analytic diffusions with known marginals, and training on a tiny model."""
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from lace_jax import diffusion as D
from lace_jax import densities2d
from lace_jax.samplers import mcmc

SCHED = D.cosine_schedule(20)
TINY = dict(hidden=16, num_blocks=1, widen=1, emb_dim=8)


def test_schedules():
    for s in (D.cosine_schedule(100), D.linear_schedule(100)):
        acp = np.asarray(s.alphas_cumprod, np.float64)
        assert np.all(np.diff(acp) < 0) and acp[0] > 0.99 and acp[-1] < 1e-3
        np.testing.assert_allclose(np.asarray(s.sigmas) ** 2 + acp, 1.0, atol=1e-6)
        np.testing.assert_allclose(np.cumprod(1 - np.asarray(s.betas, np.float64)), acp, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="at least 2"):
        D.cosine_schedule(1)


def _random_model(kind, key=0):
    """A tiny model with every parameter random (the zero-initialised output layers would make it trivial)."""
    m = D.init_model(jax.random.PRNGKey(key), kind=kind, schedule=SCHED, **TINY)
    leaves, tree = jax.tree_util.tree_flatten(m.params)
    keys = jax.random.split(jax.random.PRNGKey(key + 1), len(leaves))
    leaves = [0.5 * jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)]
    return m.replace(params=jax.tree_util.tree_unflatten(tree, leaves))


def test_energy_parameterisation_gradient_matches_finite_differences():
    m = _random_model(D.ENERGY)
    x = jnp.array([0.3, -0.7])
    energy = jax.jit(m.energy)
    for k in (0, 7, 19):
        s = np.asarray(m.score(x, k), np.float64)
        # the score head's definition, −ε̂/σ_k with ε̂ = ∇ₓ‖net − x‖², against central differences of E_k
        h = 1e-2
        fd = np.array([(float(energy(x + h * e, k)) - float(energy(x - h * e, k))) / (2 * h)
                       for e in jnp.eye(2)])
        np.testing.assert_allclose(s, -fd, rtol=2e-2, atol=1e-3 * np.abs(fd).max())
        np.testing.assert_allclose(s, -np.asarray(jax.grad(m.energy)(x, k)), rtol=1e-5)


def test_score_parameterisation_is_the_network_output():
    m = _random_model(D.SCORE)
    x = jnp.array([0.3, -0.7])
    net = m.net.apply(m.params, x[None], jnp.array([5.0]))[0]
    np.testing.assert_allclose(m.score(x, 5), -net / SCHED.sigmas[5], rtol=1e-6)
    with pytest.raises(TypeError, match="no energy value"):
        m.raw_energy(x, 5)


def test_compositions_of_models_match_the_algebra():
    a, b = _random_model(D.ENERGY, 0), _random_model(D.ENERGY, 10)
    x, k = jnp.array([0.2, 0.4]), 3
    ea, eb = float(a.energy(x, k)), float(b.energy(x, k))
    np.testing.assert_allclose(D.product(a, b)(x, k), ea + eb, rtol=1e-5)
    np.testing.assert_allclose(D.negation(a, b, 0.3)(x, k), 1.3 * ea - 0.3 * eb, rtol=1e-5)
    np.testing.assert_allclose(D.mixture(a, b, temperature=2.0)(x, k), -2.0 * np.logaddexp(-ea / 2, -eb / 2),
                               rtol=1e-5)
    # the composed energy's gradient is the composed score (energy and score views agree)
    np.testing.assert_allclose(D.score_fn(D.product(a, b))(x, k), a.score(x, k) + b.score(x, k), rtol=1e-4)


def test_score_models_compose_linearly_and_refuse_what_needs_energies():
    a, b = _random_model(D.SCORE, 0), _random_model(D.SCORE, 10)
    x, k = jnp.array([0.2, 0.4]), 3
    np.testing.assert_allclose(D.product(a, b).score(x, k), a.score(x, k) + b.score(x, k), rtol=1e-5)
    np.testing.assert_allclose(D.negation(a, b, 0.5).score(x, k), 1.5 * a.score(x, k) - 0.5 * b.score(x, k),
                               rtol=1e-5)
    with pytest.raises(TypeError, match="mixture"):
        D.mixture(a, b)
    with pytest.raises(TypeError, match="no energy value"):
        D.product(a, b)(x, k)
    with pytest.raises(TypeError, match="Metropolis"):
        D.sample_annealed(jax.random.PRNGKey(0), D.product(a, b), SCHED, 4, method="mala")
    with pytest.raises(TypeError, match="Metropolis"):
        D.sample_annealed(jax.random.PRNGKey(0), a, SCHED, 4, method="hmc")
    # the gradient-only surrogate that lets ULA/U-HMC run on score models: ∇ = −score, value NaN
    sur = D.as_level_energy(D.product(a, b))
    np.testing.assert_allclose(jax.grad(sur)(x, k), -(a.score(x, k) + b.score(x, k)), rtol=1e-5)
    assert np.isnan(float(sur(x, k)))


# ---------------------------------------------------------------------------------------------------------------
# Analytic diffusions: data N(m, diag(s²)) has level marginals N(√ᾱ_k m, diag(ᾱ_k s² + σ_k²)).

M, S = jnp.array([1.0, -0.5]), jnp.array([0.3, 0.6])


def _gauss_level_energy(schedule, m, s, x, k):
    acp = schedule.alphas_cumprod[jnp.asarray(k, jnp.int32)]
    var = acp * s ** 2 + (1 - acp)
    return 0.5 * jnp.sum((x - jnp.sqrt(acp) * m) ** 2 / var)


def _analytic(schedule, m=M, s=S):
    return Partial(_gauss_level_energy, schedule, m, s)


def test_reverse_diffusion_with_the_exact_score_recovers_the_data():
    n = 4000
    x = np.asarray(D.sample_reverse(jax.random.PRNGKey(3), _analytic(SCHED), SCHED, n).samples)
    # 20 cosine levels: the ancestral sampler is close but not exact; 5 standard errors + 3% on the std
    np.testing.assert_array_less(np.abs(x.mean(0) - np.asarray(M)), 5 * np.asarray(S) / np.sqrt(n) + 0.02)
    np.testing.assert_allclose(x.std(0), S, rtol=0.06)


def test_pf_ode_with_the_exact_score_recovers_the_data_deterministically():
    # deterministic DDIM converges to the PF-ODE's exact transport as the levels get finer: with the exact score
    # of N(M, S²) its std is 7.6 % low on 20 cosine levels, 1.5 % on 100 and 0.4 % on 400 (measured)
    n, sched = 4000, D.cosine_schedule(100)
    x = np.asarray(D.sample_pf_ode(jax.random.PRNGKey(3), _analytic(sched), sched, n).samples)
    np.testing.assert_array_less(np.abs(x.mean(0) - np.asarray(M)), 5 * np.asarray(S) / np.sqrt(n) + 0.02)
    np.testing.assert_allclose(x.std(0), S, rtol=0.04)
    coarse = np.asarray(D.sample_pf_ode(jax.random.PRNGKey(3), _analytic(SCHED), SCHED, n).samples)
    assert np.all(np.abs(x.std(0) / S - 1) < np.abs(coarse.std(0) / S - 1))
    r1 = D.sample_pf_ode(jax.random.PRNGKey(9), _analytic(SCHED), SCHED, 8)
    r2 = D.sample_pf_ode(jax.random.PRNGKey(9), _analytic(SCHED), SCHED, 8)
    np.testing.assert_array_equal(np.asarray(r1.samples), np.asarray(r2.samples))
    assert r1.nfe == D.pf_ode_start_level(SCHED) + 1
    acp = np.asarray(SCHED.alphas_cumprod)
    start = D.pf_ode_start_level(SCHED, 1e-4)
    assert acp[start] >= 1e-4 and (start == SCHED.num_levels - 1 or acp[start + 1] < 1e-4)
    assert D.pf_ode_start_level(SCHED, 0.0) == SCHED.num_levels - 1


@pytest.mark.parametrize("method,h,ancestral", [("mala", 0.05, False), ("hmc", 0.2, False),
                                               ("uhmc", 0.1, False), ("ula", 0.01, True)])
def test_annealed_mcmc_with_exact_energies_reaches_the_last_level(method, h, ancestral):
    # MCMC targets each level's marginal down to level 0, N(√ᾱ₀ m, ᾱ₀ s² + σ₀²) (σ₀ = 0.09 with 20 levels).
    # ULA with this small step needs the ancestral step between levels to keep up (without it the mean lags).
    n = 2000
    r = D.sample_annealed(jax.random.PRNGKey(4), _analytic(SCHED), SCHED, n, method=method, steps_per_level=5,
                          step_size=h, ancestral=ancestral)
    x = np.asarray(r.samples)
    acp0 = float(SCHED.alphas_cumprod[0])
    mean0 = np.sqrt(acp0) * np.asarray(M)
    std0 = np.sqrt(acp0 * np.asarray(S) ** 2 + 1 - acp0)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean0), 5 * std0 / np.sqrt(n) + 0.01)
    np.testing.assert_allclose(x.std(0), std0, rtol=0.04)
    acc = np.asarray(r.acceptance_rate)
    visited = acc[~np.isnan(acc)]
    assert acc.shape == (20,) and visited.size >= 19 and np.all(visited > 0.5) and np.all(visited <= 1.0)


@pytest.mark.parametrize("method", ["mala", "hmc"])
def test_mh_kernels_leave_a_bimodal_target_invariant(method):
    # exact samples of a 2-mode toy2d mixture, 20 MH steps at its (time-independent) energy: moments unchanged
    # within 5 standard errors; a wrong acceptance rule with these step sizes drifts the spread visibly
    target = densities2d.gmm_ring(n_modes=2, radius=1.0, std=0.3)
    n = 4000
    x0 = target.sample(jax.random.PRNGKey(5), n)
    step = 0.1 if method == "mala" else 0.3
    x, acc, _ = mcmc.mcmc_level(jax.random.PRNGKey(6), target.energy, x0, method=method, num_steps=20,
                                step_size=step, num_leapfrog=3, args=(0,))
    x0, x = np.asarray(x0, np.float64), np.asarray(x, np.float64)
    assert 0.3 < float(jnp.mean(acc)) < 1.0
    se = np.sqrt(2.0) * x0.std(0) / np.sqrt(n)  # two (correlated) sample means
    np.testing.assert_array_less(np.abs(x.mean(0) - x0.mean(0)), 5 * se)
    np.testing.assert_allclose(x.std(0), x0.std(0), rtol=0.05)
    # still two equally weighted modes
    np.testing.assert_allclose(np.mean(x[:, 0] > 0), 0.5, atol=5 * 0.5 / np.sqrt(n))


def test_training_lowers_the_loss():
    target = densities2d.gmm_ring(n_modes=4, radius=1.0, std=0.1)
    for kind in D.KINDS:
        m = D.init_model(jax.random.PRNGKey(0), kind=kind, schedule=SCHED, **TINY)
        res = D.train(m, target.sample, jax.random.PRNGKey(1), steps=200, batch_size=64, lr=3e-3, chunk=50)
        # the first chunk starts at the untrained model; 200 Adam steps cut the denoising loss by > 20%
        assert res.losses[-1] < 0.8 * res.losses[0], (kind, res.losses)
        assert np.all(np.isfinite(res.losses))


def test_train_rejects_bad_step_counts():
    m = D.init_model(jax.random.PRNGKey(0), schedule=SCHED, **TINY)
    with pytest.raises(ValueError, match="multiple of chunk"):
        D.train(m, densities2d.gaussian().sample, jax.random.PRNGKey(0), steps=150, chunk=100)
    with pytest.raises(ValueError, match="kind"):
        D.init_model(jax.random.PRNGKey(0), kind="flow")


def test_sample_from_config_runs_every_configured_sampler():
    from lace_jax.config import load_config

    cfg = load_config(str(Path(__file__).resolve().parents[1] / "configs" / "diffusion_2d.py"))
    target = _analytic(SCHED)
    for name in cfg["samplers"]:
        xs, acc, nfe = D.sample_from_config(target, SCHED, name, cfg, jax.random.PRNGKey(0), 16)
        assert np.asarray(xs).shape == (16, 2) and np.all(np.isfinite(np.asarray(xs))), name
        assert (acc is None) == (name in ("reverse", "pf_ode")), name
        assert nfe == {"reverse": 20, "pf_ode": D.pf_ode_start_level(SCHED) + 1}.get(name, nfe) and nfe > 0
