"""Diagnostics for the shapes GAN, on the shipped judges (docs/default_model.md: "Where the blobs come from",
"What the two discriminators reward", "Generator history").

    python experiments/gan_diagnostics.py progress runs/gan2 [--num 2000]    # newest checkpoint of a GAN run
    python experiments/gan_diagnostics.py progress shipped                   # the shipped generator
    python experiments/gan_diagnostics.py fit [--steps 800]                  # can G draw the world at all?
    python experiments/gan_diagnostics.py discriminator experiments/gan_mid_state [--num 512]   # what D rewards
    python experiments/gan_diagnostics.py invert experiments/gan_long_state [--num 64 --steps 600 --space w+]
    python experiments/gan_diagnostics.py psi experiments/gan_long_state [--num 1000]   # raw G, EMA G, truncation
    python experiments/gan_diagnostics.py twotone shipped [--num 1000]       # soft edges, or wrong outlines?
    python experiments/gan_diagnostics.py mapping experiments/gan_long_state     # how far the mapping trained

`progress`: FD of the EMA generator to real renders in judge features (`quality.measure_generator`, `num` per
set, seed 31) and the judge's shape/background frequencies on its samples (the world is uniform: 1/4, 1/3).
`fit`: the generator architecture of `configs/shapes_gan` fitted by plain L2 regression (Adam 3e-3, const noise)
to 16 fixed renders from 16 fixed z — no discriminator. If it reproduces sharp triangles and stars, the blobs of
the GAN are a training problem (signal or budget), not missing capacity. Writes `fit.png` (fits, then targets).
`invert`: the *trained* EMA synthesis network, w+ (one w per layer; `--space w`: one w for all layers) optimised
per image (Adam 0.05 from the mean w, L2, const noise) to reproduce `num` real renders; the fit judge's verdict on
the reconstructions, per true shape. If they pass, the network can draw the world with the weights it has and what
is wrong is where its mapping puts the mass. Writes `--out` (rows of 16: targets, then their reconstructions).
`psi`: the fit judge on `num` samples of the raw G and the EMA G, and of the EMA G truncated towards the mean w
(ψ = 0.8, 0.6, 0.4), and with its noise inputs off or random instead of constant: is the EMA what blurs, does the
centre of W hold the shapes, does the noise make the lumps?
`twotone`: the fit judge on `num` samples and on their two-tone versions (every pixel set to the border's median
colour or to the object's colour, whichever is nearer), beside the same for real renders and for real renders
blurred by σ = 2 px (the control: how much two-toning alone rescues a blob). If two-toned samples pass, their
outlines are right and only their edges are soft; if not, the outlines themselves are wrong. Writes `--out`
(rows of 16: samples, then their two-tone versions).
`mapping`: how far each mapping layer of a GAN run moved from its initial weights (relative Frobenius change of
the effective weight; that initial value does not depend on the multiplier), which ada's lr multiplier 0.01
keeps small (`experiments/gan_surgery.py mapping_lr` makes a copy of a run that trains it with another
multiplier).
"""
from __future__ import annotations

import argparse
import functools
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


def _generator(source: str):
    if source == "shipped":
        m = load_default()
        return m.generator_config, m.generator
    return gan_run.load_gan_ema(source)[:2]


def invert(source: str, num: int, steps: int, out: str, space: str) -> dict:
    g_cfg, g_vars = _generator(source)
    real, factors = shapes.sample(jax.random.PRNGKey(7), num)
    z = jax.random.normal(jax.random.PRNGKey(1), (4096, g_cfg.z_dim))
    layers = g_cfg.num_ws if space == "w+" else 1
    w0 = jnp.broadcast_to(sg.mapping(g_cfg, g_vars, z).mean(0)[:layers], (num, layers, g_cfg.w_dim))
    synth = lambda w: sg.synthesis(g_cfg, g_vars, jnp.broadcast_to(w, (num, g_cfg.num_ws, g_cfg.w_dim)),
                                   noise_mode="const")
    tx = optax.adam(0.05)

    @jax.jit
    def step(w, o):
        l, g = jax.value_and_grad(lambda w: jnp.mean(jnp.square(synth(w) - real)))(w)
        u, o = tx.update(g, o)
        return optax.apply_updates(w, u), o, l

    w, o, t0, hist = w0, tx.init(w0), time.time(), {}
    for i in range(steps):
        w, o, l = step(w, o)
        if i % 100 == 0 or i == steps - 1:
            hist[i + 1] = round(float(l), 5)
            print(f"invert step {i + 1:5d} mse {float(l):.5f} {time.time() - t0:.0f}s", flush=True)
    rec = np.asarray(synth(w))
    verdict = fit_judge.judge(rec)
    true = np.asarray(factors.shape)
    right = np.asarray(verdict.realistic) & (np.asarray(verdict.shape) == true)
    per_shape = {name: {"n": int((true == k).sum()), "realistic_right_shape": round(float(right[true == k].mean()), 3),
                        "median_score": round(float(np.median(np.asarray(verdict.score)[true == k])), 3)}
                 for k, name in enumerate(shapes.SHAPES) if (true == k).any()}
    rows = [x for i in range(0, num, 16) for x in (np.asarray(real)[i:i + 16], rec[i:i + 16])]
    save_png(out, make_grid(np.concatenate(rows), ncols=16))
    return {"source": Path(source).name, "space": space, "num": num, "steps": steps, "mse_by_step": hist,
            "realistic": round(float(np.mean(verdict.realistic)), 3),
            "realistic_right_shape": round(float(right.mean()), 3),
            "per_shape": per_shape, "tau": fit_judge.TAU, "image": Path(out).name}


