"""The shipped default model: loads, generates deterministic images, its judge and latent classifiers hold their
measured quality, and its attributes plug into the energy language."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax import energy
from lace_jax.data import shapes
from lace_jax.worlds.shapes import ASSETS, build_attributes, load_default
from lace_jax.training import judge as judge_lib


@pytest.fixture(scope="module")
def model():
    return load_default()


def test_assets_are_small_and_complete():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total <= 30 * 2 ** 20, total
    card = json.loads((ASSETS / "model_card.json").read_text())
    for key in ("commands", "hardware", "gan_steps", "wall_time_s", "metrics", "attributes"):
        assert key in card, key


def test_generation_is_deterministic_and_matches_the_stored_reference(model):
    ref = np.load(ASSETS / "reference_samples.npz")
    z = jnp.asarray(ref["z"])
    a = np.asarray(model.generate(z))
    b = np.asarray(model.generate(z))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (z.shape[0], 3, 32, 32)
    np.testing.assert_allclose(a, ref["images"], atol=1e-4)
    np.testing.assert_array_equal(ref["z"], np.asarray(jax.random.normal(jax.random.PRNGKey(int(ref["seed"])),
                                                                         ref["z"].shape)))


def test_judge_accuracy_on_fixed_held_out_renders(model):
    """Bar: ≥ 99 % per discrete attribute on 500 renders (key 4242); continuous MAE within 2× the card's."""
    result = judge_lib.evaluate(model.judge_model, model.judge_params, jax.random.PRNGKey(4242), 500)
    assert result["acc_shape"] >= 0.99, result
    assert result["acc_background"] >= 0.99, result
    card = model.card["metrics"]["judge"]
    for name in ("size", "x", "y", "hue"):
        assert result[f"mae_{name}"] <= 2 * card[f"mae_{name}"] + 0.005, (name, result)


@pytest.mark.slow
def test_latent_classifiers_agree_with_the_judge(model):
    """On fresh samples, each w-classifier reproduces the judge's label of the generated image about as well as
    its held-out score in the card says (within a sampling margin)."""
    z = jax.random.normal(jax.random.PRNGKey(99), (256, model.z_dim))
    out = model.judge(model.generate(z))
    for j, name in enumerate(("shape", "background")):
        logits = jax.vmap(model.classifiers[name])(z)
        agree = float(jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(out["logits"][name], -1)))
        assert agree >= model.card["metrics"]["latent"][f"w/{name}"]["accuracy"] - 0.08, (name, agree)
    for name in ("x", "hue"):
        pred = jax.vmap(model.classifiers[name])(z)[:, 0]
        col = shapes.CONTINUOUS.index(name)
        mae = float(jnp.mean(jnp.abs(pred - out["values"][:, col])))
        assert mae <= model.card["metrics"]["latent"][f"w/{name}"]["mae"] + 0.03, (name, mae)


def test_attributes_build_energies(model):
    e = energy.parse("shape=circle & x=0.2 & !background=white", model.attributes)
    z = jax.random.normal(jax.random.PRNGKey(0), (4, model.z_dim))
    values = jax.vmap(e)(z)
    grads = jax.vmap(jax.grad(e))(z)
    assert values.shape == (4,) and np.all(np.isfinite(np.asarray(values)))
    assert np.all(np.isfinite(np.asarray(grads))) and float(jnp.abs(grads).max()) > 0
    names = {s["name"]: s for s in model.specs}
    assert names["shape"]["classes"] == list(shapes.SHAPES)
    assert names["x"]["kind"] == "continuous" and names["x"]["range"] == [0.0, 1.0]


def test_default_attributes_classify_discrete_by_the_w_times_z_product(model):
    z = jax.random.normal(jax.random.PRNGKey(1), (8, model.z_dim))
    for name in ("shape", "background"):
        p = np.asarray(jax.nn.softmax(jax.vmap(model.attributes[name].fn)(z), -1), np.float64)
        pw = np.asarray(jax.nn.softmax(jax.vmap(model.classifiers[name])(z), -1), np.float64)
        pz = np.asarray(jax.nn.softmax(jax.vmap(model.classifiers_z[name])(z), -1), np.float64)
        np.testing.assert_allclose(p, pw * pz / (pw * pz).sum(-1, keepdims=True), atol=1e-5)
    # continuous attributes stay on w (LACE's regressors)
    np.testing.assert_array_equal(np.asarray(jax.vmap(model.attributes["x"].fn)(z)),
                                  np.asarray(jax.vmap(model.classifiers["x"])(z)))
    lace = build_attributes(model.specs, model.classifiers, model.classifiers_z, "w")
    assert lace["background"].fn is model.classifiers["background"]
    with pytest.raises(ValueError, match="classifier_space"):
        load_default(classifier_space="wzz")


def test_grey_background_control_needs_the_product(model):
    """The regression behind the 'wz' default: LACE-ODE on `background=grey` from black-background starts ends,
    with the w classifier alone, on black images it calls grey; with the w·z product it reaches grey."""
    from lace_jax.training.control import judge_labels, make_solve
    z0 = jax.random.normal(jax.random.PRNGKey(5), (96, model.z_dim))
    black = judge_labels(model, z0)["background"] == 0
    assert black.sum() >= 20
    solve = make_solve(None)
    rates = {}
    for space, fn in (("w", model.classifiers["background"]), ("wz", model.attributes["background"].fn)):
        r = solve(energy.discrete(fn, 1), z0[black])
        rates[space] = float(np.mean(judge_labels(model, r.z_unchecked)["background"] == 1))
    assert rates["wz"] >= 0.9 and rates["wz"] >= rates["w"] + 0.2, rates
