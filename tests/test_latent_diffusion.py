"""The w-space energy diffusion model composed with LACE classifiers (lace_jax.latent_diffusion)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import checkpoint, diffusion
from lace_jax import latent_diffusion as ld
from lace_jax.config import load_config
from lace_jax.worlds import shapes_world

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world():
    return shapes_world({"world": "shapes", "classifier_space": "w"})


@pytest.fixture(scope="module")
def wworld(world):
    return ld.w_world(world)


def tiny_config(steps: int = 1000) -> dict:
    cfg = load_config(str(REPO / "configs" / "diffusion_latent.py"))
    cfg.update(num_train=4096, num_levels=20)
    cfg["net"] = {"hidden": 64, "num_blocks": 2, "widen": 2, "emb_dim": 16}
    cfg["train"] = {"steps": steps, "batch_size": 256, "lr": 5e-3, "ema": 0.95, "chunk": 100}
    return cfg


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wdiff")
    summary = ld.train_w_diffusion(tiny_config(), workdir, log=lambda s: None, world=world)
    return summary, workdir


def test_standardizer_round_trip_and_moments():
    w = np.random.default_rng(0).normal(3.0, 2.0, (5000, 4)).astype(np.float32)
    st = ld.Standardizer.fit(w)
    x = np.asarray(st.to_x(jnp.asarray(w)))
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(0), 1.0, atol=1e-4)
    np.testing.assert_allclose(np.asarray(st.to_w(jnp.asarray(x))), w, rtol=1e-5, atol=1e-5)


def test_w_world_matches_the_z_world_through_the_mapping(world, wworld):
    z = jax.random.normal(jax.random.PRNGKey(0), (4, world.latent_dim))
    w = jax.vmap(world.mapping)(z)
    for name, attr in world.attributes.items():
        np.testing.assert_allclose(np.asarray(jax.vmap(wworld.attributes[name].fn)(w)),
                                   np.asarray(jax.vmap(attr.fn)(z)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(wworld.render(w)), np.asarray(world.render(z)), atol=1e-5)
    assert wworld.mapping is None and wworld.latent_dim == w.shape[1]


def test_w_world_refuses_z_classifiers_and_truncation():
    with pytest.raises(ValueError, match="classifies z"):
        ld.w_world(shapes_world({"world": "shapes", "classifier_space": "z"}))
    with pytest.raises(ValueError, match="truncation"):
        ld.w_world(shapes_world({"world": "shapes", "classifier_space": "w", "truncation_psi": 0.7}))
    with pytest.raises(ValueError, match="product of w and z"):
        ld.w_world(shapes_world({"world": "shapes", "classifier_space": "wz"}))


def test_classifier_term_value_and_composed_gradient(wworld):
    key = jax.random.PRNGKey(1)
    model = diffusion.init_model(key, kind="energy", schedule=diffusion.cosine_schedule(10), x_dim=64,
                                 hidden=16, num_blocks=1, emb_dim=8)
    st = ld.Standardizer(jnp.linspace(-1, 1, 64), jnp.linspace(0.5, 2.0, 64))
    cls = wworld.parse("shape=circle")
    x = jax.random.normal(jax.random.PRNGKey(2), (64,))
    for k in (0, 4, 9):
        acp = model.schedule.alphas_cumprod[k]
        want = 2.5 * acp * cls(st.mean + st.std * x / jnp.sqrt(acp))
        got = ld.classifier_term(cls, st, model.schedule, 2.5)(x, k)
        np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
        target = ld.conditioned(model, cls, st, 2.5)
        np.testing.assert_allclose(float(target(x, k)), float(model.energy(x, k) + want), rtol=1e-5)
        g = jax.grad(target)(x, k)
        g_sum = jax.grad(model.energy)(x, k) + jax.grad(lambda v: ld.classifier_term(cls, st, model.schedule,
                                                                                    2.5)(v, k))(x)
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_sum), rtol=1e-4, atol=1e-5)
    # the classifier's gradient stays bounded at the noisiest level (ᾱ → 0 there)
    g_top = jax.grad(lambda v: ld.classifier_term(cls, st, model.schedule)(v, 9))(x)
    assert np.all(np.isfinite(np.asarray(g_top)))


def test_training_lowers_the_loss_and_the_checkpoint_round_trips(trained):
    summary, workdir = trained
    assert summary["loss_last"] < 0.8 * summary["loss_first"]
    model, stats, cfg = ld.load(workdir / "model")
    assert cfg["num_levels"] == 20 and cfg["x_dim"] == 64
    x = jax.random.normal(jax.random.PRNGKey(3), (64,))
    np.testing.assert_allclose(float(model.energy(x, 3)), float(summary["model"].energy(x, 3)), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(stats.std), np.asarray(summary["stats"].std))


def test_load_rejects_other_checkpoints(tmp_path):
    with pytest.raises(checkpoint.CheckpointError):
        ld.load(tmp_path / "missing")
    checkpoint.save(tmp_path / "other", {"a": np.zeros(3, np.float32)}, {"x": 1}, "something_else")
    with pytest.raises(checkpoint.CheckpointError, match="w_diffusion"):
        ld.load(tmp_path / "other")


def test_learned_prior_and_conditioning_move_the_latent_classifier(trained, world, wworld):
    """Samples of the learned w density look like mapped z's to the latent classifier; conditioning on a
    background moves its predicted rate well above the unconditional one (reverse and annealed MALA)."""
    summary, _ = trained
    model, stats = summary["model"], summary["stats"]
    n = 256
    bg = wworld.attributes["background"].fn
    w_true = ld.w_samples(world, jax.random.PRNGKey(4), n)
    base = float(np.mean(np.argmax(np.asarray(jax.vmap(bg)(jnp.asarray(w_true))), -1) == 0))
    prior = ld.sample_w(diffusion.level_energy(model), model, stats, jax.random.PRNGKey(5), n)
    x = np.asarray(stats.to_x(prior.w))
    assert np.all(np.isfinite(x)) and prior.nfe == 20
    # the standardised data have std 1; this 8-second model overshoots (≈ 1.6, an untrained one ≫ 2), the
    # configured one gives 1.07
    assert 0.6 < float(np.mean(x.std(0))) < 2.0
    target = ld.conditioned(model, wworld.parse("background=black"), stats)
    for method in ("reverse", "mala"):
        res = ld.sample_w(target, model, stats, jax.random.PRNGKey(6), n, method=method,
                          step_size=diffusion.step_sizes(model.schedule, 1e-3, 0.02))
        rate = float(np.mean(np.argmax(np.asarray(jax.vmap(bg)(jnp.asarray(res.w))), -1) == 0))
        assert rate > base + 0.3, (method, rate, base)
        if method == "mala":
            assert 0.3 < res.acceptance <= 1.0 and res.nfe == 20 * 3


@pytest.mark.slow
def test_train_cli_writes_a_loadable_model(tmp_path):
    cmd = [sys.executable, str(REPO / "train.py"), "--config", "diffusion_latent", "--workdir", str(tmp_path),
           "--set", "num_train=2048", "--set", "num_levels=10", "--set", "net.hidden=32",
           "--set", "net.num_blocks=1", "--set", "train.steps=100", "--set", "train.chunk=50"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "diffusion train step 100/100" in out.stdout
    model, _, cfg = ld.load(tmp_path / "model")
    assert cfg["num_levels"] == 10 and model.schedule.num_levels == 10


def _sample_cli(*args):
    return subprocess.run([sys.executable, str(REPO / "sample.py"), "--config", "diffusion_latent", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def test_sample_cli_draws_from_a_trained_w_model(trained, tmp_path):
    _, workdir = trained
    out = tmp_path / "out"
    r = _sample_cli("--checkpoint_dir", str(workdir), "--expr", "background=black", "--sampler", "mala",
                    "--num_samples", "6", "--out_dir", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads((out / "record.json").read_text())
    assert rec["sampler"] == "mala" and rec["conditions"][0]["nfe"] == 20 * 3
    assert 0.0 < rec["conditions"][0]["acceptance"] <= 1.0
    arr = np.load(out / "samples.npz")
    assert arr["w"].shape == (1, 6, 64) and arr["success"].all() and arr["images"].shape == (1, 6, 32, 32, 3)
    assert (out / "grid.png").is_file() and sum(rec["judge_summary"][0]["background"].values()) == pytest.approx(1)


def test_sample_cli_bad_input_exits_2_with_one_line(tmp_path):
    cases = [([], "needs --checkpoint_dir"),
             (["--checkpoint_dir", str(tmp_path / "none")], "train.py --config diffusion_latent"),
             (["--checkpoint_dir", str(tmp_path), "--sampler", "sgld"], "does not sample the w-diffusion")]
    for args, msg in cases:
        r = _sample_cli(*args, "--out_dir", str(tmp_path / "o"))
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr[-500:])
        assert not (tmp_path / "o" / "record.json").exists()


def test_evaluate_cli_runs_the_study_on_a_trained_w_model(trained, tmp_path):
    _, workdir = trained
    out = tmp_path / "study"
    cmd = [sys.executable, str(REPO / "evaluate.py"), "--config", "diffusion_latent", "--checkpoint_dir",
           str(workdir), "--out_dir", str(out), "--set", "num_samples=8", "--set", "num_reference=100",
           "--set", "num_importance=64", "--set", 'conditions=["background=black"]', "--set",
           'samplers={"reverse": {}, "mala": {"steps_per_level": 1, "small": 0.001, "large": 0.02}}',
           "--set", "ode_tolerances=[0.01]", "--set", "guidance_weights=[1.0]"]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    methods = [row["method"] for row in res["rows"]]
    assert methods == ["exact target λ=1 (importance-weighted prior)", "w-diffusion λ=1: reverse",
                       "w-diffusion λ=1: mala", "LACE-ODE (z, dopri5 0.01)"]
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in res["rows"]) and (out / "results.md").is_file()
    assert [u["sampler"] for u in res["unconditional"]] == ["GAN prior (z ~ N(0, I))", "w-diffusion reverse"]
    for row in res["rows"]:                          # the fit judge beside the CNN judge, on every row
        assert 0.0 <= row["accuracy_fit"] <= row["realistic"] <= 1.0 and 0.0 <= row["base_rate_fit"] <= 1.0
    assert all(0.0 <= u["realistic"] <= 1.0 for u in res["unconditional"])
    assert "fit-judge accuracy" in (out / "results.md").read_text()