def psi(source: str, num: int) -> dict:
    rows = {}

    def verdict(name, draw, w):
        r = fit_judge.judge(np.concatenate([np.asarray(draw(w[i:i + 250])) for i in range(0, num, 250)]))
        real, best = np.asarray(r.realistic), np.asarray(r.shape)
        rows[name] = {"realistic": round(float(real.mean()), 3),
                      "realistic_by_shape": {s: round(float((real & (best == k)).mean()), 3)
                                             for k, s in enumerate(shapes.SHAPES)},
                      "best_fit_shapes_all": {s: round(float((best == k).mean()), 3)
                                              for k, s in enumerate(shapes.SHAPES)}}
        print(name, json.dumps(rows[name]), flush=True)

    sources = {"EMA G": _generator(source)}
    if source != "shipped":
        cfg = loop.run_config(source)
        g_cfg, buffers, _, template, *_ = gan_run.build(cfg)
        sources["G (not EMA)"] = (g_cfg, {"params": loop.restore_newest(source, template, cfg, "GAN")["g"],
                                          "buffers": buffers})
    for name, (g_cfg, g_vars) in sources.items():
        draw = jax.jit(functools.partial(sg.synthesis, g_cfg, g_vars, noise_mode="const"))   # one compile per G
        z = jax.random.normal(jax.random.PRNGKey(31), (num, g_cfg.z_dim))
        w_avg = sg.mapping(g_cfg, g_vars, jax.random.normal(jax.random.PRNGKey(0), (8192, g_cfg.z_dim))).mean(0)
        ws = sg.mapping(g_cfg, g_vars, z)
        for p in ((1.0, 0.8, 0.6, 0.4) if name == "EMA G" else (1.0,)):
            verdict(f"{name}, psi={p:g}", draw, w_avg + p * (ws - w_avg))
        if name == "EMA G":                  # the per-pixel noise inputs: off, and random instead of const
            for mode in ("none", "random"):
                noisy = jax.jit(functools.partial(sg.synthesis, g_cfg, g_vars, noise_mode=mode))
                verdict(f"{name}, psi=1, noise {mode}", lambda w: noisy(w, key=jax.random.PRNGKey(0)), ws)
    strengths = {f"{b}/{c}": round(float(layer["noise_strength"]), 6)
                 for b, block in sources["EMA G"][1]["params"]["synthesis"].items()
                 for c, layer in block.items() if isinstance(layer, dict) and "noise_strength" in layer}
    return {"source": Path(source).name, "num": num, "z_seed": 31, "rows": rows, "ema_noise_strengths": strengths}


def two_tone(images: np.ndarray) -> np.ndarray:
    """[B, 3, H, W] → the same images in two colours: the border's median colour (background) and the mean colour
    of the pixels farthest from it (object, those within 3/4 of the largest distance); each pixel takes the
    nearer of the two."""
    x = np.asarray(images, np.float32)
    border = np.concatenate([x[:, :, 0, :], x[:, :, -1, :], x[:, :, :, 0], x[:, :, :, -1]], axis=2)
    bg = np.median(border, axis=2)[:, :, None, None]
    d_bg = np.linalg.norm(x - bg, axis=1)                                        # [B, H, W]
    far = d_bg >= 0.75 * d_bg.max(axis=(1, 2), keepdims=True)
    obj = (x * far[:, None]).sum(axis=(2, 3)) / np.maximum(far.sum(axis=(1, 2)), 1)[:, None]
    obj = obj[:, :, None, None]
    nearer_obj = np.linalg.norm(x - obj, axis=1) < d_bg
    return np.where(nearer_obj[:, None], obj, bg).astype(np.float32)


