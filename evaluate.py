"""Measure controllable generation by an image judge: accuracy per condition, Fréchet distance, NFE and time;
sequential-editing preservation; sweeps of sampler settings.

    python evaluate.py                                           # the config's conditions on the shipped model
    python evaluate.py --expr "shape=circle & !background=white" --num_samples 512 --num_real 5000
    python evaluate.py --edit shape=star --edit background=black --edit size=0.9 --num_samples 128
    python evaluate.py --sweep sweep_robustness --num_samples 256     # docs/sweeps.md was made this way
    python evaluate.py --expr shape=star --sampler sgld              # any sampler flag of sample.py
    python evaluate.py --config diffusion_latent --checkpoint_dir runs/wdiff   # a research study (below)
    python evaluate.py --config shapes_control --set num=256                  # the default model's control table
    python evaluate.py --config shapes_quality --set assets=lace_jax/assets/default   # its Fréchet distances
    python evaluate.py --config cifar10 --checkpoint_dir ckpt/cifar10 --fid_inception ckpt/inception \
        --fid_ref cifar10_train_stats.npz                     # LACE's CIFAR-10 FID protocol (docs/fid.md)
    python evaluate.py --fid_inception ckpt/inception --fid_images cifar10_train/ --fid_ref cifar10_train_stats.npz
                                                              # make a reference from a folder / .npz of images
    python evaluate.py --samples_dir out/sample               # score what sample.py wrote, without sampling again

Research studies run by config kind, with `--set key=value` overrides, writing into --out_dir: `diffusion_2d`
(Du et al.'s 2-D compositions), `diffusion_latent` (w-space energy diffusion vs LACE-ODE; `--checkpoint_dir` is
the `train.py --config diffusion_latent` workdir) and `directions_shapes` (Plumerault et al.'s directions). The
scripts behind them are `experiments/*.py`; the published tables in docs/ were made with their default out_dir.

Accuracy is read by the world's judge on the rendered images (the shapes world's judge is trained on ground-truth
renders), next to the unconditional rate of the samples' own starting latents; Fréchet distances use the judge's
penultimate features against `--num_real` real renders: `fd_matched` against the real renders that satisfy the
condition (the judge labels them; the realism of conditional samples), `fd` against all of them. Writes
`results.json` (flags, versions, device, rows, failures, wall time) and `results.md` into --out_dir, last and
atomically; the same functions are importable from `lace_jax.runs.evaluation`. Bad input exits with code 2 and a one-line reason.

`--samples_dir DIR` scores the conditions a `sample.py` run wrote into DIR (its record names the world, the
conditions, the seed; the latents come from its chunk files, or from samples.npz): the same rows as above, streamed
chunk by chunk into running sums, so 100,000 samples need no more memory than 10,000 (`--fid_inception`/`--fid_ref`
add Inception FID; `--checkpoint_dir` says where the world's weights are now).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import flags

import cli
from cli import flags as cli_flags

FLAGS = flags.FLAGS
cli_flags.define()
flags.DEFINE_string("out_dir", "out/evaluate", "output directory (results.json, results.md; chunks for resuming)")
flags.DEFINE_integer("num_real", 2000, "real renders in the Fréchet reference set")
flags.DEFINE_bool("fd", True, "compute Fréchet distances in the judge's features")
flags.DEFINE_float("tol", 0.1, "a continuous attribute holds when |judge − target| < tol")
flags.DEFINE_string("fid_inception", None, "converted FID Inception (python -m ports.convert --in "
                    "pt_inception-2015-12-05-6726825d.pth --out DIR): adds Inception FID to every condition's row")
flags.DEFINE_string("fid_ref", None, "FID reference: statistics .npz (mu, sigma; pytorch-fid's), a folder of images or "
                    "an .npz of uint8 images (their statistics are computed once and cached beside it)")
flags.DEFINE_string("fid_images", None, "make a reference: the statistics of this folder / uint8 .npz of images are "
                    "written to --fid_ref, and nothing is sampled")
flags.DEFINE_integer("fid_batch", 50, "images per Inception batch")
flags.DEFINE_string("samples_dir", None, "score the conditions a sample.py run wrote into this folder (its --out_dir) "
                    "instead of sampling: streamed, in bounded memory")

# flags that choose what to sample: meaningless with --samples_dir, whose record says what was sampled
_SAMPLING_FLAGS = ("config", "set", "expr", "attr", "edit", "sweep", "sampler", "fid_images", "num_samples", "seed")


def _progress(msg: str) -> None:
    print(f"[evaluate] {msg}", flush=True)


EXPERIMENTS = {"diffusion_2d": "diffusion_2d.py", "diffusion_latent": "diffusion_latent.py",
               "directions": "directions_shapes.py"}


def _run_experiment(kind: str) -> None:
    """Run `experiments/<script>` for a research config (its own progress lines, JSON and Markdown)."""
    import importlib.util

    script = Path(__file__).resolve().parent / "experiments" / EXPERIMENTS[kind]
    if not script.is_file():
        raise cli.UserError(f"{script} is missing (the research studies run from a source checkout)")
    argv = ["--config", FLAGS.config]
    if kind == "diffusion_latent":
        if not FLAGS.checkpoint_dir:
            raise cli.UserError("--config diffusion_latent needs --checkpoint_dir: the --workdir of "
                                "`python train.py --config diffusion_latent --workdir DIR` (trained there if empty)")
        argv += ["--workdir", FLAGS.checkpoint_dir]
    elif FLAGS.checkpoint_dir:
        argv += ["model_dir=" + FLAGS.checkpoint_dir] if kind == "directions" else []
    argv += list(FLAGS.set) + [f"out_dir={FLAGS.out_dir}"]
    if FLAGS.expr or FLAGS.attr or FLAGS.edit or FLAGS.sweep:
        raise cli.UserError(f"--config {FLAGS.config} runs a study: its conditions come from the config (--set)")
    spec = importlib.util.spec_from_file_location(f"lace_experiment_{kind}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _progress(f"running {script.name} {' '.join(argv)}")
    module.main(argv)


def _inception(cfg: dict):
    """The Inception FID settings the --fid_* flags ask for (None without --fid_inception); with --fid_images,
    write the reference statistics and return None."""
    if not (FLAGS.fid_inception or FLAGS.fid_ref or FLAGS.fid_images):
        return None
    if not (FLAGS.fid_inception and FLAGS.fid_ref):
        raise cli.UserError("Inception FID needs both --fid_inception (the converted network) and --fid_ref")
    from lace_jax import checkpoint
    from lace_jax.metrics import fid
    from lace_jax.runs.evaluation import InceptionFID

    def progress(done, total):
        _progress(f"Inception features {done}/{total if total is not None else '?'}")

    try:
        variables = fid.load_inception(FLAGS.fid_inception)
        if FLAGS.fid_images:
            mu, sigma = fid.load_reference(FLAGS.fid_images, variables, batch_size=FLAGS.fid_batch,
                                           progress=progress, log=_progress)
            fid.save_reference(FLAGS.fid_ref, mu, sigma, meta={"images": Path(FLAGS.fid_images).name})
            _progress(f"wrote the statistics of {FLAGS.fid_images} to {FLAGS.fid_ref}")
            return None
        mu, sigma = fid.load_reference(FLAGS.fid_ref, variables, batch_size=FLAGS.fid_batch, progress=progress,
                                       log=_progress)
    except (fid.FIDError, checkpoint.CheckpointError, FileNotFoundError) as err:
        raise cli.UserError(str(err).splitlines()[0]) from None
    return InceptionFID(variables, mu, sigma, quantize=bool(cfg.get("fid", {}).get("quantize", True)),
                        batch_size=FLAGS.fid_batch)


def _score_samples_dir(t_start: float) -> None:
    """`--samples_dir`: score a sample.py output folder (`evaluation.score_samples_dir`) into --out_dir."""
    from lace_jax.runs import evaluation, output

    given = [f"--{name}" for name in _SAMPLING_FLAGS if FLAGS[name].present]
    if given:
        raise cli.UserError(f"--samples_dir scores what its record.json says was sampled; drop {', '.join(given)}")
    out_dir = Path(FLAGS.out_dir)
    if out_dir.resolve() == Path(FLAGS.samples_dir).resolve():
        raise cli.UserError("--out_dir must not be the --samples_dir folder (results.json goes beside, not into it)")
    try:
        record_in = evaluation.read_sample_record(FLAGS.samples_dir)
    except evaluation.SamplesDirError as err:
        raise cli.UserError(str(err)) from None
    inception = _inception(dict(record_in["config"]))
    output.prepare_out_dir(out_dir, evaluation.OUTPUTS)
    try:
        record, table = evaluation.score_samples_dir(
            FLAGS.samples_dir, num_real=FLAGS.num_real, use_fd=FLAGS.fd, tol=FLAGS.tol,
            checkpoint_dir=FLAGS.checkpoint_dir, inception=inception, progress=_progress)
    except evaluation.SamplesDirError as err:
        raise cli.UserError(str(err)) from None
    record = {"argv": sys.argv, "flags": cli_flags.flag_values(sys.argv[0]), **record}
    evaluation.write_results(out_dir, record, table, t_start)
    print(table, flush=True)
    _progress(f"wrote {out_dir}/results.json and results.md ({time.time() - t_start:.1f}s)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    t_start = time.time()
    if FLAGS.samples_dir:
        _score_samples_dir(t_start)
        return
    cfg = cli_flags.world_config()
    kind = cfg.get("kind")
    if kind in EXPERIMENTS:
        _run_experiment(kind)
        return
    if kind in ("control", "quality"):
        from lace_jax.training import control, quality
        (control.run if kind == "control" else quality.run)(cfg, Path(FLAGS.out_dir), log=_progress)
        return
    from lace_jax.runs import evaluation

    inception = _inception(cfg)
    if FLAGS.fid_images:
        return
    request = cli_flags.request(FLAGS.out_dir, sys.argv[0], _progress)
    record, table = evaluation.run(cfg, request, num_real=FLAGS.num_real, use_fd=FLAGS.fd, tol=FLAGS.tol,
                                   inception=inception)
    evaluation.write_results(request.out_dir, record, table, t_start)
    print(table, flush=True)
    _progress(f"wrote {request.out_dir}/results.json and results.md ({time.time() - t_start:.1f}s)")


if __name__ == "__main__":
    cli.run(main)
