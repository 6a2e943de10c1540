"""FID InceptionV3 (Flax) against pytorch-fid's own activations: the resize, every probe layer of image 0 of each
debug set, and the layer-level conventions (no antialiasing, count_include_pad=False). Weights: the fixture's
seeded recipe (fixtures/fid_inception/README.md §1), rebuilt here in about a second."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.models import inception as M
from ports import inception as port

SETS = ("s32", "s64", "s299")
ATOL = 1e-4     # the fixture README's suggestion for a float32 CPU port (10x its thread-to-thread spread)
RTOL = 2e-6     # plus a little for the deepest layers, whose values are the largest




@pytest.fixture(scope="module")
def vec(fid_vectors):
    return fid_vectors


@pytest.fixture(scope="module")
def variables(fid_variables):
    return fid_variables


@pytest.fixture(scope="module")
def probed(variables, vec):
    """Image 0 of each debug set through the network, every probe kept (NHWC, numpy)."""
    x = jnp.concatenate([M.preprocess(jnp.asarray(vec[f"{s}_images_uint8"][:1])) for s in SETS])
    pool, acts = jax.jit(M.capture_probes)(variables, x)
    return np.asarray(pool), {k: np.asarray(v) for k, v in acts.items()}


def test_input_rows(vec):
    for s in SETS:
        x = np.asarray(M.preprocess(jnp.asarray(vec[f"{s}_images_uint8"][:1])))[0]
        rows = x[[0, 149, 298]].transpose(2, 0, 1)       # [C, 3 rows, 299]
        np.testing.assert_allclose(rows, vec[f"{s}_img0_input_rows"], rtol=0, atol=1e-6, err_msg=s)


@pytest.mark.parametrize("probe", M.probe_names())
def test_probe_layers_match_pytorch_fid(probed, vec, probe):
    pool, acts = probed
    act = acts[probe]
    c, h, w = vec[f"layer_{probe}_shape"]
    assert act.shape[1:] == (h, w, c)
    chidx, corners = vec[f"layer_{probe}_chidx"], vec[f"layer_{probe}_win_yx"]
    for i, s in enumerate(SETS):
        a = act[i]
        np.testing.assert_allclose(a.astype(np.float64).mean((0, 1)), vec[f"{s}_img0_{probe}_chmean"], rtol=0,
                                   atol=ATOL, err_msg=f"{s} {probe} chmean")
        win = np.stack([a[y:y + 4, x:x + 4][:, :, chidx].transpose(2, 0, 1) for y, x in corners])
        np.testing.assert_allclose(win, vec[f"{s}_img0_{probe}_win"], rtol=RTOL, atol=ATOL,
                                   err_msg=f"{s} {probe} windows")


def test_probe_pool3_matches(probed, vec):
    pool, _ = probed
    for i, s in enumerate(SETS):
        np.testing.assert_allclose(pool[i], vec[f"{s}_pool3"][0], rtol=0, atol=ATOL, err_msg=s)


def _torch_bilinear_f64(img: np.ndarray, size: int) -> np.ndarray:
    """Reference: torch's align_corners=False bilinear formula in float64 (H, W, C); the source coordinate is computed
    in float32 as torch's CPU kernel does (computing it in float64 instead moves a 450 → 299 resize visibly)."""
    def taps(n_in):
        f32 = np.float32
        src = np.maximum(f32(n_in) / f32(size) * (np.arange(size, dtype=f32) + f32(0.5)) - f32(0.5), f32(0))
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), src.astype(np.float64) - i0
    r0, r1, rl = taps(img.shape[0])
    c0, c1, cl = taps(img.shape[1])
    top = img[r0][:, c0] * (1 - cl)[None, :, None] + img[r0][:, c1] * cl[None, :, None]
    bot = img[r1][:, c0] * (1 - cl)[None, :, None] + img[r1][:, c1] * cl[None, :, None]
    return top * (1 - rl)[:, None, None] + bot * rl[:, None, None]


@pytest.mark.parametrize("h,w", [(7, 13), (32, 32), (450, 333), (299, 299), (598, 299)])
def test_resize_is_torch_bilinear_without_antialiasing(h, w):
    img = np.random.default_rng(h * 1000 + w).random((h, w, 2)).astype(np.float32)
    got = np.asarray(M.resize_bilinear(jnp.asarray(img[None]), 299))[0]
    np.testing.assert_allclose(got, _torch_bilinear_f64(img.astype(np.float64), 299), rtol=0, atol=2e-6)
    if (h, w) == (299, 299):
        np.testing.assert_array_equal(got, img)
    if h == 598:   # 2x down: each output row is the mean of exactly two input rows (no antialiasing filter)
        np.testing.assert_allclose(got, (img[0::2] + img[1::2]) / 2, rtol=0, atol=1e-6)


def test_taps_in_float32_like_torch():
    i0, i1, w0, w1 = M.bilinear_taps(32, 299)
    assert i0[0] == 0 and i1[-1] == 31 and w0.dtype == np.float32
    np.testing.assert_allclose(w0 + w1, 1.0, atol=1e-7)
    scale = np.float32(32) / np.float32(299)
    src = np.float32(scale * np.float32(150.5) - np.float32(0.5))
    assert w1[150] == src - np.float32(np.floor(src))


def test_avg_pool_excludes_padding_and_mixed_7c_pool_is_max():
    x = jnp.full((1, 5, 6, 3), 2.5, jnp.float32)
    np.testing.assert_array_equal(np.asarray(M._avg_pool_3x3_exclude_pad(x)), 2.5)   # corners too (not 2.5·4/9)
    ramp = jnp.arange(5 * 6, dtype=jnp.float32).reshape(1, 5, 6, 1)
    out = np.asarray(M._avg_pool_3x3_exclude_pad(ramp))[0, :, :, 0]
    r = np.arange(30.0).reshape(5, 6)
    assert out[0, 0] == pytest.approx(r[:2, :2].mean()) and out[4, 3] == pytest.approx(r[3:, 2:5].mean())


def test_variable_tree_is_the_state_dict(fixtures):
    shapes = M.variable_shapes()
    leaves = jax.tree_util.tree_leaves(shapes)
    assert len(leaves) == 94 * 5 and sum(int(np.prod(a.shape)) for a in leaves) == 21_820_000
    recipe = json.loads((fixtures / "fid_inception" / "recipe.json").read_text())
    want = {e["key"]: tuple(e["shape"]) for e in recipe["keys"]}
    plan = port.key_plan()
    assert set(want) - set(plan) == {"fc.weight", "fc.bias"} | {k for k in want if k.endswith("num_batches_tracked")}
    assert all(want[k] == shape for k, (_, shape) in plan.items())
    assert plan["Mixed_6e.branch7x7_2.conv.weight"][0] == ("params", "Mixed_6e", "branch7x7_2", "conv", "kernel")


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        M.preprocess(jnp.zeros((2, 3, 32, 32), jnp.uint8))
    with pytest.raises(ValueError, match="uint8 or floating"):
        M.preprocess(jnp.zeros((1, 8, 8, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"\[N, 299, 299, 3\]"):
        jax.eval_shape(lambda v, x: M.pool3(v, x), M.variable_shapes(), jax.ShapeDtypeStruct((1, 32, 32, 3),
                                                                                          jnp.float32))
    with pytest.raises(ValueError, match="unknown probe"):
        M.capture_probes({}, jnp.zeros((1, 299, 299, 3)), names=("Mixed_9z",))
