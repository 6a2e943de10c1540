"""StyleGAN2 discriminator pieces: FIR downsampling, minibatch std, shapes and resolution checks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.models.discriminator import Discriminator, EqConv, init, minibatch_std


def _upfirdn_reference(x, taps, pad, down):
    """Direct loops: zero-pad NHWC x, correlate with the normalised outer-product filter, decimate."""
    f = np.outer(taps, taps)
    f = f / f.sum()
    xp = np.pad(x, ((0, 0), pad, pad, (0, 0)))
    k = f.shape[0]
    h = (xp.shape[1] - k) // down + 1
    w = (xp.shape[2] - k) // down + 1
    out = np.zeros((x.shape[0], h, w, x.shape[3]))
    for i in range(h):
        for j in range(w):
            patch = xp[:, i * down:i * down + k, j * down:j * down + k, :]
            out[:, i, j, :] = np.einsum("nhwc,hw->nc", patch, f)
    return out


def _lrelu(x):
    return np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)


@pytest.mark.parametrize("kernel", [3, 1])
def test_downsampling_conv_matches_direct_loops(kernel):
    """EqConv(down=2) = pad k//2 + 1, blur with [1,3,3,1]⊗[1,3,3,1]/64, then stride-2 conv (k=3), or blur+decimate
    then 1×1 conv (k=1), with weights scaled by 1/√fan_in (stylegan2-ada conv2d_resample semantics)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    layer = EqConv(4, kernel, down=2, bias=False, act=False)
    params = layer.init(jax.random.PRNGKey(0), jnp.asarray(x))["params"]
    w = np.asarray(params["weight"]) / np.sqrt(3 * kernel * kernel)
    got = np.asarray(layer.apply({"params": params}, jnp.asarray(x)))
    if kernel == 3:
        blurred = _upfirdn_reference(x, np.array([1., 3, 3, 1]), (2, 2), 1)          # [2, 9, 9, 3]
        ref = np.zeros((2, 4, 4, 4))
        for i in range(4):
            for j in range(4):
                ref[:, i, j] = np.einsum("nhwc,hwco->no", blurred[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3], w)
    else:
        ref = np.einsum("nhwc,co->nhwo", _upfirdn_reference(x, np.array([1., 3, 3, 1]), (1, 1), 2), w[0, 0])
    assert got.shape == (2, 4, 4, 4)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_dense_conv_activation_gain():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 4, 4, 2)).astype(np.float32))
    layer = EqConv(3, 1)
    params = layer.init(jax.random.PRNGKey(2), x)["params"]
    ref = _lrelu(np.einsum("nhwc,co->nhwo", np.asarray(x), np.asarray(params["weight"])[0, 0] / np.sqrt(2)))
    np.testing.assert_allclose(np.asarray(layer.apply({"params": params}, x)), ref, atol=1e-5)


def test_minibatch_std_closed_form():
    x = np.random.default_rng(1).normal(size=(8, 4, 4, 3)).astype(np.float32)
    out = np.asarray(minibatch_std(jnp.asarray(x), 4))
    assert out.shape == (8, 4, 4, 4)
    np.testing.assert_array_equal(out[..., :3], x)
    groups = x.reshape(4, 2, 4, 4, 3)                         # sample n = g·2 + m is in group m
    std = np.sqrt(groups.var(0) + 1e-8).mean(axis=(1, 2, 3))  # [2]
    for n in range(8):
        np.testing.assert_allclose(out[n, :, :, 3], std[n % 2], rtol=1e-5)
    with pytest.raises(ValueError, match="multiple"):
        minibatch_std(jnp.asarray(x[:6]), 4)


def test_discriminator_shapes_and_scale():
    d = Discriminator(resolution=32, channels=(16, 32, 32, 32))
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 3, 32, 32))
    params = init(d, jax.random.PRNGKey(1))
    out = d.apply({"params": params}, x)
    assert out.shape == (8,)
    assert np.all(np.isfinite(np.asarray(out))) and float(jnp.abs(out).max()) < 10.0   # equalised lr: O(1)
    assert params["b32_skip"].keys() == {"weight"}                                       # skip has no bias
    with pytest.raises(ValueError, match="NCHW"):
        d.apply({"params": params}, jnp.zeros((8, 32, 32, 3)))
    with pytest.raises(ValueError, match="channel widths"):
        Discriminator(resolution=32, channels=(16, 32)).init(jax.random.PRNGKey(1), x)


def test_init_is_the_modules_initialisers_from_one_draw():
    d = Discriminator(resolution=32, channels=(16, 32, 32, 32))
    params = init(d, jax.random.PRNGKey(1))
    declared = jax.eval_shape(lambda k: d.init(k, jnp.zeros((4, 3, 32, 32)))["params"], jax.random.PRNGKey(1))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(declared)
    shapes = lambda tree: [p.shape for p in jax.tree_util.tree_leaves(tree)]  # noqa: E731
    assert shapes(params) == shapes(declared)
    weights = np.concatenate([np.ravel(layer["weight"]) for layer in params.values()])
    assert weights.size > 20000 and abs(weights.mean()) < 0.03 and abs(weights.std() - 1) < 0.03   # N(0, 1)
    assert all(np.all(np.asarray(layer["bias"]) == 0) for layer in params.values() if "bias" in layer)
    again, other = init(d, jax.random.PRNGKey(1)), init(d, jax.random.PRNGKey(2))
    assert np.array_equal(again["b4_fc"]["weight"], params["b4_fc"]["weight"])
    assert not np.array_equal(other["b4_fc"]["weight"], params["b4_fc"]["weight"])
