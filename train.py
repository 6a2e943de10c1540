"""Train the shipped default model's parts on the shapes world.

    python train.py --config shapes_gan    --workdir runs/gan    [--set key=value ...]
    python train.py --config shapes_judge  --workdir runs/judge
    python train.py --config shapes_latent --workdir runs/latent --set gan_workdir=runs/gan \
                                                               --set judge_workdir=runs/judge
    python train.py --config shapes_latent --workdir runs/latent --set assets=lace_jax/assets/default
                                                   # the same from a shipped model's generator + judge
    python train.py --config diffusion_2d --workdir runs/d2            # 2-D score/energy diffusion models (issue 8)
    python train.py --config diffusion_latent --workdir runs/wdiff     # energy diffusion over w (issue 8)
    python train.py --config directions_shapes --workdir runs/dirs     # latent directions for x/y/size/hue (issue 9)
    python train.py --config shapes_export --workdir runs/export --set gan=runs/gan --set judge=runs/judge \
                                                               --set latent=runs/latent   # assemble the model
    python train.py --config shapes_calibrate --workdir runs/calibrate # temperature-calibrate its classifiers

The GAN, judge and latent runs resume from the newest checkpoint in `<workdir>/checkpoints` (kill one and start the
same command again); the w-space diffusion run (about 10 minutes on 2 cores) saves `<workdir>/model` at its end,
the directions run (a few minutes per factor) `<workdir>/directions`.
Progress lines go to stdout; the config, metrics and sample grids are written into the workdir.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

from absl import flags

import cli
from lace_jax.config import apply_overrides, load_config

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "shapes_gan", "config name in configs/ (shapes_gan | shapes_judge | shapes_latent | "
                    "diffusion_2d | diffusion_latent | directions_shapes) "
                    "or a path to a config file")
flags.DEFINE_string("workdir", None, "output directory (checkpoints, logs, samples); required")
flags.DEFINE_multi_string("set", [], "config override key=value (repeatable)")


def _log(line: str) -> None:
    print(line, flush=True)


# config kind → the library function `f(config, workdir, log)` that trains (or assembles) it
KINDS = {"judge": "lace_jax.training.judge_run.train_judge", "gan": "lace_jax.training.gan_run.train_gan",
         "latent": "lace_jax.training.latent.train_latent",
         "diffusion_latent": "lace_jax.latent_diffusion.train_w_diffusion",
         "diffusion_2d": "lace_jax.diffusion_2d.train_and_save",
         "directions": "lace_jax.directions.pipeline.train_directions",
         "export": "lace_jax.training.export.run", "calibrate": "lace_jax.training.calibrate.run"}


def main(argv: list[str]) -> None:
    if len(argv) > 1:   # `--set a=1 b=2` would otherwise drop b=2 without a word
        raise cli.UserError(f"unexpected arguments: {' '.join(argv[1:])} (each override takes its own --set)")
    if FLAGS.workdir is None:
        raise cli.UserError("--workdir is required")
    try:
        config = load_config(FLAGS.config)
    except (FileNotFoundError, ValueError) as err:
        raise cli.UserError(f"--config: {err}") from None
    try:
        config = apply_overrides(config, FLAGS.set)
    except (KeyError, ValueError) as err:
        raise cli.UserError(f"--set: {err.args[0] if err.args else err}") from None
    kind = config.get("kind")
    if kind not in KINDS:
        raise cli.UserError(f"config kind must be one of {', '.join(KINDS)}, got {kind!r}")
    workdir = Path(FLAGS.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(config, indent=2))
    _log(f"train.py --config {FLAGS.config} --workdir {workdir} " + " ".join(f"--set {s}" for s in FLAGS.set))
    module, function = KINDS[kind].rsplit(".", 1)
    result = getattr(importlib.import_module(module), function)(config, workdir, log=_log)
    if kind == "diffusion_latent":
        result = {k: v for k, v in result.items() if k not in ("model", "stats", "losses")}
    _log("result: " + json.dumps(result))


if __name__ == "__main__":
    cli.run(main)
