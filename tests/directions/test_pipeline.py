"""End to end on a generator whose latent coordinate 0 sets the disk's x-position (tests/directions/toys.py):
the trajectory method and the linear-walk baseline must both find e_0, and edits must move the disk as asked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import directions as dirs
from tests.directions import toys

E0 = jnp.zeros(toys.DIM).at[0].set(1.0)


@pytest.fixture(scope="module")
def trajectories():
    z0 = jax.random.normal(jax.random.PRNGKey(0), (8, toys.DIM))
    deltas = dirs.paper_deltas(0.15, 3)                       # ±(0.05, 0.10, 0.15) of the width
    return dirs.build_trajectories(toys.disk_generator, dirs.translate_x, z0, deltas,
                                   steps=40, learning_rate=0.05, sigma=1.5)


def test_trajectories_follow_the_translation(trajectories):
    tr = trajectories
    assert tr.z.shape == (8, 2, 3, toys.DIM) and tr.error.shape == (8, 2, 3)
    assert bool(jnp.all(jnp.linalg.norm(tr.z, axis=-1) <= jnp.sqrt(toys.DIM) * (1 + 1e-5)))  # paper's ball
    z0, z, delta, err = tr.pairs()
    keep = dirs.error_filter(err)
    assert int(keep.sum()) == int(0.9 * keep.size)               # the paper drops the last decile
    achieved = (toys.true_x(z) - toys.true_x(z0)) / toys.SIZE
    miss = jnp.abs(achieved - delta)[keep]
    assert float(jnp.median(miss)) < 0.0075, miss     # 0.75 % of the width (0.24 px); measured 0.0042


@pytest.fixture(scope="module")
def fitted(trajectories):
    z0, z, delta, err = trajectories.pairs()
    return dirs.fit_monotone(z0, z, delta, dirs.error_filter(err), steps=800)


def test_trajectory_method_finds_the_position_coordinate(fitted):
    fit = fitted
    cos = float(fit.direction.u @ E0)
    assert cos > 0.9, cos                                   # measured 0.9993
    a = jnp.linspace(-1.5, 1.5, 7)
    np.testing.assert_allclose(dirs.g_of(fit.direction, a), toys.true_g(a), atol=0.012)   # measured 0.0055


def test_editing_moves_the_disk_by_the_requested_amount(fitted):
    d = fitted.direction
    measure = jax.jit(lambda z: toys.centroid_x(toys.disk_generator(z)))   # one compile, not many eager ops
    zs = jax.random.normal(jax.random.PRNGKey(7), (6, toys.DIM))
    zs = zs.at[:, 0].set(jnp.linspace(-1.0, 1.0, 6))          # away from the saturated ends
    for amount in (0.1, -0.08):
        moved = dirs.edit_by(zs, d, amount)
        shift = (measure(moved) - measure(zs)) / toys.SIZE
        np.testing.assert_allclose(shift, amount, atol=0.012)   # measured within 0.0066 (0.21 px)


def test_linear_walk_baseline_finds_the_position_coordinate():
    res = dirs.train_linear_walk(toys.disk_generator, dirs.translate_x, jax.random.PRNGKey(1), toys.DIM,
                                 steps=100, batch=8, alpha_max=0.15, learning_rate=0.1)
    cos = float(res.u @ E0)
    assert cos > 0.9, cos                                       # measured 0.9999
    assert float(res.w[0]) > 0                                  # positive α moves right
    assert float(jnp.mean(res.loss[-20:])) < 0.5 * float(jnp.mean(res.loss[:10]))


def test_bad_arguments_are_named():
    z0 = jnp.zeros((2, toys.DIM))
    with pytest.raises(ValueError, match="deltas must be"):
        dirs.build_trajectories(toys.disk_generator, dirs.translate_x, z0, jnp.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="build_trajectories: z0 must be"):
        dirs.build_trajectories(toys.disk_generator, dirs.translate_x, z0[0], dirs.paper_deltas())
    with pytest.raises(ValueError, match="keep must be in"):
        dirs.error_filter(jnp.ones(5), keep=0.0)
    with pytest.raises(ValueError, match="train_linear_walk: unknown loss"):
        dirs.train_linear_walk(toys.disk_generator, dirs.translate_x, jax.random.PRNGKey(0), toys.DIM, loss="l1")
