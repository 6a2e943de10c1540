"""Flags shared by `sample.py` and `evaluate.py`: the world, the conditions, the sampler and its settings.

`define()` registers them (call once, at import of a CLI script); `world_config()`, `conditions()`, `edits()`
and `sampler_options(world)` turn the parsed flags into library objects, raising `cli.UserError` with a one-line
reason on bad input. Sampler flags left unset take the world config's defaults (LACE's settings), so
`--config cifar10` gets dopri5 with rtol = atol = 1e-3 and t_end = 0 and `--config ffhq` t_end = 1e-3.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

from absl import flags

from lace_jax import samplers
from lace_jax.cli import UserError

FLAGS = flags.FLAGS


def define() -> None:
    """Register the shared flags on absl's global FLAGS."""
    flags.DEFINE_string("config", "shapes", "world config: shapes (the shipped default model), toy2d, cifar10, "
                        "ffhq, afhq_cat, metfaces, or a path to a config file")
    flags.DEFINE_string("checkpoint_dir", None, "folder of your converted checkpoints (LACE worlds) or of a "
                        "default-model directory (shapes); overrides the config's checkpoint_dir / model_dir")
    flags.DEFINE_multi_string("set", [], "config override key=value (repeatable), e.g. --set truncation_psi=0.7 "
                              "--set classifier_space=z")
    flags.DEFINE_multi_string("expr", [], "a condition as an expression, e.g. \"shape=circle & !background=white "
                              "| size=0.2\" (precedence ! > & > |); repeat for several conditions")
    flags.DEFINE_multi_string("attr", [], "attribute condition name=value (repeatable; all --attr are AND-ed into "
                              "one condition)")
    flags.DEFINE_multi_string("edit", [], "sequential editing: one name=value per flag, applied in order to the "
                              "same latents (LACE's anchors keep identity and earlier edits)")
    flags.DEFINE_float("reg_z", 0.04, "sequential editing: weight of ‖w − w_prev‖² + ‖z − z_prev‖² (LACE 0.04)")
    flags.DEFINE_float("reg_logits", 0.01, "sequential editing: weight of the unedited attributes' logit "
                       "distance to the previous step (LACE 0.01)")
    flags.DEFINE_enum("sampler", None, list(samplers.NAMES), "sampler (default: the config's, LACE's PF-ODE); ode_tc: the same "
                      "PF-ODE through the time change s(t), adaptive Bosh3 at 3e-3 unless --solver/--rtol/--atol "
                      "say otherwise (≈ 2.7x fewer evaluations on the shapes model at the same judge accuracy)")
    flags.DEFINE_enum("solver", None, list(samplers.TC_SOLVERS), "ODE solver (ode: "
                      f"{', '.join(samplers.ODE_SOLVERS)}; ode_tc: all)")
    flags.DEFINE_float("rtol", None, "ODE relative tolerance (adaptive solvers; LACE 1e-3)")
    flags.DEFINE_float("atol", None, "ODE absolute tolerance (adaptive solvers; LACE 1e-3)")
    flags.DEFINE_integer("num_steps", None, "fixed-step ODE steps (euler/heun, default 100), or Langevin/MCMC/SDE "
                         "steps (default 100)")
    flags.DEFINE_float("t_end", None, "ODE end time (LACE: 0 for CIFAR-10, 1e-3 for FFHQ)")
    flags.DEFINE_enum("batch_mode", None, ["independent", "joint"], "ODE batch mode: independent (per-sample "
                      "step sizes) or joint (one step size per chunk, as torchdiffeq)")
    flags.DEFINE_integer("max_steps", None, "ODE step limit per solve (a solve that needs more fails)")
    flags.DEFINE_float("step_size", None, "Langevin/MCMC step size η (LACE SGLD 0.01)")
    flags.DEFINE_float("noise_scale", None, "SGLD noise scale s (independent of η, as LACE; 0.01)")
    flags.DEFINE_integer("num_leapfrog", None, "HMC/U-HMC leapfrog steps (3)")
    flags.DEFINE_float("damping", None, "U-HMC damping (0.5)")
    flags.DEFINE_float("snr", None, "VP-SDE corrector signal-to-noise ratio (0.16)")
    flags.DEFINE_integer("corrector_steps", None, "VP-SDE corrector steps per predictor step (1)")
    flags.DEFINE_integer("num_samples", None, "samples per condition (default: the config's)")
    flags.DEFINE_integer("chunk_size", None, "samples per jitted chunk (memory bound; default: the config's)")
    flags.DEFINE_integer("seed", 0, "PRNG seed (sample i uses fold_in(PRNGKey(seed), i))")
    flags.DEFINE_string("sweep", None, "run a sweep config (e.g. sweep_robustness, sweep_composition) instead of "
                        "single conditions")


_OPTION_FLAGS = ("solver", "rtol", "atol", "num_steps", "t_end", "batch_mode", "max_steps", "step_size",
                 "noise_scale", "num_leapfrog", "damping", "snr", "corrector_steps")


