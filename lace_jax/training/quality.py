"""Quality of the default model, measured in the judge's penultimate features (a Fréchet distance that knows the
shapes world, since Inception weights cannot be downloaded here).

    python -m lace_jax.training.quality --gan runs/gan --judge runs/judge --latent runs/latent --num 5000 \
        --out quality.json

Reports FD(generated, real), the floor FD(real′, real) between two independent render sets of the same size, and
FD(early EMA snapshot, real) for a badly trained reference, plus the judge's class frequencies on generated images
(a uniform world has 1/4 per shape and 1/3 per background).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging

from lace_jax.data import shapes
from lace_jax.metrics.frechet import frechet_distance
from lace_jax.models import stylegan2 as sg
from lace_jax.training import latent


def real_features(judge_model, judge_params, key, num, batch=500) -> np.ndarray:
    """Judge features of `num` renders from `key`."""
    fn = jax.jit(lambda k: judge_model.apply({"params": judge_params}, shapes.sample(k, batch)[0])["features"])
    return np.concatenate([np.asarray(fn(jax.random.fold_in(key, i))) for i in range(-(-num // batch))])[:num]


def generated_outputs(g_cfg, g_vars, judge_model, judge_params, key, num, batch=250) -> dict:
    """Judge features and hard labels of `num` EMA-generator samples (z from `key`, const noise)."""
    data = latent.label_latents(g_cfg, g_vars, judge_model, judge_params, key, num, batch)
    return data


def measure(gan_dir, judge_dir, latent_dir, num: int, seed: int = 31) -> dict:
    t0 = time.time()
    g_cfg, g_vars, gcfg = latent.load_gan_ema(gan_dir)
    w_path = Path(latent_dir) / "w_avg.npy" if latent_dir else None
    w_avg = np.load(w_path) if w_path is not None and w_path.is_file() else \
        latent.estimate_w_avg(g_cfg, g_vars, jax.random.PRNGKey(0))     # ψ = 1 here: only recorded for symmetry
    g_vars = {"params": g_vars["params"], "buffers": dict(g_vars["buffers"], mapping={"w_avg": jnp.asarray(w_avg)})}
    jm, jp, _ = latent.load_judge(judge_dir)
    k_a, k_b, k_g, k_e = jax.random.split(jax.random.PRNGKey(seed), 4)
    real_a = real_features(jm, jp, k_a, num)
    real_b = real_features(jm, jp, k_b, num)
    gen = generated_outputs(g_cfg, g_vars, jm, jp, k_g, num)
    result = {"num_per_set": num, "gan_steps": gcfg["trained_steps"],
              "fd_generated_vs_real": frechet_distance(gen["features"], real_a),
              "fd_floor_real_vs_real": frechet_distance(real_b, real_a)}
    early = sorted(Path(gan_dir).glob("early_ema_*"))
    if early:
        with ocp.StandardCheckpointer() as ckptr:
            e_params = ckptr.restore(early[0].resolve(), g_vars["params"])
        e_gen = generated_outputs(g_cfg, {"params": e_params, "buffers": g_vars["buffers"]}, jm, jp, k_e, num)
        result["early_snapshot_step"] = int(early[0].name.split("_")[-1])
        result["fd_early_vs_real"] = frechet_distance(e_gen["features"], real_a)
    result["generated_label_freq"] = {
        n: (np.bincount(gen[n], minlength=len(c)) / num).round(4).tolist() for n, c in shapes.DISCRETE.items()}
    result["generated_continuous_mean_std"] = {
        n: [float(np.mean(gen[n])), float(np.std(gen[n]))] for n in shapes.CONTINUOUS}
    result["wall_s"] = time.time() - t0
    return result


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """CLI flags, defined only when run as a script (library imports never touch absl flags)."""
    flags.DEFINE_string("gan", None, "shapes_gan workdir")
    flags.DEFINE_string("judge", None, "shapes_judge workdir")
    flags.DEFINE_string("latent", None, "shapes_latent workdir (for w_avg; optional)")
    flags.DEFINE_integer("num", 5000, "images per set")
    flags.DEFINE_string("out", "quality.json", "output JSON")


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    result = measure(FLAGS.gan, FLAGS.judge, FLAGS.latent, FLAGS.num)
    Path(FLAGS.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
