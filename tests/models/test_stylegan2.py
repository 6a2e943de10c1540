"""Flax StyleGAN2 and its ops: closed forms, numpy references, init, noise modes, dtypes, architectures."""
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.models import ops
from lace_jax.models import stylegan2 as S


# ------------------------------------------------------------------------------------------------ numpy references
def np_upfirdn(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Definition: zero-insert (up-1 zeros after each sample), pad/crop, convolve with f (flipped correlation)."""
    x = np.asarray(x, np.float64)
    B, H, W, C = x.shape
    u = np.zeros((B, H * up, W * up, C))
    u[:, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    u = np.pad(u, ((0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)))
    u = u[:, max(-py0, 0):u.shape[1] - max(-py1, 0), max(-px0, 0):u.shape[2] - max(-px1, 0)]
    fk = np.asarray(f, np.float64)[::-1, ::-1] * gain
    fh, fw = fk.shape
    oh, ow = u.shape[1] - fh + 1, u.shape[2] - fw + 1
    out = np.zeros((B, oh, ow, C))
    for a in range(fh):
        for b in range(fw):
            out += fk[a, b] * u[:, a:a + oh, b:b + ow]
    return out[:, ::down, ::down]


def np_conv_same(x, w):
    """'same' correlation, NHWC × HWIO, float64 loops over taps."""
    kh, kw = w.shape[:2]
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    H, W = x.shape[1:3]
    out = 0
    for a in range(kh):
        for b in range(kw):
            out = out + xp[:, a:a + H, b:b + W] @ np.asarray(w[a, b], np.float64)
    return out


F4 = ops.setup_filter([1, 3, 3, 1])


def test_setup_filter():
    np.testing.assert_allclose(F4, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ops.setup_filter([1, 3, 3, 1], gain=4).sum(), 4, rtol=1e-6)


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 2, 2, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (2, 2, (-1, 2, 0, -1)), (3, 1, (0, 0, 1, 1))])
def test_upfirdn2d_matches_definition(up, down, pad):
    x = np.random.default_rng(0).normal(size=(2, 6, 5, 3)).astype(np.float32)
    f = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)  # asymmetric: exercises the flip
    got = ops.upfirdn2d(jnp.asarray(x), f, up=up, down=down, padding=pad, gain=1.5)
    np.testing.assert_allclose(np.asarray(got), np_upfirdn(x, f, up, down, pad, 1.5), rtol=1e-5, atol=1e-5)


def test_upsample_downsample_sizes_and_dc_gain():
    x = jnp.ones((1, 8, 8, 2))
    up = ops.upsample2d(x, F4)
    dn = ops.downsample2d(x, F4)
    assert up.shape == (1, 16, 16, 2) and dn.shape == (1, 4, 4, 2)
    # interior of a constant image stays constant (DC gain 1 after the up² gain)
    np.testing.assert_allclose(np.asarray(up[:, 2:-2, 2:-2]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(dn[:, 1:-1, 1:-1]), 1.0, rtol=1e-6)


def test_conv2d_resample_up_is_transposed_conv_then_fir():
    """Upstream's up-path: torch conv_transpose2d(stride 2) with the raw kernel (`flip_weight=False`), then the
    [1,3,3,1] FIR with padding 1 and gain 4. Reference: scatter-add loops in float64."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 5, 4)).astype(np.float32)
    w = rng.normal(size=(3, 3, 4, 6)).astype(np.float32)
    got = ops.conv2d_resample(jnp.asarray(x), jnp.asarray(w), F4, up=2, padding=1, flip_weight=False)
    t = np.zeros((2, 11, 11, 6))
    for y in range(5):
        for xx in range(5):
            for a in range(3):
                for b in range(3):
                    t[:, 2 * y + a, 2 * xx + b] += x[:, y, xx].astype(np.float64) @ w[a, b].astype(np.float64)
    ref = np_upfirdn(t, F4, pad=(1, 1, 1, 1), gain=4)
    assert got.shape == (2, 10, 10, 6)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5)
    # away from the borders this is the same as FIR up-sampling followed by a 'same' true convolution
    alt = np_conv_same(np_upfirdn(x, F4, up=2, pad=(2, 1, 2, 1), gain=4), w[::-1, ::-1])
    np.testing.assert_allclose(np.asarray(got)[:, 2:-2, 2:-2], alt[:, 2:-2, 2:-2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,s,pad,groups", [(3, 2, (2, 2), 1), (3, 2, (1, 2), 2), (1, 2, (0, 0), 1),
                                          (4, 3, (3, 2), 1), (2, 3, (1, 1), 1)])