def world_config() -> dict:
    """The world config named by --config with --checkpoint_dir and --set applied."""
    from lace_jax.config import apply_overrides, load_config

    try:
        cfg = load_config(FLAGS.config)
    except (ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    if FLAGS.checkpoint_dir:
        cfg["model_dir" if cfg.get("world") == "shapes" else "checkpoint_dir"] = FLAGS.checkpoint_dir
    try:
        return apply_overrides(cfg, FLAGS.set)
    except (KeyError, ValueError) as err:
        raise UserError(f"--set: {err}") from None


def load_world(cfg: dict) -> Any:
    """The world of a config; missing checkpoints and bad configs become UserErrors."""
    from lace_jax import worlds

    try:
        return worlds.world_from_config(cfg)
    except worlds.MissingCheckpointError as err:
        raise UserError(str(err).replace("\n", " ")) from None
    except (ValueError, KeyError) as err:
        raise UserError(f"config {FLAGS.config}: {err}") from None


def conditions(world: Any) -> list[str]:
    """The conditions to sample: each --expr, plus one AND of all --attr; none given → the config's list
    (`conditions`, else its `expr`). Every one is parsed here, so a bad one stops the run before any work."""
    from lace_jax import energy

    for a in FLAGS.attr:
        if "=" not in a:
            raise UserError(f"--attr {a!r} is not of the form name=value")
    out = list(FLAGS.expr)
    if FLAGS.attr:
        out.append(" & ".join(f"({a})" for a in FLAGS.attr) if len(FLAGS.attr) > 1 else FLAGS.attr[0])
    if not out:
        out = list(world.config.get("conditions") or [world.expr])
    for expr in out:
        try:
            world.parse(expr)
        except ValueError as err:
            raise UserError(str(err)) from None
    return out


def edits(world: Any) -> list[str]:
    """The --edit steps, each checked to be one name=value condition."""
    from lace_jax.runs import workflow

    for e in FLAGS.edit:
        try:
            workflow.parse_edit(world, e)
        except ValueError as err:
            raise UserError(f"--edit: {err}") from None
    return list(FLAGS.edit)


def sampler_name(world: Any) -> str:
    return FLAGS.sampler or str(world.sampler.get("name", "ode"))


def sampler_options(world: Any, sampler: str) -> Any:
    """`SamplerOptions` from the world's defaults (LACE's SGLD settings for sgld), overridden by set flags."""
    over = {f: getattr(FLAGS, f) for f in _OPTION_FLAGS if getattr(FLAGS, f) is not None}
    if sampler in samplers.LANGEVIN:
        for k in ("num_steps", "step_size", "noise_scale"):
            if k in world.sgld and k not in over:
                over[k] = world.sgld[k]
    if sampler == "ode_tc":
        for k, v in samplers.TC_DEFAULTS.items():      # unset ones from ode_tc's defaults, not from the world's ode settings
            over.setdefault(k, v)
    opts = world.sampler_options(**over)
    if sampler == "ode" and opts.solver not in samplers.ODE_SOLVERS:
        raise UserError(f"--solver {opts.solver} is for --sampler ode_tc (the time-changed flow); the "
                        f"t-parameterised ode sampler takes {', '.join(samplers.ODE_SOLVERS)}")
    if sampler == "ode_tc" and opts.solver in ("euler", "heun") and opts.num_steps is None:
        raise UserError(f"--sampler ode_tc --solver {opts.solver} needs --num_steps (fixed steps in s)")
    if opts.rtol is not None and opts.rtol <= 0 or opts.atol is not None and opts.atol <= 0:
        raise UserError(f"--rtol/--atol must be > 0, got {opts.rtol}/{opts.atol}")
    if opts.num_steps is not None and opts.num_steps < 1:
        raise UserError(f"--num_steps must be >= 1, got {opts.num_steps}")
    if sampler == "sde" and (opts.num_steps or 100) < 20:
        raise UserError(f"--sampler sde needs --num_steps >= 20 (β_max = 20: the per-step β/N must not exceed 1), "
                        f"got {opts.num_steps}")
    if not 0.0 <= float(opts.t_end) < 1.0:
        raise UserError(f"--t_end must be in [0, 1), got {opts.t_end}")
    return opts


def num_samples(world: Any, default: int = 64) -> int:
    n = FLAGS.num_samples if FLAGS.num_samples is not None else int(world.config.get("samples_per_condition",
                                                                                        default))
    if n < 1:
        raise UserError(f"--num_samples must be >= 1, got {n}")
    return n


def chunk_size(world: Any) -> int:
    c = FLAGS.chunk_size if FLAGS.chunk_size is not None else int(world.config.get("chunk_size", 256))
    if c < 1:
        raise UserError(f"--chunk_size must be >= 1, got {c}")
    return c


def flag_values(module_name: str) -> dict:
    """{flag: value} of every flag defined here or in the calling script (for the JSON record)."""
    out = {}
    for mod in (__name__, module_name):
        for f in FLAGS.get_flags_for_module(mod) if mod in FLAGS.flags_by_module_dict() else []:
            out[f.name] = f.value
    return out


def options_dict(options: Any) -> dict:
    return dataclasses.asdict(options)


def prepare_out_dir(out_dir: Path, stale: Iterable[str]) -> None:
    """Create `out_dir`, check it is writable (else a UserError), and delete the outputs of an earlier run
    (`stale`: names or glob patterns) so that a folder never looks complete when this run is not."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to --out_dir {out_dir}: {err.strerror or err}") from None
    for pattern in stale:
        for path in out_dir.glob(pattern):
            if path.is_file():
                path.unlink()
