"""The GAN's three execution paths run the same iterations: per-iteration `train_step`, `lax.fori_loop` blocks
(`make_train_block` through `loop.run(steps_per_call=...)`) and V vmapped recipes (`make_variants_block`).

A toy G (one dense layer + per-call noise) and D (a softplus MLP, so R1's second derivatives are non-trivial)
keep the compilations small (most of each test's time is XLA compiling the random draws on CPU); the maths under
test never looks inside the networks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.training import gan, loop

Z, RES, B = 3, 4, 8
PIX = 3 * RES * RES


def g_apply(p, z, key):
    x = jnp.tanh(z @ p["w"] + p["b"])
    return (x + p["noise"] * jax.random.normal(key, x.shape)).reshape(-1, 3, RES, RES)


def d_apply(p, x):
    hidden = jax.nn.softplus(x.reshape(x.shape[0], -1) @ p["w1"] + p["b1"])
    return (hidden @ p["w2"])[:, 0]


PATTERN = np.linspace(-0.8, 0.8, PIX, dtype=np.float32).reshape(3, RES, RES)


def sample_real(key, batch):
    return jnp.tanh(PATTERN + 0.3 * jax.random.normal(key, (batch, 3, RES, RES)))


def _state(h):
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    g = {"w": 0.5 * jax.random.normal(k[0], (Z, PIX)), "b": jnp.zeros(PIX), "noise": jnp.array(0.1, jnp.float32)}
    d = {"w1": 0.3 * jax.random.normal(k[1], (PIX, 16)), "b1": jnp.zeros(16),
         "w2": 0.3 * jax.random.normal(k[2], (16, 1))}
    return gan.init_state(g, d, h)


H = gan.GanHyper(batch_size=B, z_dim=Z, g_lr=0.01, d_lr=0.02, r1_gamma=0.5, r1_interval=2, ema_kimg=0.02,
                 d_warmup=5)
KEY = jax.random.PRNGKey(7)
TOL = dict(rtol=1e-5, atol=1e-6)


def _assert_trees_close(a, b, **tol):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def _max_change(a, b):
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_blocks_resume_a_per_iteration_run_and_match_it(tmp_path):
    """9 iterations per call (d-only 0–4, R1 at every even step) vs a per-iteration checkpoint at step 4 resumed
    in blocks of ≤ 4 (the warm-up boundary falls inside the first block): every state leaf and every iteration's
    metrics match; blocks end at the log and checkpoint steps, which stay those of the per-iteration loop."""
    state0 = _state(H)
    train_step = gan.make_steps(g_apply, d_apply, sample_real, H, KEY)
    rows = {}
    straight, n = loop.run(state0, train_step, num_steps=9, workdir=tmp_path / "a", ckpt_every=100, log_every=1,
                           on_log=lambda s, m, r: rows.__setitem__(s - 1, m))
    assert n == 9
    loop.run(state0, train_step, num_steps=4, workdir=tmp_path / "b", ckpt_every=100, log_every=2)
    calls, got, logged = [], {}, []
    block = gan.make_train_block(g_apply, d_apply, sample_real, H, KEY, 4)

    def spy(state, step, k):
        calls.append((step, k))
        state, m = block(state, step, k)
        m = {name: np.asarray(v) for name, v in m.items()}
        assert all(np.isnan(v[k:]).all() for v in m.values())           # rows past n are unfilled
        got.update({step + i: {name: float(v[i]) for name, v in m.items()} for i in range(k)})
        return state, m

    resumed, n = loop.run(state0, spy, num_steps=9, workdir=tmp_path / "b", ckpt_every=3, log_every=2,
                          steps_per_call=4, on_log=lambda s, m, r: logged.append(s))
    assert n == 9
    assert calls == [(4, 2), (6, 2), (8, 1)] and logged == [6, 8, 9]
    assert sorted(int(p.name) for p in (tmp_path / "b" / "checkpoints").iterdir() if p.name.isdigit()) == [6, 9]
    _assert_trees_close(resumed, straight, **TOL)
    for i in range(4, 9):
        for name in gan.METRICS:
            np.testing.assert_allclose(got[i][name], rows[i][name], rtol=1e-5, err_msg=(i, name))
    assert rows[4]["r1"] > 0 and rows[5]["r1"] == rows[4]["r1"] and rows[6]["r1"] != rows[5]["r1"]
    # not vacuous: G was frozen through the warm-up (the EMA too), then moved and the EMA trails it
    assert _max_change(state0["g"], straight["g"]) > 1e-3 and _max_change(straight["g"], straight["g_ema"]) > 1e-5


def test_variants_equal_separate_runs():
    """V = 2 recipes (different G/D learning rates, R1 γ and seeds) vmapped in one program match two separate
    runs of the block; γ = 0 acts as no R1 step (D's Adam counts 6 D steps, not 6 + 3 R1 steps)."""
    h = H._replace(d_warmup=1)
    recipes = [gan.recipe(h, jax.random.PRNGKey(1), g_lr=0.01, d_lr=0.02, r1_gamma=0.5),
               gan.recipe(h, jax.random.PRNGKey(2), g_lr=0.003, d_lr=0.005, r1_gamma=0.0)]
    state0 = _state(h)
    single = jax.jit(gan.make_block(g_apply, d_apply, sample_real, h, 8))
    refs = [single(state0, r, 0, 6, jnp.zeros((), jnp.float32)) for r in recipes]
    run = gan.make_variants_block(g_apply, d_apply, sample_real, h, 8)
    states, r1s, m = run(gan.stack_recipes([state0, state0]), gan.stack_recipes(recipes), 0, 6, jnp.zeros(2))
    assert m["loss_g"].shape == (2, 8)
    for v, (ref, ref_r1, ref_m) in enumerate(refs):
        _assert_trees_close(gan.unstack(states, v), ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r1s[v], ref_r1, rtol=1e-5)
        for k in gan.METRICS:
            np.testing.assert_allclose(np.asarray(m[k])[v], np.asarray(ref_m[k]), rtol=1e-5, err_msg=(v, k))
    assert [int(gan.unstack(states, v)["d_opt"][0].count) for v in (0, 1)] == [9, 6]
    assert float(r1s[0]) > 0 and float(r1s[1]) == 0.0
    assert _max_change(gan.unstack(states, 0)["d"], gan.unstack(states, 1)["d"]) > 1e-3


def test_recipe_and_block_reject_bad_input():
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        gan.recipe(H, KEY, beta2=0.9)
    with pytest.raises(ValueError, match="max_steps"):
        gan.make_block(g_apply, d_apply, sample_real, H, 0)


def test_steps_per_call_of_a_config():
    """`"auto"` is one iteration per call on CPU (XLA runs loop bodies' convolution gradients slowly there) and a
    block on an accelerator; an explicit count is taken as it is; anything else is refused."""
    from lace_jax.training import gan_run
    auto = gan_run.steps_per_call({"steps_per_call": "auto"})
    assert auto == (1 if jax.default_backend() == "cpu" else gan_run.ACCELERATOR_STEPS_PER_CALL)
    assert gan_run.steps_per_call({}) == auto
    assert gan_run.steps_per_call({"steps_per_call": 7}) == 7
    for bad in (0, 2.5, "fast", True):
        with pytest.raises(ValueError, match="steps_per_call"):
            gan_run.steps_per_call({"steps_per_call": bad})
