"""Latent data and latent classifiers as LACE builds them, on the shapes default model.

1. Sample z ~ N(0, I), map w = mapping(z) (no truncation), render x = synthesis(w) with the EMA generator
   ('const' noise), and label every image with the judge (argmax class per discrete factor, the regressed
   value per continuous one): pairs (z, w, labels), as LACE labels StyleGAN2 samples with image classifiers.
2. Train one LACE `DenseEmbedder` (heads layout, `num_classes_list = [K]` for a discrete attribute, `[1]` for a
   continuous one) per attribute and latent space (w, and z) with LACE's recipe: Adam(1e-4, β = (0.9, 0.999)),
   linear warm-up of the learning rate, batch 512, cross-entropy (discrete) or squared error (continuous).
3. Report held-out accuracy / MAE against the judge's labels.
Rotation is not given a latent classifier (undefined for circles, whose judge label is meaningless).
"""
from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lace_jax import checkpoint
from lace_jax.data import shapes
from lace_jax.models import stylegan2 as sg
from lace_jax.models.attribute_cnn import AttributeCNN
from lace_jax.models.classifiers import DenseEmbedder, dense_embedder_dims
from lace_jax.training import gan_run, judge_run

LATENT_ATTRIBUTES = ("shape", "background", "size", "x", "y", "hue")


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _label_batch(g_cfg, judge_model, batch_size, g_vars, judge_params, key):
    """One batch: z → w → image (const noise) → judge outputs (jitted once per config, reused across calls)."""
    z = jax.random.normal(key, (batch_size, g_cfg.z_dim))
    w = sg.mapping_w(g_cfg, g_vars, z)
    ws = jnp.broadcast_to(w[:, None], (batch_size, g_cfg.num_ws, g_cfg.w_dim))
    img = sg.synthesis(g_cfg, g_vars, ws, noise_mode="const")
    return z, w, img, judge_model.apply({"params": judge_params}, img)


def label_latents(g_cfg: sg.StyleGAN2Config, g_vars: dict, judge_model: AttributeCNN, judge_params,
                  key: jax.Array, num: int, batch_size: int = 250,
                  keep_images: bool = False) -> dict[str, np.ndarray]:
    """`num` samples: z [N, Z], w [N, W], judge labels by attribute name, judge features [N, F] (and images)."""
    parts: dict[str, list] = {}
    for i in range(-(-num // batch_size)):
        z, w, img, out = _label_batch(g_cfg, judge_model, batch_size, g_vars, judge_params,
                                      jax.random.fold_in(key, i))
        rows = {"z": z, "w": w, "features": out["features"]}
        for name, _ in judge_model.discrete:
            rows[name] = jnp.argmax(out["logits"][name], -1)
        for j, name in enumerate(judge_model.continuous):
            rows[name] = out["values"][:, j]
        if keep_images:
            rows["images"] = img
        for k_, v in rows.items():
            parts.setdefault(k_, []).append(np.asarray(v))
    return {k_: np.concatenate(v)[:num] for k_, v in parts.items()}


def classifier_config(input_dim: int, up_dim: int, depth: int, num_outputs: int) -> dict:
    """The DenseEmbedder config (as `lace_jax.checkpoint.save_classifier` stores it) for one attribute."""
    return {"dims": list(dense_embedder_dims(input_dim, up_dim, depth)), "num_classes_list": [num_outputs]}


def _loss_and_tx(dims: tuple, num_outputs: int, lr: float, warmup: int):
    """(model, LACE's Adam with linear warm-up, loss(variables, x, y)) of one classifier."""
    model = DenseEmbedder(dims=dims, num_classes_list=(num_outputs,))
    schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)],
                                    [warmup])
    tx = optax.adam(schedule, b1=0.9, b2=0.999)

    def loss_fn(v, xb, yb):
        out = model.apply(v, xb)[0]
        if num_outputs > 1:
            return optax.softmax_cross_entropy_with_integer_labels(out, yb).mean()
        return jnp.mean(jnp.square(out[:, 0] - yb))

    return model, tx, loss_fn


