"""Directions for a shapes-world generator's continuous factors, end to end: find, anchor, save, load, edit.

This is what `python train.py --config directions_shapes` and `python sample.py --config directions_shapes` run
(the comparison of methods is `experiments/directions_shapes.py`). For each factor (x, y, size, hue) and its image
transformation (translate_x, translate_y, zoom, hue):

1. trajectories by inversion with the configured loss (Fourier low-pass by default, Plumerault et al.), the last
   decile of reconstruction errors dropped, and the monotone law t = g(⟨z, u⟩) fitted (`find_direction`);
2. g anchored to absolute factor values with the judge's readings of fresh samples (`anchor`: trajectories only
   give amounts relative to a start);
3. saved as a `lace_jax.checkpoint` of kind ``directions`` that also records which generator it belongs to (a
   direction is only meaningful for the generator it was found in).

Values are in the judge's units ([0, 1], as `--attr x=0.8`); `evaluation.shapes_amount` converts them to the
transformation's units in which g is fitted.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lace_jax.directions import evaluation as ev
from lace_jax.directions.fitting import Direction, calibrate, edit_to, factor_range, fit_monotone
from lace_jax.directions.trajectories import build_trajectories, error_filter, paper_deltas
from lace_jax.directions.transforms import get_transform

CHECKPOINT_KIND = "directions"
TRANSFORM_ORDER = ("x", "y", "zoom", "hue")


def _switch_transform(index, images, delta):
    branches = [get_transform(n) for n in TRANSFORM_ORDER]
    return jax.lax.switch(index, branches, images, delta)


def transform_for(factor: str) -> jax.tree_util.Partial:
    """The transformation of a shapes factor, chosen by a traced index: one compiled inversion serves every
    factor (the transformation is an argument of the jitted trajectory builder, not a new function each time)."""
    if factor not in ev.SHAPES_TRANSFORMS:
        raise ValueError(f"no image transformation for factor {factor!r}; known: {sorted(ev.SHAPES_TRANSFORMS)}")
    return jax.tree_util.Partial(_switch_transform,
                                 jnp.asarray(TRANSFORM_ORDER.index(ev.SHAPES_TRANSFORMS[factor]), jnp.int32))


def _render(render, z):
    return render(z)


def generator_fn(world: Any) -> jax.tree_util.Partial:
    """The world's renderer as a pytree callable z[B, D] -> images (an argument of jitted code, not a constant)."""
    return jax.tree_util.Partial(_render, world.render)


def find_direction(generate: Callable, transform: Callable, key: jax.Array, latent_dim: int, max_delta: float,
                   traj: Mapping[str, Any], loss: str = "fourier") -> tuple[Direction, dict]:
    """Steps I–II of Plumerault et al. for one transformation: `traj['num_starts']` latents, two legs of
    `traj['amounts_per_leg']` amounts up to ±`max_delta`, inversion with `loss`, the worst (1 − keep) errors
    dropped, monotone fit. Returns the direction (g in the transformation's units, relative to the starts) and
    diagnostics (inversion errors, fit residual, seconds)."""
    t0 = time.time()
    z0 = jax.random.normal(key, (int(traj["num_starts"]), int(latent_dim)), jnp.float32)
    deltas = paper_deltas(float(max_delta), int(traj["amounts_per_leg"]))
    tr = build_trajectories(generate, transform, z0, deltas, steps=int(traj["steps"]),
                            learning_rate=float(traj["learning_rate"]), loss=loss, sigma=float(traj["sigma"]),
                            constraint=str(traj["constraint"]))
    z0s, zs, delta, err = tr.pairs()
    keep = error_filter(err, keep=float(traj["keep"]))
    fit = fit_monotone(z0s, zs, delta, keep, steps=int(traj["fit_steps"]))
    jax.block_until_ready(fit.direction.u)
    err_np = np.asarray(err)
    diag = {"seconds": time.time() - t0, "num_points": int(err_np.size), "kept": int(np.sum(keep)),
            "inversion_error_median": float(np.median(err_np)),
            "inversion_error_p90": float(np.quantile(err_np, 0.9)),
            "fit_residual_rms": float(fit.residual),
            "latent_step_norm_median": float(np.median(np.linalg.norm(np.asarray(zs - z0s), axis=1)))}
    return fit.direction, diag


