"""Latent classifiers retrained on a shipped model (`train.py --config shapes_latent --set assets=...`) and put
back into it (`export --classifiers_only`): a tiny run lowers its loss, is saved, loads, and replaces the
classifiers of a copy of the assets; a run of another generator is refused."""
import json
import shutil

import jax
import numpy as np
import pytest

from lace_jax.config import load_config
from lace_jax.worlds.shapes import ASSETS, load_default
from lace_jax.training import export, latent


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    assets = root / "assets"
    shutil.copytree(ASSETS, assets)
    cfg = load_config("shapes_latent")
    cfg.update(assets=str(assets), n_train=1000, n_test=500, spaces=["w"], attributes=["background", "x"],
               up_dim=32, steps=150, warmup=5, lr=3e-3, log_every=25)
    workdir = root / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(cfg))      # as train.py writes it
    lines = []
    metrics = latent.train_latent(cfg, workdir, log=lines.append)
    return cfg, workdir, assets, metrics, lines


def test_tiny_latent_run_learns_the_judges_labels(tiny_run):
    cfg, workdir, _, metrics, lines = tiny_run
    assert metrics["gan_steps"] == load_default().card["gan_steps"]
    assert sum(metrics["label_rates"]["background"]) == cfg["n_train"]
    # chance for 3 backgrounds is ≤ the majority rate; the card's full run reaches 0.99 on w
    majority = max(metrics["label_rates"]["background"]) / cfg["n_train"]
    assert metrics["w/background"]["accuracy"] > majority + 0.2, metrics
    assert metrics["w/x"]["mae"] < 0.2, metrics                  # a constant 0.5 guess scores ≈ 0.25
    losses = [float(l.split("loss")[-1]) for l in lines if l.startswith("latent w/background step")]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0], losses


def test_exported_classifiers_replace_those_of_the_model(tiny_run):
    cfg, workdir, assets, metrics, _ = tiny_run
    export.export_classifiers(workdir, assets, {"note": "tiny"})
    m = load_default(assets)
    assert set(m.classifiers) == {"background", "x"} and set(m.classifiers_z) == set()
    assert m.card["metrics"]["latent"]["w/x"] == metrics["w/x"] and m.card["note"] == "tiny"
    test = np.load(workdir / "latent_test.npz")
    z = jax.numpy.asarray(test["z"][:200])
    pred = np.asarray(jax.vmap(m.classifiers["background"])(z)).argmax(-1)
    acc = float(np.mean(pred == test["background"][:200]))
    assert abs(acc - metrics["w/background"]["accuracy"]) < 0.08, (acc, metrics)


def test_export_refuses_a_run_of_another_generator(tiny_run, tmp_path):
    _, workdir, assets, _, _ = tiny_run
    other = tmp_path / "other"
    shutil.copytree(workdir, other)
    run_cfg = json.loads((other / "config.json").read_text())
    run_cfg["assets"] = str(tmp_path / "elsewhere")
    (other / "config.json").write_text(json.dumps(run_cfg))
    with pytest.raises(ValueError, match="was not trained on the generator"):
        export.export_classifiers(other, assets, {})
