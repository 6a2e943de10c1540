"""SGLD (LACE) against the reference trajectory; ULA on a Gaussian in closed form."""
import jax
import jax.numpy as jnp
import numpy as np

from lace_jax import energy as E
from lace_jax.samplers import langevin
from tests.lace_pipelines import ffhq_cond_energy
from tests.samplers._targets import gaussian


def test_sgld_reproduces_lace_trajectory(sampler_refs):
    r = sampler_refs
    # per-sample targets (all [1, 0.5] here) through a BatchedEnergy; LACE's `forward` = −(½‖z‖² + E_cond)
    full = E.per_sample(lambda y: E.with_prior(ffhq_cond_energy(list(y))), np.asarray(r["sgld_ys"]))
    f = jax.jit(lambda e, z0, noise: langevin.sample_sgld(None, e, z0, noise=noise, step_size=0.01, noise_scale=0.01,
                                                          return_trajectory=True))
    res = f(full, r["sgld_z_init"], r["sgld_noise"])
    np.testing.assert_allclose(np.asarray(res.trajectory), r["sgld_z_traj"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(res.z), r["sgld_z_final"], atol=1e-4, rtol=0)
    assert int(res.nfe) == 20


def test_ula_gaussian_stationary_moments_closed_form():
    """ULA on N(μ, Σ) is a linear AR(1) chain; its stationary covariance solves
    S = A S Aᵀ + 2h I with A = I − hΣ⁻¹ (bias O(h) vs Σ). Check the empirical moments against that."""
    mu = np.array([1.0, -2.0])
    cov = np.array([[1.0, 0.3], [0.3, 0.5]])
    h = 0.05
    e = gaussian(mu, cov)
    z0 = jnp.zeros((4096, 2))
    res = jax.jit(lambda e, z, k: langevin.sample_ula(k, e, z, num_steps=300, step_size=h))(e, z0,
                                                                                            jax.random.PRNGKey(0))
    A = np.eye(2) - h * np.linalg.inv(cov)
    S = np.zeros((2, 2))
    for _ in range(5000):
        S = A @ S @ A.T + 2 * h * np.eye(2)
    z = np.asarray(res.z, np.float64)
    np.testing.assert_allclose(z.mean(0), mu, atol=0.05)   # SE ≈ 0.016
    np.testing.assert_allclose(np.cov(z.T), S, atol=0.05)  # SE ≈ 0.02


def test_sgld_batch_of_one_equals_row_of_eight():
    e = gaussian(np.zeros(3), np.eye(3) * 2.0)
    z = jax.random.normal(jax.random.PRNGKey(0), (8, 3))
    noise = jax.random.normal(jax.random.PRNGKey(1), (5, 8, 3))
    f = jax.jit(lambda e, z, n: langevin.sample_sgld(None, e, z, noise=n, step_size=0.1, noise_scale=0.3).z)
    z8 = f(e, z, noise)
    z1 = f(e, z[2:3], noise[:, 2:3])
    np.testing.assert_allclose(np.asarray(z1[0]), np.asarray(z8[2]), rtol=1e-6, atol=1e-7)
