"""Packed latent MLPs (`lace_jax.models.packed`): the same function and gradients as the flax modules, on the
fixture pipelines, through both kernels (batch 1 → the small-batch form, batch 6 → the GEMM form)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy as E
from lace_jax.models import packed as P
from lace_jax.models.classifiers import MappingW
from tests.lace_pipelines import cifar_pipeline, ffhq_pipeline

TOL = dict(rtol=2e-5, atol=2e-6)


def _unpacked(clf):
    g = clf.g
    if g is not None:
        g = MappingW.create(g.config, g.variables, c=g.c, truncation_psi=float(g.truncation_psi), pack=False)
    return clf.replace(g=g, packed=None)


def _z(b, seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((b, 64)).astype(np.float32))


@pytest.mark.parametrize("which", ["cifar", "ffhq_glasses", "ffhq_yaw"])
@pytest.mark.parametrize("b", [1, 6])
def test_packed_equals_flax_in_value_and_gradient(which, b):
    if which == "cifar":
        clf = cifar_pipeline().classifier          # ada, conditional (zero c folded into fc0), ψ = 1
        assert clf.g.packed.layers[0].w.shape == (64, 64)    # the label half of fc0 is gone
    else:
        p = ffhq_pipeline()                          # rosinality, ψ = 0.7, 'heads' layout
        clf = p.glasses if which == "ffhq_glasses" else p.yaw
    assert clf.packed is not None and clf.g.packed is not None
    ref = _unpacked(clf)
    z = _z(b)
    fwd = jax.jit(jax.vmap(lambda c, x: c(x), in_axes=(None, 0)))
    np.testing.assert_allclose(np.asarray(fwd(clf, z)), np.asarray(fwd(ref, z)), **TOL)
    energy = (lambda c: (lambda x: jnp.sum(c(x) ** 2)))
    grad = jax.jit(lambda c, x: E.grad(energy(c), x))
    g_packed, g_ref = np.asarray(grad(clf, z)), np.asarray(grad(ref, z))
    assert np.abs(g_ref).max() > 1e-3
    np.testing.assert_allclose(g_packed, g_ref, rtol=1e-4, atol=1e-5 * np.abs(g_ref).max())


def _has_barrier(f, *args) -> bool:
    return "optimization_barrier" in str(jax.make_jaxpr(f)(*args))


def test_kernel_is_chosen_by_batch_size():
    layer = P.make_dense(np.random.default_rng(1).standard_normal((8, 5)).astype(np.float32), np.zeros(5, np.float32))
    f = lambda x: jnp.sum(jnp.tanh(P.dense(layer, x)))
    per_sample_grad = jax.vmap(jax.grad(f))
    small = _has_barrier(per_sample_grad, jnp.ones((1, 8)))
    assert small == (jax.default_backend() == "cpu")
    assert not _has_barrier(per_sample_grad, jnp.ones((P.SMALL_BATCH + 1, 8)))
    x = np.random.default_rng(2).standard_normal((3, 8)).astype(np.float32)
    for b in (1, 3):   # both kernels give the plain-autodiff gradient
        want = jax.vmap(jax.grad(lambda x: jnp.sum(jnp.tanh(x @ layer.w + layer.b))))(x[:b])
        np.testing.assert_allclose(np.asarray(per_sample_grad(jnp.asarray(x[:b]))), np.asarray(want), rtol=1e-5,
                                   atol=1e-6)


def test_weight_gradient_lands_on_the_transposed_copy():
    rng = np.random.default_rng(3)
    w, b = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    layer = P.make_dense(w, b)
    assert layer.wt.shape == (3, 4) and np.array_equal(np.asarray(layer.wt), w.T)
    x = jnp.asarray(rng.standard_normal((5, 4)).astype(np.float32))
    loss = lambda lay: jnp.sum(jnp.sin(P.dense(lay, x)))
    g = jax.grad(loss)(layer)
    want = jax.grad(lambda w: jnp.sum(jnp.sin(x @ w + b)))(jnp.asarray(w))
    np.testing.assert_allclose(np.asarray(g.wt), np.asarray(want).T, rtol=1e-5, atol=1e-6)
    assert not np.any(np.asarray(g.w))
    np.testing.assert_allclose(np.asarray(g.b), np.asarray(jax.grad(lambda b: jnp.sum(jnp.sin(x @ w + b)))(
        jnp.asarray(b))), rtol=1e-5, atol=1e-6)


def test_per_sample_weights_are_vmapped_plainly():
    rng = np.random.default_rng(4)
    ws = rng.standard_normal((2, 4, 3)).astype(np.float32)
    layers = P.Dense(w=jnp.asarray(ws), wt=jnp.asarray(np.swapaxes(ws, 1, 2).copy()), b=jnp.zeros((2, 3)))
    x = jnp.asarray(rng.standard_normal((2, 4)).astype(np.float32))
    out = jax.vmap(P.dense)(layers, x)
    np.testing.assert_allclose(np.asarray(out), np.einsum("bi,bio->bo", np.asarray(x), ws), rtol=1e-5, atol=1e-6)
    gx = jax.vmap(jax.grad(lambda l, x: jnp.sum(P.dense(l, x) ** 2), argnums=1))(layers, x)
    want = 2 * np.einsum("bo,bio->bi", np.einsum("bi,bio->bo", np.asarray(x), ws), ws)
    np.testing.assert_allclose(np.asarray(gx), want, rtol=1e-4, atol=1e-5)


def test_pack_mapping_needs_the_label_of_a_conditional_generator():
    g = cifar_pipeline().g
    with pytest.raises(ValueError, match="label c"):
        P.pack_mapping(g.config, g.variables, None)