def test_polyphase_equals_lhs_dilated_conv(k, s, pad, groups):
    rng = np.random.default_rng(k * 10 + s)
    x = jnp.asarray(rng.normal(size=(2, 5, 4, 4)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, k, 4 // groups, 6)).astype(np.float32))
    ref = jax.lax.conv_general_dilated(x, w, (1, 1), ((pad[0], pad[0]), (pad[1], pad[1])), lhs_dilation=(s, s),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
                                       precision="highest")
    got = ops._conv_zero_inserted(x, w, s, pad, groups=groups, precision="highest")
    assert got.shape == ref.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_conv2d_resample_down_is_fir_then_strided_conv():
    """Upstream's down-path: FIR with padding 1 + 1 (conv padding + filter), then a stride-2 'valid' conv."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3, 5)).astype(np.float32)
    got = ops.conv2d_resample(jnp.asarray(x), jnp.asarray(w), F4, down=2, padding=1)
    u = np_upfirdn(x, F4, pad=(2, 2, 2, 2))  # 9x9
    ref = np.zeros((2, 4, 4, 5))
    for a in range(3):
        for b in range(3):
            ref += u[:, a:a + 7:2, b:b + 7:2] @ w[a, b].astype(np.float64)
    assert got.shape == (2, 4, 4, 5)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_paths_match_per_sample_reference(demodulate):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 6, 6, 4)).astype(np.float32)
    w = rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    s = rng.normal(size=(3, 4)).astype(np.float32) + 1
    ref = []
    for b in range(3):
        wb = w.astype(np.float64) * s[b][None, None, :, None]
        if demodulate:
            wb = wb / np.sqrt((wb ** 2).sum(axis=(0, 1, 2)) + 1e-8)
        ref.append(np_conv_same(x[b:b + 1], wb)[0])
    ref = np.stack(ref)
    for fused in (False, True):
        got = ops.modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), padding=1,
                                   demodulate=demodulate, fused=fused, precision=jax.lax.Precision.HIGHEST)
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5)


def test_bias_act_and_norm_closed_forms():
    x = jnp.array([[-2.0, -0.5, 0.0, 1.0, 300.0]])
    b = jnp.array([1.0, 0.0, 0.0, 1.0, 0.0])
    got = ops.bias_act(x, b, act="lrelu", clamp=256)
    np.testing.assert_allclose(np.asarray(got), [[-0.2 * np.sqrt(2), -0.1 * np.sqrt(2), 0, 2 * np.sqrt(2), 256]],
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ops.bias_act(x, act="linear", gain=2.0)), 2 * np.asarray(x))
    v = jnp.array([[3.0, 4.0]])
    np.testing.assert_allclose(np.asarray(ops.normalize_2nd_moment(v)), [[3 / np.sqrt(12.5), 4 / np.sqrt(12.5)]],
                               rtol=1e-6)
    a, e = jnp.float32(0.3), jnp.float32(1.7)
    assert ops.lerp(a, e, 1.0) == e and ops.lerp(a, e, 0.0) == a  # exact ends, as torch.lerp
    np.testing.assert_allclose(float(ops.lerp(a, e, 0.25)), 0.3 + 0.25 * 1.4, rtol=1e-6)


# ------------------------------------------------------------------------------------------------ the generator
SMALL = S.StyleGAN2Config(z_dim=32, c_dim=4, w_dim=32, img_resolution=32, mapping_layers=2, channel_base=512,
                          channel_max=32, conv_clamp=256)


TINY = S.StyleGAN2Config(z_dim=8, c_dim=2, w_dim=8, img_resolution=8, mapping_layers=2, channel_base=64,
                         channel_max=8, conv_clamp=256)


@pytest.fixture(scope="module")
def small():
    v = S.init(SMALL, jax.random.PRNGKey(0))
    gen = jax.jit(partial(S.generate, SMALL), static_argnames=("noise_mode",))
    return v, gen


def test_init_statistics(small):
    v, _ = small
    p, b = v["params"], v["buffers"]
    assert SMALL.num_ws == 8 and SMALL.channels_dict == {4: 32, 8: 32, 16: 32, 32: 16}
    w = np.asarray(p["synthesis"]["b16"]["conv0"]["weight"])
    assert w.shape == (3, 3, 32, 32) and abs(w.std() - 1) < 0.05 and abs(w.mean()) < 0.05
    fc = np.asarray(p["mapping"]["fc0"]["weight"])
    assert fc.shape == (64, 32) and abs(fc.std() * SMALL.lr_multiplier - 1) < 0.05  # N(0,1)/lr
    np.testing.assert_array_equal(p["synthesis"]["b8"]["conv1"]["affine"]["bias"], 1.0)
    np.testing.assert_array_equal(p["synthesis"]["b8"]["conv1"]["bias"], 0.0)
    np.testing.assert_array_equal(p["synthesis"]["b8"]["conv1"]["noise_strength"], 0.0)
    np.testing.assert_array_equal(b["mapping"]["w_avg"], 0.0)
    assert b["synthesis"]["b32"]["conv0"]["noise_const"].shape == (32, 32)


@pytest.mark.slow  # ~10 s: Flax's init compiles one threefry kernel per parameter
def test_init_rule_matches_flax_initialisers():
    """`init` (one normal draw split over the leaves) follows the modules' own Flax initialisers leaf by leaf."""
    cfg = S.StyleGAN2Config(z_dim=8, c_dim=2, w_dim=8, img_resolution=4, mapping_layers=1, channel_base=64,
                            channel_max=16)
    ours, theirs = S.init(cfg, jax.random.PRNGKey(0)), S.flax_init(cfg, jax.random.PRNGKey(1))
    assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ours), jax.tree_util.tree_leaves(theirs)):
        a, b, name = np.asarray(a), np.asarray(b), jax.tree_util.keystr(path)
        assert a.shape == b.shape and a.dtype == b.dtype, name
        if np.all(b == b.flat[0]):  # a constant initialiser: identical values
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:  # a normal initialiser: same scale (loose: some leaves have only 16 entries)
            assert 0.4 < a.std() / b.std() < 2.5, name