@functools.lru_cache(maxsize=None)
def _fit_steps(archs: tuple, batch: int, lr: float, warmup: int):
    """One program that trains several classifiers (`archs`: (dims, num_outputs) each) side by side, `n` steps
    per call under `lax.scan`: one dispatch per `n` steps for all of them keeps an accelerator busy. The data are
    arguments, so runs with the same architectures share it. Each classifier's step is LACE's, unchanged."""
    parts = [_loss_and_tx(dims, k, lr, warmup) for dims, k in archs]

    @functools.partial(jax.jit, static_argnums=(6,))
    def steps(vs, os, xs, ys, keys, start, n: int):
        """Steps start … start + n − 1 of every classifier; classifier i's step s draws its minibatch from
        fold_in(keys[i], s). Returns the new variables, optimiser states and losses [n, len(archs)]."""
        def one(carry, s):
            vs, os = carry
            new_v, new_o, losses = [], [], []
            for (_, tx, loss_fn), v, o, x, y, key in zip(parts, vs, os, xs, ys, keys):
                idx = jax.random.randint(jax.random.fold_in(key, s), (batch,), 0, x.shape[0])
                loss, g = jax.value_and_grad(loss_fn)(v, x[idx], y[idx])
                upd, o = tx.update(g, o, v)
                new_v.append(optax.apply_updates(v, upd))
                new_o.append(o)
                losses.append(loss)
            return (tuple(new_v), tuple(new_o)), jnp.stack(losses)

        (vs, os), losses = jax.lax.scan(one, (vs, os), start + jnp.arange(n))
        return vs, os, losses

    return [p[0] for p in parts], [p[1] for p in parts], steps


def train_classifiers(jobs: list[tuple[np.ndarray, np.ndarray, int, jax.Array]], config: dict,
                      log: Callable[[str], None] | None = None,
                      tags: tuple[str, ...] = ()) -> list[tuple[dict, dict, list]]:
    """Train one DenseEmbedder per job `(x [N, D], y [N], num_outputs, key)` (y: int classes if num_outputs > 1,
    else floats), all in the same steps. Per job: (config, variables, mean training loss per `log_every` steps)."""
    cfgs = [classifier_config(x.shape[1], int(config["up_dim"]), int(config["depth"]), k) for x, _, k, _ in jobs]
    models, txs, steps = _fit_steps(tuple((tuple(c["dims"]), k) for c, (_, _, k, _) in zip(cfgs, jobs)),
                                    int(config["batch_size"]), float(config["lr"]), int(config["warmup"]))
    k_data, vs, os = [], [], []
    for model, tx, (x, _, _, key) in zip(models, txs, jobs):
        k_init, k = jax.random.split(key)
        v = model.init(k_init, jnp.zeros((1, x.shape[1])))
        k_data.append(k), vs.append(v), os.append(tx.init(v))
    xs = tuple(jnp.asarray(x, jnp.float32) for x, _, _, _ in jobs)
    ys = tuple(jnp.asarray(y, jnp.int32 if k > 1 else jnp.float32) for _, y, k, _ in jobs)
    vs, os, history = tuple(vs), tuple(os), [[] for _ in jobs]
    total, every = int(config["steps"]), int(config["log_every"])
    for start in range(0, total, every):
        n = min(every, total - start)
        vs, os, losses = steps(vs, os, xs, ys, tuple(k_data), jnp.int32(start), n)
        if n == every:
            means = np.asarray(losses).mean(0)
            for i, m in enumerate(means):
                history[i].append(float(m))
                if log is not None:
                    log(f"latent {tags[i] if i < len(tags) else i} step {start + n:5d} loss {m:.4f}")
    return [(c, v, h) for c, v, h in zip(cfgs, vs, history)]


