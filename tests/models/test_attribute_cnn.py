"""The judge network: shapes of its outputs, features exposed, clear input errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lace_jax.models.attribute_cnn import AttributeCNN, predict


def test_output_shapes_and_predict():
    model = AttributeCNN()
    x = jax.random.uniform(jax.random.PRNGKey(0), (5, 3, 32, 32), minval=-1, maxval=1)
    params = model.init(jax.random.PRNGKey(1), x)["params"]
    out = model.apply({"params": params}, x)
    assert out["logits"]["shape"].shape == (5, 4)
    assert out["logits"]["background"].shape == (5, 3)
    assert out["values"].shape == (5, 5)
    assert out["features"].shape == (5, 128)
    pred = predict(model, params, x)
    np.testing.assert_array_equal(np.asarray(pred["shape"]), np.argmax(np.asarray(out["logits"]["shape"]), -1))
    np.testing.assert_allclose(np.asarray(pred["hue"]), np.asarray(out["values"][:, 4]))


def test_rejects_nhwc():
    model = AttributeCNN()
    with pytest.raises(ValueError, match="NCHW"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((2, 32, 32, 3)))
