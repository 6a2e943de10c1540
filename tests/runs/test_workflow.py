"""lace_jax.runs.workflow on the 2-D world (fast): compile-once conditions, LACE's sequential-editing energy per sample,
editing that keeps earlier attributes, joint-ODE chunks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy as en
from lace_jax import samplers
from lace_jax.runs import workflow
from lace_jax import worlds


@pytest.fixture(scope="module")
def world():
    return worlds.world_from_config("toy2d")


def test_conditions_of_one_structure_compile_once(world):
    cache = {}
    a = workflow.sample_condition(world, "cluster=ne", num_samples=64, seed=0, chunk_size=64, cache=cache)
    b = workflow.sample_condition(world, "cluster=sw", num_samples=64, seed=0, chunk_size=64, cache=cache)
    assert len(cache) == 2          # one per-sample function + one jitted chunk function, shared
    for res, sign in ((a, 1), (b, -1)):
        assert res.success.all()
        assert np.mean(np.all(sign * res.z > 0, axis=1)) > 0.9


def test_edit_energy_rows_are_lace_sequential_at_each_anchor(world):
    anchors = jax.random.normal(jax.random.PRNGKey(0), (5, 2))
    batch = workflow.edit_energy(world, ["cluster", "radius"], [0, 2.0], anchors, reg_z=0.04, reg_logits=0.01)
    assert sum(ax == 0 for ax in batch.axes) == 2          # exactly the two anchor leaves are batched
    attrs = list(world.attributes.values())
    order = list(world.attributes)
    z = jax.random.normal(jax.random.PRNGKey(1), (2,))
    for i in range(5):
        ref = en.lace_sequential(attrs, [0, 2.0], z_anchor=anchors[i], g=None, reg_z=0.04, reg_logits=0.01,
                                 seq_indices=[order.index("cluster"), order.index("radius")])
        one = batch.take(i)
        np.testing.assert_allclose(float(one(z)), float(ref(z)), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(one.anchor), np.asarray(anchors[i]))
    sub = batch.take(jnp.array([3, 1]))
    np.testing.assert_allclose(np.asarray(sub(jnp.stack([z, z]))),
                               [float(batch.take(3)(z)), float(batch.take(1)(z))], rtol=1e-6)


@pytest.mark.parametrize("sampler,batch_mode", [("ode", "independent"), ("ode", "joint"),
                                                ("ode_tc", "independent"), ("ode_tc", "joint")])
def test_sequential_edit_keeps_earlier_attributes(world, sampler, batch_mode):
    extra = samplers.TC_DEFAULTS if sampler == "ode_tc" else {}
    opts = world.sampler_options(batch_mode=batch_mode, **extra)
    z0, steps = workflow.sequential_edit(world, ["cluster=ne", "radius=2"], num_samples=64, seed=3,
                                         sampler=sampler, options=opts, chunk_size=32)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(3), i))(jnp.arange(64))
    ref0 = jax.vmap(lambda k: jax.random.normal(jax.random.split(k)[0], (2,)))(keys)
    np.testing.assert_allclose(z0, np.asarray(ref0), rtol=1e-6)
    assert [s.names for s in steps] == [("cluster",), ("cluster", "radius")]
    z1, z2 = steps[0].result.z, steps[1].result.z
    assert steps[1].result.success.all()
    assert np.mean(np.all(z1 > 0, axis=1)) > 0.85                      # step 1: cluster ne
    r = np.linalg.norm(z2, axis=1)
    assert abs(np.median(r) - 2.0) < 0.15                              # step 2: radius 2 ...
    assert np.mean(np.all(z2 > 0, axis=1)) > 0.8                       # ... and still ne
    # identity: a stronger anchor (reg_z) keeps the edited latents closer to where they started
    loose = workflow.edit_step(world, ["cluster", "radius"], [0, 2.0], z1, seed=9, sampler=sampler, options=opts,
                               chunk_size=32, reg_z=0.0, reg_logits=0.0).z
    tight = workflow.edit_step(world, ["cluster", "radius"], [0, 2.0], z1, seed=9, sampler=sampler, options=opts,
                               chunk_size=32, reg_z=100.0, reg_logits=0.01).z
    moved = [np.linalg.norm(z - z1, axis=1).mean() for z in (loose, tight)]
    assert moved[1] < 0.9 * moved[0], moved     # measured 0.98 vs 1.18 (in 2-D the radius edit is mostly radial)


def test_parse_edit_rejects_compositions(world):
    assert workflow.parse_edit(world, "cluster=sw") == ("cluster", 2)
    with pytest.raises(ValueError, match="one condition"):
        workflow.parse_edit(world, "cluster=sw & radius=1")
