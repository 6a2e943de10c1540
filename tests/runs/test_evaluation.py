"""lace_jax.runs.evaluation: Boolean success by the judge, Fréchet distances, judge-scored conditions and edits on the
shipped model (small counts)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.runs import evaluation, workflow
from lace_jax import worlds


@pytest.fixture(scope="module")
def world():
    return worlds.world_from_config("shapes")


def test_judge_satisfied_boolean_logic(world):
    labels = {"shape": np.array([1, 1, 0, 3, -1]), "background": np.array([0, 2, 0, 0, 0]),
              "size": np.array([0.75, 0.2, 0.85, np.nan, 0.8])}
    sat, atoms = evaluation.judge_satisfied("shape=circle & !background=white", world.attributes, labels)
    np.testing.assert_array_equal(sat, [True, False, False, False, False])
    sat, _ = evaluation.judge_satisfied("shape=square | size=0.8", world.attributes, labels, tol=0.1)
    np.testing.assert_array_equal(sat, [True, False, True, False, True])      # NaN value: never satisfied
    assert set(atoms) == {"shape=circle", "background=white"}
    with pytest.raises(ValueError, match="no label for attribute 'hue'"):
        evaluation.judge_satisfied("hue=0.3", world.attributes, {"shape": labels["shape"]})


def test_fd_small_for_real_vs_real_large_for_noise(world):
    a = evaluation.reference_features(world, 400, seed=0)
    b = evaluation.reference_features(world, 400, seed=1)
    noise = jax.random.uniform(jax.random.PRNGKey(0), (400, 3, 32, 32), minval=-1, maxval=1)
    c = evaluation.reference_features_from_images(world, np.asarray(noise))
    assert a.shape == (400, 128)
    real_real, real_noise = evaluation.fd(a, b), evaluation.fd(a, c)
    assert real_real < 0.05 * real_noise, (real_real, real_noise)
    assert np.isnan(evaluation.fd(a[:1], b))


def test_condition_beats_the_unconditional_rate(world):
    """LACE-ODE on background=black, scored by the judge on rendered images: far above the 1/3 prior rate and
    above the rate of the same samples' own starting latents."""
    res = workflow.sample_condition(world, "background=black", num_samples=24, seed=0)
    row = evaluation.condition_metrics(world, "background=black", res, seed=0, time_s=1.0)
    assert row["num_failed"] == 0 and row["nfe"] > 6 and row["samples_per_s"] == 24.0
    assert row["accuracy"] >= 0.8 and row["accuracy"] >= row["base_rate"] + 0.4, row
    z0 = evaluation.start_latents(world, 3, 0)
    k0 = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(0), 2))[0]
    np.testing.assert_allclose(z0[2], np.asarray(jax.random.normal(k0, (64,))), rtol=1e-6)


def test_edit_metrics_structure(world):
    # fixed-step Euler: this test is about the metrics' structure; the adaptive solve of a continuous edit is stiff
    opts = dataclasses.replace(world.sampler_options(), solver="euler", num_steps=40)
    z0, steps = workflow.sequential_edit(world, ["background=black", "size=0.9"], num_samples=8, seed=2,
                                         options=opts)
    rows = evaluation.edit_metrics(world, z0, steps)
    assert [r["edit"] for r in rows] == ["background=black", "size=0.9"]
    assert rows[0]["earlier_kept"] is None and 0.0 <= rows[1]["earlier_kept"] <= 1.0
    assert rows[0]["accuracy"] >= 0.75                       # black backgrounds by the judge
    assert "kept[shape]" in rows[0] and "kept[background]" not in rows[0]
    assert rows[0]["feature_dist_start"] == pytest.approx(rows[0]["feature_dist_prev"])
    assert rows[1]["feature_dist_unrelated"] > 0
    md = evaluation.markdown(rows)
    assert md.count("\n") == 4 and "| step |" in md


def test_matched_fd_uses_the_real_images_that_satisfy_the_condition(world):
    feats, labels = evaluation.reference_set(world, 600, seed=3)
    black = labels["background"] == 0
    assert 120 < black.sum() < 280 and feats.shape == (600, 128)
    gen = feats[black][:100]                                  # "samples" that are real black-background renders
    d_matched, n = evaluation.matched_fd("background=black", world.attributes, gen, feats, labels)
    d_all = evaluation.fd(gen, feats)
    assert n == int(black.sum()) and d_matched < 0.5 * d_all, (d_matched, d_all)


# --------------------------------------------------------------------------------------------------------------
# Streamed scoring (`condition_update` / `condition_row`, `evaluate.py --samples_dir`)