def anchor(direction: Direction, factor: str, z_ref: np.ndarray, judged: np.ndarray) -> Direction:
    """Shift g so that it predicts, on average, the judge's reading `judged[N]` (judge units) of `z_ref[N, D]`."""
    return calibrate(direction, jnp.asarray(z_ref), jnp.asarray(ev.shapes_amount(factor, judged), jnp.float32))


def reachable(direction: Direction, factor: str) -> tuple[float, float]:
    """The factor values (judge units) the direction's g spans."""
    lo, hi = factor_range(direction)
    return float(ev.shapes_value(factor, float(lo))), float(ev.shapes_value(factor, float(hi)))


def edit(z: np.ndarray | jax.Array, directions: Mapping[str, Direction],
         edits: Sequence[tuple[str, float]]) -> list[np.ndarray]:
    """Apply `edits` [(factor, value in judge units), …] one after another to latents z[N, D] along the found
    directions; returns the latents after each edit (values outside the direction's range are clamped to it)."""
    out, cur = [], jnp.asarray(z, jnp.float32)
    for factor, value in edits:
        if factor not in directions:
            raise ValueError(f"no direction for {factor!r}; found: {', '.join(directions)}")
        cur = edit_to(cur, directions[factor], float(ev.shapes_amount(factor, float(value))))
        out.append(np.asarray(cur))
    return out


def fit_world(world: Any, config: Mapping[str, Any], key: jax.Array,
              log: Callable[[str], None] = print) -> tuple[dict[str, Direction], dict]:
    """Find and anchor a direction for every `config['factors']` entry of a shapes world (its renderer and
    judge). Returns ({factor: Direction}, {factor: diagnostics incl. the reachable value range})."""
    from lace_jax.runs import workflow

    gen = generator_fn(world)
    loss = str(config.get("loss", "fourier"))
    k_dirs, k_cal = jax.random.split(key)
    z_cal = np.asarray(jax.random.normal(k_cal, (int(config["num_calibrate"]), world.latent_dim), jnp.float32))
    cal, _ = workflow.judge(world, workflow.render(world, z_cal))
    found, diags = {}, {}
    for i, factor in enumerate(config["factors"]):
        d, diag = find_direction(gen, transform_for(factor), jax.random.fold_in(k_dirs, i), world.latent_dim,
                                 float(config["max_delta"][factor]), config["traj"], loss=loss)
        d = anchor(d, factor, z_cal, np.asarray(cal[factor]))
        diag["reachable"] = list(reachable(d, factor))
        found[factor], diags[factor] = d, diag
        log(f"directions: {factor} ({loss} loss) in {diag['seconds']:.0f}s: inversion error median "
            f"{diag['inversion_error_median']:.4f}, {diag['kept']}/{diag['num_points']} points kept, reachable "
            f"{diag['reachable'][0]:.2f}..{diag['reachable'][1]:.2f}")
    return found, diags


def check_edits(world: Any, directions: Mapping[str, Direction], key: jax.Array, num: int,
                targets: Sequence[float]) -> dict:
    """Edit `num` fresh latents to each target along each direction and read the result with the judge:
    per factor the mean absolute error to the target and the response slope/R² (`evaluation.walk_metrics`)."""
    from lace_jax.runs import workflow

    z = np.asarray(jax.random.normal(key, (int(num), world.latent_dim), jnp.float32))
    start, _ = workflow.judge(world, workflow.render(world, z))
    out = {}
    for factor, d in directions.items():
        frames = np.stack([edit(z, {factor: d}, [(factor, t)])[0] for t in targets], axis=1)   # [N, K, D]
        n, k, dim = frames.shape
        labels, _ = workflow.judge(world, workflow.render(world, frames.reshape(n * k, dim)))
        labels = {f: np.asarray(v).reshape(n, k) for f, v in labels.items()}
        r = ev.walk_metrics(factor, list(targets), start, labels, ignore=("rotation",))
        out[factor] = {"target_mae": r["target_mae"], "slope": r["response"]["slope"], "r2": r["response"]["r2"],
                       "monotone": r["response"]["monotone"], "other_factors_std": r["spread_mean"]}
    return out