@pytest.mark.parametrize("res,num_ws,last_ch", [(64, 10, 512), (256, 14, 128), (1024, 18, 32)])
def test_resolution_layouts(res, num_ws, last_ch):
    cfg = S.StyleGAN2Config(img_resolution=res)
    shapes = S.variable_shapes(cfg)
    assert cfg.num_ws == num_ws
    assert shapes["params"]["synthesis"][f"b{res}"]["torgb"]["weight"].shape == (1, 1, last_ch, 3)
    assert shapes["buffers"]["synthesis"][f"b{res}"]["conv1"]["noise_const"].shape == (res, res)


def test_forward_shapes_and_range(small):
    v, gen = small
    z = jax.random.normal(jax.random.PRNGKey(1), (8, 32))
    c = jax.nn.one_hot(jnp.arange(8) % 4, 4)
    img = gen(v, z, c, truncation_psi=0.8, noise_mode="const")
    assert img.shape == (8, 3, 32, 32) and img.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(img)))
    # equalised lr + demodulation keep activations O(1) at init (trainable from here)
    assert 0.05 < float(jnp.std(img)) < 20


def test_random_noise_mode():
    v = S.init(TINY, jax.random.PRNGKey(0))
    gen = jax.jit(partial(S.generate, TINY), static_argnames=("noise_mode",))
    strengths = jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.full_like(a, 0.5) if "noise_strength" in jax.tree_util.keystr(path) else a, v)
    z = jax.random.normal(jax.random.PRNGKey(1), (2, 8))
    c = jax.nn.one_hot(jnp.arange(2), 2)
    k1, k2 = jax.random.PRNGKey(10), jax.random.PRNGKey(11)
    a = gen(strengths, z, c, noise_mode="random", key=k1)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(gen(strengths, z, c, noise_mode="random", key=k1)))
    b = gen(strengths, z, c, noise_mode="random", key=k2)
    assert float(jnp.abs(a - b).max()) > 1e-2
    none = gen(strengths, z, c, noise_mode="none", key=k1)
    assert float(jnp.abs(a - none).max()) > 1e-2
    # with zero noise strength (the init) all three modes agree exactly
    np.testing.assert_array_equal(np.asarray(gen(v, z, c, noise_mode="random", key=k1)),
                                  np.asarray(gen(v, z, c, noise_mode="none", key=k1)))
    with pytest.raises(ValueError, match="PRNG key"):
        S.synthesis(TINY, v, jnp.zeros((1, TINY.num_ws, 8)), noise_mode="random")


