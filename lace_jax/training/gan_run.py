"""The GAN's training run: `train.py --config shapes_gan` (resumable; PNG grids and an early EMA snapshot)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lace_jax.data import shapes
from lace_jax.runs.images import make_grid, save_png
from lace_jax.models import stylegan2 as sg
from lace_jax.models import discriminator
from lace_jax.training import gan, loop


def generator_config(config: dict) -> sg.StyleGAN2Config:
    """The StyleGAN2Config of a shapes_gan config (resolution taken from the top level)."""
    g = dict(config["generator"])
    if "channels" in g and isinstance(g["channels"], dict):
        g["channels"] = {int(k): int(v) for k, v in g["channels"].items()}
    return sg.StyleGAN2Config(img_resolution=int(config["resolution"]), **g)


def hyper(config: dict) -> gan.GanHyper:
    return gan.GanHyper(batch_size=int(config["batch_size"]), z_dim=int(config["generator"]["z_dim"]),
                        g_lr=float(config["g_lr"]), d_lr=float(config["d_lr"]), beta2=float(config["beta2"]),
                        r1_gamma=float(config["r1_gamma"]), r1_interval=int(config["r1_interval"]),
                        ema_kimg=float(config["ema_kimg"]), ema_rampup=config["ema_rampup"],
                        d_warmup=int(config.get("d_warmup_steps", 0)))


ACCELERATOR_STEPS_PER_CALL = 100


def steps_per_call(config: dict) -> int:
    """Iterations per jitted call in `train_gan`: the config's `steps_per_call`, an int ≥ 1 or "auto" (default):
    1 on CPU, where XLA runs the weight-gradient convolutions inside a loop body several times slower than in a
    call of their own (docs/default_model.md), and `ACCELERATOR_STEPS_PER_CALL` on an accelerator, where one
    iteration per Python call bounded the run by dispatch."""
    value = config.get("steps_per_call", "auto")
    if value == "auto":
        return 1 if jax.default_backend() == "cpu" else ACCELERATOR_STEPS_PER_CALL
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"steps_per_call must be an int ≥ 1 or 'auto', got {value!r}")
    return value


def initial_generator(source: str | Path, g_cfg: sg.StyleGAN2Config) -> dict:
    """Generator variables to start a run from: a `stylegan2` checkpoint directory (an exported generator,
    e.g. `lace_jax/assets/default/generator`) or a shapes_gan workdir (its newest EMA generator). Its
    architecture must equal this run's, else a ValueError says which fields differ."""
    from lace_jax import checkpoint

    source = Path(source)
    if (source / "lace_jax.json").is_file():
        cfg, variables = checkpoint.load_generator(source)
    elif (source / "checkpoints").is_dir():
        cfg, variables, _ = load_gan_ema(source)
    else:
        raise FileNotFoundError(f"init_from={str(source)!r} is neither a generator checkpoint (lace_jax.json) "
                                "nor a shapes_gan workdir (checkpoints/)")
    if cfg != g_cfg:
        diff = {k: (getattr(cfg, k), getattr(g_cfg, k)) for k in g_cfg.__dataclass_fields__
                if getattr(cfg, k) != getattr(g_cfg, k)}
        raise ValueError(f"init_from={str(source)!r} has another generator architecture (theirs, ours): {diff}")
    return jax.tree_util.tree_map(jnp.asarray, variables)


def build(config: dict):
    """(g_cfg, generator buffers, discriminator module, initial train state, g_apply, d_apply, step key)."""
    g_cfg = generator_config(config)
    k_g, k_d, k_train = jax.random.split(jax.random.PRNGKey(int(config["seed"])), 3)
    g_vars = sg.init(g_cfg, k_g)
    if config.get("init_from"):          # continue a trained generator (fresh D and optimiser states)
        g_vars = initial_generator(config["init_from"], g_cfg)
    buffers = g_vars["buffers"]          # noise_const and w_avg: fixed during training (ψ = 1, random noise)
    disc = discriminator.Discriminator(int(config["resolution"]), tuple(config["d_channels"]))
    d_params = discriminator.init(disc, k_d)

    def g_apply(params, z, key):
        variables = {"params": params, "buffers": buffers}
        ws = sg.mapping(g_cfg, variables, z)
        return sg.synthesis(g_cfg, variables, ws, noise_mode="random", key=key)

    def d_apply(params, images):
        return disc.apply({"params": params}, images)

    state = gan.init_state(g_vars["params"], d_params, hyper(config))
    return g_cfg, buffers, disc, state, g_apply, d_apply, k_train


