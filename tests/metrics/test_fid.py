"""FID equal to pytorch-fid's: pool3 features of the public path, statistics (one-shot and streaming), the distance
from the fixture's features and from ours, and reference statistics (stats files, LACE's pickle, PNG folders, uint8
`.npz` with caches that notice changed inputs and weights). Weights: the fixture's seeded recipe."""
import pickle

import jax
import numpy as np
import pytest
from PIL import Image

from lace_jax.metrics import fid

BATCH = 4       # every call here shares one compiled network (and the model tests' resize compiles)
ATOL = 1e-4




@pytest.fixture(scope="module")
def vec(fid_vectors):
    return fid_vectors


@pytest.fixture(scope="module")
def variables(fid_variables):
    return fid_variables


@pytest.fixture(scope="module")
def feats(variables, vec):
    """Our pool3 features of the first n images of a fixture set (all by default), computed on first use."""
    cache: dict = {}

    def get(s, n=None):
        if (s, n) not in cache:
            cache[s, n] = fid.inception_features(variables, vec[f"{s}_images_uint8"][:n], batch_size=BATCH)
        return cache[s, n]
    return get


@pytest.mark.parametrize("s", ["s32", "s64", "s299"])
def test_pool3_matches_pytorch_fid(feats, vec, s):
    f = feats(s)
    assert f.shape == vec[f"{s}_pool3"].shape and f.dtype == np.float32
    np.testing.assert_allclose(f, vec[f"{s}_pool3"], rtol=0, atol=ATOL)
    np.testing.assert_array_equal(f == 0, vec[f"{s}_pool3"] == 0)     # ReLU zeros stay exact zeros


def test_statistics_and_fid_from_the_fixture_features(vec):
    """pytorch-fid's mu/sigma exactly; the distance within 1e-4 (relative) of scipy.sqrtm's 42.97301793394257."""
    stats = {}
    for f in ("fidA", "fidB"):
        mu, sigma = fid.activation_statistics(vec[f"{f}_pool3"])
        assert mu.dtype == sigma.dtype == np.float64 and sigma.shape == (2048, 2048)
        np.testing.assert_array_equal(mu, vec[f"{f}_mu"])
        np.testing.assert_array_equal(np.diag(sigma), vec[f"{f}_sigma_diag"])
        np.testing.assert_array_equal(sigma[:32, :32], vec[f"{f}_sigma_block"])
        assert np.trace(sigma) == pytest.approx(float(vec[f"{f}_sigma_trace"]), rel=1e-12)
        assert np.linalg.norm(sigma) == pytest.approx(float(vec[f"{f}_sigma_fro"]), rel=1e-12)
        stats[f] = (mu, sigma)
    want = float(vec["fid"])
    assert want == 42.97301793394257
    d = fid.frechet_distance(*stats["fidA"], *stats["fidB"])
    assert d == pytest.approx(want, rel=1e-4) and abs(d - want) < 1e-3
    # the exact low-rank route (64 x 64 singular values); what separates it from sqrtm and eigh is their square
    # roots of the rounding noise in the ~2000 zero eigenvalues
    d_svd = fid.fid_from_features(vec["fidA_pool3"], vec["fidB_pool3"])
    assert d_svd == pytest.approx(want, rel=1e-4) and abs(d_svd - want) < 1e-3


def test_fid_from_our_features_subset(feats, vec):
    """16 + 16 of the FID sets through our network: the FID moves by far less than 1e-3."""
    fa, fb = feats("fidA", 16), feats("fidB", 16)
    np.testing.assert_allclose(fa, vec["fidA_pool3"][:16], rtol=0, atol=ATOL)
    np.testing.assert_allclose(fb, vec["fidB_pool3"][:16], rtol=0, atol=ATOL)
    ours, theirs = fid.fid_from_features(fa, fb), fid.fid_from_features(vec["fidA_pool3"][:16], vec["fidB_pool3"][:16])
    assert abs(ours - theirs) < 1e-3


