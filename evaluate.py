"""Measure controllable generation by an image judge: accuracy per condition, Fréchet distance, NFE and time;
sequential-editing preservation; sweeps of sampler settings.

    python evaluate.py                                           # the config's conditions on the shipped model
    python evaluate.py --expr "shape=circle & !background=white" --num_samples 512 --num_real 5000
    python evaluate.py --edit shape=star --edit background=black --edit size=0.9 --num_samples 128
    python evaluate.py --sweep sweep_robustness --num_samples 256     # docs/sweeps.md was made this way
    python evaluate.py --expr shape=star --sampler sgld              # any sampler flag of sample.py
    python evaluate.py --config diffusion_latent --checkpoint_dir runs/wdiff   # a research study (below)

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
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from absl import flags

from lace_jax import cli, cli_flags

FLAGS = flags.FLAGS
cli_flags.define()
flags.DEFINE_string("out_dir", "out/evaluate", "output directory (results.json, results.md; chunks for resuming)")
flags.DEFINE_integer("num_real", 2000, "real renders in the Fréchet reference set")
flags.DEFINE_bool("fd", True, "compute Fréchet distances in the judge's features")
flags.DEFINE_float("tol", 0.1, "a continuous attribute holds when |judge − target| < tol")

OUTPUTS = ("results.json", "results.md")


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


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise cli.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
    t_start = time.time()
    import jax

    from lace_jax import records
    from lace_jax.runs import chunks, evaluation, sweeps, workflow
    from lace_jax.config import load_config

    cfg = cli_flags.world_config()
    if cfg.get("kind") in EXPERIMENTS:
        _run_experiment(cfg["kind"])
        return
    world = cli_flags.load_world(cfg)
    if world.judge is None or world.render is None:
        raise cli.UserError(f"world {world.name!r} has no image judge to evaluate with (the shipped shapes model "
                            "has one; for your own weights add a judge or use sample.py)")
    edits = cli_flags.edits(world)
    if edits and (FLAGS.expr or FLAGS.attr):
        raise cli.UserError("--edit cannot be combined with --expr/--attr")
    conds = [] if edits or FLAGS.sweep else cli_flags.conditions(world)
    sampler = cli_flags.sampler_name(world)
    options = cli_flags.sampler_options(world, sampler)
    n = cli_flags.num_samples(world, default=64)
    chunk = cli_flags.chunk_size(world)
    if FLAGS.num_real < 2 and FLAGS.fd:
        raise cli.UserError(f"--num_real must be >= 2 for a Fréchet distance, got {FLAGS.num_real}")
    sweep_cfg = None
    if FLAGS.sweep:
        try:
            sweep_cfg = load_config(FLAGS.sweep)
            settings = sweeps.settings_from_config(sweep_cfg, world.name)
        except (ValueError, FileNotFoundError) as err:
            raise cli.UserError(f"--sweep: {err}") from None
    out_dir = Path(FLAGS.out_dir)
    cli_flags.prepare_out_dir(out_dir, OUTPUTS)
    _progress(f"world={world.name} sampler={sampler} backend={jax.default_backend()} devices={jax.device_count()}")

    real = real_labels = None
    if FLAGS.fd and world.real_images is not None:
        (real, real_labels), t_real = evaluation.timed(
            lambda: evaluation.reference_set(world, FLAGS.num_real, FLAGS.seed))
        _progress(f"reference: {FLAGS.num_real} real renders in {t_real:.1f}s")
    record: dict = {"argv": sys.argv, "flags": cli_flags.flag_values(sys.argv[0]), "world": world.name,
                    "config": cfg, "sampler": sampler, "options": cli_flags.options_dict(options),
                    "num_samples": n, "num_real": FLAGS.num_real if real is not None else 0, "tol": FLAGS.tol}

    if sweep_cfg is not None:
        n_sweep = FLAGS.num_samples or int(sweep_cfg.get("num_samples", 256))
        _progress(f"sweep {FLAGS.sweep}: {len(settings)} settings x {n_sweep} samples")
        rows = sweeps.run_sweep(
            world, settings, num_samples=n_sweep, seed=FLAGS.seed, tol=FLAGS.tol,
            extra_metrics=lambda row, z, ok, z0: evaluation.sweep_row_metrics(
                world, row, z, ok, z0, real_features=real, real_labels=real_labels, tol=FLAGS.tol),
            progress=lambda r: _progress(f"{r['setting'].get('label', '')} {r['setting']['expr']!r}: judge accuracy "
                                         f"{r['metrics']['judge_accuracy']:.3f} (base "
                                         f"{r['metrics']['judge_base_rate']:.3f}) nfe {r['nfe']} "
                                         f"time {r['time_s']:.2f}s"))
        record.update(sweep=FLAGS.sweep, sweep_config=sweep_cfg, rows=rows)
        table = evaluation.markdown(evaluation.flat_sweep_rows(rows))
    elif edits:
        cache: dict = {}
        z0, steps = workflow.sequential_edit(
            world, edits, num_samples=n, seed=FLAGS.seed, sampler=sampler, options=options, chunk_size=chunk,
            out_dir=out_dir / "edits", reg_z=FLAGS.reg_z, reg_logits=FLAGS.reg_logits, cache=cache,
            progress=lambda k, p: _progress(f"edit {k + 1}/{len(edits)} ({edits[k]}): {p.line()}"))
        rows = evaluation.edit_metrics(world, z0, steps, tol=FLAGS.tol)
        record.update(edits=edits, rows=rows, reg_z=FLAGS.reg_z, reg_logits=FLAGS.reg_logits,
                      failed_indices=[s.result.failed_indices.tolist() for s in steps])
        table = evaluation.markdown(rows)
    else:
        cache = {}
        rows = []
        for k, expr in enumerate(conds):
            seed = FLAGS.seed + k
            try:
                res, t = evaluation.timed(lambda: workflow.sample_condition(
                    world, expr, num_samples=n, seed=seed, sampler=sampler, options=options, chunk_size=chunk,
                    out_dir=out_dir / "conditions" / f"{k:02d}", cache=cache,
                    progress=lambda p: _progress(f"condition {k + 1}/{len(conds)} {expr!r}: {p.line()}")))
            except chunks.BatchError as err:
                raise cli.UserError(f"{err} (use another --out_dir)") from None
            if not res.success.any():
                raise cli.UserError(f"every sample of {expr!r} failed ({sampler}); see --max_steps, --rtol/--atol")
            row = evaluation.condition_metrics(world, expr, res, seed=seed, real_features=real, tol=FLAGS.tol,
                                               time_s=t, real_labels=real_labels)
            row["failed_indices"] = res.failed_indices.tolist()
            _progress(f"{expr!r}: accuracy {row['accuracy']:.3f} vs unconditional {row['base_rate']:.3f}"
                      + (f", FD matched {row['fd_matched']:.2f} (all real {row['fd']:.2f})" if "fd" in row else "")
                      + f", NFE {row.get('nfe', 0):.1f}")
            rows.append(row)
        record["rows"] = rows
        table = evaluation.markdown([{k: v for k, v in r.items() if k != "failed_indices"} for r in rows])
    record["time_s"] = time.time() - t_start
    record["environment"] = records.environment()
    tmp = out_dir / "results.md.tmp"
    tmp.write_text(table)
    tmp.replace(out_dir / "results.md")
    records.write_json(out_dir / "results.json", record)      # last: its presence marks a complete run
    print(table, flush=True)
    _progress(f"wrote {out_dir}/results.json and results.md ({time.time() - t_start:.1f}s)")


if __name__ == "__main__":
    cli.run(main)
