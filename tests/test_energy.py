"""Energies, combinators and expressions: LACE fixture values, closed forms, errors, compile counts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy as E
from tests import lace_pipelines as P

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def jvalue():
    """Jitted batch energy / gradient (energies are arguments: one compilation per structure)."""
    return jax.jit(E.value), jax.jit(E.grad)


# --------------------------------------------------------------------------------------------------------------
# LACE fixtures (`lace/vectors.npz`), sign: E_cond = −energy_neg

def test_cifar_energies_gradient_and_drift(lace_vectors, jvalue):
    v = lace_vectors
    val, grad = jvalue
    be = P.cifar_cond_energy_batch(v["cifar_y"])
    z = v["cifar_z"]
    np.testing.assert_allclose(np.asarray(val(be, z)), -v["cifar_cond_energy"], **TOL)
    full = E.stack([E.with_prior(e) for e in [P.cifar_cond_energy(y) for y in v["cifar_y"]]])
    np.testing.assert_allclose(np.asarray(val(full, z)), -v["cifar_energy_neg"], **TOL)
    g = np.asarray(grad(be, z))
    np.testing.assert_allclose(g, -v["cifar_grad_cond_energy"], **TOL)
    for t in (1.0, 0.5):
        drift = 0.5 * P.beta(t) * g
        np.testing.assert_allclose(drift, v[f"cifar_vpode_drift_t{t:g}"], **TOL)
    # the LACE VPODE drift is −½β∇energy_neg = +½β∇E_cond: it points up the energy (the ODE runs t: 1 → 0)
    assert np.sum(v["cifar_vpode_drift_t1"] * g) > 0


def test_ffhq_single_attribute_energies(lace_vectors, jvalue):
    v = lace_vectors
    val, _ = jvalue
    glasses, yaw = P.ffhq_pipeline().attributes
    z = v["ffhq_z"]
    cases = [
        (E.per_sample(lambda y: glasses.energy(y), v["ffhq_y_glasses"]), "ffhq_energy_glasses"),
        (E.per_sample(lambda y: glasses.energy(y, temperature=2.0), v["ffhq_y_glasses"]),
         "ffhq_energy_glasses_distemp2"),
        (E.per_sample(lambda y: yaw.energy(y), v["ffhq_y_yaw"]), "ffhq_energy_yaw"),
    ]
    for be, key in cases:
        np.testing.assert_allclose(np.asarray(val(be, z)), -v[key], **TOL, err_msg=key)


def test_ffhq_combined_energies(lace_vectors, jvalue):
    v = lace_vectors
    val, grad = jvalue
    z, ys = v["ffhq_z"], v["ffhq_ys"]
    # every row of ffhq_ys is (glasses = 1, yaw = 0.5): one shared energy serves the batch
    np.testing.assert_array_equal(ys, np.tile([1.0, 0.5], (8, 1)))
    e_and = P.ffhq_cond_energy([1, 0.5])
    np.testing.assert_allclose(np.asarray(val(e_and, z)), -v["ffhq_cond_energy"], **TOL)
    np.testing.assert_allclose(np.asarray(val(E.with_prior(e_and), z)), -v["ffhq_energy_neg"], **TOL)
    np.testing.assert_allclose(np.asarray(val(P.ffhq_cond_energy([1, 0.5], "0*1"), z)), -v["ffhq_cond_energy_or"],
                               **TOL)
    seq1 = P.ffhq_cond_energy([0.5], seq_indices=[1], reweight=True)
    np.testing.assert_allclose(np.asarray(val(seq1, z)), -v["ffhq_cond_energy_seq1"], **TOL)
    ten_yaw = E.weighted(P.ffhq_pipeline().attributes[1].energy(0.5), 10.0)   # the README's reading of it
    np.testing.assert_allclose(np.asarray(val(ten_yaw, z)), -v["ffhq_cond_energy_seq1"], **TOL)
    g = np.asarray(grad(e_and, z))
    np.testing.assert_allclose(g, -v["ffhq_grad_cond_energy"], **TOL)
    for t in (1.0, 0.5):
        np.testing.assert_allclose(0.5 * P.beta(t) * g, v[f"ffhq_vpode_drift_t{t:g}"], **TOL)
    # per-sample batched version of the same energy gives the same numbers
    np.testing.assert_allclose(np.asarray(val(P.ffhq_cond_energy_batch(ys), z)), -v["ffhq_cond_energy"], **TOL)


def test_logits_distance_to_anchor(lace_vectors, jvalue):
    v = lace_vectors
    val, _ = jvalue
    p = P.ffhq_pipeline()
    be = E.per_sample(lambda za: E.anchored_logits([p.glasses], za, 1.0), v["ffhq_z_anchor"])
    np.testing.assert_allclose(np.asarray(val(be, v["ffhq_z"])), v["ffhq_logits_dist_glasses"], **TOL)


LOGIC = {"and": "0+1", "or": "0*1", "not": "0+(-1)", "nested": "(0+1)*(2+(-3))"}


def _const_energy(c):
    """An energy whose value is the constant c (as an energy_neg: E = −c) with a z-dependent zero, for tests."""
    return E.shift(E.weighted(E.gaussian_prior(), 0.0), -c)


def _logic_energies():
    glasses, yaw = P.ffhq_pipeline().attributes
    return [glasses.energy(1), yaw.energy(0.5), glasses.energy(0), yaw.energy(0.5)]


def test_logic_energies_are_the_pipeline_energies(lace_vectors, jvalue):
    val, _ = jvalue
    got = np.stack([np.asarray(val(e, lace_vectors["ffhq_z"])) for e in _logic_energies()])
    np.testing.assert_allclose(got, -lace_vectors["logic_es"], **TOL)


@pytest.mark.parametrize("name", sorted(LOGIC))
def test_logical_comb_on_pipeline_energies(lace_vectors, jvalue, name):
    val, _ = jvalue
    e = E.parse_lace(LOGIC[name], _logic_energies())
    np.testing.assert_allclose(np.asarray(val(e, lace_vectors["ffhq_z"])), -lace_vectors[f"logic_{name}"], **TOL)
    assert E.parse(LOGIC[name], _logic_energies()) is not None   # parse accepts the digit syntax with a list


@pytest.mark.parametrize("name", sorted(LOGIC))
@pytest.mark.parametrize("which", ["", "_rand"])
def test_logical_comb_on_given_values(lace_vectors, name, which):
    """The same expressions on the stored energy values (logic_es and the uniform(−5, 0) logic_es_rand)."""
    v = lace_vectors
    es_neg = v["logic_es" + which]                 # [4, 8] energy_neg values
    want = v[f"logic_{name}{which}"]

    def one(col):
        es = [_const_energy(col[k]) for k in range(4)]
        return E.parse_lace(LOGIC[name], es)(jnp.zeros(2))

    got = jax.jit(jax.vmap(one, in_axes=1))(es_neg)
    np.testing.assert_allclose(np.asarray(got), -want, **TOL)