def _stub_world(world):
    """The shapes world's attributes with a cheap renderer and judges (numpy-fast, nothing to compile twice): what
    the streamed sums are checked on. Renders are tanh(z·W) as 3×8×8 images; the judge reads the background from
    channel means, the shape from quadrant means, the size from the overall mean; features are 6 image statistics;
    the fit judge calls an image realistic when its contrast is high."""
    from jax.tree_util import Partial

    w = jnp.asarray(np.random.default_rng(0).standard_normal((world.latent_dim, 192)).astype(np.float32) / 8)

    def render(w, z):
        return jnp.tanh(z @ w).reshape(z.shape[0], 3, 8, 8)

    def read(images):
        x = jnp.asarray(images)
        ch = x.mean(axis=(2, 3))                                              # [B, 3]
        quad = x.reshape(x.shape[0], 3, 2, 4, 2, 4).mean(axis=(1, 3, 5)).reshape(x.shape[0], 4)
        labels = {"background": jnp.argmax(ch, -1), "shape": jnp.argmax(quad, -1),
                  "size": jax.nn.sigmoid(4 * x.mean(axis=(1, 2, 3)))}
        return labels, jnp.concatenate([ch, x.std(axis=(2, 3))], -1)

    def judge(images):
        labels, feats = read(images)
        return {"labels": labels, "features": feats}

    def fit(images):
        labels, _ = read(np.nan_to_num(images))
        return {"labels": {k: np.asarray(v) for k, v in labels.items()},
                "realistic": np.asarray(np.nan_to_num(images).std(axis=(1, 2, 3)) > 0.3)}

    def real(key, n):
        return jax.random.uniform(key, (n, 3, 8, 8), minval=-1, maxval=1)

    return dataclasses.replace(world, render=Partial(render, w), judge=Partial(judge), fit_judge=fit,
                               real_images=real)


def _fake_result(n, dim, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, dim)).astype(np.float32)
    ok = rng.random(n) > 0.15
    z[~ok] = np.nan
    from lace_jax.runs import chunks
    return chunks.BatchResult(z, ok, {"nfe": rng.integers(10, 40, n)}, np.flatnonzero(~ok), ())


def test_streamed_sums_equal_the_in_memory_row(world):
    """Blocks of 8 of 40 samples (with failures) accumulated by `condition_update` give `condition_metrics`'s row:
    rates exactly, Fréchet distances to float tolerance."""
    sw = _stub_world(world)
    expr = "background=black | shape=circle & !size=0.5"
    res = _fake_result(40, sw.latent_dim)
    real, real_labels = evaluation.reference_set(sw, 50, seed=1, batch=50)
    want = evaluation.condition_metrics(sw, expr, res, seed=4, real_features=real, real_labels=real_labels)
    score = evaluation.ConditionScore()
    for i in range(0, 40, 16):            # blocks of 16, 16, 8, rendered and judged 8 at a time
        score = evaluation.condition_update(sw, expr, score, res.z[i:i + 16], res.success[i:i + 16], seed=4,
                                            start=i, nfe=res.stats["nfe"][i:i + 16], batch=8)
    got = evaluation.condition_row(sw, expr, score, real_features=real, real_labels=real_labels)
    _assert_rows_equal(got, want)
    assert got["num_failed"] == int((~res.success).sum()) > 0 and 0 < got["accuracy"] < 1
    assert 0 < got["base_rate"] < 1 and 0 < got["realistic"] < 1 and got["num_real_matched"] > 2
    for k in ("accuracy", "base_rate", "accuracy_fit", "realistic"):      # counts over N: exactly
        assert got[k] == want[k], k
    np.testing.assert_allclose(got["nfe"], np.mean(res.stats["nfe"][res.success]), rtol=1e-12)


def test_condition_score_size_does_not_depend_on_the_number_of_samples(world):
    """The accumulator after 20 samples and after 2,000 holds arrays of the same total size (the sums grow in
    value, not in length)."""
    sw = _stub_world(world)

    def nbytes(score):
        leaves = jax.tree_util.tree_leaves(score)
        return sum(np.asarray(x).nbytes for x in leaves), len(leaves)

    res = _fake_result(2000, sw.latent_dim, seed=2)
    small = evaluation.condition_update(sw, "background=grey", evaluation.ConditionScore(), res.z[:20],
                                        res.success[:20], nfe=res.stats["nfe"][:20], batch=500)
    big = evaluation.condition_update(sw, "background=grey", evaluation.ConditionScore(), res.z, res.success,
                                      nfe=res.stats["nfe"], batch=500)
    assert (small.num, big.num) == (20, 2000) and big.gen.count > 1500
    assert nbytes(small) == nbytes(big)


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    """What `python sample.py --expr background=black --expr "shape=circle | size=0.3" --num_samples 6
    --chunk_size 3 --seed 3` (two Euler steps) writes: record.json, samples.npz, two chunk files per condition."""
    import time as _time

    from lace_jax.config import load_config
    from lace_jax.runs import output, request as rq, sampling

    out = tmp_path_factory.mktemp("sampled")
    req = rq.Request(out_dir=out, exprs=("background=black", "shape=circle | size=0.3"),
                     options={"solver": "euler", "num_steps": 2}, num_samples=6, chunk_size=3, seed=3,
                     progress=lambda m: None, save_images=False)
    output.write(out, sampling.run(load_config("shapes"), req), _time.time())
    return out


