"""Temperature calibration of the latent classifiers (`lace_jax.training.calibrate`)."""
import json
import shutil

import numpy as np
import pytest

from lace_jax import checkpoint
from lace_jax.worlds.shapes import ASSETS
from lace_jax.training import calibrate as C


def _synthetic(n=20000, k=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (n, k))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = (rng.random(n)[:, None] < np.cumsum(p, 1)).argmax(1)    # y ~ softmax(logits): calibrated by design
    return logits, labels


def test_fit_recovers_the_temperature_of_overconfident_logits():
    logits, labels = _synthetic()
    for t_true in (0.5, 1.0, 5.0, 40.0):
        t = C.fit_temperature(logits * t_true, labels)
        assert t == pytest.approx(t_true, rel=0.05), (t, t_true)
    assert C.ece(logits, labels) < 0.02
    assert C.ece(logits * 5.0, labels) > 0.1
    assert C.ece(logits * 5.0, labels, 5.0) == pytest.approx(C.ece(logits, labels), abs=1e-9)
    assert C.nll(logits * 5.0, labels, 5.0) < C.nll(logits * 5.0, labels)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        C.fit_temperature(np.array([[0.0, np.nan]]), np.array([0]))
    with pytest.raises(ValueError, match=r"logits \[N, K\]"):
        C.fit_temperature(np.zeros((3, 2)), np.zeros(2, int))


def test_scaled_variables_divide_only_the_last_layer():
    v = {"params": {"net_0": {"kernel": np.ones((2, 3)), "bias": np.ones(3)},
                    "heads": {"kernel": np.full((3, 2), 6.0), "bias": np.full(2, 3.0)}}}
    s = C.scaled_variables(v, 3.0)
    np.testing.assert_array_equal(s["params"]["net_0"]["kernel"], 1.0)
    np.testing.assert_allclose(s["params"]["heads"]["kernel"], 2.0)
    np.testing.assert_allclose(s["params"]["heads"]["bias"], 1.0)


def test_the_shipped_discrete_classifiers_carry_their_calibration():
    card = json.loads((ASSETS / "model_card.json").read_text())
    cal = card["metrics"]["calibration"]
    assert set(cal["attributes"]) == {"shape", "background"}
    for name, spaces in cal["attributes"].items():
        # the w·z product the default attributes use: on unconditional held-out latents between the z and the
        # w classifier (it wins where the ODE goes, not here: docs/default_model.md)
        assert spaces["z"]["accuracy"] <= spaces["wz"]["accuracy"] <= spaces["w"]["accuracy"], (name, spaces)
        for space, row in spaces.items():
            if space == "wz":
                continue
            meta = json.loads((ASSETS / "classifiers" / f"{space}_{name}" / "lace_jax.json").read_text())
            assert meta["extra"]["temperature"] == pytest.approx(row["temperature"])
            assert row["temperature"] > 1.0 and row["nll_after"] <= row["nll_before"]
            assert row["ece_after"] < row["ece_before"]


def test_product_row_of_an_uninformative_partner_is_the_classifier_itself():
    logits, labels = _synthetic()
    row = C.product_row(logits, np.zeros_like(logits), labels)
    assert row["accuracy"] == pytest.approx(np.mean(logits.argmax(1) == labels))
    assert row["nll"] == pytest.approx(C.nll(logits, labels), rel=1e-9)
    both = C.product_row(logits, logits, labels)       # squaring p = halving the temperature: overconfident
    assert both["nll"] == pytest.approx(C.nll(logits, labels, 0.5), rel=1e-9) and both["nll"] > row["nll"]


def test_calibrating_a_copy_folds_the_temperature_into_the_weights(tmp_path):
    root = tmp_path / "default"
    shutil.copytree(ASSETS, root)
    before = checkpoint.load_classifier(root / "classifiers" / "w_background")[1]
    rep = C.calibrate(root, num=256, seed=7)
    t = rep["attributes"]["background"]["w"]["temperature"]
    after = checkpoint.load_classifier(root / "classifiers" / "w_background")[1]
    np.testing.assert_allclose(np.asarray(after["params"]["heads"]["kernel"]) * t,
                               np.asarray(before["params"]["heads"]["kernel"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(after["params"]["net_0"]["kernel"]),
                                  np.asarray(before["params"]["net_0"]["kernel"]))
    # on the same held-out data the folded classifiers are already calibrated: the fit returns T = 1
    again = C.calibrate(root, num=256, seed=7, write=False)
    assert again["attributes"]["background"]["w"]["temperature"] == pytest.approx(1.0, rel=1e-3)
    assert again["attributes"]["shape"]["z"]["accuracy"] == rep["attributes"]["shape"]["z"]["accuracy"]
    assert 0.5 < rep["attributes"]["background"]["wz"]["accuracy"] <= 1.0
