"""The matmul precision policies of the drift (`lace_jax.models.precision`): bf16 rounds both operands and
accumulates in float32 (forward and input-gradient products alike), highest is float32, tf32 is float32 where the
backend has no TF32 units; the packed and flax forms agree under every policy; a bad name is an error."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy as E
from lace_jax.models import packed as P
from lace_jax.models import precision
from lace_jax.models.classifiers import LatentClassifier, MappingW
from lace_jax.samplers import ode
from tests.lace_pipelines import cifar_pipeline, ffhq_pipeline


def _bf16(x) -> np.ndarray:
    """x rounded to bfloat16 (round to nearest even), as float64."""
    return np.asarray(jnp.asarray(x, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


def _data(seed=0, b=6, k=48, n=40):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32))


def test_bf16_matmul_is_bf16_operands_with_f32_accumulation():
    x, w = _data()
    got = np.asarray(precision.matmul(jnp.asarray(x), jnp.asarray(w), "bf16"))
    assert got.dtype == np.float32
    want = _bf16(x) @ _bf16(w)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    assert np.abs(got - exact).max() > 1e-3            # the rounding really happened (bf16 has 8 bits)
    np.testing.assert_allclose(np.asarray(precision.matmul(jnp.asarray(x), jnp.asarray(w), "highest")), exact,
                               rtol=1e-5, atol=1e-5)


def test_tf32_is_float32_without_tf32_units():
    if jax.default_backend() == "gpu":
        pytest.skip("the GPU has TF32 units")
    x, w = _data(1)
    np.testing.assert_array_equal(np.asarray(precision.matmul(jnp.asarray(x), jnp.asarray(w), "tf32")),
                                  np.asarray(precision.matmul(jnp.asarray(x), jnp.asarray(w), "highest")))


@pytest.mark.parametrize("b", [1, 6])          # both kernels of `packed.affine` (small-batch and GEMM)
def test_packed_affine_bf16_forward_and_input_gradient(b):
    x, w = _data(2, b=b)
    layer = P.make_dense(w, np.zeros(w.shape[1], np.float32))
    g = np.random.default_rng(3).standard_normal((b, w.shape[1])).astype(np.float32)
    f = lambda xi: P.affine(xi, layer.w, layer.wt, "bf16")
    out = np.asarray(jax.vmap(f)(jnp.asarray(x)))
    np.testing.assert_allclose(out, _bf16(x) @ _bf16(w), rtol=1e-5, atol=1e-5)
    # the input gradient is the product g · wᵀ under the same policy: both operands rounded
    dx = np.asarray(jax.vmap(lambda xi, gi: jax.vjp(f, xi)[1](gi)[0])(jnp.asarray(x), jnp.asarray(g)))
    np.testing.assert_allclose(dx, _bf16(g) @ _bf16(w).T, rtol=1e-5, atol=1e-5)


def test_policies_are_checked():
    assert precision.check("bf16") == "bf16"
    for bad in ("fp8", "HIGHEST", None, 16):
        with pytest.raises(ValueError, match="precision must be one of highest, tf32, bf16, auto"):
            precision.check(bad)
    assert precision.resolve("auto", "cpu") == "highest"
    assert precision.resolve("auto", "gpu") == precision.GPU_DEFAULT
    assert precision.resolve("tf32", "cpu") == "tf32"
    with pytest.raises(ValueError, match="precision"):
        P.affine(jnp.ones((2, 3)), jnp.ones((3, 2)), jnp.ones((2, 3)), "auto")   # resolve first
    clf = cifar_pipeline().classifier
    with pytest.raises(ValueError, match="LatentClassifier: precision"):
        clf.with_precision("fp16")
    with pytest.raises(ValueError, match="MappingW: precision"):
        clf.g.with_precision("auto")


def _with(clf: LatentClassifier, policy: str, pack: bool = True) -> LatentClassifier:
    g = clf.g
    if not pack:
        g = MappingW.create(g.config, g.variables, c=g.c, truncation_psi=float(g.truncation_psi), pack=False)
        clf = clf.replace(packed=None)
    return clf.replace(g=g.with_precision(policy)).with_precision(policy)


@pytest.mark.parametrize("which", ["glasses", "yaw"])
def test_bf16_packed_equals_flax_on_an_unconditional_pipeline(which):
    """FFHQ fixture pipeline (rosinality mapping, ψ = 0.7; no label branch): the packed and flax forms round the
    same operands, so their bf16 outputs agree to float32 summation order."""
    clf = getattr(ffhq_pipeline(), which)
    z = jnp.asarray(np.random.default_rng(6).standard_normal((6, 64)).astype(np.float32))
    fwd = jax.jit(jax.vmap(lambda c, x: c(x), in_axes=(None, 0)))
    hi, packed, flax_ = (np.asarray(fwd(c, z)) for c in (clf, _with(clf, "bf16"), _with(clf, "bf16", pack=False)))
    scale = np.abs(hi).max()
    np.testing.assert_allclose(packed, flax_, rtol=0, atol=1e-5 * scale)
    assert np.abs(packed - hi).max() > 1e-5 * scale


def test_bf16_pipeline_is_near_float32():
    """CIFAR fixture pipeline (conditional mapping + DenseEmbedder): bf16 logits and energy gradients stay within
    bf16's resolution of the float32 ones while differing from them, in the packed form and in the flax form (which
    also rounds the label half of fc0, folded at float32 in the packed form)."""
    clf = cifar_pipeline().classifier
    z = jnp.asarray(np.random.default_rng(4).standard_normal((6, 64)).astype(np.float32))
    fwd = jax.jit(jax.vmap(lambda c, x: c(x), in_axes=(None, 0)))
    hi = np.asarray(fwd(clf, z))
    scale = np.abs(hi).max()
    for c in (_with(clf, "bf16"), _with(clf, "bf16", pack=False)):
        err = np.abs(np.asarray(fwd(c, z)) - hi).max() / scale
        assert 1e-4 < err < 3e-2, err
    energy = lambda c: E.per_sample(lambda y: E.discrete(c, y), jnp.arange(6) % 10)
    grad = jax.jit(lambda c, x: E.grad(energy(c), x))
    g_hi, g_bf = np.asarray(grad(clf, z)), np.asarray(grad(_with(clf, "bf16"), z))
    rel = np.abs(g_bf - g_hi).max() / np.abs(g_hi).max()
    assert 1e-4 < rel < 5e-2, rel
    g_tf = np.asarray(grad(_with(clf, "tf32"), z))
    if jax.default_backend() != "gpu":
        np.testing.assert_array_equal(g_tf, g_hi)


def test_bf16_ode_solve_stays_float32():
    """The PF-ODE (Euler, 20 steps, so that the step sequence is the same) on the fixture pipeline with bf16 matmuls:
    the state stays float32 and the final latents move by a small fraction of the flow's own displacement
    (bf16 touches only the drift's products)."""
    clf = cifar_pipeline().classifier
    z0 = jnp.asarray(np.random.default_rng(5).standard_normal((4, 64)).astype(np.float32))
    ys = jnp.arange(4) % 10
    solve = jax.jit(lambda c: ode.sample_ode(None, E.per_sample(lambda y: E.discrete(c, y), ys), z0,
                                             solver="euler", num_steps=20, batch_mode="joint"))
    hi, bf = solve(clf), solve(_with(clf, "bf16"))
    assert bf.z.dtype == jnp.float32 and bool(jnp.all(bf.success))
    moved = float(jnp.abs(hi.z - z0).max())
    d = float(jnp.abs(bf.z - hi.z).max())
    assert moved > 0.2 and 0 < d < 0.05 * moved, (d, moved)
