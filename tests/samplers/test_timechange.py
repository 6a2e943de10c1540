"""The time-changed (autonomous) LACE PF-ODE reaches the same z(t_end) as the t-parameterised ODE."""
import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy as E
from lace_jax.samplers import VP
from lace_jax.samplers import timechange as tc


def _quadratic(a):
    """E(z) = ½ Σ a_i z_i²: the PF-ODE dz/dt = ½β(t)·a·z has z(t_end) = exp(−a·S(t_end))·z(1)."""
    return jax.tree_util.Partial(lambda a, z: 0.5 * jnp.sum(a * z * z), jnp.asarray(a, jnp.float32))


def _tparam(energy, z0, t_end, tol):
    """Reference: the original t-parameterised ODE with diffrax Dopri5 (t: 1 → t_end)."""
    def f(t, z, e):
        return 0.5 * (VP.beta_min + t * (VP.beta_max - VP.beta_min)) * E.grad(e, z)
    sol = diffrax.diffeqsolve(diffrax.ODETerm(f), diffrax.Dopri5(), 1.0, t_end, None, z0, energy,
                              stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol), max_steps=100000)
    return np.asarray(sol.ys[-1])


def test_s_of_t_closed_form_and_inverse():
    assert VP.s_of_t(1.0) == 0.0
    np.testing.assert_allclose(VP.s_of_t(0.0), 0.5 * (0.1 + 19.9 / 2), rtol=1e-12)      # 5.025
    t = np.linspace(-0.004, 1.0, 11)
    np.testing.assert_allclose(np.asarray(VP.t_of_s(VP.s_of_t(t))), t, atol=1e-6)
    # ds/dt = −½β(t)
    h = 1e-6
    for t0 in (0.0, 0.3, 0.9):
        ds = (VP.s_of_t(t0 + h) - VP.s_of_t(t0 - h)) / (2 * h)
        np.testing.assert_allclose(ds, -0.5 * (0.1 + 19.9 * t0), rtol=1e-6)


@pytest.mark.parametrize("t_end", [0.0, 1e-3])
@pytest.mark.parametrize("mode", ["joint", "independent"])
@pytest.mark.parametrize("solver", ["dopri5", "tsit5", "bosh3"])
def test_quadratic_closed_form(t_end, mode, solver):
    a = np.array([0.05, 0.2, 0.5, 1.0], np.float32)
    z0 = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    out = tc.sample_ode_timechange(None, _quadratic(a), z0, t_end=t_end, solver=solver, rtol=1e-6, atol=1e-6,
                                   batch_mode=mode)
    exact = np.exp(-a * VP.s_of_t(t_end)) * z0
    np.testing.assert_allclose(np.asarray(out.z), exact, atol=2e-5)
    assert bool(np.all(np.asarray(out.success)))
    np.testing.assert_allclose(_tparam(_quadratic(a), jnp.asarray(z0), t_end, 1e-6), exact, atol=2e-5)


def test_nfe_accounting_and_fixed_steps():
    a = np.array([0.5, 1.0], np.float32)
    z0 = np.ones((2, 2), np.float32)
    out = tc.sample_ode_timechange(None, _quadratic(a), z0, solver="euler", num_steps=100)
    np.testing.assert_array_equal(np.asarray(out.nfe), [100, 100])
    # Euler on a linear ODE: (1 − a·h)^n exactly
    h = VP.s_of_t(0.0) / 100
    np.testing.assert_allclose(np.asarray(out.z), (1 - a * h) ** 100 * z0, rtol=1e-5)
    out = tc.sample_ode_timechange(None, _quadratic(a), z0, solver="dopri5", rtol=1e-3, atol=1e-3)
    steps = np.asarray(out.num_accepted + out.num_rejected)
    np.testing.assert_array_equal(np.asarray(out.nfe), 6 * steps + 1)   # FSAL: first stage once up front


def test_nfe_counts_calls():
    """The reported NFE equals the number of vector-field calls (counted on the host)."""
    calls = []

    def e(a, z):
        jax.debug.callback(lambda v: calls.append(1), z[0])
        return 0.5 * jnp.sum(a * z * z)

    energy = jax.tree_util.Partial(e, jnp.asarray([0.5, 2.0], jnp.float32))
    for solver in ("dopri5", "tsit5", "bosh3"):
        calls.clear()
        out = tc.sample_ode_timechange(None, energy, np.ones((1, 2), np.float32), solver=solver, rtol=1e-4, atol=1e-4)
        jax.block_until_ready(out.z)
        assert int(out.nfe[0]) == len(calls), solver


def test_cifar_fixture_matches_t_parameterisation():
    """LACE's CIFAR pipeline (fixture weights): the autonomous solve lands where the t-solve lands, and where
    torchdiffeq's tight-tolerance reference lands (its spread between 1e-3 and 1e-5 is 0.029)."""
    from tests.conftest import fixtures_dir
    from tests.lace_pipelines import cifar_pipeline

    p = cifar_pipeline()
    with np.load(fixtures_dir() / "lace" / "sampler_refs.npz") as r:
        z0, ys, ref = r["cifar_z_init"], r["cifar_y"], r["cifar_dopri5_tol1e-5_z_final"]
    e = E.per_sample(lambda y: E.discrete(p.classifier, y), ys)
    out = tc.make_sampler(rtol=1e-5, atol=1e-5, batch_mode="joint")(e, z0)
    assert bool(np.all(np.asarray(out.success)))
    zt = _tparam(e, jnp.asarray(z0), 0.0, 1e-5)
    np.testing.assert_allclose(np.asarray(out.z), zt, atol=5e-3)
    np.testing.assert_allclose(np.asarray(out.z), ref, atol=1e-2)


def test_sampling_entry_point_ode_tc_matches_ode_and_the_closed_form():
    """`samplers.run('ode_tc')` (what `sample.py --sampler ode_tc` calls) solves the same PF-ODE as 'ode'."""
    from lace_jax import samplers
    a = np.array([0.05, 0.2, 0.5, 1.0], np.float32)
    z0 = jnp.asarray(np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32))
    exact = np.exp(-a * VP.s_of_t(0.0)) * np.asarray(z0)
    key = jax.random.PRNGKey(0)
    tight = samplers.SamplerOptions(solver="bosh3", rtol=1e-6, atol=1e-6)
    out = samplers.run(key, "ode_tc", _quadratic(a), z0, tight)
    np.testing.assert_allclose(np.asarray(out.z), exact, atol=3e-5)
    ref = samplers.run(key, "ode", _quadratic(a), z0, samplers.SamplerOptions(rtol=1e-6, atol=1e-6))
    np.testing.assert_allclose(np.asarray(out.z), np.asarray(ref.z), atol=5e-5)
    # the defaults the CLI applies (Bosh3 at 3e-3): loose but close, in a handful of evaluations
    loose = samplers.run(key, "ode_tc", _quadratic(a), z0, samplers.SamplerOptions(**samplers.TC_DEFAULTS))
    np.testing.assert_allclose(np.asarray(loose.z), exact, atol=1e-2)
    assert int(np.max(np.asarray(loose.stats["nfe"]))) < int(np.max(np.asarray(ref.stats["nfe"])))
    with pytest.raises(ValueError, match="needs num_steps"):
        samplers.run(key, "ode_tc", _quadratic(a), z0, samplers.SamplerOptions(solver="heun"))
    with pytest.raises(ValueError, match="unknown solver"):
        samplers.run(key, "ode_tc", _quadratic(a), z0, samplers.SamplerOptions(solver="rk4"))