def test_random_noise_images_are_standard_normal():
    noises = S._random_noises(SMALL, jax.random.PRNGKey(3), 64)
    assert [len(noises[r]) for r in (4, 8, 16, 32)] == [1, 2, 2, 2]
    flat = np.concatenate([np.asarray(n).ravel() for maps in noises.values() for n in maps])
    assert noises[32][1].shape == (64, 32, 32, 1) and flat.size == 64 * (16 + 2 * (64 + 256 + 1024))
    # 172 032 draws: mean ± 5/√n, std within 1 % of 1
    assert abs(flat.mean()) < 5 / np.sqrt(flat.size) and abs(flat.std() - 1) < 0.01
    a, b = np.asarray(noises[32][0]), np.asarray(noises[32][1])
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.02  # layers get independent noise


def test_batch_one_equals_row_of_batch(small):
    v, gen = small
    z = jax.random.normal(jax.random.PRNGKey(2), (8, 32))
    c = jax.nn.one_hot(jnp.arange(8) % 4, 4)
    full = np.asarray(gen(v, z, c, truncation_psi=0.8, noise_mode="const"))
    one = np.asarray(gen(v, z[5:6], c[5:6], truncation_psi=0.8, noise_mode="const"))
    np.testing.assert_allclose(one, full[5:6], rtol=1e-5, atol=1e-5)


def test_bfloat16_close_to_float32(fixtures):
    from ports import stylegan2_ada
    loaded = stylegan2_ada.load(fixtures / "ada_cifar_small" / "state_dict.npz")
    vec = np.load(fixtures / "ada_cifar_small" / "vectors.npz")
    cfg, v = loaded.config.replace(dtype="bfloat16"), loaded.variables
    img = np.asarray(jax.jit(partial(S.synthesis, cfg))(v, vec["ws_psi1"]))
    ref = vec["img_const_psi1"]
    assert img.dtype == np.float32
    # bfloat16 keeps 8 mantissa bits (~0.4 % per op); measured max |Δ| 0.076 (0.9 % of max |img| 8.15),
    # mean |Δ| 0.011 (0.8 % of mean |img|).
    assert np.abs(img - ref).max() < 0.03 * np.abs(ref).max()
    assert np.abs(img - ref).mean() < 0.02 * np.abs(ref).mean()
    assert np.abs(img - ref).max() > 1e-4  # really computed in bfloat16


def test_orig_architecture_is_skip_without_intermediate_rgb():
    """'orig' has a ToRGB in the last block only: with the same weights its image is the skip image minus the
    up-sampled skip image of the previous block."""
    cfg = TINY
    v = S.init(cfg, jax.random.PRNGKey(8))
    ws = jax.random.normal(jax.random.PRNGKey(9), (2, cfg.num_ws, 8))
    img_skip, blocks = jax.jit(partial(S.synthesis, cfg, return_intermediates=True))(v, ws)
    ov = {"params": {"mapping": v["params"]["mapping"], "synthesis": {
        "b4": {k: b for k, b in v["params"]["synthesis"]["b4"].items() if k != "torgb"},
        "b8": v["params"]["synthesis"]["b8"]}}, "buffers": v["buffers"]}
    img_orig = jax.jit(partial(S.synthesis, cfg.replace(architecture="orig")))(ov, ws)
    expected = np.asarray(img_skip) - np.asarray(S.to_nchw(ops.upsample2d(blocks["b4"]["img"], F4)))
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(np.asarray(img_orig), expected, rtol=1e-5, atol=1e-5)


