"""LACE DenseEmbedder: fixture logits, converter layouts and errors, latent maps."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.models import classifiers as C
from ports import lace_classifier

TOL = dict(rtol=1e-5, atol=1e-5)


def _sd(fixtures, name):
    with np.load(fixtures / "lace" / f"dense_embedder_{name}.npz") as z:
        return {k: z[k] for k in z.files}


def test_dims_match_lace_linspace():
    assert C.dense_embedder_dims(64, 32, 4) == (64, 53, 42, 32)
    assert C.dense_embedder_dims(512, 128, 4) == (512, 384, 256, 128)
    with pytest.raises(ValueError, match="depth"):
        C.dense_embedder_dims(64, 32, 1)


@pytest.mark.parametrize("name, key, layout, ncl", [
    ("cifar", "cifar_logits", "linear", None),
    ("glasses", "ffhq_logits_glasses", "heads", (2,)),
    ("yaw", "ffhq_logits_yaw", "heads", (1,)),
])
def test_fixture_logits(fixtures, lace_vectors, name, key, layout, ncl):
    config, variables = lace_classifier.params_from_state_dict(_sd(fixtures, name))
    assert config["dims"] == (64, 53, 42, 32)
    module = C.DenseEmbedder(**config)
    assert module.layout == layout and config["num_classes_list"] == ncl
    x = lace_vectors["cifar_w" if name == "cifar" else "ffhq_w"]
    out = module.apply(variables, x)
    if layout == "heads":
        assert isinstance(out, tuple) and len(out) == 1
        out = out[0]
    np.testing.assert_allclose(np.asarray(out), lace_vectors[key], **TOL)
    # one latent at a time gives the same numbers (the energies call it per sample)
    single = C.dense_embedder_apply(config, variables, x[3])
    single = single[0] if isinstance(single, tuple) else single
    np.testing.assert_allclose(np.asarray(single), lace_vectors[key][3], **TOL)


def test_cifar_classify_through_mapping(lace_vectors):
    """`CCF.classify(z)` = DenseEmbedder(mapping(z)) with the real ada mapping."""
    from tests.lace_pipelines import cifar_pipeline
    p = cifar_pipeline()
    out = jax.jit(jax.vmap(p.classifier))(lace_vectors["cifar_z"])
    np.testing.assert_allclose(np.asarray(out), lace_vectors["cifar_classify"], **TOL)


def test_f_prefix_and_wrapper_keys(fixtures, lace_vectors):
    sd = _sd(fixtures, "glasses")
    cfg_a, var_a = lace_classifier.params_from_state_dict(sd)
    cfg_b, var_b = lace_classifier.params_from_state_dict({"f." + k: v for k, v in sd.items()})
    assert cfg_a == cfg_b
    for a, b in zip(jax.tree_util.tree_leaves(var_a), jax.tree_util.tree_leaves(var_b)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="both with and without"):
        lace_classifier.params_from_state_dict({**sd, "f.net.0.bias": sd["net.0.bias"]})


def test_heads_split_by_num_classes_list(fixtures):
    """A 2-output heads layer read as two continuous heads [1, 1] returns the two columns separately."""
    sd = _sd(fixtures, "glasses")
    cfg, var = lace_classifier.params_from_state_dict(sd, num_classes_list=[1, 1])
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 64))
    a, b = C.DenseEmbedder(**cfg).apply(var, x)
    (both,) = C.dense_embedder_apply(*lace_classifier.params_from_state_dict(sd), x)
    np.testing.assert_allclose(np.asarray(jnp.concatenate([a, b], -1)), np.asarray(both), rtol=0, atol=0)
    with pytest.raises(ValueError, match="does not split"):
        lace_classifier.params_from_state_dict(sd, num_classes_list=[1, 2])
    with pytest.raises(ValueError, match="linear"):
        lace_classifier.params_from_state_dict(_sd(fixtures, "cifar"), num_classes_list=[10])


def test_from_lace_matches_converted_shapes(fixtures):
    cfg, var = lace_classifier.params_from_state_dict(_sd(fixtures, "cifar"))
    m = C.DenseEmbedder.from_lace(64, 32, 4, num_classes=10)
    init = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 64)))
    assert jax.tree_util.tree_map(jnp.shape, init) == jax.tree_util.tree_map(jnp.shape, var)


@pytest.mark.parametrize("mutate, match", [
    (lambda sd: sd.pop("net.3.bias"), "missing key 'net.3.bias'"),
    (lambda sd: sd.pop("net.0.weight"), "net.0.weight"),
    (lambda sd: sd.update({"net.3.weight": np.zeros((42, 50, 1, 1), np.float32)}), "net.3.weight"),
    (lambda sd: sd.update({"net.6.bias": np.zeros((31,), np.float32)}), "net.6.bias"),
    (lambda sd: sd.update({"linear.weight": np.zeros((10, 31), np.float32)}), "linear.weight"),
    (lambda sd: sd.update({"linear.bias": np.zeros((9,), np.float32)}), "linear.bias"),
    (lambda sd: sd.update({"heads.weight": np.zeros((2, 32), np.float32)}), "exactly one of"),
    (lambda sd: sd.pop("linear.weight"), "neither"),
    (lambda sd: sd.update({"net.1.weight": np.ones((53,), np.float32)}), "norm layer"),
    (lambda sd: sd.update({"extra": np.ones((3,), np.float32)}), "unexpected key 'extra'"),
    (lambda sd: sd.update({"net.0.weight": np.zeros((53, 64, 3, 3), np.float32)}), "1x1 conv"),
])
def test_converter_errors_name_the_key(fixtures, mutate, match):
    sd = _sd(fixtures, "cifar")
    mutate(sd)
    with pytest.raises(ValueError, match=match):
        lace_classifier.params_from_state_dict(sd)


def test_latent_classifier_is_a_pytree_with_static_architecture(fixtures, lace_vectors):
    cfg, var = lace_classifier.params_from_state_dict(_sd(fixtures, "yaw"))
    clf = C.LatentClassifier.create(cfg, var).select(0)
    leaves, treedef = jax.tree_util.tree_flatten(clf)
    assert len(leaves) == 12  # 4 layers × (kernel, bias, contiguous kernelᵀ); dims/heads live in the treedef
    f = jax.jit(jax.vmap(lambda c, x: c(x), in_axes=(None, 0)))
    np.testing.assert_allclose(np.asarray(f(clf, lace_vectors["ffhq_w"])), lace_vectors["ffhq_logits_yaw"], **TOL)
    with pytest.raises(ValueError, match="out of range"):
        clf.select(1)


def test_mapping_w_rejects_batches_and_bad_c(fixtures):
    from tests.lace_pipelines import cifar_pipeline
    g = cifar_pipeline().g
    with pytest.raises(ValueError, match="one latent"):
        g(jnp.zeros((2, 64)))
    with pytest.raises(ValueError, match="c must have shape"):
        C.MappingW.create(g.config, g.variables, c=np.zeros(3))


def _linear(w):
    @jax.tree_util.Partial
    def f(w, z):
        return z @ w
    return jax.tree_util.Partial(f, w)


def test_product_of_experts_is_the_normalised_product():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
    w1, w2 = jax.random.normal(k1, (5, 4)), jax.random.normal(k2, (5, 4))
    z = jax.random.normal(k3, (7, 5))
    poe = C.ProductOfExperts((_linear(w1), _linear(w2)))
    p = np.asarray(jax.nn.softmax(jax.vmap(poe)(z), -1), np.float64)
    p1 = np.asarray(jax.nn.softmax(z @ w1, -1), np.float64)
    p2 = np.asarray(jax.nn.softmax(z @ w2, -1), np.float64)
    ref = p1 * p2 / (p1 * p2).sum(-1, keepdims=True)
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-7)
    # a pytree whose leaves are the members' weights: jit sees new weights without recompiling
    assert len(jax.tree_util.tree_leaves(poe)) == 2
    f = jax.jit(lambda c, x: jax.vmap(c)(x))
    np.testing.assert_allclose(np.asarray(f(poe, z)), np.asarray(jax.vmap(poe)(z)), rtol=1e-6)
    # one expert: its own log-probabilities
    np.testing.assert_allclose(np.asarray(jax.vmap(C.ProductOfExperts((_linear(w1),)))(z)),
                               np.asarray(jax.nn.log_softmax(z @ w1, -1)), rtol=1e-5, atol=1e-6)


def test_product_of_experts_rejects_bad_members():
    z = jnp.ones((5,))
    with pytest.raises(ValueError, match="different shapes"):
        C.ProductOfExperts((_linear(jnp.ones((5, 4))), _linear(jnp.ones((5, 3)))))(z)
    with pytest.raises(ValueError, match="non-empty"):
        C.ProductOfExperts(())(z)
