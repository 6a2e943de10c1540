"""Training: tiny runs lower their losses, and an interrupted run resumes to bit-identical parameters."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.config import load_config
from lace_jax.training import judge, loop


def _tiny_judge_config(**kw):
    cfg = load_config("shapes_judge")
    cfg.update(widths=[8, 8, 16], features=16, batch_size=32, steps=40, warmup=2, lr=3e-3)
    cfg.update(kw)
    return cfg


def _judge_run(cfg, workdir, num_steps, log=None):
    init_key, data_key = jax.random.split(jax.random.PRNGKey(cfg["seed"]))
    model, tx, state = judge.init_state(cfg, init_key)
    step_fn = judge.make_step(model, tx, cfg, data_key)
    return loop.run(state, step_fn, num_steps=num_steps, workdir=workdir, ckpt_every=1000, log_every=1,
                    on_log=log)


def test_tiny_judge_run_lowers_its_loss(tmp_path):
    cfg = _tiny_judge_config()
    losses = []
    _judge_run(cfg, tmp_path, 25, log=lambda s, m, r: losses.append(m["loss"]))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    # measured at this seed: mean of the first 5 steps ≈ 5.5, of the last 5 (steps 21-25) ≈ 3.2
    assert last < 0.75 * first, (first, last)


def test_judge_resume_is_exact(tmp_path):
    cfg = _tiny_judge_config(steps=6)
    init_key, data_key = jax.random.split(jax.random.PRNGKey(cfg["seed"]))
    model, tx, state = judge.init_state(cfg, init_key)
    step_fn = judge.make_step(model, tx, cfg, data_key)        # pure: one compilation serves the three runs
    run = lambda workdir, n: loop.run(state, step_fn, num_steps=n, workdir=workdir, ckpt_every=1000, log_every=1)
    straight, n = run(tmp_path / "a", 6)
    assert n == 6
    _, n1 = run(tmp_path / "b", 3)                             # "interrupted" after 3 steps
    resumed, n2 = run(tmp_path / "b", 6)                       # from the initial state again: resumes from step 3
    assert (n1, n2) == (3, 6)
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    saved = [f for f in (tmp_path / "b" / "checkpoints").rglob("*") if f.is_file()]
    assert any(f.name == "commit_success.txt" for f in saved)       # train states are shared (experiments/)
    assert not [f for f in saved if str(tmp_path).encode() in f.read_bytes()]   # and name no directory


def _tiny_gan_config(**kw):
    cfg = load_config("shapes_gan")
    cfg.update(resolution=16, d_channels=[8, 16, 16], batch_size=8, r1_interval=2, ema_kimg=0.05)
    cfg["generator"].update(z_dim=8, w_dim=8, channels={4: 16, 8: 16, 16: 8})
    cfg.update(kw)
    return cfg


def _gan_run(cfg, workdir, num_steps, log=None):
    from lace_jax.data import shapes
    from lace_jax.training import gan, gan_run
    _, _, _, state, g_apply, d_apply, k_train = gan_run.build(cfg)
    h = gan_run.hyper(cfg)
    step_fn = gan.make_steps(g_apply, d_apply, lambda k, b: shapes.sample(k, b, cfg["resolution"])[0], h, k_train)
    return loop.run(state, step_fn, num_steps=num_steps, workdir=workdir, ckpt_every=1000, log_every=1, on_log=log)


@pytest.mark.slow
def test_tiny_gan_run_each_player_lowers_its_loss(tmp_path):
    """Against a frozen generator (g_lr = 0) the discriminator's loss falls; against a frozen discriminator
    (d_lr = 0, no R1) the generator's loss falls. Measured at this seed (15 steps, batch 8, 16×16):
    D: first-3 mean 1.24 → last-3 mean 0.90; G: 1.13 → 0.80."""
    logs = []
    _gan_run(_tiny_gan_config(g_lr=0.0), tmp_path / "d", 15, log=lambda s, m, r: logs.append(m))
    d = np.array([m["loss_d"] for m in logs])
    assert d[-3:].mean() < d[:3].mean() - 0.2, d
    assert logs[-1]["r1"] > 0                                # lazy R1 ran
    logs = []
    _gan_run(_tiny_gan_config(d_lr=0.0, r1_gamma=0.0), tmp_path / "g", 15, log=lambda s, m, r: logs.append(m))
    g = np.array([m["loss_g"] for m in logs])
    assert g[-3:].mean() < g[:3].mean() - 0.1, g
    assert np.all(np.isfinite(g))


@pytest.mark.slow
def test_gan_resume_is_exact(tmp_path):
    """Run 6 steps straight vs 3 steps, stop, resume to 6: G, D, EMA G and both Adam states bit-identical
    (R1 runs at steps 0, 2, 4, so the resumed part includes a regularisation step)."""
    cfg = _tiny_gan_config()
    straight, _ = _gan_run(cfg, tmp_path / "a", 6)
    _gan_run(cfg, tmp_path / "b", 3)
    resumed, n = _gan_run(cfg, tmp_path / "b", 6)
    assert n == 6
    assert jax.tree_util.tree_structure(straight) == jax.tree_util.tree_structure(resumed)
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moved = [float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
             zip(jax.tree_util.tree_leaves(straight["g"]), jax.tree_util.tree_leaves(straight["g_ema"]))]
    assert max(moved) > 0                                    # EMA differs from G: the test is not vacuous


@pytest.mark.slow
def test_gan_continues_from_a_trained_generator(tmp_path):
    """`init_from` starts G (and its EMA) from a trained generator, a workdir or an exported checkpoint; during
    `d_warmup_steps` only D moves; a different architecture or a wrong path is refused with the reason."""
    from lace_jax import checkpoint
    from lace_jax.training import gan_run
    import json
    first, _ = _gan_run(_tiny_gan_config(), tmp_path / "run1", 2)
    (tmp_path / "run1" / "config.json").write_text(json.dumps(_tiny_gan_config()))   # as train.py writes it
    cfg = _tiny_gan_config(init_from=str(tmp_path / "run1"), d_warmup_steps=2, seed=1)
    init = gan_run.build(cfg)[3]
    for a, b in zip(jax.tree_util.tree_leaves(first["g_ema"]), jax.tree_util.tree_leaves(init["g"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    warm, _ = _gan_run(cfg, tmp_path / "run2", 2)
    for key in ("g", "g_ema"):
        for a, b in zip(jax.tree_util.tree_leaves(init[key]), jax.tree_util.tree_leaves(warm[key])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
               zip(jax.tree_util.tree_leaves(init["d"]), jax.tree_util.tree_leaves(warm["d"]))) > 0
    after, _ = _gan_run(cfg, tmp_path / "run2", 3)           # resumes at step 2: the first joint step
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
               zip(jax.tree_util.tree_leaves(init["g"]), jax.tree_util.tree_leaves(after["g"]))) > 0
    # an exported generator checkpoint works the same way
    g_cfg = gan_run.generator_config(cfg)
    checkpoint.save_generator(tmp_path / "exported", g_cfg, {"params": first["g_ema"], "buffers": gan_run.build(
        _tiny_gan_config())[1]})
    init2 = gan_run.build(dict(cfg, init_from=str(tmp_path / "exported")))[3]
    for a, b in zip(jax.tree_util.tree_leaves(first["g_ema"]), jax.tree_util.tree_leaves(init2["g_ema"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = _tiny_gan_config(init_from=str(tmp_path / "exported"))
    other["generator"]["channels"] = {4: 16, 8: 16, 16: 16}
    with pytest.raises(ValueError, match="another generator architecture"):
        gan_run.build(other)
    with pytest.raises(FileNotFoundError, match="neither a generator checkpoint"):
        gan_run.build(_tiny_gan_config(init_from=str(tmp_path / "nothing")))


@pytest.mark.slow
def test_gan_blocks_match_per_iteration_steps_on_the_real_networks(tmp_path):
    """StyleGAN2 G and the resnet D at the tiny config (R1 every 2, one d-only iteration): 5 iterations as blocks
    of ≤ 4 (`steps_per_call`, as `train_gan` runs them) equal 5 per-iteration steps to float tolerance, and so does
    the first of two vmapped variants (the vmapped modulated and strided convolutions)."""
    from lace_jax.data import shapes
    from lace_jax.training import gan, gan_run
    cfg = _tiny_gan_config(d_warmup_steps=1)
    straight, _ = _gan_run(cfg, tmp_path / "a", 5)
    _, _, _, state, g_apply, d_apply, k_train = gan_run.build(cfg)
    block = gan.make_train_block(g_apply, d_apply, lambda k, b: shapes.sample(k, b, cfg["resolution"])[0],
                                 gan_run.hyper(cfg), k_train, 4)
    blocks, n = loop.run(state, block, num_steps=5, workdir=tmp_path / "b", ckpt_every=1000, log_every=1000,
                         steps_per_call=4)
    assert n == 5
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(blocks)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
               zip(jax.tree_util.tree_leaves(state["g"]), jax.tree_util.tree_leaves(blocks["g"]))) > 0
    # the same block vmapped over 2 variants (the config's recipe and another): variant 0 equals the run above
    h = gan_run.hyper(cfg)
    run = gan.make_variants_block(g_apply, d_apply, lambda k, b: shapes.sample(k, b, cfg["resolution"])[0], h, 8)
    recipes = gan.stack_recipes([gan.recipe(h, k_train), gan.recipe(h, k_train, r1_gamma=1.0, d_lr=1e-3)])
    states, _, m = run(gan.stack_recipes([state, state]), recipes, 0, 5, jnp.zeros(2))
    for a, b in zip(jax.tree_util.tree_leaves(straight), jax.tree_util.tree_leaves(gan.unstack(states, 0))):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
    assert np.all(np.isfinite(np.asarray(m["loss_d"])[:, :5]))
    assert float(np.abs(np.asarray(m["d_real"])[0, 1:5] - np.asarray(m["d_real"])[1, 1:5]).max()) > 0


def test_train_cli_refuses_bad_input_with_exit_2_and_writes_nothing(tmp_path):
    """Each override takes its own --set: `--set a=1 b=2` used to train with b silently dropped."""
    from tests.cli_helpers import assert_usage_errors, run_script

    work = tmp_path / "w"
    assert_usage_errors(lambda *a: run_script("train.py", *a, timeout=120), [
        (("--workdir", str(work), "--set", "steps=5", "log_every=1"), "unexpected arguments: log_every=1"),
        (("--workdir", str(work), "--set", "nosuch=1"), "unknown config key 'nosuch'"),
        (("--workdir", str(work), "--config", "nosuch"), "unknown config 'nosuch'"),
    ])
    assert not work.exists()
