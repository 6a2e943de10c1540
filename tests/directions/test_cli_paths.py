"""The train.py / sample.py paths of `--config directions_shapes` (lace_jax.directions.pipeline): saved directions
round-trip exactly, edits land where g says, and the CLIs find, save and apply directions on the shipped model
with clear errors on bad input."""
import json

import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import checkpoint
from lace_jax import directions as dirs
from lace_jax.directions import evaluation as ev
from lace_jax.directions import pipeline
from tests.cli_helpers import assert_usage_errors, run_script

TINY = ['factors=["x"]', "traj.num_starts=2", "traj.amounts_per_leg=2", "traj.steps=5", "traj.fit_steps=50",
        "num_calibrate=16", "num_check=4", "targets=[0.2,0.8]"]


def _toy_directions():
    d = 8
    return {"x": dirs.linear_direction(jnp.zeros(d).at[0].set(1.0), 0.05),
            "hue": dirs.linear_direction(jnp.zeros(d).at[3].set(1.0), 0.1)}


def test_save_load_round_trip_and_edits_land_on_g(tmp_path):
    found = _toy_directions()
    cfg = {"factors": list(found), "loss": "fourier", "model": {"name": "toy", "gan_steps": 1, "date": "x"}}
    pipeline.save(tmp_path / "directions", found, cfg)
    loaded, lcfg = pipeline.load(tmp_path / "directions")
    assert lcfg["factors"] == ["x", "hue"] and lcfg["model"]["gan_steps"] == 1
    for f in found:
        for a, b in zip(found[f], loaded[f]):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    z = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float32)
    after_x, after_hue = pipeline.edit(z, loaded, [("x", 0.8), ("hue", 0.1)])
    # g(⟨z, u⟩) equals the requested value in the transformation's units; other coordinates untouched
    np.testing.assert_allclose(np.asarray(dirs.factor(loaded["x"], after_hue)), ev.shapes_amount("x", 0.8), atol=1e-5)
    np.testing.assert_allclose(np.asarray(dirs.factor(loaded["hue"], after_hue)), ev.shapes_amount("hue", 0.1),
                               atol=1e-5)
    np.testing.assert_array_equal(after_x[:, [1, 2, 3, 4, 5, 6, 7]], z[:, [1, 2, 3, 4, 5, 6, 7]])
    with pytest.raises(ValueError, match="no direction for 'size'"):
        pipeline.edit(z, loaded, [("size", 0.5)])


def test_anchor_matches_the_judged_values():
    d = dirs.linear_direction(jnp.zeros(8).at[0].set(1.0), 0.05)
    z = np.random.default_rng(1).standard_normal((64, 8)).astype(np.float32)
    judged = 0.5 + 0.2 * z[:, 0]               # a judge that reads x = 0.5 + 0.2·z0
    a = pipeline.anchor(d, "x", z, judged)
    pred = np.asarray(dirs.factor(a, jnp.asarray(z)))
    np.testing.assert_allclose(pred.mean(), ev.shapes_amount("x", judged).mean(), atol=1e-5)


def test_load_rejects_another_kind(tmp_path):
    checkpoint.save(tmp_path / "other", {"a": np.zeros(3, np.float32)}, {"x": 1}, "something_else")
    with pytest.raises(checkpoint.CheckpointError, match="not 'directions'"):
        pipeline.load(tmp_path / "other")


def _run(script, *args):
    return run_script(script, "--config", "directions_shapes", *args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    work = tmp_path_factory.mktemp("dirs")
    r = _run("train.py", "--workdir", str(work), *sum((["--set", s] for s in TINY), []))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1].removeprefix("result: "))
    return work, result


def test_train_finds_and_checks_a_direction(trained):
    work, result = trained
    assert (work / "directions" / "lace_jax.json").is_file()
    check = result["check"]["x"]
    # even the tiny run (2 starts, 5 inversion steps) moves x the right way: edits to 0.2 and 0.8 are monotone
    assert check["monotone"] == 1.0 and check["slope"] > 0.2, check
    lo, hi = result["diagnostics"]["x"]["reachable"]
    assert lo < 0.2 and hi > 0.8


def test_sample_edits_along_the_saved_direction(trained, tmp_path):
    work, _ = trained
    out = tmp_path / "out"
    r = _run("sample.py", "--checkpoint_dir", str(work), "--edit", "x=0.2", "--edit", "x=0.8", "--num_samples", "8",
             "--out_dir", str(out))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rec = json.loads((out / "record.json").read_text())
    lo, hi = rec["edits"][0]["judged_mean"], rec["edits"][1]["judged_mean"]
    assert hi - lo > 0.08, rec["edits"]   # the judge sees the objects move right (tiny fit: 0.14 measured)
    z = np.load(out / "samples.npz")["z"]
    assert z.shape == (3, 8, 64) and (out / "grid.png").is_file()


def test_sample_refuses_bad_input_and_another_generator(trained, tmp_path):
    work, _ = trained
    out = tmp_path / "out"
    assert_usage_errors(lambda *a: _run("sample.py", "--checkpoint_dir", str(work), "--out_dir", str(out), *a),
                        ((["--edit", "size=0.5"], "no direction for 'size'"),
                         (["--edit", "x=abc"], "not a number"),
                         (["--expr", "shape=circle"], "give the steps as --edit")))
    r = _run("sample.py", "--checkpoint_dir", str(tmp_path / "none"), "--out_dir", str(out))
    assert r.returncode == 2 and "python train.py --config directions_shapes" in r.stderr
    # directions found in another generator are refused (a direction belongs to its generator)
    meta_path = work / "directions" / "lace_jax.json"
    meta = json.loads(meta_path.read_text())
    original = meta_path.read_text()
    meta["config"]["model"]["gan_steps"] = -1
    meta_path.write_text(json.dumps(meta))
    try:
        r = _run("sample.py", "--checkpoint_dir", str(work), "--out_dir", str(out), "--edit", "x=0.5")
    finally:
        meta_path.write_text(original)
    assert r.returncode == 2 and "another generator" in r.stderr, r.stderr[-500:]
    assert not (out / "record.json").exists()