def test_resnet_architecture_block(fixtures):
    """'resnet' block = √½·(1×1 conv ↑2 FIR shortcut) + conv1(conv0(x), gain √½); checked on b8 against numpy."""
    cfg = S.StyleGAN2Config(z_dim=16, w_dim=16, img_resolution=8, mapping_layers=1, channel_base=128,
                            channel_max=16, architecture="resnet")
    v = S.init(cfg, jax.random.PRNGKey(3))
    ws = jax.random.normal(jax.random.PRNGKey(4), (2, cfg.num_ws, 16))
    _, blocks = jax.jit(partial(S.synthesis, cfg, noise_mode="none", return_intermediates=True))(v, ws)
    x4 = np.asarray(blocks["b4"]["x"])
    assert "torgb" not in v["params"]["synthesis"]["b4"] and "img" not in blocks["b4"]
    w_skip = np.asarray(v["params"]["synthesis"]["b8"]["skip"]["weight"])[0, 0] / np.sqrt(16)
    shortcut = np.sqrt(0.5) * np_upfirdn(x4 @ w_skip, F4, up=2, pad=(2, 1, 2, 1), gain=4)
    p8 = v["params"]["synthesis"]["b8"]
    b8 = v["buffers"]["synthesis"]["b8"]

    @jax.jit
    def main_path(x4, ws):
        y = S.SynthesisLayer(16, 8, up=2).apply({"params": p8["conv0"], "buffers": b8["conv0"]}, x4, ws[:, 1], "none")
        return S.SynthesisLayer(16, 8).apply({"params": p8["conv1"], "buffers": b8["conv1"]}, y, ws[:, 2], "none",
                                             gain=float(np.sqrt(0.5)))

    main = main_path(jnp.asarray(x4), ws)
    np.testing.assert_allclose(np.asarray(blocks["b8"]["x"]), shortcut + np.asarray(main), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # ~10 s: compiles the backward pass
def test_gradients_reach_every_parameter():
    cfg = TINY
    v = S.init(cfg, jax.random.PRNGKey(0))
    z = jax.random.normal(jax.random.PRNGKey(5), (2, 8))
    c = jax.nn.one_hot(jnp.arange(2), 2)

    def loss(params):
        img = S.generate(cfg, {"params": params, "buffers": v["buffers"]}, z, c, noise_mode="random",
                         key=jax.random.PRNGKey(6))
        return jnp.mean(img ** 2)

    grads = jax.jit(jax.grad(loss))(v["params"])
    n = 0
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        g = np.asarray(g)
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0, jax.tree_util.keystr(path)
        n += 1
    assert n == 3 * 2 + 1 + 5 + 4 + 2 * 5 + 4  # embed+fc0+fc1, const, b4 conv1, b4 torgb, b8 conv0/conv1, b8 torgb


def test_truncation_cutoff_style_mix_and_w_avg_update(small):
    v, _ = small
    z = jax.random.normal(jax.random.PRNGKey(7), (3, 32))
    c = jax.nn.one_hot(jnp.arange(3), 4)
    vv = {"params": v["params"], "buffers": {**v["buffers"], "mapping": {"w_avg": jnp.full((32,), 0.3)}}}
    mp = jax.jit(partial(S.mapping, SMALL), static_argnames="truncation_cutoff")
    ws1 = mp(vv, z, c)
    ws = mp(vv, z, c, truncation_psi=0.5, truncation_cutoff=3)
    np.testing.assert_allclose(np.asarray(ws[:, :3]), 0.3 + 0.5 * (np.asarray(ws1[:, :3]) - 0.3), rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_array_equal(np.asarray(ws[:, 3:]), np.asarray(ws1[:, 3:]))
    mixed = S.style_mix(ws1, ws, 5)
    np.testing.assert_array_equal(np.asarray(mixed[:, :5]), np.asarray(ws1[:, :5]))
    np.testing.assert_array_equal(np.asarray(mixed[:, 5:]), np.asarray(ws[:, 5:]))
    new = S.update_w_avg(jnp.full((32,), 0.3), ws1[:, 0], beta=0.9)
    np.testing.assert_allclose(np.asarray(new), 0.9 * 0.3 + 0.1 * np.asarray(ws1[:, 0]).mean(0), rtol=1e-5)


def test_public_entry_points_compile_once_per_config_and_shape():
    """mapping, mapping_w, synthesis and generate are jitted where they stand (config static, ψ and arrays traced):
    an eager caller runs one compiled program per config and shape instead of the Flax module op by op (31-36 s
    against 2.7-3.4 s for two 1024-px images), with the module's numbers."""
    names = ("mapping", "mapping_w", "synthesis", "generate")
    v = S.init(TINY, jax.random.PRNGKey(3))
    z = jax.random.normal(jax.random.PRNGKey(4), (2, 8))
    c = jax.nn.one_hot(jnp.arange(2), 2)
    before = {n: getattr(S, n)._cache_size() for n in names}
    for psi in (0.5, 0.7):
        ws = S.mapping(TINY, v, z + psi, c, truncation_psi=psi)
        S.mapping_w(TINY, v, z + psi, c, truncation_psi=psi)
        S.synthesis(TINY, v, ws)
        img = S.generate(TINY, v, z + psi, c, truncation_psi=psi)
    assert {n: getattr(S, n)._cache_size() - before[n] for n in names} == dict.fromkeys(names, 1)
    S.mapping(TINY.replace(lr_multiplier=0.02), v, z, c)          # another config: another program
    assert S.mapping._cache_size() == before["mapping"] + 2
    with jax.disable_jit():
        ref = S.generate(TINY, v, z + 0.7, c, truncation_psi=0.7)
    np.testing.assert_allclose(np.asarray(img), np.asarray(ref), rtol=0, atol=1e-5)


def test_to_uint8_rule():
    x = np.array([-2.0, -1.0, -0.004, 0.0, 0.5, 0.999, 1.0, 3.0], np.float32).reshape(1, 1, 1, 8)
    got = S.to_uint8(x)
    assert got.shape == (1, 1, 8, 1) and got.dtype == np.uint8
    # 128 + 127.5·x, clipped, truncated: -1 → 0.5 → 0; -0.004 → 127.49 → 127; 0.999 → 255.37 → 255
    np.testing.assert_array_equal(got[0, 0, :, 0], [0, 0, 127, 128, 191, 255, 255, 255])


def test_input_errors(small):
    v, _ = small
    with pytest.raises(ValueError, match=r"ws must have shape \[B, 8, 32\]"):
        S.synthesis(SMALL, v, jnp.zeros((2, 7, 32)))
    with pytest.raises(ValueError, match=r"c must have shape \[B, 4\]"):
        S.mapping(SMALL, v, jnp.zeros((2, 32)))
    with pytest.raises(ValueError, match="power of two"):
        S.StyleGAN2Config(img_resolution=48)
    with pytest.raises(ValueError, match="noise_mode"):
        S.synthesis(SMALL, v, jnp.zeros((1, 8, 32)), noise_mode="bogus")


@pytest.mark.slow  # compiles a 9-block network
@pytest.mark.parametrize("arch", ["skip", "orig", "resnet"])
def test_1024_forward_narrow(arch):
    cfg = S.StyleGAN2Config(z_dim=16, w_dim=16, img_resolution=1024, mapping_layers=2, channel_base=2048,
                            channel_max=16, architecture=arch, conv_clamp=256)
    v = S.init(cfg, jax.random.PRNGKey(0))
    img = jax.jit(partial(S.generate, cfg, noise_mode="random"))(v, jnp.ones((1, 16)), key=jax.random.PRNGKey(1))
    assert img.shape == (1, 3, 1024, 1024) and bool(jnp.all(jnp.isfinite(img)))
    assert cfg.num_ws == 18 and 0.01 < float(jnp.std(img)) < 100