@pytest.mark.slow
def test_fid_from_our_features_full(feats, vec):
    """All 64 + 64 through our network, against pytorch-fid's number (slow on a small CPU)."""
    fa, fb = feats("fidA"), feats("fidB")
    np.testing.assert_allclose(fa, vec["fidA_pool3"], rtol=0, atol=ATOL)
    np.testing.assert_allclose(fb, vec["fidB_pool3"], rtol=0, atol=ATOL)
    d = fid.frechet_distance(*fid.activation_statistics(fa), *fid.activation_statistics(fb))
    assert abs(d - float(vec["fid"])) < 1e-3
    assert abs(fid.fid_from_features(fa, fb) - float(vec["fid"])) < 1e-3


def test_streaming_statistics_equal_one_shot(vec):
    x = vec["fidA_pool3"]
    state = fid.stats_init()
    for lo, hi in [(0, 1), (1, 8), (8, 8), (8, 58), (58, 64)]:
        before = state
        state = fid.stats_update(state, x[lo:hi])
        assert before.count == (0 if lo == 0 else lo)      # updates are pure: the old state is untouched
    assert state.count == 64
    mu, sigma = fid.stats_finalize(state)
    mu1, sigma1 = fid.activation_statistics(x)
    np.testing.assert_allclose(mu, mu1, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(sigma, sigma1, rtol=1e-11, atol=1e-12)
    np.testing.assert_array_equal(sigma, sigma.T)
    with pytest.raises(fid.StatisticsError, match="at least 2"):
        fid.stats_finalize(fid.stats_update(fid.stats_init(), x[:1]))
    with pytest.raises(fid.StatisticsError, match=r"\[n, 2048\]"):
        fid.stats_update(fid.stats_init(), x[:, :10])


def test_merged_statistics_equal_the_pooled_set(vec):
    """Per-condition accumulators merged (evaluate.py's FID of all conditions) give the statistics of the pooled
    features, although each accumulator is centred on its own first batch."""
    a, b = vec["fidA_pool3"].astype(np.float64), vec["fidB_pool3"].astype(np.float64)
    sa = fid.stats_update(fid.stats_init(), a[:40])
    sb = fid.stats_update(fid.stats_update(fid.stats_init(), b), a[40:])
    mu, sigma = fid.stats_finalize(fid.stats_merge(sa, sb))
    mu_ref, sigma_ref = fid.activation_statistics(np.concatenate([a[:40], b, a[40:]]))
    np.testing.assert_allclose(mu, mu_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sigma, sigma_ref, rtol=0, atol=1e-10)
    assert fid.stats_merge(fid.stats_init(), sa) is sa and fid.stats_merge(sa, fid.stats_init()) is sa


def test_streaming_from_uneven_batches_and_progress(variables, feats, vec):
    imgs = vec["s32_images_uint8"]
    calls = []
    mu, sigma = fid.statistics_from_batches(variables, iter([imgs[:3], imgs[3:3], imgs[3:8]]), batch_size=BATCH,
                                            progress=lambda done, total: calls.append((done, total)), total=8)
    assert calls == [(4, 8), (8, 8)]
    mu1, sigma1 = fid.activation_statistics(feats("s32"))
    np.testing.assert_allclose(mu, mu1, rtol=0, atol=1e-5)
    np.testing.assert_allclose(sigma, sigma1, rtol=0, atol=1e-4)


def test_generator_range_floats_give_the_same_features(variables, feats, vec):
    """LACE feeds the generator's [-1, 1] output, normalised before the resize; pytorch-fid normalises after it."""
    imgs = vec["s32_images_uint8"][:BATCH]
    f = fid.inception_features(variables, imgs.astype(np.float32) / 127.5 - 1.0, batch_size=BATCH)
    np.testing.assert_allclose(f, feats("s32")[:BATCH], rtol=0, atol=ATOL)


def test_distance_and_input_errors(variables):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 6)), rng.normal(size=(20, 6)) * 2 + 1      # 600 > 36: the statistics route
    assert fid.fid_from_features(x, y) == fid.frechet_distance(*fid.activation_statistics(x),
                                                               *fid.activation_statistics(y))
    assert fid.fid_from_features(x[:5], y[:4]) == pytest.approx(   # 20 <= 36: singular values (eigh: sqrt of noise)
        fid.frechet_distance(*fid.activation_statistics(x[:5]), *fid.activation_statistics(y[:4])), abs=1e-6)
    with pytest.raises(fid.StatisticsError, match="equal D"):
        fid.fid_from_features(x, y[:, :5])
    mu, sigma = np.zeros(4), np.eye(4)
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-12)
    assert fid.frechet_distance(mu, sigma, mu + 1, 4 * sigma) == pytest.approx(4 + 4 * (1 - 2) ** 2)
    with pytest.raises(fid.StatisticsError, match="dimensions differ"):
        fid.frechet_distance(mu, sigma, np.zeros(3), np.eye(3))
    with pytest.raises(fid.StatisticsError, match="non-finite"):
        fid.frechet_distance(mu, sigma, mu, np.full((4, 4), np.nan))
    with pytest.raises(fid.StatisticsError, match=r"sigma \[D, D\]"):
        fid.frechet_distance(mu, np.eye(3), mu, sigma)
    with pytest.raises(fid.ImageInputError, match="NCHW"):
        fid.inception_features(variables, np.zeros((2, 3, 32, 32), np.uint8))
    with pytest.raises(fid.ImageInputError, match="dtype int32"):
        fid.inception_features(variables, np.zeros((2, 32, 32, 3), np.int32))
    with pytest.raises(fid.FIDError, match="batch_size"):
        fid.inception_features(variables, np.zeros((2, 32, 32, 3), np.uint8), batch_size=0)
    assert fid.inception_features(variables, np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 2048)
    assert issubclass(fid.FIDError, ValueError)


