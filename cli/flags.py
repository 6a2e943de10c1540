"""Flags shared by `sample.py` and `evaluate.py`: the world, the conditions, the sampler and its settings.

`define()` registers them (call once, at import of a CLI script); `world_config()` and `request()` turn the parsed
flags into a config dict and a `lace_jax.runs.Request`, which the library checks (`lace_jax.runs.request`).
Sampler flags left unset take the world config's defaults (LACE's settings), so `--config cifar10` gets dopri5
with rtol = atol = 1e-3 and t_end = 0 and `--config ffhq` t_end = 1e-3.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from absl import flags

from cli import UserError
from lace_jax import samplers

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
                      "say otherwise (fewer evaluations at the same accuracy; docs/performance.md)")
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
    define_compilation_cache()


def define_compilation_cache() -> None:
    """`--[no]compilation_cache`, read by `cli.run`: keep compiled programs in `$LACE_JAX_CACHE_DIR` (default
    `$XDG_CACHE_HOME/lace_jax/jax` or `~/.cache/lace_jax/jax`) so a second run with the same settings compiles
    nothing."""
    flags.DEFINE_bool("compilation_cache", True, "keep compiled programs on disk ($LACE_JAX_CACHE_DIR, default "
                      "~/.cache/lace_jax/jax) and reuse them: a repeated run compiles nothing")


OPTION_FLAGS = ("solver", "rtol", "atol", "num_steps", "t_end", "batch_mode", "max_steps", "step_size",
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


def request(out_dir: str, script: str, progress, **extra) -> Any:
    """The `lace_jax.runs.Request` the shared flags describe (the record gets argv and every flag's value)."""
    from lace_jax.runs.request import Request

    return Request(out_dir=Path(out_dir), exprs=tuple(FLAGS.expr), attrs=tuple(FLAGS.attr), edits=tuple(FLAGS.edit),
                   sweep=FLAGS.sweep, sampler=FLAGS.sampler,
                   options={f: getattr(FLAGS, f) for f in OPTION_FLAGS if getattr(FLAGS, f) is not None},
                   num_samples=FLAGS.num_samples, chunk_size=FLAGS.chunk_size, seed=FLAGS.seed,
                   checkpoint_dir=FLAGS.checkpoint_dir, config_name=FLAGS.config, reg_z=FLAGS.reg_z,
                   reg_logits=FLAGS.reg_logits, progress=progress,
                   record={"argv": sys.argv, "flags": flag_values(script)}, **extra)


def flag_values(module_name: str) -> dict:
    """{flag: value} of every flag defined here or in the calling script (for the JSON record)."""
    out = {}
    for mod in (__name__, module_name):
        for f in FLAGS.get_flags_for_module(mod) if mod in FLAGS.flags_by_module_dict() else []:
            out[f.name] = f.value
    return out
