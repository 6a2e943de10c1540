"""What a sampling run is asked for: `Request` (the CLIs build it from their flags, a script builds it directly)
and the checks that turn it into settings for a world, raising `RequestError` (the CLIs: exit code 2) with a
one-line reason before any work is done."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

from lace_jax import samplers


class RequestError(ValueError):
    """A problem with what was asked (conditions, settings, files): one line, reported before any work."""


@dataclasses.dataclass(frozen=True)
class Request:
    """A sampling run's request. `options`: `SamplerOptions` fields set explicitly (the rest come from the world's
    config); `exprs`: conditions (expressions); `edits`: sequential `name=value` edits; `sweep`: a sweep config
    name; `attrs`: `name=value` conditions AND-ed into one more condition (`expressions`). `record` is merged into the run's record.json (e.g. argv and flags); `progress` receives progress lines."""
    out_dir: Path = Path("out/sample")
    exprs: tuple = ()
    attrs: tuple = ()
    edits: tuple = ()
    sweep: Optional[str] = None
    sampler: Optional[str] = None
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    num_samples: Optional[int] = None
    chunk_size: Optional[int] = None
    seed: int = 0
    checkpoint_dir: Optional[str] = None
    config_name: str = "shapes"
    reg_z: float = 0.04
    reg_logits: float = 0.01
    grid_columns: int = 8
    save_images: bool = True
    fresh: bool = False
    record: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    progress: Callable[[str], None] = print


def expressions(request: Request) -> list[str]:
    """The request's conditions: each of `exprs`, plus one AND of all `attrs`."""
    for a in request.attrs:
        if "=" not in a:
            raise RequestError(f"--attr {a!r} is not of the form name=value")
    out = list(request.exprs)
    if request.attrs:
        out.append(" & ".join(f"({a})" for a in request.attrs) if len(request.attrs) > 1 else request.attrs[0])
    return out


def conditions(world: Any, exprs: Iterable[str]) -> list[str]:
    """`exprs`, or the world config's `conditions` (else its `expr`); every one parsed here, so a bad one stops the
    run before any work."""
    out = list(exprs) or list(world.config.get("conditions") or [world.expr])
    for expr in out:
        try:
            world.parse(expr)
        except ValueError as err:
            raise RequestError(str(err)) from None
    return out


def edits(world: Any, specs: Iterable[str]) -> list[str]:
    """The edit steps, each checked to be one name=value condition."""
    from lace_jax.runs import workflow

    specs = list(specs)
    for e in specs:
        try:
            workflow.parse_edit(world, e)
        except ValueError as err:
            raise RequestError(f"--edit: {err}") from None
    return specs


def sampler_name(world: Any, request: Request) -> str:
    return request.sampler or str(world.sampler.get("name", "ode"))


def sampler_options(world: Any, sampler: str, overrides: Mapping[str, Any]) -> samplers.SamplerOptions:
    """`SamplerOptions` from the world's defaults (LACE's SGLD settings for Langevin/MCMC, ode_tc's own defaults
    for ode_tc), overridden by `overrides`; settings that cannot work are a RequestError."""
    over = {k: v for k, v in overrides.items() if v is not None}
    if sampler in samplers.LANGEVIN:
        for k in ("num_steps", "step_size", "noise_scale"):
            if k in world.sgld and k not in over:
                over[k] = world.sgld[k]
    if sampler == "ode_tc":
        for k, v in samplers.TC_DEFAULTS.items():      # unset ones from ode_tc's defaults, not the world's ode ones
            over.setdefault(k, v)
    opts = world.sampler_options(**over)
    if sampler == "ode" and opts.solver not in samplers.ODE_SOLVERS:
        raise RequestError(f"--solver {opts.solver} is for --sampler ode_tc (the time-changed flow); the "
                           f"t-parameterised ode sampler takes {', '.join(samplers.ODE_SOLVERS)}")
    if sampler == "ode_tc" and opts.solver in ("euler", "heun") and opts.num_steps is None:
        raise RequestError(f"--sampler ode_tc --solver {opts.solver} needs --num_steps (fixed steps in s)")
    if opts.rtol is not None and opts.rtol <= 0 or opts.atol is not None and opts.atol <= 0:
        raise RequestError(f"--rtol/--atol must be > 0, got {opts.rtol}/{opts.atol}")
    if opts.num_steps is not None and opts.num_steps < 1:
        raise RequestError(f"--num_steps must be >= 1, got {opts.num_steps}")
    if sampler == "sde" and (opts.num_steps or 100) < 20:
        raise RequestError(f"--sampler sde needs --num_steps >= 20 (β_max = 20: the per-step β/N must not exceed "
                           f"1), got {opts.num_steps}")
    if not 0.0 <= float(opts.t_end) < 1.0:
        raise RequestError(f"--t_end must be in [0, 1), got {opts.t_end}")
    return opts


def num_samples(world: Any, request: Request, default: int = 64) -> int:
    n = request.num_samples if request.num_samples is not None else int(
        world.config.get("samples_per_condition", default))
    if n < 1:
        raise RequestError(f"--num_samples must be >= 1, got {n}")
    return n


def chunk_size(world: Any, request: Request) -> int:
    c = request.chunk_size if request.chunk_size is not None else int(world.config.get("chunk_size", 256))
    if c < 1:
        raise RequestError(f"--chunk_size must be >= 1, got {c}")
    return c


def load_world(config: Mapping[str, Any], name: str = "") -> Any:
    """The world of a config (`name`: how the user named it); missing checkpoints and bad configs become
    RequestErrors."""
    from lace_jax import worlds

    try:
        return worlds.world_from_config(dict(config))
    except worlds.MissingCheckpointError as err:
        raise RequestError(str(err).replace("\n", " ")) from None
    except (ValueError, KeyError) as err:
        raise RequestError(f"config {name or config.get('world')}: {err}") from None


__all__ = ["Request", "RequestError", "expressions", "conditions", "edits", "sampler_name", "sampler_options", "num_samples",
           "chunk_size", "load_world"]
