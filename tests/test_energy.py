"""Energies, combinators and expressions: LACE fixture values, closed forms, errors, compile counts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy as E
from tests import lace_pipelines as P

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def jvg():
    """Jitted batch (energy, gradient); energies are arguments: one compilation per energy *structure* (each
    pipeline structure costs ~1 s of compile time, so the fixture tests below share structures where they can)."""
    return jax.jit(E.value_and_grad)


# --------------------------------------------------------------------------------------------------------------
# LACE fixtures (`lace/vectors.npz`), sign: E_cond = −energy_neg

def test_cifar_energies_gradient_and_drift(lace_vectors, jvg):
    v = lace_vectors
    be = P.cifar_cond_energy_batch(v["cifar_y"])
    z = v["cifar_z"]
    val, g = (np.asarray(a) for a in jvg(be, z))
    np.testing.assert_allclose(val, -v["cifar_cond_energy"], **TOL)
    # LACE forward = cond − ½‖z‖²: the full energy is E_cond + ½‖z‖² (`with_prior`, checked in closed form below)
    np.testing.assert_allclose(val + 0.5 * np.sum(z.astype(np.float64) ** 2, 1), -v["cifar_energy_neg"], **TOL)
    np.testing.assert_allclose(g, -v["cifar_grad_cond_energy"], **TOL)
    for t in (1.0, 0.5):
        drift = 0.5 * P.beta(t) * g
        np.testing.assert_allclose(drift, v[f"cifar_vpode_drift_t{t:g}"], **TOL)
    # the LACE VPODE drift is −½β∇energy_neg = +½β∇E_cond: it points up the energy (the ODE runs t: 1 → 0)
    assert np.sum(v["cifar_vpode_drift_t1"] * g) > 0


def test_ffhq_single_attribute_energies(lace_vectors, jvg):
    v = lace_vectors
    glasses, yaw = P.ffhq_pipeline().attributes
    z = v["ffhq_z"]
    cases = [
        (E.per_sample(lambda y: glasses.energy(y), v["ffhq_y_glasses"]), "ffhq_energy_glasses"),
        (E.per_sample(lambda y: glasses.energy(y, temperature=2.0), v["ffhq_y_glasses"]),
         "ffhq_energy_glasses_distemp2"),
        (E.per_sample(lambda y: yaw.energy(y), v["ffhq_y_yaw"]), "ffhq_energy_yaw"),
    ]
    for be, key in cases:
        np.testing.assert_allclose(np.asarray(jvg(be, z)[0]), -v[key], **TOL, err_msg=key)


def test_ffhq_combined_energies(lace_vectors, jvg):
    v = lace_vectors
    z, ys = v["ffhq_z"], v["ffhq_ys"]
    # every row of ffhq_ys is (glasses = 1, yaw = 0.5): one shared energy serves the batch
    np.testing.assert_array_equal(ys, np.tile([1.0, 0.5], (8, 1)))
    val, g = (np.asarray(a) for a in jvg(P.ffhq_cond_energy([1, 0.5]), z))
    np.testing.assert_allclose(val, -v["ffhq_cond_energy"], **TOL)
    np.testing.assert_allclose(val + 0.5 * np.sum(z.astype(np.float64) ** 2, 1), -v["ffhq_energy_neg"], **TOL)
    np.testing.assert_allclose(g, -v["ffhq_grad_cond_energy"], **TOL)
    for t in (1.0, 0.5):
        np.testing.assert_allclose(0.5 * P.beta(t) * g, v[f"ffhq_vpode_drift_t{t:g}"], **TOL)
    np.testing.assert_allclose(np.asarray(jvg(P.ffhq_cond_energy([1, 0.5], "0*1"), z)[0]),
                               -v["ffhq_cond_energy_or"], **TOL)
    # seq_indices=[1], reweight: only yaw, × 10 (it is continuous)
    seq1 = P.ffhq_cond_energy([0.5], seq_indices=[1], reweight=True)
    np.testing.assert_allclose(np.asarray(jvg(seq1, z)[0]), -v["ffhq_cond_energy_seq1"], **TOL)
    # per-sample batched version of the AND energy gives the same numbers
    np.testing.assert_allclose(np.asarray(jvg(P.ffhq_cond_energy_batch(ys), z)[0]), -v["ffhq_cond_energy"], **TOL)


def test_logits_distance_to_anchor(lace_vectors, jvg):
    v = lace_vectors
    p = P.ffhq_pipeline()
    be = E.per_sample(lambda za: E.anchored_logits([p.glasses], za, 1.0), v["ffhq_z_anchor"])
    np.testing.assert_allclose(np.asarray(jvg(be, v["ffhq_z"])[0]), v["ffhq_logits_dist_glasses"], **TOL)


LOGIC = {"and": "0+1", "or": "0*1", "not": "0+(-1)", "nested": "(0+1)*(2+(-3))"}


def _const_energy(c):
    """An energy whose value is the constant c (as an energy_neg: E = −c) with a z-dependent zero, for tests."""
    return E.shift(E.weighted(E.gaussian_prior(), 0.0), -c)


def _logic_energies():
    glasses, yaw = P.ffhq_pipeline().attributes
    return [glasses.energy(1), yaw.energy(0.5), glasses.energy(0), yaw.energy(0.5)]


def test_logic_energies_are_the_pipeline_energies(lace_vectors, jvg):
    # e0/e2 and e1/e3 share a structure (glasses y=1/0, yaw y=0.5): stack them
    es = _logic_energies()
    z = lace_vectors["ffhq_z"]
    for i, j in ((0, 2), (1, 3)):
        got = np.asarray(jvg(E.stack([es[i]] * 8 + [es[j]] * 8), np.concatenate([z, z]))[0])
        np.testing.assert_allclose(got, -np.concatenate([lace_vectors["logic_es"][i], lace_vectors["logic_es"][j]]),
                                   **TOL)


@pytest.mark.parametrize("name", ["not", "nested"])
def test_logical_comb_on_pipeline_energies(lace_vectors, jvg, name):
    """On the classifier energies themselves (the other two expressions: on the stored values, below)."""
    e = E.parse(LOGIC[name], _logic_energies())     # parse accepts the digit syntax with a list of energies
    np.testing.assert_allclose(np.asarray(jvg(e, lace_vectors["ffhq_z"])[0]), -lace_vectors[f"logic_{name}"], **TOL)


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


def test_sequential_editing_drift(sampler_refs, jvg):
    """LACE VPODE(reg_z=0.04, reg_logits=0.01, seq_indices=[1], reweight=True) at t = 1, shifted init, per-sample
    anchors: `seq_vpode_drift_t1_shifted` = ½β(1)∇E_seq."""
    r = sampler_refs
    be = P.ffhq_seq_energy_batch(r["seq_ys"], r["seq_z_anchor"])
    _, g = jvg(be, r["seq_shifted_z_init"])
    np.testing.assert_allclose(0.5 * P.beta(1.0) * np.asarray(g), r["seq_vpode_drift_t1_shifted"], **TOL)
    # at the anchor (= the AND run's z_final) both regularisers vanish: the energy is 10 × the yaw energy there
    val, _ = jvg(be, r["seq_z_anchor"])
    yaw = r["ffhq_and_dopri5_tol1e-3_logits_yaw_final"][:, 0].astype(np.float64)
    np.testing.assert_allclose(np.asarray(val), 10 * (yaw - 0.8) ** 2 / (2 * 0.1 ** 2), **TOL)


def test_lace_seq_weights():
    D, Cn = E.DISCRETE, E.CONTINUOUS
    assert E.lace_seq_weights([Cn]) == (10.0,)
    assert E.lace_seq_weights([D]) == (1.0,)
    assert E.lace_seq_weights([D, Cn]) == (0.1, 10.0)
    assert E.lace_seq_weights([Cn, D, D]) == (0.1, 0.1, 1.0)
    assert E.lace_seq_weights([]) == ()


# --------------------------------------------------------------------------------------------------------------
# Analytic attributes: z[0] and z[1] are continuous predictions, z[2:5] the logits of a 3-class attribute.

def _pred0(z):
    return z[0:1]


def _pred1(z):
    return z[1:2]


def _logits3(z):
    return z[2:5]


ATTRS = {
    "age": E.Attribute.continuous(_pred0, value_range=(0.0, 1.0)),
    "yaw": E.Attribute.continuous(_pred1, sigma=0.5),
    "hair": E.Attribute.discrete(_logits3, classes=("black", "blond", "red")),
}
ZS = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (6, 5)), np.float32)


_VALUE = E.value   # eager: the many tiny structures here cost more to compile than to run


def _ev(e, zs=ZS, *args):
    return np.asarray(_VALUE(e, jnp.asarray(zs), *args))


def _age(y):
    return (ZS[:, 0] - y) ** 2 / (2 * 0.1 ** 2)


def _yaw(y):
    return (ZS[:, 1] - y) ** 2 / (2 * 0.5 ** 2)


def _hair(k, tau=1.0):
    lg = ZS[:, 2:5].astype(np.float64)
    lse = np.log(np.exp(lg).sum(1))
    return lse - lg[:, k] / tau


def _lace_not_np(e):
    return -np.clip(0.1 / np.abs(e), 0, 1) * e


def _or_np(*es):
    return -np.log(np.sum(np.exp(-np.stack(es)), 0))


def test_leaf_energies_closed_form():
    np.testing.assert_allclose(_ev(E.gaussian_prior()), 0.5 * (ZS ** 2).sum(1), **TOL)
    np.testing.assert_allclose(_ev(E.continuous(_pred0, 0.3)), _age(0.3), **TOL)
    np.testing.assert_allclose(_ev(E.continuous(_pred1, -1.0, sigma=0.5)), _yaw(-1.0), **TOL)
    np.testing.assert_allclose(_ev(E.discrete(_logits3, 2)), _hair(2), **TOL)
    np.testing.assert_allclose(_ev(E.discrete(_logits3, 1, temperature=2.0)), _hair(1, 2.0), **TOL)
    np.testing.assert_allclose(_ev(E.discrete(_logits3, 1.0)), _hair(1), **TOL)   # float labels as LACE's .long()
    za = ZS[0]
    np.testing.assert_allclose(_ev(E.anchored(lambda z: 2 * z[:2], za, 0.04)),
                               0.04 * (((2 * ZS[:, :2] - 2 * za[:2]) ** 2).sum(1) + ((ZS - za) ** 2).sum(1)), **TOL)
    np.testing.assert_allclose(_ev(E.anchored_logits([_logits3, _pred0], za, 0.01)),
                               0.01 * (((ZS[:, 2:5] - za[2:5]) ** 2).sum(1) + (ZS[:, 0] - za[0]) ** 2), **TOL)
    # the anchor is a constant: the gradient at z is 2λ(z − z_a) only
    g = jax.grad(E.anchored(None, za, 0.5))(ZS[1])
    np.testing.assert_allclose(np.asarray(g), (ZS[1] - za), **TOL)


def test_combinator_identities():
    a, b = E.continuous(_pred0, 0.3), E.discrete(_logits3, 0)
    va, vb = _age(0.3), _hair(0)
    np.testing.assert_allclose(_ev(E.and_(a, b)), va + vb, **TOL)
    np.testing.assert_allclose(_ev(E.or_(a, a)), va - np.log(2), **TOL)
    np.testing.assert_allclose(_ev(E.or_(a, a, temperature=0.5)), va - 0.5 * np.log(2), **TOL)
    np.testing.assert_allclose(_ev(E.or_(a, b)), _or_np(va, vb), **TOL)
    np.testing.assert_allclose(_ev(E.or_(a, b)), _ev(E.or_(b, a)), **TOL)
    np.testing.assert_allclose(_ev(E.lace_or(a, a)), va - np.log(21), **TOL)
    np.testing.assert_allclose(_ev(E.lace_or(a, b)), -np.log(20 * np.exp(-va) + np.exp(-vb)), **TOL)
    np.testing.assert_allclose(_ev(E.not_(E.not_(a))), va, **TOL)
    np.testing.assert_allclose(_ev(E.not_(a, weight=0.3)), -0.3 * va, **TOL)
    np.testing.assert_allclose(_ev(E.lace_not(a)), _lace_not_np(va), **TOL)
    np.testing.assert_allclose(_ev(E.weighted(a, 10.0)), 10 * va, **TOL)
    np.testing.assert_allclose(_ev(E.tempered(a, 4.0)), va / 4, **TOL)
    np.testing.assert_allclose(_ev(E.shift(a, 2.5)), va + 2.5, **TOL)
    np.testing.assert_allclose(_ev(E.with_prior(a)), va + 0.5 * (ZS ** 2).sum(1), **TOL)
    np.testing.assert_allclose(_ev(E.and_(E.zero(), a)), va, **TOL)
    # or_ of a very unlikely and a likely energy ≈ the likely one; stable for huge energies
    big = E.shift(a, 1e4)
    np.testing.assert_allclose(_ev(E.or_(big, a)), va, **TOL)
    assert np.all(np.isfinite(_ev(E.lace_or(E.shift(a, -1e4), a))))


def test_lace_not_gradient_is_scaled_negation():
    """α is computed from a detached copy: ∇(−αE) = −α∇E (no d|E|/dz term)."""
    a = E.continuous(_pred0, 0.3)
    for z in ZS:
        v = float(a(z))
        alpha = min(0.1 / abs(v), 1.0)
        np.testing.assert_allclose(np.asarray(jax.grad(E.lace_not(a))(z)), -alpha * np.asarray(jax.grad(a)(z)),
                                   **TOL)
    np.testing.assert_allclose(float(E.lace_not(E.zero())(ZS[0])), 0.0)   # |E| = 0: α clamps to 1, no NaN


def _td(z, t):
    """A time-dependent energy (module-level so its Partial is hashable)."""
    return t * jnp.sum(z ** 2)


def test_combinators_forward_time():
    from jax.tree_util import Partial
    et = Partial(_td)
    a = E.continuous(_pred0, 0.3)
    va = _age(0.3)
    t = 0.3
    vt = t * (ZS ** 2).sum(1)
    np.testing.assert_allclose(_ev(E.and_(et, a), ZS, t), vt + va, **TOL)
    np.testing.assert_allclose(_ev(E.or_(et, a), ZS, t), _or_np(vt, va), **TOL)
    np.testing.assert_allclose(_ev(E.lace_or(et, a), ZS, t), -np.log(20 * np.exp(-vt) + np.exp(-va)), **TOL)
    np.testing.assert_allclose(_ev(E.lace_not(et), ZS, t), _lace_not_np(vt), **TOL)
    np.testing.assert_allclose(_ev(E.weighted(E.tempered(E.shift(et, 1.0), 2.0), 3.0), ZS, t), 1.5 * (vt + 1),
                               **TOL)
    np.testing.assert_allclose(_ev(E.with_prior(et), ZS, t), vt + 0.5 * (ZS ** 2).sum(1), **TOL)
    np.testing.assert_allclose(_ev(E.parse_lace("0+(-1)", [a, et]), ZS, t), va + _lace_not_np(vt), **TOL)
    # batch helpers forward it too, for per-sample and batched energies
    np.testing.assert_allclose(np.asarray(E.grad(E.and_(et, a), jnp.asarray(ZS), t)),
                               2 * t * ZS + np.asarray(E.grad(a, jnp.asarray(ZS))), **TOL)
    be = E.per_sample(lambda y: E.and_(et, E.continuous(_pred0, y)), np.full(6, 0.3, np.float32))
    np.testing.assert_allclose(np.asarray(E.value(be, jnp.asarray(ZS), t)), vt + va, **TOL)


# --------------------------------------------------------------------------------------------------------------
# The readable language

def test_parse_terms_and_values():
    np.testing.assert_allclose(_ev(E.parse("age=0.3", ATTRS)), _age(0.3), **TOL)
    np.testing.assert_allclose(_ev(E.parse("hair=2", ATTRS)), _hair(2), **TOL)
    np.testing.assert_allclose(_ev(E.parse("hair=red", ATTRS)), _hair(2), **TOL)
    np.testing.assert_allclose(_ev(E.parse("hair == 'blond'", ATTRS)), _hair(1), **TOL)
    np.testing.assert_allclose(_ev(E.parse("yaw=-1.5e0", ATTRS)), _yaw(-1.5), **TOL)


@pytest.mark.parametrize("expr, want", [
    ("age=0.3 & yaw=1 | hair=0", lambda: _or_np(_age(0.3) + _yaw(1), _hair(0))),
    ("hair=0 | age=0.3 & yaw=1", lambda: _or_np(_hair(0), _age(0.3) + _yaw(1))),
    ("age=0.3 & (yaw=1 | hair=0)", lambda: _age(0.3) + _or_np(_yaw(1), _hair(0))),
    ("!age=0.3 & yaw=1", lambda: _lace_not_np(_age(0.3)) + _yaw(1)),
    ("!(age=0.3 & yaw=1)", lambda: _lace_not_np(_age(0.3) + _yaw(1))),
    ("!!hair=1", lambda: _lace_not_np(_lace_not_np(_hair(1)))),
    ("age=0.3 | yaw=1 | hair=2", lambda: _or_np(_age(0.3), _yaw(1), _hair(2))),
    ("age=0.3 && yaw=1 || hair=2", lambda: _or_np(_age(0.3) + _yaw(1), _hair(2))),
    ("hair=red & (age=0.6 | !yaw=0.5)", lambda: _hair(2) + _or_np(_age(0.6), _lace_not_np(_yaw(0.5)))),
])
def test_parse_precedence(expr, want):
    """NOT binds tighter than AND, AND tighter than OR; parentheses group."""
    np.testing.assert_allclose(_ev(E.parse(expr, ATTRS)), want(), **TOL)


def test_parse_operator_choice():
    got = _ev(E.parse("age=0.3 | !yaw=1", ATTRS, or_op=E.lace_or, not_op=E.not_))
    np.testing.assert_allclose(got, -np.log(20 * np.exp(-_age(0.3)) + np.exp(_yaw(1))), **TOL)


def _caret_col(err) -> int:
    lines = str(err.value).splitlines()
    return lines[-1].index("^") - 2


@pytest.mark.parametrize("expr, col, match", [
    ("age=0.3 & (yaw=1", 16, r"expected '\)' to close the '\(' at column 11"),
    ("age=0.3 &", 9, "expected an attribute condition"),
    ("age=0.3 yaw=1", 8, "unexpected 'yaw'"),
    ("age=0.3)", 7, r"no matching '\('"),
    ("age 0.3", 4, "expected '='"),
    ("age=0.3 $ yaw=1", 8, "unexpected character '\\$'"),
    ("age=", 4, "expected a value for 'age'"),
    ("", 0, "empty expression"),
    ("hair=3", 5, r"class index 3 out of range for discrete attribute 'hair' \(valid: 0..2"),
    ("hair=-1", 5, "out of range"),
    ("hair=0.5", 5, "needs a class index"),
    ("hair=green", 5, "unknown class 'green'"),
    ("yaw=1 & age=1.5", 12, r"value 1.5 out of range \[0, 1\] for continuous attribute 'age'"),
    ("age=old", 4, "needs a number"),
    ("yaw=1 | (smile=1)", 9, r"unknown attribute 'smile' \(known attributes: age, hair, yaw\)"),
    ("0+1", 0, "digit syntax"),
])
def test_parse_errors_point_at_the_column(expr, col, match):
    with pytest.raises(ValueError, match=match) as err:
        E.parse(expr, ATTRS)
    assert _caret_col(err) == col, str(err.value)
    assert str(err.value).splitlines()[-2] == "  " + expr
    assert f"column {col + 1}" in str(err.value)


@pytest.mark.parametrize("expr, col, match", [
    ("0+", 2, "unexpected end"),
    ("(0+1", 4, r"expected '\)'"),
    ("0+5", 2, "energy index 5 out of range"),
    ("12", 0, "single digits"),
    ("0+a", 2, "unexpected 'a'"),
    ("0+1)", 3, r"no matching '\('"),
    ("  ", 0, "empty"),
])
def test_parse_lace_errors(expr, col, match):
    es = [E.continuous(_pred0, 0.0), E.continuous(_pred1, 0.0)]
    with pytest.raises(ValueError, match=match) as err:
        E.parse_lace(expr, es)
    assert _caret_col(err) == col, str(err.value)


def test_parse_lace_left_to_right_without_precedence():
    """`0+1*2` = lace_or(e0 + e1, e2) (README example), spaces ignored, leading operators act on 0."""
    es = [E.continuous(_pred0, 0.3), E.continuous(_pred1, 1.0, sigma=0.5), E.discrete(_logits3, 2)]
    v0, v1, v2 = _age(0.3), _yaw(1.0), _hair(2)
    n = [-v0, -v1, -v2]                      # LACE energy_neg values
    np.testing.assert_allclose(_ev(E.parse_lace("0+1*2", es)), -np.log(20 * np.exp(n[0] + n[1]) + np.exp(n[2])),
                               **TOL)
    np.testing.assert_allclose(_ev(E.parse_lace("0 * 1 + 2", es)),
                               -(np.log(20 * np.exp(n[0]) + np.exp(n[1])) + n[2]), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(_ev(E.parse_lace("0-1", es)), v0 + _lace_not_np(v1), **TOL)
    np.testing.assert_allclose(_ev(E.parse_lace("(-1)", es)), _lace_not_np(v1), **TOL)
    np.testing.assert_allclose(_ev(E.parse_lace("2*(0+1)", es)), -np.log(20 * np.exp(n[2]) + np.exp(n[0] + n[1])),
                               **TOL)


# --------------------------------------------------------------------------------------------------------------
# Pytree structure and compilation counts

def _linear_logits(w, z):
    return w @ z


def test_stack_shares_weights_and_batches_targets():
    from jax.tree_util import Partial
    f = Partial(_linear_logits, jnp.ones((3, 5)))
    be = E.per_sample(lambda y: E.discrete(f, y, 2.0), np.array([0, 2, 1]))
    assert be.axes.count(0) == 2 and be.axes.count(None) == 1   # y and τ stacked; weights shared
    assert be.batch_size == 3
    np.testing.assert_allclose(np.asarray(E.value(be, jnp.asarray(ZS[:3]))),
                               [float(E.discrete(f, y, 2.0)(z)) for y, z in zip([0, 2, 1], ZS[:3])], **TOL)
    with pytest.raises(ValueError, match="different structure"):
        E.stack([E.discrete(f, 0), E.continuous(f, 0.0)])
    with pytest.raises(ValueError, match="scalar"):
        E.discrete(f, np.array([0, 1]))


def test_one_compilation_for_new_targets_weights_and_temperatures():
    """A jitted, vmapped gradient of an energy compiles once for new y, weights, temperatures and network
    weights; a new *structure* compiles again (so the counter can fail)."""
    from jax.tree_util import Partial
    traces = []

    def batch_grad(e, z):
        traces.append(1)             # runs only while tracing
        return E.value_and_grad(e, z)

    f = jax.jit(batch_grad)
    zs = jnp.asarray(ZS)

    def build(w_net, y_hair, y_age, weight, temp, or_temp):
        logits = Partial(_linear_logits, w_net)
        return E.or_(E.and_(E.discrete(logits, y_hair, temp), E.weighted(E.continuous(_pred0, y_age), weight)),
                     E.lace_not(E.continuous(_pred1, y_age)), temperature=or_temp)

    outs = []
    key = jax.random.PRNGKey(1)
    for i, (yh, ya, w, t, ot) in enumerate([(0, 0.1, 1.0, 1.0, 1.0), (2, 0.7, 10.0, 2.0, 0.5),
                                            (1, -0.3, 0.1, 0.5, 3.0)]):
        w_net = jax.random.normal(jax.random.fold_in(key, i), (3, 5))
        e = build(w_net, yh, ya, w, t, ot)
        v, g = f(e, zs)
        np.testing.assert_allclose(np.asarray(v), _ev(e), **TOL)
        outs.append(np.asarray(g))
    assert len(traces) == 1
    assert not np.allclose(outs[0], outs[1])
    # per-sample targets: a BatchedEnergy with new ys also reuses its compilation
    for ys in ([0, 1, 2, 0, 1, 2], [2, 2, 1, 1, 0, 0]):
        be = E.per_sample(lambda y: E.discrete(_logits3, y), np.array(ys))
        v, _ = f(be, zs)
        np.testing.assert_allclose(np.asarray(v), [_hair(k)[i] for i, k in enumerate(ys)], **TOL)
    assert len(traces) == 2
    # a different structure (AND of three instead of OR) is a new program
    f(E.and_(E.continuous(_pred0, 0.1), E.continuous(_pred1, 0.2), E.discrete(_logits3, 1)), zs)
    assert len(traces) == 3
    # parse builds the same structure for new values: no recompilation
    for expr in ("hair=red & age=0.3", "hair=0 & age=0.9"):
        f(E.parse(expr, ATTRS), zs)
    assert len(traces) == 4


def test_energy_constructed_inside_jit_and_vmap():
    """Constructors are pure: per-sample targets may also be traced values."""
    ys = jnp.array([0, 1, 2, 2, 1, 0])
    got = jax.jit(jax.vmap(lambda z, y: E.discrete(_logits3, y)(z)))(jnp.asarray(ZS), ys)
    np.testing.assert_allclose(np.asarray(got), [_hair(int(k))[i] for i, k in enumerate(ys)], **TOL)


def test_attribute_validation():
    with pytest.raises(ValueError, match="kind"):
        E.Attribute("ordinal", _pred0)
    with pytest.raises(ValueError, match="num_classes"):
        E.Attribute.discrete(_logits3)
    with pytest.raises(ValueError, match="class names"):
        E.Attribute.discrete(_logits3, 2, classes=("a", "b", "c"))
    with pytest.raises(TypeError, match="not an Attribute"):
        E.parse("a=1", {"a": _pred0})
    with pytest.raises(TypeError, match="not an energy"):
        E.and_(E.zero(), 3.0)


def test_lace_conditional_and_sequential_closed_form():
    attrs = [ATTRS["hair"], ATTRS["age"], ATTRS["yaw"]]
    # all attributes, AND; and with a digit expression over them
    np.testing.assert_allclose(_ev(E.lace_conditional(attrs, [2, 0.3, 1.0])), _hair(2) + _age(0.3) + _yaw(1.0),
                               **TOL)
    np.testing.assert_allclose(_ev(E.lace_conditional(attrs, [2, 0.3, 1.0], expr="0-1")),
                               _hair(2) + _lace_not_np(_age(0.3)), **TOL)
    # seq_indices select attributes (targets in that order); reweight: 0.1 for earlier ones, last ×10 if continuous
    np.testing.assert_allclose(_ev(E.lace_conditional(attrs, [1.0, 2], seq_indices=[2, 0])),
                               0.1 * _yaw(1.0) + 1.0 * _hair(2), **TOL)
    np.testing.assert_allclose(_ev(E.lace_conditional(attrs, [2, 0.3], seq_indices=[0, 1])),
                               0.1 * _hair(2) + 10.0 * _age(0.3), **TOL)
    np.testing.assert_allclose(_ev(E.lace_conditional(attrs, [2, 0.3], seq_indices=[0, 1], reweight=False)),
                               _hair(2) + _age(0.3), **TOL)
    np.testing.assert_allclose(_ev(E.lace_conditional(attrs, [2], seq_indices=[0], dis_temp=2.0)), _hair(2, 2.0),
                               **TOL)
    za = ZS[2]
    seq = E.lace_sequential(attrs, [0.3], z_anchor=za, g=lambda z: 3 * z, reg_z=0.04, reg_logits=0.01,
                            seq_indices=[1])
    d_z = 10 * ((ZS - za) ** 2).sum(1)                               # ‖3z − 3z_a‖² + ‖z − z_a‖²
    d_logits = ((ZS[:, 2:5] - za[2:5]) ** 2).sum(1) + (ZS[:, 1] - za[1]) ** 2   # hair and yaw: not edited
    np.testing.assert_allclose(_ev(seq), 10 * _age(0.3) + 0.04 * d_z + 0.01 * d_logits, **TOL)
    with pytest.raises(ValueError, match="2 targets for 3"):
        E.lace_conditional(attrs, [1, 2])
    with pytest.raises(ValueError, match="seq index 5"):
        E.lace_conditional(attrs, [1], seq_indices=[5])


def test_parse_value_range_is_inclusive():
    np.testing.assert_allclose(_ev(E.parse("age=1", ATTRS)), _age(1.0), **TOL)
    np.testing.assert_allclose(_ev(E.parse("age=0.0", ATTRS)), _age(0.0), **TOL)


def test_parse_rejects_other_attribute_containers():
    with pytest.raises(TypeError, match="mapping name -> Attribute"):
        E.parse("age=1", ATTRS["age"])


@pytest.mark.slow
def test_euler_replay_of_lace_vpode(sampler_refs):
    """End-to-end check of the drift convention along a whole trajectory: torchdiffeq's fixed-grid Euler on LACE's
    VPODE (`cifar_euler_step0.01`, 100 drift evaluations at the recorded times, t: 1 → 0) with our CIFAR energy."""
    r = sampler_refs
    run = "cifar_euler_step0.01"
    ts = np.concatenate([r[f"{run}_t_evals"], np.zeros(1, np.float32)])
    be = P.cifar_cond_energy_batch(r["cifar_y"])

    @jax.jit
    def solve(e, z0, ts):
        def step(z, k):
            drift = 0.5 * P.beta(ts[k]) * E.grad(e, z)
            return z + (ts[k + 1] - ts[k]) * drift, None
        return jax.lax.scan(step, z0, jnp.arange(len(ts) - 1))[0]

    z = solve(be, jnp.asarray(r["cifar_z_init"]), jnp.asarray(ts))
    assert int(r[f"{run}_nfe"]) == len(ts) - 1
    np.testing.assert_allclose(np.asarray(z), r[f"{run}_z_final"], rtol=1e-4, atol=1e-4)


def test_complement_is_the_probability_of_not():
    """complement(discrete(f, y)) = −log(1 − p_y) exactly; bounded below by 0; selectable by name for parse."""
    logits = jnp.array([2.0, -1.0, 0.5])
    f = lambda z: logits + 0.0 * z[0]                          # noqa: E731
    z = jnp.zeros(2)
    p = jax.nn.softmax(logits)
    for y in range(3):
        c = E.complement(E.discrete(f, y))
        np.testing.assert_allclose(float(c(z)), -np.log(1 - float(p[y])), rtol=1e-5)
    # AND of independent atoms: −log(1 − p_a p_b)
    both = E.complement(E.and_(E.discrete(f, 0), E.discrete(f, 2)))
    np.testing.assert_allclose(float(both(z)), -np.log(1 - float(p[0] * p[2])), rtol=1e-5)
    sure = E.complement(E.discrete(lambda z: jnp.array([50.0, 0.0]), 0))
    assert np.isfinite(float(sure(z))) and float(sure(z)) > 10          # clipped, not inf
    attrs = {"a": E.Attribute.discrete(f, classes=["x", "y", "w"])}
    np.testing.assert_allclose(float(E.parse("!a=x", attrs, not_op=E.not_op("complement"))(z)),
                               -np.log(1 - float(p[0])), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown not_op"):
        E.not_op("maybe")


def test_complement_of_a_certain_classifier_keeps_its_value_and_gradient():
    """p_y = 1 − 2e-13 (1.0 in float32): −log(1 − p_y) = 30 − log 2 and its z-gradient 30·p_y are exact from the
    logits (a clip of p at 1 − 1e-6 gave 13.8 and a zero gradient: the sampler never left the negated class)."""
    f = lambda z: jnp.array([30.0 * z[0], 0.0, 0.0])          # noqa: E731
    z = jnp.array([1.0, 0.0])
    c = E.complement(E.discrete(f, 0))
    np.testing.assert_allclose(float(c(z)), 30.0 - np.log(2.0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.grad(c)(z)), [30.0, 0.0], rtol=1e-6)
    # far from certain the same energy equals the generic form, and a tempered atom uses the generic form
    zz = jnp.array([0.01, 0.0])
    p0 = float(jax.nn.softmax(f(zz))[0])
    np.testing.assert_allclose(float(c(zz)), -np.log(1 - p0), rtol=1e-5)
    t = E.complement(E.discrete(f, 0, temperature=2.0))
    lse = float(jax.nn.logsumexp(f(zz)))
    np.testing.assert_allclose(float(t(zz)), -np.log(1 - np.exp(0.01 * 30 / 2.0 - lse)),
                               rtol=1e-4)
    # the generic form (an AND of atoms) stays finite with a finite gradient where both atoms are certain
    both = E.complement(E.and_(E.discrete(f, 0), E.discrete(f, 0)))
    assert np.isfinite(float(both(z))) and np.all(np.isfinite(np.asarray(jax.grad(both)(z))))
