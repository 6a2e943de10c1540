"""`training.control.make_solve`: LACE's solve and the `--sampler` alternatives reach the same PF-ODE end point."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.samplers import VP
from lace_jax.training import control


def _quadratic(a):
    return jax.tree_util.Partial(lambda a, z: 0.5 * jnp.sum(a * z * z), jnp.asarray(a, jnp.float32))


def test_make_solve_lace_and_time_changed_agree_with_the_closed_form():
    a = np.array([0.1, 0.4, 1.0], np.float32)
    z0 = jnp.asarray(np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32))
    exact = np.exp(-a * VP.s_of_t(0.0)) * np.asarray(z0)
    lace = control.make_solve(None)(_quadratic(a), z0)
    fast = control.make_solve({"kind": "tc", "solver": "bosh3", "rtol": 3e-3, "atol": 3e-3})(_quadratic(a), z0)
    np.testing.assert_allclose(np.asarray(lace.z_unchecked), exact, atol=5e-3)
    np.testing.assert_allclose(np.asarray(fast.z_unchecked), exact, atol=1e-2)
    assert int(np.max(np.asarray(fast.nfe))) < int(np.max(np.asarray(lace.nfe)))
    with pytest.raises(ValueError, match="'ode' or 'tc'"):
        control.make_solve({"kind": "sgld"})
