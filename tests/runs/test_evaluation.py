"""lace_jax.runs.evaluation: Boolean success by the judge, Fréchet distances, judge-scored conditions and edits on the
shipped model (small counts)."""
import dataclasses

import jax
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