def train_gan(config: dict, workdir: str | Path, log: Callable[[str], None] = print) -> dict:
    """Train until `steps` or the wall budget; write grids, an early EMA snapshot and `gan_run.json`.
    `steps_per_call` (`steps_per_call(config)`) > 1 runs that many iterations per jitted call
    (`gan.make_train_block`)."""
    workdir = Path(workdir)
    g_cfg, buffers, _, state, g_apply, d_apply, k_train = build(config)
    h = hyper(config)
    res = int(config["resolution"])
    per_call = steps_per_call(config)
    sample_real = lambda k, b: shapes.sample(k, b, res)[0]
    step_fn = (gan.make_train_block(g_apply, d_apply, sample_real, h, k_train, per_call) if per_call > 1 else
               gan.make_steps(g_apply, d_apply, sample_real, h, k_train))
    grid_z = jax.random.normal(jax.random.PRNGKey(int(config["grid_seed"])), (int(config["grid_size"]), h.z_dim))
    render_ema = jax.jit(lambda p: sg.generate(g_cfg, {"params": p, "buffers": buffers}, grid_z))
    (workdir / "samples").mkdir(parents=True, exist_ok=True)
    real, _ = shapes.sample(jax.random.PRNGKey(int(config["grid_seed"])), int(config["grid_size"]), res)
    save_png(workdir / "samples" / "real.png", make_grid(np.asarray(real)))
    t0 = time.time()

    def on_log(step, m, rate):
        log(f"gan step {step:6d} kimg {step * h.batch_size / 1000:7.1f} loss_g {m['loss_g']:.4f} "
            f"loss_d {m['loss_d']:.4f} r1 {m['r1']:.4f} D(real) {m['d_real']:+.3f} D(fake) {m['d_fake']:+.3f} "
            f"{rate:.1f} img/s  wall {time.time() - t0:.0f}s")

    def on_checkpoint(step, st):
        save_png(workdir / "samples" / f"ema_{step:06d}.png", make_grid(np.asarray(render_ema(st["g_ema"]))))
        if step == int(config.get("early_snapshot_step", -1)):
            path = (workdir / f"early_ema_{step:06d}").resolve()
            if not path.exists():
                with ocp.StandardCheckpointer() as ckptr:
                    ckptr.save(path, st["g_ema"])

    state, steps = loop.run(state, step_fn, num_steps=int(config["steps"]), workdir=workdir,
                            ckpt_every=int(config["ckpt_every"]), log_every=int(config["log_every"]),
                            max_wall_s=config.get("max_wall_s"), images_per_step=h.batch_size,
                            on_log=on_log, on_checkpoint=on_checkpoint, steps_per_call=per_call)
    record = {"steps": steps, "kimg": steps * h.batch_size / 1000, "wall_s_this_run": time.time() - t0}
    with open(workdir / "gan_run.json", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    return record


def load_gan_ema(gan_workdir: str | Path) -> tuple[sg.StyleGAN2Config, dict, dict]:
    """(generator config, EMA variables with w_avg unset, the GAN run's config) from a shapes_gan workdir."""
    gcfg = loop.run_config(gan_workdir)
    g_cfg, buffers, _, template, *_ = build(gcfg)
    state = loop.restore_newest(gan_workdir, template, gcfg, "GAN")
    return g_cfg, {"params": state["g_ema"], "buffers": buffers}, gcfg
