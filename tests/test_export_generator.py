"""A continued GAN run's generator replaces the shipped one (`export --generator_only`), and the quality report
compares an exported model with a previous generator."""
import json
import shutil

import jax
import numpy as np
import pytest

from lace_jax.config import load_config
from lace_jax.worlds.shapes import ASSETS, load_default
from lace_jax.models import stylegan2 as sg
from lace_jax.training import export, gan_run, loop, quality


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A copy of the assets whose generator is the shipped one with a strongly shifted RGB bias (washed-out images), as if trained on."""
    root = tmp_path_factory.mktemp("gen")
    assets = root / "assets"
    shutil.copytree(ASSETS, assets)
    cfg = load_config("shapes_gan_continue")
    cfg["init_from"] = str(ASSETS / "generator")
    workdir = root / "run"
    (workdir / "checkpoints").mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps(cfg))
    state = gan_run.build(cfg)[3]
    state["g_ema"]["synthesis"]["b32"]["torgb"]["bias"] = state["g_ema"]["synthesis"]["b32"]["torgb"]["bias"] + 3.0
    manager = loop.checkpoint_manager(workdir / "checkpoints")
    loop.save(manager, 7, state)
    manager.close()
    export.export_generator(workdir, assets, {"note": "continued"})
    return assets, state


def test_exported_generator_replaces_the_shipped_one(exported):
    assets, state = exported
    m, shipped = load_default(assets), load_default()
    for a, b in zip(jax.tree_util.tree_leaves(m.generator["params"]), jax.tree_util.tree_leaves(state["g_ema"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert m.classifiers == {} and not (assets / "classifiers").exists()      # they read the old generator's w
    for key in export.STALE_WITH_A_NEW_GENERATOR:
        assert key not in m.card["metrics"]
    assert m.card["metrics"]["judge"] == shipped.card["metrics"]["judge"]      # the judge is kept
    assert (m.card["gan_steps"], m.card["note"]) == (7, "continued")
    ref = np.load(assets / "reference_samples.npz")
    images = np.asarray(sg.generate(m.generator_config, m.generator, jax.numpy.asarray(ref["z"])))
    np.testing.assert_allclose(images, ref["images"], atol=1e-5)
    old = np.load(ASSETS / "reference_samples.npz")["images"]
    assert np.abs(images - old).max() > 0.2                                   # the shifted bias shows


def test_quality_of_exported_assets_against_the_previous_generator(exported):
    assets, _ = exported
    r = quality.measure_assets(assets, num=300, previous=ASSETS / "generator")
    assert r["gan_steps"] == 7
    # the washed-out generator is farther from real renders than the shipped one; two real sets are closest
    assert r["fd_floor_real_vs_real"] < r["fd_previous_vs_real"] < r["fd_generated_vs_real"], r
    for freq in r["generated_label_freq"].values():
        assert abs(sum(freq) - 1) < 1e-3
    fit = r["fit_judge"]                                                      # no render explains washed-out images
    assert fit["num"] == 300 and fit["unconditional_realistic"] < 0.02, fit
    assert sum(fit["best_shape_counts_all"].values()) == 300
    with pytest.raises(FileNotFoundError, match="no early_ema"):
        quality.measure_assets(assets, num=300, early_gan=assets)


def test_export_cli_result_is_json(exported, tmp_path):
    """`train.py --config shapes_export` prints its result as JSON (it returned a Path once and crashed there)."""
    import json as json_lib
    assets, state = exported
    workdir = tmp_path / "run"
    shutil.copytree(assets.parent / "run", workdir)
    cfg = load_config("shapes_export")
    cfg.update(gan=str(workdir), generator_only=True, out=str(assets))
    result = export.run(cfg, tmp_path / "export", log=lambda _: None)
    assert json_lib.loads(json_lib.dumps(result)) == {"out": str(assets)}