def model_identity(model_dir: str | Path | None) -> dict:
    """What identifies the generator directions belong to: its model card's name, GAN steps and date."""
    from lace_jax.worlds.shapes import ASSETS

    root = Path(model_dir).expanduser() if model_dir else ASSETS
    card = json.loads((root / "model_card.json").read_text())
    return {"model_dir": None if model_dir is None else str(model_dir), "name": card.get("name"),
            "gan_steps": card.get("gan_steps"), "date": card.get("date")}


def save(directory: str | Path, directions: Mapping[str, Direction], config: Mapping[str, Any],
         extra: Mapping[str, Any] | None = None) -> Path:
    """Write the directions (one sub-tree per factor) as a `directions` checkpoint; `config` must hold
    'factors' and 'model' (`model_identity`)."""
    from lace_jax import checkpoint

    variables = {f: {k: np.asarray(v, np.float32) for k, v in d._asdict().items()} for f, d in directions.items()}
    return checkpoint.save(directory, variables, dict(config), CHECKPOINT_KIND, extra=extra, overwrite=True)


def load(directory: str | Path) -> tuple[dict[str, Direction], dict]:
    """({factor: Direction}, config) from `save`'s directory; `CheckpointError` if it is missing or not one."""
    from lace_jax import checkpoint

    _, cfg, variables = checkpoint.load(directory, kind=CHECKPOINT_KIND)
    out = {}
    for factor in cfg.get("factors", []):
        if factor not in variables:
            raise checkpoint.CheckpointError(f"{directory}: no direction for {factor!r}")
        out[factor] = Direction(**{k: jnp.asarray(variables[factor][k]) for k in Direction._fields})
    return out, cfg


def train_directions(config: Mapping[str, Any], workdir: str | Path, log: Callable[[str], None] = print) -> dict:
    """`train.py --config directions_shapes`: find, anchor, check and save the directions into
    `<workdir>/directions`; returns the diagnostics and the judge's check of edits."""
    from lace_jax import worlds

    t0 = time.time()
    model_dir = config.get("model_dir")
    world = worlds.world_from_config({"world": "shapes", "model_dir": model_dir} if model_dir else "shapes")
    key = jax.random.PRNGKey(int(config.get("seed", 0)))
    k_fit, k_check = jax.random.split(jax.random.fold_in(key, 1))
    found, diags = fit_world(world, config, k_fit, log=log)
    check = check_edits(world, found, k_check, int(config.get("num_check", 64)), [float(t) for t in
                                                                                  config["targets"]])
    for f, c in check.items():
        log(f"check: {f}: edits to {list(config['targets'])} land {c['target_mae']:.3f} from the target on "
            f"average (judge), slope {c['slope']:.2f}, R² {c['r2']:.2f}")
    cfg = {"factors": list(found), "loss": str(config.get("loss", "fourier")), "model": model_identity(model_dir),
           "units": "judge units [0, 1]; g is fitted in the transformation's units (evaluation.shapes_amount)"}
    path = save(Path(workdir) / "directions", found, cfg, extra={"diagnostics": diags, "check": check})
    log(f"directions saved to {path}")
    return {"directions": str(path), "diagnostics": diags, "check": check, "wall_s": time.time() - t0}


# --------------------------------------------------------------------------------------------------------------
# `python sample.py --config directions_shapes --checkpoint_dir <train.py workdir>`

def _direction_edits(directions: dict, specs: Sequence[str]) -> list[tuple[str, float]]:
    """`factor=value` strings → [(factor, value)], each factor one with a saved direction, each value finite."""
    import math

    from lace_jax.runs.request import RequestError

    out = []
    for spec in specs:
        name, sep, value = str(spec).partition("=")
        name = name.strip()
        if not sep or not name:
            raise RequestError(f"--edit {spec!r} is not of the form factor=value")
        if name not in directions:
            raise RequestError(f"--edit {spec!r}: no direction for {name!r}; found: {', '.join(directions)}")
        try:
            v = float(value)
        except ValueError:
            raise RequestError(f"--edit {spec!r}: {value!r} is not a number") from None
        if not math.isfinite(v):
            raise RequestError(f"--edit {spec!r}: the value must be finite")
        out.append((name, v))
    return out