def _assert_rows_equal(got: dict, want: dict) -> None:
    """Same keys in the same order; counts and strings equal; floats to 1e-6 (Fréchet sums in another order)."""
    assert list(got) == list(want)
    for key, v in want.items():
        if isinstance(v, float):
            np.testing.assert_allclose(got[key], v, rtol=1e-6, err_msg=key)
        else:
            assert got[key] == v, key


@pytest.mark.slow
def test_samples_dir_scores_equal_in_memory_scores(world, sample_dir, tmp_path):
    """`score_samples_dir` on a real sample.py output equals `condition_metrics` on the merged chunks (the scoring
    `evaluate.py` does after sampling), read from the chunk files and, with those gone, from samples.npz."""
    import shutil

    from lace_jax.runs import chunks

    record, table = evaluation.score_samples_dir(sample_dir, num_real=40)
    real, real_labels = evaluation.reference_set(world, 40, seed=3)
    exprs = ["background=black", "shape=circle | size=0.3"]
    assert [r["expr"] for r in record["rows"]] == exprs and record["seed"] == 3 and "shape=circle" in table
    for k, expr in enumerate(exprs):
        res = chunks.merge(sample_dir / "conditions" / f"{k:02d}", write=False)
        want = evaluation.condition_metrics(world, expr, res, seed=3 + k, real_features=real,
                                            real_labels=real_labels)
        _assert_rows_equal(record["rows"][k], want)
    npz_only = tmp_path / "npz_only"
    shutil.copytree(sample_dir, npz_only, ignore=shutil.ignore_patterns("conditions"))
    again, _ = evaluation.score_samples_dir(npz_only, num_real=40)
    for a, b in zip(again["rows"], record["rows"]):
        _assert_rows_equal(a, b)


def test_samples_dir_rejects_what_is_not_a_sample_output(tmp_path):
    import json

    from lace_jax import records
    from lace_jax.runs import chunks

    with pytest.raises(evaluation.SamplesDirError, match="not a folder"):
        evaluation.read_sample_record(tmp_path / "nowhere")
    with pytest.raises(evaluation.SamplesDirError, match="no record.json"):
        evaluation.read_sample_record(tmp_path)
    (tmp_path / "record.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(evaluation.SamplesDirError, match="not a sample.py record"):
        evaluation.read_sample_record(tmp_path)
    record = {"world": "shapes", "config": {"world": "shapes"}, "num_samples": 6, "seed": 0}
    (tmp_path / "record.json").write_text(json.dumps({**record, "edits": [{"edit": "shape=star"}]}))
    with pytest.raises(evaluation.SamplesDirError, match="sequential edits"):
        evaluation.read_sample_record(tmp_path)
    # a model folder given outside the working directory is recorded by its name only: it must be given again
    (tmp_path / "record.json").write_text(json.dumps({**record, "config": {"world": "shapes", "model_dir": "…/m"},
                                                      "conditions": [{"expr": "shape=star"}]}))
    with pytest.raises(evaluation.SamplesDirError, match="give it with --checkpoint_dir"):
        evaluation.score_samples_dir(tmp_path)
    # a record of one condition whose second chunk file is gone, and no samples.npz
    (tmp_path / "record.json").write_text(json.dumps({**record, "conditions": [{"expr": "shape=star"}]}))
    cdir = tmp_path / "conditions" / "00"
    (cdir / chunks.CHUNK_DIR).mkdir(parents=True)
    records.write_json(cdir / chunks.CHUNK_DIR / chunks.MANIFEST, {"num_samples": 6, "chunk_size": 3})
    records.write_npz(chunks.chunk_path(cdir, 0), index=np.arange(3), z=np.zeros((3, 64), np.float32),
                      success=np.ones(3, bool))
    rec = evaluation.read_sample_record(tmp_path)
    with pytest.raises(evaluation.SamplesDirError, match="samples.npz"):
        list(evaluation.iter_condition_chunks(tmp_path, len(rec["conditions"]), rec["num_samples"]))
    records.write_npz(tmp_path / "samples.npz", z=np.zeros((1, 5, 64), np.float32), success=np.ones((1, 5), bool))
    with pytest.raises(evaluation.SamplesDirError, match="the record says 1 conditions of 6 samples"):
        list(evaluation.iter_condition_chunks(tmp_path, 1, 6))
    records.write_npz(tmp_path / "samples.npz", z=np.ones((1, 6, 64), np.float32), success=np.ones((1, 6), bool))
    blocks = list(evaluation.iter_condition_chunks(tmp_path, 1, 6, rows=4))     # falls back to samples.npz
    assert [(k, start, len(z)) for k, start, z, _, _ in blocks] == [(0, 0, 4), (0, 4, 2)]
    assert all(np.all(z == 1) and ok.all() for _, _, z, ok, _ in blocks)
