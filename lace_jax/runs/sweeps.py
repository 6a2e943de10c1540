"""Sweeps: a grid of sampler settings run in one process, compiling once per static structure.

    settings = sweeps.settings_from_config(load_config("sweep_robustness"), world.name)
    rows = sweeps.run_sweep(world, settings, num_samples=512, seed=0)
    sweeps.write(rows, "out/sweep")          # rows.json + table.md;  print(sweeps.to_markdown(rows))

Compilation: `Runner` keeps one compiled executable per (sampler, static options, energy structure, shapes). Static
options are the ones that fix the program (sampler, solver, num_steps, batch_mode, t_end, max_steps, num_leapfrog,
corrector_steps, compat flag); the values in `TRACED_OPTIONS` (rtol, atol, step_size, noise_scale, damping) are
passed as traced scalars, and so are the energy's leaves (attribute targets, weights, temperatures), the initial
latents and the key. So a tolerance sweep of dopri5, a step-size sweep of SGLD, new seeds and new attribute values of
the same expression structure all reuse one executable. (`ode.sample_ode` documents rtol/atol as static, but it only
does arithmetic with them — Diffrax's `PIDController` and the compat controller accept traced values; a test checks
the numbers are identical to the static path.) `Runner.compiles`/`Runner.traces` count compilations.

Settings: `expand(grid)` turns blocks such as `{"sampler": "ode", "solver": "dopri5", "rtol+atol": [1e-1, 1e-3]}` into
a list of flat dicts: lists are crossed, keys joined with '+' are tied (each value sets every named field), a
`label` names the block. A setting holds `sampler`, `expr`, `seed` (added to the sweep seed) and any
`SamplerOptions` field; fields it does not give come from the world's defaults (t_end included).

Metrics per row (all samples start from the same N(0, I) latents for a given seed, so rows compare like with like):
`accuracy` — the fraction of all samples that succeeded AND satisfy the expression by the world's classifiers
(discrete: argmax == target; continuous: |f − y| < tol; `&`, `|`, `!` as Boolean logic); `base_rate` — the same
on the initial latents (the unconditional rate); `num_failed`; per atom `sat[name=value]`; `nfe` (mean);
`time_s` (execution, compilation excluded) and `compile_s`.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lace_jax import energy as en
from lace_jax import expressions
from lace_jax import records
from lace_jax import samplers

TRACED_OPTIONS = ("rtol", "atol", "step_size", "noise_scale", "damping")
SETTING_KEYS = ("label", "sampler", "expr", "seed")


# --------------------------------------------------------------------------------------------------------------
# Grids

def expand(grid: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Blocks → flat settings (lists crossed in key order, 'a+b' keys tied)."""
    out = []
    for block in grid:
        keys = list(block)
        values = [v if isinstance(v, (list, tuple)) else [v] for v in block.values()]
        for combo in itertools.product(*values):
            setting: dict = {}
            for k, v in zip(keys, combo):
                for field in k.split("+"):
                    setting[field.strip()] = v
            out.append(setting)
    return out


def settings_from_config(config: Mapping[str, Any], world_name: str) -> list[dict]:
    """The settings of a sweep config (`configs/sweep_*.py`) for a world: `expand(config['grid'])`, each crossed
    with the world's expressions (`config['expressions'][world_name]`) unless the block names its own `expr`."""
    exprs = dict(config.get("expressions", {}))
    if world_name not in exprs or not exprs[world_name]:
        known = ", ".join(k for k, v in exprs.items() if v) or "none"
        raise ValueError(f"sweep config has no expressions for world {world_name!r} (it has: {known})")
    world_exprs = exprs[world_name]
    world_exprs = [world_exprs] if isinstance(world_exprs, str) else list(world_exprs)
    out = []
    for s in expand(config["grid"]):
        if "expr" in s:
            out.append(s)
        else:
            out.extend({**s, "expr": e} for e in world_exprs)
    return out


# --------------------------------------------------------------------------------------------------------------
# Compile-once runner

class Runner:
    """`runner(sampler, cond_energy, z0, key, options) -> SampleOutput`, compiled once per static structure."""

    def __init__(self):
        self._cache: dict = {}
        self.compiles = 0       # executables built
        self.traces = 0         # Python traces of the sampler (== compiles unless JAX retraces)
        self.compile_s = 0.0

    def _fn(self, sampler, static, cond, z0, key, traced):
        self.traces += 1
        return samplers.run(key, sampler, cond, z0, dataclasses.replace(static, **traced))

    @staticmethod
    def split(options: samplers.SamplerOptions) -> tuple[samplers.SamplerOptions, dict]:
        """(static options with the traced fields blanked, {field: float32 scalar})."""
        static = dataclasses.replace(options, **{f: None for f in TRACED_OPTIONS})
        traced = {f: jnp.float32(getattr(options, f)) for f in TRACED_OPTIONS}
        return static, traced

    def __call__(self, sampler: str, cond: Any, z0: jax.Array, key: jax.Array,
                 options: samplers.SamplerOptions) -> tuple[samplers.SampleOutput, float, float]:
        """Run; returns (output, compile seconds spent on this call (0 when reused), execution seconds)."""
        static, traced = self.split(options)
        args = (cond, z0, key, traced)
        leaves, treedef = jax.tree_util.tree_flatten(args)
        sig = (sampler, static, treedef, tuple((np.shape(l), jnp.result_type(l).name) for l in leaves))
        exe = self._cache.get(sig)
        spent = 0.0
        if exe is None:
            t0 = time.perf_counter()
            exe = jax.jit(self._fn, static_argnums=(0, 1)).lower(sampler, static, *args).compile()
            spent = time.perf_counter() - t0
            self._cache[sig] = exe
            self.compiles += 1
            self.compile_s += spent
        t0 = time.perf_counter()
        out = jax.block_until_ready(exe(*args))
        return out, spent, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------------------
