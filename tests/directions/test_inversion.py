"""Reconstruction errors (closed forms) and generator inversion on a tiny random MLP generator."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.directions import inversion as I
from tests.directions.toys import mlp_generator, mlp_params


def test_lowpass_of_impulse_is_sampled_gaussian():
    sigma = 2.0
    img = jnp.zeros((1, 1, 33, 33)).at[0, 0, 16, 16].set(1.0)
    out = np.asarray(I.lowpass(img, sigma))[0, 0]
    ii = np.arange(33) - 16
    ref = np.exp(-(ii[None, :] ** 2 + ii[:, None] ** 2) / (2 * sigma ** 2)) / (2 * np.pi * sigma ** 2)
    np.testing.assert_allclose(out, ref, atol=2e-6)            # σ ≥ 1: the sampled Gaussian to float precision
    np.testing.assert_allclose(out.sum(), 1.0, atol=1e-5)


def test_lowpass_does_not_wrap_around():
    img = jnp.zeros((1, 1, 16, 16)).at[0, 0, :, 0].set(1.0)    # a line on the left border
    out = np.asarray(I.lowpass(img, 1.5))[0, 0]
    assert np.abs(out[:, -1]).max() < 1e-6                       # nothing appears on the right border


def test_fourier_error_ignores_texture_and_keeps_shape():
    x = jnp.zeros((1, 3, 32, 32))
    checker = 0.5 * (-1.0) ** (jnp.arange(32)[:, None] + jnp.arange(32)[None, :])
    textured = x + checker
    np.testing.assert_allclose(I.mse(textured, x), [0.25], rtol=1e-6)
    assert float(I.fourier_error(textured, x, sigma=1.5)[0]) < 1e-4 * 0.25   # Nyquist texture: filtered away
    offset = x.at[:, :, 8:24, 8:24].add(0.5)                                  # a low-frequency change survives
    ratio = float(I.fourier_error(offset, x, sigma=1.5)[0] / I.mse(offset, x)[0])
    assert 0.6 < ratio <= 1.0, ratio
    assert float(I.fourier_error(x, x)[0]) == 0.0


def test_masked_out_differences_cost_nothing():
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (2, 3, 16, 16))
    y = x.at[:, :, :, :5].set(3.0)                   # differ only where the mask is 0
    mask = jnp.ones_like(x).at[:, :, :, :5].set(0.0)
    np.testing.assert_allclose(I.fourier_error(y, x, mask), 0.0, atol=1e-12)
    np.testing.assert_allclose(I.mse(y, x, mask), 0.0, atol=1e-12)


def test_project_constraints():
    z = jnp.array([[3.0, 4.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0]])   # norms 5 and 0.1, √D = 2
    np.testing.assert_allclose(jnp.linalg.norm(I.project(z, "ball"), axis=1), [2.0, 0.1], rtol=1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(I.project(z, "sphere"), axis=1), [2.0, 2.0], rtol=1e-6)
    np.testing.assert_array_equal(I.project(z, "none"), z)
    with pytest.raises(ValueError, match="unknown latent constraint"):
        I.project(z, "cube")


@pytest.mark.parametrize("loss", ["mse", "fourier"])
def test_inversion_recovers_generated_image(loss):
    params = mlp_params(jax.random.PRNGKey(3))
    gen = jax.tree_util.Partial(mlp_generator, params)       # params are leaves: no recompile per weight set
    kz, kn = jax.random.split(jax.random.PRNGKey(4))
    z_true = 0.7 * jax.random.normal(kz, (6, 8))
    target = gen(z_true)
    z0 = z_true + 0.5 * jax.random.normal(kn, z_true.shape)
    start = I.mse(gen(z0), target)
    res = I.invert(gen, z0, target, steps=300, learning_rate=0.05, loss=loss, sigma=1.0, constraint="none")
    final_mse = I.mse(gen(res.z), target)
    assert res.history.shape == (300, 6) and res.loss.shape == (6,)
    assert float(start.min()) > 1e-2                      # the start is visibly wrong
    assert float(final_mse.max()) < 1e-6, (start, final_mse)   # measured 8e-15 (mse), 1e-8 (fourier)
    np.testing.assert_allclose(res.z, z_true, atol=5e-3)  # the latent itself comes back; measured 4e-4


def test_invert_rejects_bad_shapes():
    gen = functools.partial(mlp_generator, mlp_params(jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match="invert: need z0"):
        I.invert(gen, jnp.zeros((2, 8)), jnp.zeros((3, 3, 8, 8)))
    with pytest.raises(ValueError, match="unknown loss"):
        I.invert(gen, jnp.zeros((2, 8)), jnp.zeros((2, 3, 8, 8)), loss="l1")


def test_flax_apply_as_generator_compiles_once_for_all_weight_sets():
    import flax.linen as nn

    class Tiny(nn.Module):
        @nn.compact
        def __call__(self, z):
            h = jnp.tanh(nn.Dense(32)(z))
            return jnp.tanh(nn.Dense(48)(h)).reshape(z.shape[0], 3, 4, 4)

    module = Tiny()
    z = jax.random.normal(jax.random.PRNGKey(0), (3, 4))
    sizes = []
    for seed in (11, 12):
        variables = module.init(jax.random.PRNGKey(seed), z)
        gen = jax.tree_util.Partial(module.apply, variables)       # weights are traced leaves
        res = I.invert(gen, z + 0.3, gen(z), steps=60, learning_rate=0.05, loss="mse", constraint="none")
        start = I.mse(gen(z + 0.3), gen(z))
        assert float(jnp.max(res.loss / start)) < 0.05, (start, res.loss)   # ~0.003 measured (50 steps, seeds 1, 2)
        sizes.append(I._invert_jit._cache_size())
    assert sizes[1] == sizes[0]                                     # the second weight set reused the compile