# -------------------------------------------------------------------------------------------------------------
# Reference statistics.

def test_stats_files_round_trip(tmp_path, vec):
    mu, sigma = fid.activation_statistics(vec["fidA_pool3"])
    path = fid.save_reference(tmp_path / "ref.npz", mu, sigma)
    with np.load(path) as z:                                      # pytorch-fid reads exactly these two keys
        assert sorted(z.files) == ["mu", "sigma"] and z["mu"].dtype == np.float64
    got = fid.load_reference(path)
    np.testing.assert_array_equal(got[0], mu)
    np.testing.assert_array_equal(got[1], sigma)
    np.savez_compressed(tmp_path / "pytorch_fid.npz", mu=mu.astype(np.float32), sigma=sigma)   # written elsewhere
    np.testing.assert_array_equal(fid.load_reference(tmp_path / "pytorch_fid.npz")[1], sigma)
    with open(tmp_path / "inception_cifar10.pkl", "wb") as f:    # LACE's calc_inception_stats.py layout
        pickle.dump({"mean": mu.astype(np.float32), "cov": sigma, "size": 256, "path": "x"}, f)
    got = fid.load_reference(tmp_path / "inception_cifar10.pkl")
    np.testing.assert_array_equal(got[0], mu.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(got[1], sigma)
    with pytest.raises(fid.ReferenceFileError, match="must end in .npz"):
        fid.save_reference(tmp_path / "ref.stats", mu, sigma)
    with pytest.raises(fid.StatisticsError, match="non-finite"):
        fid.save_reference(tmp_path / "nan.npz", mu * np.nan, sigma)


def _write_pngs(folder, images):
    folder.mkdir(exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:03d}.png")


def test_png_folder_reference_is_cached_and_invalidated(tmp_path, variables, feats, vec):
    imgs, f32 = vec["s32_images_uint8"], feats("s32")
    folder = tmp_path / "real"
    _write_pngs(folder, imgs[:4])
    (folder / "notes.txt").write_text("not an image")
    log, progress = [], []
    mu, sigma = fid.load_reference(folder, variables, batch_size=BATCH, log=log.append,
                                   progress=lambda d, t: progress.append((d, t)))
    ref = fid.activation_statistics(f32[:4])
    np.testing.assert_allclose(mu, ref[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(sigma, ref[1], rtol=0, atol=1e-5)
    cached = tmp_path / "real.fid_stats.npz"
    assert fid.cache_path(folder) == cached and cached.is_file() and progress == [(4, 4)]
    assert any("computing reference statistics of 4 images" in m for m in log)
    np.testing.assert_array_equal(fid.load_reference(cached)[0], mu)          # the cache is a stats file itself

    log.clear()
    again = fid.load_reference(folder, variables, batch_size=BATCH, log=log.append)
    assert log == [f"reference statistics from cache {cached}"]
    np.testing.assert_array_equal(again[1], sigma)

    Image.fromarray(imgs[4]).save(folder / "000.png")                          # a changed input
    log.clear()
    mu2, _ = fid.load_reference(folder, variables, batch_size=BATCH, log=log.append)
    assert any("stale" in m for m in log)
    np.testing.assert_allclose(mu2, fid.activation_statistics(np.concatenate([f32[4:5], f32[1:4]]))[0], atol=1e-6)

    other = jax.tree_util.tree_map(lambda a: a, variables)                     # other weights: stale again
    other["params"]["Conv2d_1a_3x3"]["bn"]["bias"] = other["params"]["Conv2d_1a_3x3"]["bn"]["bias"] + 0.5
    log.clear()
    mu3, _ = fid.load_reference(folder, other, batch_size=BATCH, log=log.append)
    assert any("stale" in m for m in log) and not np.allclose(mu3, mu2)


def test_uint8_npz_reference(tmp_path, variables, feats, vec):
    imgs, f32 = vec["s32_images_uint8"], feats("s32")
    src = tmp_path / "samples.npz"
    np.savez(src, images=imgs[4:8], labels=np.arange(4))
    mu, sigma = fid.load_reference(src, variables, batch_size=BATCH)
    np.testing.assert_allclose(mu, fid.activation_statistics(f32[4:8])[0], rtol=0, atol=1e-6)
    assert (tmp_path / "samples.fid_stats.npz").is_file()
    np.savez(src, imgs[:4])                                         # rewritten: the only uint8 array, other images
    log = []
    mu2, _ = fid.load_reference(src, variables, batch_size=BATCH, log=log.append)
    assert any("stale" in m for m in log)
    np.testing.assert_allclose(mu2, fid.activation_statistics(f32[:4])[0], rtol=0, atol=1e-6)
    log.clear()
    fid.load_reference(src, variables, batch_size=BATCH, log=log.append, cache=False)
    assert not any("cache" in m for m in log)


def test_reference_errors(tmp_path, variables):
    with pytest.raises(fid.ReferenceFileError, match="not found"):
        fid.load_reference(tmp_path / "nope.npz")
    np.savez(tmp_path / "floats.npz", a=np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(fid.ReferenceFileError, match="neither statistics"):
        fid.load_reference(tmp_path / "floats.npz", variables)
    np.savez(tmp_path / "nchw.npz", images=np.zeros((2, 3, 8, 8), np.uint8))
    with pytest.raises(fid.ImageInputError, match="NCHW"):
        fid.load_reference(tmp_path / "nchw.npz", variables)
    np.savez(tmp_path / "imgs.npz", images=np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(fid.FIDError, match="needs the Inception variables"):
        fid.load_reference(tmp_path / "imgs.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(fid.ReferenceFileError, match="no image files"):
        fid.load_reference(tmp_path / "empty", variables)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"not a png")
    with pytest.raises(fid.ReferenceFileError, match=r"x\.png: unreadable image"):
        fid.load_reference(tmp_path / "bad", variables)
    (tmp_path / "ref.txt").write_text("mu")
    with pytest.raises(fid.ReferenceFileError, match="expected a folder"):
        fid.load_reference(tmp_path / "ref.txt")
    with open(tmp_path / "evil.pkl", "wb") as f:
        f.write(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueR.")
    with pytest.raises(fid.ReferenceFileError, match="refusing global os.system"):
        fid.load_reference(tmp_path / "evil.pkl")