# Success of an expression, by the classifiers (the Boolean reading of `lace_jax.expressions`)

def atom_satisfied(attribute: en.Attribute, value, z: jax.Array, tol: float = 0.1) -> np.ndarray:
    """bool[B]: discrete argmax(logits) == value; continuous |f − value| < tol (NaN rows: False)."""
    out = np.asarray(jax.vmap(attribute.fn)(jnp.asarray(z)))
    finite = np.all(np.isfinite(np.asarray(z)), axis=-1)
    if attribute.kind == en.DISCRETE:
        sat = np.argmax(np.nan_to_num(out, nan=-np.inf), axis=-1) == int(value)
    else:
        sat = np.abs(out.reshape(out.shape[0], -1)[:, 0] - float(value)) < tol
    return sat & finite


def expression_satisfied(expr: str, attributes: Mapping[str, en.Attribute], z, tol: float = 0.1,
                         ) -> tuple[np.ndarray, dict]:
    """(bool[B] whether each latent satisfies `expr` by the classifiers, {"name=value": bool[B]} per atom)."""
    return expressions.satisfied(expressions.parse(expr, attributes), attributes,
                                 lambda n, v: atom_satisfied(attributes[n], v, z, tol))


# --------------------------------------------------------------------------------------------------------------
# Running a sweep

def run_sweep(world: Any, settings: Sequence[Mapping[str, Any]], *, num_samples: int, seed: int = 0,
              tol: float = 0.1, runner: Optional[Runner] = None,
              progress: Optional[Callable[[dict], None]] = None,
              extra_metrics: Optional[Callable[[dict, np.ndarray, np.ndarray, np.ndarray], dict]] = None,
              ) -> list[dict]:
    """Run every setting on `world` (a `worlds.World`); returns one row per setting (see the module docstring).
    `extra_metrics(row, z, success, z0) -> dict` adds metrics to each row (e.g. `evaluation.sweep_row_metrics`:
    accuracy by an image judge and a Fréchet distance)."""
    runner = runner or Runner()
    fields = {f.name for f in dataclasses.fields(samplers.SamplerOptions)}
    rows = []
    for setting in settings:
        unknown = set(setting) - fields - set(SETTING_KEYS)
        if unknown:
            raise ValueError(f"sweep setting {dict(setting)} has unknown fields {sorted(unknown)}")
        sampler = setting.get("sampler", world.sampler.get("name", "ode"))
        expr = setting.get("expr") or world.expr
        options = world.sampler_options(**{k: v for k, v in setting.items() if k in fields})
        cond = world.parse(expr)
        k_init, k_run = jax.random.split(jax.random.PRNGKey(int(seed) + int(setting.get("seed", 0))))
        z0 = jax.random.normal(k_init, (int(num_samples), int(world.latent_dim)), jnp.float32)
        out, compile_s, time_s = runner(sampler, cond, z0, k_run, options)
        z = np.asarray(out.z)
        success = np.asarray(out.success)
        sat, per_atom = expression_satisfied(expr, world.attributes, z, tol)
        base, _ = expression_satisfied(expr, world.attributes, np.asarray(z0), tol)
        nfe = out.stats.get("nfe")
        row = {
            "setting": {"sampler": sampler, "expr": expr, **{k: v for k, v in setting.items()
                                                             if k not in ("sampler", "expr")}},
            "metrics": {"accuracy": float(np.mean(sat & success)), "base_rate": float(np.mean(base)),
                        "num_failed": int((~success).sum()),
                        **{f"sat[{k}]": float(np.mean(v & success)) for k, v in per_atom.items()}},
            "nfe": None if nfe is None else float(np.mean(np.asarray(nfe))),
            "time_s": time_s, "compile_s": compile_s, "num_samples": int(num_samples),
        }
        if extra_metrics is not None:
            row["metrics"].update(extra_metrics(row, z, success, np.asarray(z0)))
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows


# --------------------------------------------------------------------------------------------------------------
# Output

def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: one column per setting field (union, in order of appearance), the metrics, NFE, time."""
    s_cols: list[str] = []
    m_cols: list[str] = []
    for r in rows:
        s_cols += [k for k in r["setting"] if k not in s_cols]
        m_cols += [k for k in r["metrics"] if k not in m_cols]
    flat = [{**{k: r["setting"].get(k) for k in s_cols}, **{k: r["metrics"].get(k) for k in m_cols},
             "nfe": r.get("nfe"), "time_s": r.get("time_s"), "compile_s": r.get("compile_s")} for r in rows]
    return records.markdown_table(flat, s_cols + m_cols + ["nfe", "time_s", "compile_s"])


def write(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """`out_dir/rows.json` (rows + `extra`, e.g. the config and environment) and `out_dir/table.md`, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records.write_json(out / "rows.json", {"rows": list(rows), **dict(extra or {})})
    records.write_text(out / "table.md", to_markdown(rows))
    return out


__all__ = ["TRACED_OPTIONS", "expand", "settings_from_config", "Runner",
           "atom_satisfied", "expression_satisfied", "run_sweep", "to_markdown", "write"]
