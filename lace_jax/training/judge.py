"""Training and evaluation of the image judge (`AttributeCNN`) on fresh renders of the shapes world."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lace_jax.data import shapes
from lace_jax.models.attribute_cnn import AttributeCNN

CIRCLE = shapes.SHAPES.index("circle")


def make_model(config: dict) -> AttributeCNN:
    """The judge for the shapes world, sized by `config["widths"]` / `config["features"]`."""
    return AttributeCNN(discrete=tuple((n, len(c)) for n, c in shapes.DISCRETE.items()),
                        continuous=shapes.CONTINUOUS, widths=tuple(config["widths"]),
                        features=int(config["features"]))


def targets(factors: shapes.Factors) -> tuple[dict, jax.Array, jax.Array]:
    """(discrete labels by name, continuous targets [B, 5], mask [B, 5]); rotation is masked out for circles."""
    labels = {n: getattr(factors, n) for n in shapes.DISCRETE}
    values = jnp.stack([getattr(factors, n) for n in shapes.CONTINUOUS], -1)
    mask = jnp.ones_like(values)
    rot = shapes.CONTINUOUS.index("rotation")
    mask = mask.at[:, rot].set((factors.shape != CIRCLE).astype(values.dtype))
    return labels, values, mask


def loss_fn(params, model: AttributeCNN, images: jax.Array, factors: shapes.Factors,
            reg_weight: float) -> tuple[jax.Array, dict]:
    """Σ cross-entropies + reg_weight · masked mean squared error of the continuous factors."""
    out = model.apply({"params": params}, images)
    labels, values, mask = targets(factors)
    metrics = {}
    total = 0.0
    for name in labels:
        ce = optax.softmax_cross_entropy_with_integer_labels(out["logits"][name], labels[name]).mean()
        metrics[f"ce_{name}"] = ce
        total = total + ce
    mse = jnp.sum(mask * (out["values"] - values) ** 2) / jnp.sum(mask)
    metrics["mse"] = mse
    total = total + reg_weight * mse
    metrics["loss"] = total
    return total, metrics


def init_state(config: dict, key: jax.Array) -> tuple[AttributeCNN, optax.GradientTransformation, dict]:
    """Model, optimizer and the initial train state {"params", "opt_state"}."""
    model = make_model(config)
    res = config["resolution"]
    params = model.init(key, jnp.zeros((1, 3, res, res)))["params"]
    tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, config["lr"], config["warmup"], config["steps"],
                                                       config["lr"] * 0.05))
    return model, tx, {"params": params, "opt_state": tx.init(params)}


def make_step(model: AttributeCNN, tx: optax.GradientTransformation, config: dict, data_key: jax.Array):
    """`step(state, step) -> (state, metrics)` on a batch rendered from fold_in(data_key, step)."""
    batch, res, reg = int(config["batch_size"]), int(config["resolution"]), float(config["reg_weight"])

    @jax.jit
    def _step(state, step):
        images, factors = shapes.sample(jax.random.fold_in(data_key, step), batch, res)
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], model, images, factors,
                                                                        reg)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}, metrics

    return lambda state, step: _step(state, jnp.asarray(step, jnp.int32))


def evaluate(model: AttributeCNN, params, key: jax.Array, num: int, resolution: int = 32,
             batch_size: int = 500) -> dict[str, float]:
    """Held-out accuracy per discrete factor and MAE per continuous factor on `num` renders from `key`."""
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
    correct = {n: 0 for n in shapes.DISCRETE}
    abs_err = np.zeros(len(shapes.CONTINUOUS))
    counts = np.zeros(len(shapes.CONTINUOUS))
    for i in range(0, num, batch_size):
        b = min(batch_size, num - i)
        images, factors = shapes.sample(jax.random.fold_in(key, i), b, resolution)
        out = apply(params, images)
        labels, values, mask = targets(factors)
        for n in correct:
            correct[n] += int(np.sum(np.argmax(np.asarray(out["logits"][n]), -1) == np.asarray(labels[n])))
        abs_err += np.sum(np.asarray(mask) * np.abs(np.asarray(out["values"]) - np.asarray(values)), 0)
        counts += np.sum(np.asarray(mask), 0)
    result: dict[str, Any] = {f"acc_{n}": c / num for n, c in correct.items()}
    result.update({f"mae_{n}": float(e / c) for n, e, c in zip(shapes.CONTINUOUS, abs_err, counts)})
    result["num_images"] = num
    return result