def twotone(source: str, num: int, out: str) -> dict:
    g_cfg, g_vars = _generator(source)
    z = jax.random.normal(jax.random.PRNGKey(31), (num, g_cfg.z_dim))
    draw = jax.jit(lambda z: sg.generate(g_cfg, g_vars, z))
    fake = np.concatenate([np.asarray(draw(z[i:i + 250])) for i in range(0, num, 250)])
    real, factors = shapes.sample(jax.random.PRNGKey(7), num)
    real, true = np.asarray(real), np.asarray(factors.shape)
    blob = fit_judge.gaussian_blur(real, 2.0)
    rows, toned = {}, two_tone(fake)
    for name, x, x2, labels in (("real renders", real, two_tone(real), true),
                                ("real blurred sigma=2", blob, two_tone(blob), true), ("samples", fake, toned, None)):
        for tone, imgs in (("as drawn", x), ("two-tone", x2)):
            r = fit_judge.judge(imgs)
            ok, best = np.asarray(r.realistic), np.asarray(r.shape)
            row = {"realistic": round(float(ok.mean()), 3),
                   "realistic_by_best_shape": {s: round(float((ok & (best == k)).mean()), 3)
                                               for k, s in enumerate(shapes.SHAPES)},
                   "median_score": round(float(np.median(np.asarray(r.score))), 3)}
            if labels is not None:
                row["realistic_right_shape"] = round(float((ok & (best == labels)).mean()), 3)
            rows[f"{name}, {tone}"] = row
            print(f"{name}, {tone}", json.dumps(row), flush=True)
    save_png(out, make_grid(np.concatenate([fake[:16], toned[:16], fake[16:32], toned[16:32]]), ncols=16))
    return {"source": Path(source).name, "num": num, "z_seed": 31, "tau": fit_judge.TAU, "rows": rows,
            "image": Path(out).name}


def _effective_mapping(g_cfg: sg.StyleGAN2Config, params: dict) -> dict:
    lr = g_cfg.lr_multiplier
    return {name: np.asarray(layer["weight"]) * lr / np.sqrt(layer["weight"].shape[0])
            for name, layer in params["mapping"].items()}


def mapping(workdir: str) -> dict:
    cfg = loop.run_config(workdir)
    g_cfg, _, _, template, *_ = gan_run.build(cfg)
    state = loop.restore_newest(workdir, template, cfg, "GAN")
    step = cfg.pop("trained_steps")
    init = _effective_mapping(g_cfg, template["g"])      # build() initialises G from the run's seed, as train.py
    now = _effective_mapping(g_cfg, state["g"])
    moved = {k: round(float(np.linalg.norm(now[k] - init[k]) / np.linalg.norm(init[k])), 4) for k in sorted(now)}
    result = {"workdir": Path(workdir).name, "steps": step, "lr_multiplier": g_cfg.lr_multiplier,
              "relative_change_from_init": moved}
    if cfg.get("init_from"):
        result["note"] = "this run started from init_from, so 'init' is not its start"
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["progress", "fit", "discriminator", "invert", "psi", "twotone",
                                         "mapping"])
    ap.add_argument("source", nargs="?", default="shipped")
    ap.add_argument("--num", type=int, default=None,
                    help="samples per set (progress: 2000, discriminator: 512), renders to invert (invert: 64)")
    ap.add_argument("--steps", type=int, default=None, help="Adam steps (fit: 800, invert: 600)")
    ap.add_argument("--out", default=None, help="the picture (fit: fit.png, invert: invert.png, twotone: twotone.png)")
    ap.add_argument("--space", choices=["w+", "w"], default="w+", help="invert: one w per layer, or one for all")
    a = ap.parse_args()
    if a.what == "progress":
        print(json.dumps(progress(a.source, a.num or 2000)))
    elif a.what == "discriminator":
        print(json.dumps(discriminator(a.source, a.num or 512)))
    elif a.what == "invert":
        print(json.dumps(invert(a.source, a.num or 64, a.steps or 600, a.out or "invert.png", a.space)))
    elif a.what == "psi":
        print(json.dumps(psi(a.source, a.num or 1000)))
    elif a.what == "twotone":
        print(json.dumps(twotone(a.source, a.num or 1000, a.out or "twotone.png")))
    elif a.what == "mapping":
        print(json.dumps(mapping(a.source)))
    else:
        print(json.dumps(fit(a.steps or 800, a.out or "fit.png")))


if __name__ == "__main__":
    main()