def run(config: Mapping[str, Any], request: Any) -> Any:
    """Fresh latents edited, one `factor=value` after another (`request.edits`), along the saved label-free
    directions; the same grid/npz/record as the other runs, with the judge's reading of every step (mean and
    distance to the requested value)."""
    from lace_jax import checkpoint
    from lace_jax.runs import output, request as rq, workflow

    say = request.progress
    if request.exprs or request.attrs or request.sweep:
        raise rq.RequestError("--config directions_shapes edits latents: give the steps as --edit factor=value")
    if not request.checkpoint_dir:
        raise rq.RequestError("--config directions_shapes needs --checkpoint_dir: the --workdir of "
                              "`python train.py --config directions_shapes --workdir DIR`")
    try:
        directions, dcfg = load(Path(request.checkpoint_dir).expanduser() / "directions")
    except checkpoint.CheckpointError as err:
        raise rq.RequestError(f"{err} (make it with: python train.py --config directions_shapes --workdir "
                              f"{request.checkpoint_dir})") from None
    edits = _direction_edits(directions, list(request.edits) or list(config.get("sample_edits", [])))
    if not edits:
        raise rq.RequestError("no edits: give --edit factor=value (or the config's sample_edits)")
    found_in = dcfg.get("model", {})
    model_dir = found_in.get("model_dir")
    try:
        here = model_identity(model_dir)
    except (OSError, ValueError) as err:
        raise rq.RequestError(f"the generator the directions were found in is not readable: {err}") from None
    if any(here.get(k) != found_in.get(k) for k in ("name", "gan_steps", "date")):
        raise rq.RequestError(f"the directions in {request.checkpoint_dir} were found in another generator "
                              f"({found_in}); this one is {here}: run train.py --config directions_shapes again")
    world = rq.load_world({"world": "shapes", "model_dir": model_dir}, request.config_name)
    n = int(request.num_samples or 8)
    output.prepare_out_dir(request.out_dir)
    ranges = {f: reachable(d, f) for f, d in directions.items()}
    say(f"world={world.name} directions ({dcfg.get('loss')} loss) for {', '.join(directions)}; "
        f"{n} latents, edits {' → '.join(f'{f}={v:g}' for f, v in edits)}")
    for f, v in edits:
        lo, hi = ranges[f]
        if not lo <= v <= hi:
            say(f"note: {f}={v:g} is outside the direction's reachable {lo:.2f}..{hi:.2f}: clamped to it")
    t0 = time.time()
    z0 = np.asarray(jax.random.normal(jax.random.PRNGKey(request.seed), (n, world.latent_dim)), np.float32)
    zs = [z0] + edit(z0, directions, edits)
    labels = ["start"] + [f"+ {f}={v:g}" for f, v in edits]
    grid, pngs, u8 = output.image_output(world, zs, labels, request.grid_columns,
                                         f"{world.name} latent directions seed {request.seed}",
                                         [f"edit_{k}.png" for k in range(len(labels))])
    summary, steps = [], []
    for k, (label, z) in enumerate(zip(labels, zs)):
        lab, _ = workflow.judge(world, workflow.render(world, z))
        from lace_jax.runs import evaluation
        summary.append({"condition": label, **evaluation.judge_summary(world.attributes, lab, np.ones(n, bool))})
        if k:
            f, v = edits[k - 1]
            got = np.asarray(lab[f], np.float64)
            steps.append({"edit": f"{f}={v:g}", "judged_mean": float(got.mean()),
                          "judged_mae_to_target": float(np.abs(got - v).mean()), "reachable": list(ranges[f])})
            say(f"{f}={v:g}: the judge reads {got.mean():.3f} on average ({np.abs(got - v).mean():.3f} from the "
                "target)")
    arrays = {"z": np.stack(zs).astype(np.float32), "success": np.ones((len(zs), n), bool)}
    if request.save_images:
        arrays["images"] = np.stack(u8)
    record = {**request.record, "world": world.name, "config": dict(config),
              "directions": {"checkpoint": str(request.checkpoint_dir), **dcfg}, "num_samples": n,
              "seed": request.seed, "edits": steps, "judge_summary": summary,
              "time_s": {"edit_and_render": time.time() - t0}}
    return output.Output(grid=grid, pngs=pngs, arrays=arrays, record=record)


__all__ = ["run", "CHECKPOINT_KIND", "transform_for", "generator_fn", "find_direction", "anchor", "reachable", "edit",
           "fit_world", "check_edits", "model_identity", "save", "load", "train_directions"]
