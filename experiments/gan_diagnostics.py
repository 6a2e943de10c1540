"""Two diagnostics for the shapes GAN, on the shipped judge (see docs/default_model.md, "Continuing the generator").

    python experiments/gan_diagnostics.py progress runs/gan2 [--num 2000]    # newest checkpoint of a GAN run
    python experiments/gan_diagnostics.py progress shipped                   # the shipped generator
    python experiments/gan_diagnostics.py fit [--steps 800]                  # can G draw the world at all?
    python experiments/gan_diagnostics.py discriminator experiments/gan_mid_state [--num 512]   # what D rewards

`progress`: FD of the EMA generator to real renders in judge features (`quality.measure_generator`, `num` per
set, seed 31) and the judge's shape/background frequencies on its samples (the world is uniform: 1/4, 1/3).
`fit`: the generator architecture of `configs/shapes_gan` fitted by plain L2 regression (Adam 3e-3, const noise)
to 16 fixed renders from 16 fixed z — no discriminator. If it reproduces sharp triangles and stars, the blobs of
the GAN are a training problem (signal or budget), not missing capacity. Writes `fit.png` (fits, then targets).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lace_jax.config import load_config
from lace_jax.data import fit_judge, shapes
from lace_jax.worlds.shapes import load_default
from lace_jax.runs.images import make_grid, save_png
from lace_jax.models import stylegan2 as sg
from lace_jax.training import gan_run, loop, quality


def progress(source: str, num: int) -> dict:
    m = load_default()
    if source == "shipped":
        g_cfg, g_vars, steps = m.generator_config, m.generator, m.card.get("gan_steps")
    else:
        g_cfg, g_vars, gcfg = gan_run.load_gan_ema(source)
        g_vars, steps = {"params": g_vars["params"], "buffers": m.generator["buffers"]}, gcfg["trained_steps"]
    r = quality.measure_generator(g_cfg, g_vars, m.judge_model, m.judge_params, num)
    return {"source": source, "steps": steps, "num_per_set": num, "fd": round(r["fd_generated_vs_real"], 2),
            "fd_floor": round(r["fd_floor_real_vs_real"], 2), "label_freq": r["generated_label_freq"]}


def fit(steps: int, out: str) -> dict:
    cfg = load_config("shapes_gan")
    g_cfg, buffers, _, state, *_ = gan_run.build(cfg)
    real = shapes.sample(jax.random.PRNGKey(3), 16, cfg["resolution"])[0]
    z = jax.random.normal(jax.random.PRNGKey(4), (16, g_cfg.z_dim))

    def loss(p):
        v = {"params": p, "buffers": buffers}
        img = sg.synthesis(g_cfg, v, sg.mapping(g_cfg, v, z), noise_mode="const")
        return jnp.mean(jnp.square(img - real)), img

    tx = optax.adam(3e-3, b1=0.9, b2=0.99)

    @jax.jit
    def step(p, o):
        (l, img), g = jax.value_and_grad(loss, has_aux=True)(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, l, img

    p, o, t0, hist = state["g"], tx.init(state["g"]), time.time(), {}
    for i in range(steps + 1):
        p, o, l, img = step(p, o)
        if i % 200 == 0:
            hist[i] = float(l)
            print(f"fit step {i:5d} mse {float(l):.5f} {time.time() - t0:.0f}s", flush=True)
    save_png(out, make_grid(np.concatenate([np.asarray(img), np.asarray(real)])))
    return {"mse_by_step": hist, "image": out}


def discriminator(workdir: str, num: int) -> dict:
    cfg = loop.run_config(workdir)
    g_cfg, buffers, _, template, _, d_apply, _ = gan_run.build(cfg)
    state = loop.restore_newest(workdir, template, cfg, "GAN")
    real = np.asarray(shapes.sample(jax.random.PRNGKey(7), num, cfg["resolution"])[0])
    z = jax.random.normal(jax.random.PRNGKey(8), (num, g_cfg.z_dim))
    logits = jax.jit(lambda x: d_apply(state["d"], x))
    draw = jax.jit(lambda p: sg.generate(g_cfg, {"params": p, "buffers": buffers}, z, truncation_psi=1.0))
    sets = {"real": real, **{f"real blurred sigma={s:g}": fit_judge.gaussian_blur(real, s) for s in (0.7, 1, 1.5, 2)},
            "real + N(0, 0.02^2) pixel noise": real + 0.02 * np.random.default_rng(0).standard_normal(real.shape),
            "G samples": draw(state["g"]), "EMA G samples": draw(state["g_ema"])}
    rows = {}
    for name, x in sets.items():
        v = np.asarray(logits(jnp.asarray(x, jnp.float32)))
        rows[name] = {"mean_logit": round(float(v.mean()), 2), "called_real": round(float((v > 0).mean()), 3)}
        print(f"{name:34s} mean logit {v.mean():+.2f}  called real {(v > 0).mean():.2f}", flush=True)
    return {"workdir": Path(workdir).name, "steps": cfg.get("trained_steps"), "num": num, "sets": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["progress", "fit", "discriminator"])
    ap.add_argument("source", nargs="?", default="shipped")
    ap.add_argument("--num", type=int, default=None, help="samples per set (progress: 2000, discriminator: 512)")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--out", default="fit.png")
    a = ap.parse_args()
    if a.what == "progress":
        print(json.dumps(progress(a.source, a.num or 2000)))
    elif a.what == "discriminator":
        print(json.dumps(discriminator(a.source, a.num or 512)))
    else:
        print(json.dumps(fit(a.steps, a.out)))


if __name__ == "__main__":
    main()
