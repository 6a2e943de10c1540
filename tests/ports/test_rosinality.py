"""rosinality/stylegan2-pytorch converter + Flax generator against `rosinality_small` (upstream outputs, 1e-5)."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.models import stylegan2 as S
from ports import rosinality

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def ros(fixtures):
    d = fixtures / "rosinality_small"
    vec = dict(np.load(d / "vectors.npz"))
    with np.load(d / "state_dict.npz") as z:
        sd = {k: z[k] for k in z.files}
    cfg, v = rosinality.params_from_state_dict(sd, latent_avg=vec["truncation_latent"])
    jitted = jax.jit(partial(S.synthesis, cfg, return_intermediates=True), static_argnames="noise_mode")

    def synth(v, ws, noise_mode="const", return_intermediates=False):  # one compile serves every test
        img, blocks = jitted(v, ws, noise_mode=noise_mode)
        return (img, blocks) if return_intermediates else img
    return cfg, v, vec, synth, sd


def test_inferred_config(ros):
    cfg, v, vec, _, _ = ros
    assert (cfg.img_resolution, cfg.w_dim, cfg.z_dim, cfg.mapping_layers, cfg.num_ws) == (32, 64, 64, 2, 8)
    assert cfg.channels_dict == {4: 64, 8: 64, 16: 64, 32: 32}
    assert cfg.variant == "rosinality" and cfg.conv_clamp is None and cfg.lr_multiplier == 0.01
    np.testing.assert_array_equal(v["buffers"]["mapping"]["w_avg"], vec["truncation_latent"])


def test_style(ros):
    cfg, v, vec, _, _ = ros
    np.testing.assert_allclose(np.asarray(S.mapping_w(cfg, v, vec["z"])), vec["w"], **TOL)
    ws = S.mapping(cfg, v, vec["z"])
    np.testing.assert_allclose(np.asarray(ws), np.broadcast_to(vec["w"][:, None], (8, 8, 64)), **TOL)


def test_img_from_z_and_w(ros):
    cfg, v, vec, synth, _ = ros
    img = synth(v, S.mapping(cfg, v, vec["z"]), noise_mode="const")
    np.testing.assert_allclose(np.asarray(img), vec["img_z"], **TOL)
    ws = jnp.broadcast_to(jnp.asarray(vec["w"])[:, None], (8, cfg.num_ws, cfg.w_dim))
    np.testing.assert_allclose(np.asarray(synth(v, ws, noise_mode="const")), vec["img_w"], **TOL)


def test_truncated(ros):
    cfg, v, vec, synth, _ = ros
    ws = S.mapping(cfg, v, vec["z"], truncation_psi=0.7)
    np.testing.assert_allclose(np.asarray(ws[:, 0]), vec["truncation_latent"] + 0.7 * (vec["w"] -
                               vec["truncation_latent"]), **TOL)
    np.testing.assert_allclose(np.asarray(synth(v, ws, noise_mode="const")), vec["img_z_trunc07"], **TOL)


def test_wplus(ros):
    _, v, vec, synth, _ = ros
    np.testing.assert_allclose(np.asarray(synth(v, vec["wplus"], noise_mode="const")), vec["img_wplus"], **TOL)


def test_style_mixing_inject3(ros):
    cfg, v, vec, synth, _ = ros
    ws = S.style_mix(S.mapping(cfg, v, vec["z"]), S.mapping(cfg, v, vec["z2"]), 3)
    np.testing.assert_allclose(np.asarray(ws), vec["latent_mix_inject3"], **TOL)
    np.testing.assert_allclose(np.asarray(synth(v, ws, noise_mode="const")), vec["img_mix_inject3"], **TOL)
    img = jax.jit(partial(S.generate, cfg, noise_mode="const"))(v, vec["z"], z2=vec["z2"], inject_index=3)
    np.testing.assert_allclose(np.asarray(img), vec["img_mix_inject3"], **TOL)
    # traced index under jit gives the same latents
    mixed = jax.jit(S.style_mix)(S.mapping(cfg, v, vec["z"]), S.mapping(cfg, v, vec["z2"]), jnp.int32(3))
    np.testing.assert_array_equal(np.asarray(mixed), np.asarray(ws))


def test_intermediates(ros):
    cfg, v, vec, synth, _ = ros
    _, blocks = synth(v, S.mapping(cfg, v, vec["z"]), noise_mode="const", return_intermediates=True)
    np.testing.assert_allclose(np.asarray(S.to_nchw(blocks["b4"]["x"])), vec["conv1_out"], **TOL)
    np.testing.assert_allclose(np.asarray(S.to_nchw(blocks["b4"]["img"])), vec["to_rgb1_out"], **TOL)


def test_npz_without_latent_avg_estimates_it(fixtures):
    loaded = rosinality.load(fixtures / "rosinality_small" / "state_dict.npz", w_avg_samples=4096)
    tl = np.load(fixtures / "rosinality_small" / "vectors.npz")["truncation_latent"]
    # Both are means over 4096 independent z: the difference per coordinate has std σ_j·√(2/4096), with σ_j the
    # per-coordinate std of w (measured here on a fresh sample). Allow 5 standard deviations.
    cfg, v = loaded.config, loaded.variables
    w = np.asarray(S.mapping_w(cfg, v, jax.random.normal(jax.random.PRNGKey(7), (4096, 64))))
    bound = 5 * w.std(0) * np.sqrt(2 / 4096)
    w_avg = v["buffers"]["mapping"]["w_avg"]
    assert np.all(np.abs(w_avg - tl) < bound) and "estimated" in loaded.notes[0]
    assert np.abs(w_avg - tl).max() > 1e-4  # really estimated, not copied


def test_errors(ros):
    _, _, _, _, sd = ros
    bad = dict(sd)
    bad["convs.1.conv.weight"] = sd["convs.1.conv.weight"][:, :, :32]
    with pytest.raises(ValueError, match=r"convs\.1\.conv\.weight.*\(1, 64, 32, 3, 3\)"):
        rosinality.params_from_state_dict(bad, latent_avg=np.zeros(64))
    with pytest.raises(ValueError, match=r"missing key 'noises\.noise_3'"):
        rosinality.params_from_state_dict({k: a for k, a in sd.items() if k != "noises.noise_3"},
                                          latent_avg=np.zeros(64))
    with pytest.raises(ValueError, match="size=64 given"):
        rosinality.params_from_state_dict(sd, latent_avg=np.zeros(64), size=64)
    with pytest.raises(ValueError, match="latent_avg has shape"):
        rosinality.params_from_state_dict(sd, latent_avg=np.zeros(63))


def test_checkpoint_pt(ros, fixtures):
    """`checkpoint.pt` ({"g_ema", "latent_avg"}, a torch zip file) through the restricted reader: same variables as
    the .npz path, latent_avg as w_avg, same images."""
    cfg, v, vec, synth, _ = ros
    loaded = rosinality.load(fixtures / "rosinality_small" / "checkpoint.pt")
    assert loaded.config == cfg and loaded.skipped == () and loaded.notes == ("w_avg = checkpoint latent_avg",)
    for a, b in zip(jax.tree_util.tree_leaves(loaded.variables), jax.tree_util.tree_leaves(v)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree_util.tree_structure(loaded.variables) == jax.tree_util.tree_structure(v)
    ws = S.mapping(loaded.config, loaded.variables, vec["z"], truncation_psi=0.7)
    np.testing.assert_allclose(np.asarray(synth(loaded.variables, ws, noise_mode="const")), vec["img_z_trunc07"],
                               **TOL)
