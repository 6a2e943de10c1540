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

Several processes (hosts) share one run: start the same command on each with `--coordinator_address HOST:PORT
--num_processes N --process_id I` (or under srun / on a TPU pod with no extra flags; `cli/distributed.py`) and an
--out_dir every process sees. Each computes its share of the chunks on its own devices; process 0 writes the
outputs once every chunk is on disk (docs/workflow.md).
"""
from __future__ import annotations

import functools
import importlib
import sys
import time

from absl import flags

import cli
from cli import distributed as cli_distributed
from cli import flags as cli_flags

FLAGS = flags.FLAGS
cli_flags.define()
cli_distributed.define()
flags.DEFINE_string("out_dir", "out/sample", "output directory (re-running into it resumes finished chunks)")
flags.DEFINE_integer("grid_columns", 8, "samples per grid row")
flags.DEFINE_bool("save_images", True, "store the generated images (uint8) in samples.npz")
flags.DEFINE_bool("fresh", False, "delete earlier chunks (and sweep rows) in --out_dir instead of resuming them")


def _progress(msg: str, process: str = "") -> None:
    print(f"[sample{process}] {msg}", flush=True)


# config kind -> the module whose run(config, request) -> Output it uses (else lace_jax.runs.sampling, the worlds')
RESEARCH_RUNNERS = {"diffusion_latent": "lace_jax.latent_diffusion", "directions": "lace_jax.directions.pipeline",
                    "diffusion_2d": "lace_jax.diffusion_2d"}


def _runner(kind: str | None):
    """The `run(config, request) -> Output` of a config kind: the research configs' own, else the worlds'."""
    return importlib.import_module(RESEARCH_RUNNERS.get(kind, "lace_jax.runs.sampling")).run


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    t_start = time.time()
    index, count = cli_distributed.initialize()      # before any JAX computation
    say = _progress if count == 1 else functools.partial(_progress, process=f" {index}/{count}")
    from lace_jax.runs import output

    cfg = cli_flags.world_config()
    request = cli_flags.request(FLAGS.out_dir, sys.argv[0], say, grid_columns=FLAGS.grid_columns,
                                save_images=FLAGS.save_images, fresh=FLAGS.fresh)
    if count > 1 and cfg.get("kind") in RESEARCH_RUNNERS and index != 0:
        say(f"config kind {cfg.get('kind')} runs on one process: process 0 computes and writes it")
        return
    out = _runner(cfg.get("kind"))(cfg, request)
    if out is None:          # a sweep writes its own rows; processes other than 0 leave the outputs to process 0
        return
    output.write(request.out_dir, out, t_start)
    say(f"wrote {request.out_dir}/grid.png, samples.npz, record.json ({time.time() - t_start:.1f}s)")


if __name__ == "__main__":
    cli.run(main)
