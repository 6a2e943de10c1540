"""experiments/gan_surgery.py: its copies of a train state compute what the source computes, and resume."""

import jax
import numpy as np
import pytest

from lace_jax.config import load_config
from lace_jax.data import shapes
from lace_jax.models import stylegan2 as sg
from lace_jax.training import gan_run, loop
from tests.cli_helpers import load_script


@pytest.fixture(scope="module")
def surgery():
    return load_script("experiments/gan_surgery.py", "gan_surgery")


@pytest.fixture(scope="module")
def source(tmp_path_factory, surgery):
    """A tiny run's state with non-trivial Adam moments, saved as a workdir at step 7."""
    cfg = load_config("shapes_gan_tiny")
    *_, state, _, _, _ = gan_run.build(cfg)
    rng = np.random.default_rng(5)
    noisy = lambda t: jax.tree_util.tree_map(lambda x: np.asarray(x) + 0.1 * rng.standard_normal(x.shape,  # noqa
                                                                                           np.float32), t)
    state = {**state, "g": noisy(state["g"]), "d": noisy(state["d"])}
    state["g_ema"] = state["g"]
    adam, *rest = state["d_opt"]
    state["d_opt"] = (adam._replace(nu=jax.tree_util.tree_map(lambda x: np.asarray(x) + 2.0, adam.nu)), *rest)
    work = tmp_path_factory.mktemp("src")
    surgery._write(str(work / "run"), cfg, state, 7)
    return work / "run"


def _apply(workdir):
    cfg = loop.run_config(workdir)
    g_cfg, buffers, _, template, _, d_apply, _ = gan_run.build(cfg)
    state = loop.restore_newest(workdir, template, cfg, "GAN")     # the new config's layout: train.py resumes it
    z = jax.random.normal(jax.random.PRNGKey(1), (8, g_cfg.z_dim))
    real = shapes.sample(jax.random.PRNGKey(2), 8, cfg["resolution"])[0]
    images = jax.jit(lambda p: sg.generate(g_cfg, {"params": p, "buffers": buffers}, z))(state["g_ema"])
    return cfg, state, np.asarray(images), np.asarray(jax.jit(d_apply)(state["d"], real))


def test_mapping_lr_copy_draws_the_same_images(surgery, source, tmp_path):
    cfg, state, step = surgery._load(str(source))
    new_cfg, new_state = surgery.mapping_lr(cfg, state, 1.0)
    surgery._write(str(tmp_path / "m"), new_cfg, new_state, step)
    _, _, images, logits = _apply(source)
    got_cfg, got_state, got_images, got_logits = _apply(tmp_path / "m")
    assert got_cfg["generator"]["lr_multiplier"] == 1.0 and got_cfg["trained_steps"] == 7
    np.testing.assert_allclose(got_images, images, atol=1e-5)
    np.testing.assert_array_equal(got_logits, logits)
    k = 0.01 / 1.0                                # raw parameters and Adam's moments follow old / new
    np.testing.assert_allclose(got_state["g"]["mapping"]["fc0"]["weight"],
                               k * np.asarray(state["g"]["mapping"]["fc0"]["weight"]), rtol=1e-6)
    np.testing.assert_allclose(got_state["g_opt"][0].nu["mapping"]["fc0"]["weight"],
                               k * k * np.asarray(state["g_opt"][0].nu["mapping"]["fc0"]["weight"]), rtol=1e-5)


def test_widen_d_copy_gives_the_same_logits_and_refuses_narrowing(surgery, source, tmp_path):
    cfg, state, step = surgery._load(str(source))
    new_cfg, new_state = surgery.widen_d(cfg, state, [16, 24, 16, 16], 0)
    surgery._write(str(tmp_path / "w"), new_cfg, new_state, step)
    _, _, images, logits = _apply(source)
    _, got_state, got_images, got_logits = _apply(tmp_path / "w")
    assert got_state["d"]["b32_conv0"]["weight"].shape == (3, 3, 16, 16)
    assert {np.asarray(x).dtype for x in jax.tree_util.tree_leaves(new_state["d"])} == {np.dtype(np.float32)}
    assert got_state["d"]["b16_conv1"]["weight"].shape == (3, 3, 24, 16)
    np.testing.assert_allclose(got_logits, logits, rtol=1e-4, atol=1e-4)
    assert not np.allclose(logits, 0)
    np.testing.assert_array_equal(got_images, images)
    nu = got_state["d_opt"][0].nu["b32_conv1"]["weight"]              # new inputs start at the layer's mean
    assert np.all(np.asarray(nu) > 0)
    for bad in ([4, 8, 16, 16], [8, 8, 16, 32], [8, 8, 16]):
        with pytest.raises(SystemExit, match="widen_d"):
            surgery.widen_d(cfg, state, bad, 0)
