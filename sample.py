"""Sample latents under composed attribute energies and write what a researcher looks at and parses.

    python sample.py                                         # shipped shapes model: one row per shape, PF-ODE
    python sample.py --attr shape=circle --attr size=0.7     # conditional (the --attr are AND-ed)
    python sample.py --expr "shape=circle & !background=white | size=0.2" --num_samples 64
    python sample.py --edit shape=star --edit background=black --edit size=0.9   # sequential editing
    python sample.py --expr "shape=star" --sampler sgld --num_steps 100 --step_size 0.01
    python sample.py --attr shape=square --sampler ode_tc  # same PF-ODE, time-changed, Bosh3 3e-3: fewer NFE
    python sample.py --config toy2d --expr "cluster=ne | radius=1"           # the 2-D demo world
    python sample.py --config ffhq --checkpoint_dir ~/lace_ckpt/ffhq         # your converted LACE weights
    python sample.py --sweep sweep_robustness                                # a grid of sampler settings
    python sample.py --config diffusion_latent --checkpoint_dir runs/wdiff --expr "shape=circle" --sampler mala
                                       # a w-space energy diffusion model (train.py) composed with the classifiers
    python sample.py --config diffusion_2d --checkpoint_dir runs/d2 --expr "gmm & !bar" --set sampler=hmc
                                       # 2-D diffusion models (train.py) composed, scored against the exact density
    python sample.py --config directions_shapes --checkpoint_dir runs/dirs --edit x=0.8 --edit hue=0.1
                                       # edit along label-free latent directions found by train.py

Every condition's samples are computed in resumable chunks (`--chunk_size`) sharded over all local devices;
re-running the same command in the same --out_dir continues where an interrupted run stopped. Writes into
--out_dir: `grid.png` (one labelled row per condition or edit step), `condition_<k>.png` / `edit_<k>.png`,
`samples.npz` (latents with NaN rows for failed solves, success mask, images of the successful samples) and
`record.json` (all flags, versions, device, per-sample solver statistics, failures, wall time), written last.
Bad input exits with code 2 and a one-line reason.
"""
from __future__ import annotations

import sys
import time

from absl import flags

import cli
from cli import flags as cli_flags

FLAGS = flags.FLAGS
cli_flags.define()
flags.DEFINE_string("out_dir", "out/sample", "output directory (re-running into it resumes finished chunks)")
flags.DEFINE_integer("grid_columns", 8, "samples per grid row")
flags.DEFINE_bool("save_images", True, "store the generated images (uint8) in samples.npz")
flags.DEFINE_bool("fresh", False, "delete earlier chunks in --out_dir instead of resuming them")


def _progress(msg: str) -> None:
    print(f"[sample] {msg}", flush=True)


def _runner(kind: str | None):
    """The `run(config, request) -> Output` of a config kind: the research configs' own, else the worlds'."""
    if kind == "diffusion_latent":
        from lace_jax.latent_diffusion import run
    elif kind == "directions":
        from lace_jax.directions.pipeline import run
    elif kind == "diffusion_2d":
        from lace_jax.diffusion_2d import run
    else:
        from lace_jax.runs.sampling import run
    return run


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    t_start = time.time()
    from lace_jax.runs import output

    cfg = cli_flags.world_config()
    request = cli_flags.request(FLAGS.out_dir, sys.argv[0], _progress, grid_columns=FLAGS.grid_columns,
                                save_images=FLAGS.save_images, fresh=FLAGS.fresh)
    out = _runner(cfg.get("kind"))(cfg, request)
    if out is None:          # a sweep writes its own rows
        return
    output.write(request.out_dir, out, t_start)
    _progress(f"wrote {request.out_dir}/grid.png, samples.npz, record.json ({time.time() - t_start:.1f}s)")


if __name__ == "__main__":
    cli.run(main)