def evaluate_classifier(cfg: dict, variables, x: np.ndarray, y: np.ndarray) -> dict:
    """Held-out accuracy (discrete) or MAE (continuous) against the judge's labels."""
    model = DenseEmbedder(dims=tuple(cfg["dims"]), num_classes_list=tuple(cfg["num_classes_list"]))
    out = np.asarray(model.apply(variables, jnp.asarray(x, jnp.float32))[0])
    if cfg["num_classes_list"][0] > 1:
        return {"accuracy": float(np.mean(np.argmax(out, -1) == y))}
    return {"mae": float(np.mean(np.abs(out[:, 0] - y)))}


def load_from_assets(path: str | Path) -> tuple[sg.StyleGAN2Config, dict, AttributeCNN, dict, int]:
    """(generator config, EMA variables with their shipped w_avg, judge module, judge params, GAN steps) from a
    default-model directory laid out like `lace_jax/assets/default/`: retrains the latent classifiers of a shipped
    model without its training workdirs."""
    from lace_jax.worlds.shapes import load_default
    model = load_default(path)
    return (model.generator_config, model.generator, model.judge_model, model.judge_params,
            int(model.card.get("gan_steps", 0)))


def train_latent(config: dict, workdir: str | Path, log: Callable[[str], None] = print) -> dict:
    """`train.py --config shapes_latent`: label latents, train w- and z-classifiers, write them and metrics."""
    workdir = Path(workdir)
    t0 = time.time()
    key = jax.random.PRNGKey(int(config["seed"]))
    k_w, k_train, k_test, k_fit = jax.random.split(key, 4)
    if config.get("assets"):
        g_cfg, g_vars, judge_model, judge_params, gan_steps = load_from_assets(config["assets"])
        source = f"assets {config['assets']}"
    else:
        g_cfg, g_vars, gcfg = gan_run.load_gan_ema(config["gan_workdir"])
        judge_model, judge_params, _ = judge_run.load_judge(config["judge_workdir"])
        gan_steps = gcfg["trained_steps"]
        g_vars = {"params": g_vars["params"],
                  "buffers": dict(g_vars["buffers"],
                                  mapping={"w_avg": sg.estimate_w_avg(g_cfg, g_vars, k_w, 10000)})}
        source = f"GAN workdir {config['gan_workdir']}"
    log(f"latent: GAN EMA at step {gan_steps} ({source}), labelling {config['n_train']} + {config['n_test']} samples")
    train = label_latents(g_cfg, g_vars, judge_model, judge_params, k_train, int(config["n_train"]))
    test = label_latents(g_cfg, g_vars, judge_model, judge_params, k_test, int(config["n_test"]))
    np.savez(workdir / "latent_test.npz", **test)
    log(f"latent: labelled in {time.time() - t0:.0f}s")
    metrics: dict = {"n_train": int(config["n_train"]), "n_test": int(config["n_test"]),
                     "gan_steps": gan_steps, "label_rates": {},
                     "classifier": {k: config[k] for k in ("up_dim", "depth", "batch_size", "lr", "warmup", "steps")}}
    for name in shapes.DISCRETE:
        metrics["label_rates"][name] = np.bincount(train[name], minlength=len(shapes.DISCRETE[name])).tolist()
    jobs, tags = [], []
    for space in config["spaces"]:
        for i, name in enumerate(config["attributes"]):
            k_out = len(shapes.DISCRETE[name]) if name in shapes.DISCRETE else 1
            jobs.append((train[space], train[name], k_out, jax.random.fold_in(k_fit, 100 * i + (space == "z"))))
            tags.append(f"{space}/{name}")
    for tag, (cfg, variables, hist) in zip(tags, train_classifiers(jobs, config, log=log, tags=tuple(tags))):
        space, name = tag.split("/")
        result = evaluate_classifier(cfg, variables, test[space], test[name])
        result["final_train_loss"] = hist[-1]
        metrics[tag] = result
        log(f"latent {tag}: held-out {result}")
        checkpoint.save_classifier(workdir / "classifiers" / f"{space}_{name}", cfg, variables,
                                   extra={"attribute": name, "space": space, "held_out": result}, overwrite=True)
    np.save(workdir / "w_avg.npy", np.asarray(g_vars["buffers"]["mapping"]["w_avg"]))
    metrics["wall_s"] = time.time() - t0
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
