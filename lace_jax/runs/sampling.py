"""`run(config, request)` for the worlds (shapes, toy2d, LACE worlds): conditions or sequential edits sampled in
resumable chunks, or a sweep; what `python sample.py` does for every world config (the research configs have
their own `run` in their packages)."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Optional

import numpy as np

from lace_jax.runs import chunks, evaluation, output, request as rq, sweeps, workflow
from lace_jax.runs.output import Output


def run(config: Mapping[str, Any], request: rq.Request) -> Optional[Output]:
    """Validate everything, then sample (or sweep); returns the `Output` for `output.write` (None for a sweep,
    which writes its own rows)."""
    t_start = time.time()
    import jax

    say = request.progress
    world = rq.load_world(config, request.config_name)
    edits = rq.edits(world, request.edits)
    if edits and (request.exprs or request.attrs):
        raise rq.RequestError("--edit cannot be combined with --expr/--attr (editing applies its steps to the same "
                              "latents; sample conditions in a separate run)")
    conds = [] if edits or request.sweep else rq.conditions(world, rq.expressions(request))
    sampler = rq.sampler_name(world, request)
    options = rq.sampler_options(world, sampler, request.options)
    n = rq.num_samples(world, request)
    chunk = rq.chunk_size(world, request)
    out_dir = request.out_dir
    output.prepare_out_dir(out_dir, fresh_dirs=("conditions", "edits") if request.fresh else ())
    say(f"world={world.name} sampler={sampler} backend={jax.default_backend()} devices={jax.device_count()}")
    if request.sweep:
        _sweep(world, request, t_start)
        return None

    t0 = time.time()
    record: dict = {**request.record, "world": world.name, "config": dict(config), "sampler": sampler,
                    "options": dataclasses.asdict(options), "num_samples": n,
                    "chunk_size": chunk, "seed": request.seed}
    if edits:
        say(f"sequential editing: {' -> '.join(edits)} ({n} samples, {sampler})")
        try:
            z_start, steps = workflow.sequential_edit(
                world, edits, num_samples=n, seed=request.seed, sampler=sampler, options=options, chunk_size=chunk,
                out_dir=out_dir / "edits", reg_z=request.reg_z, reg_logits=request.reg_logits, cache={},
                progress=lambda k, p: say(f"edit {k + 1}/{len(edits)} ({edits[k]}): {p.line()}"))
        except chunks.BatchError as err:
            raise rq.RequestError(f"{err} (use another --out_dir or --fresh)") from None
        if not steps[-1].result.success.any():
            raise rq.RequestError(f"every edited sample failed ({sampler}); see --max_steps, --rtol/--atol")
        t_sample = time.time() - t0
        zs = [z_start] + [s.result.z for s in steps]
        labels = ["start"] + [f"+ {s.edit}" for s in steps]
        record["edits"] = [{"edit": s.edit, "attributes": list(s.names), "targets": [str(t) for t in s.targets],
                            "num_failed": int((~s.result.success).sum()),
                            "failed_indices": s.result.failed_indices.tolist(),
                            "stats": _stats_table(s.result)} for s in steps]
        record["reg_z"], record["reg_logits"] = request.reg_z, request.reg_logits
        success = np.stack([np.ones(n, bool)] + [s.result.success for s in steps])
        n_fail = int((~success[-1]).sum())
        done = int(success[-1].sum())
    else:
        results = _conditions(world, conds, sampler, options, n, chunk, request)
        t_sample = time.time() - t0
        zs = [r.z for r in results]
        labels = conds
        record["conditions"] = [{"expr": c, "num_failed": int((~r.success).sum()),
                                 "failed_indices": r.failed_indices.tolist(), "stats": _stats_table(r)}
                                for c, r in zip(conds, results)]
        success = np.stack([r.success for r in results])
        n_fail = int((~success).sum())
        done = int(success.sum())
    say(f"sampled in {t_sample:.1f}s (compilation included): {done} ok, {n_fail} failed")

    arrays: dict = {"z": np.stack(zs).astype(np.float32), "success": success}   # [C or steps+1, N, D]
    grid, pngs = None, {}
    if world.render is not None:
        names = ([f"edit_{k}.png" for k in range(len(labels))] if edits
                 else [f"condition_{k}_{output.slug(label)}.png" for k, label in enumerate(labels)])
        grid, pngs, u8 = output.image_output(world, zs, labels, request.grid_columns,
                                             f"{world.name}  [{sampler}]  seed {request.seed}", names)
        if request.save_images:
            arrays["images"] = np.stack(u8)                  # [C, N, H, W, 3] uint8; failed rows are zeros
            arrays["images"][~success] = 0
        if world.judge is not None:
            record["judge_summary"] = evaluation.judge_summaries(world, zs, labels, success)
    elif world.name == "toy2d":
        grid, pngs = _toy2d_pictures(world, ([world.expr] + edits) if edits else labels, labels, zs, success,
                                     sampler)
        from lace_jax.worlds import toy2d
        record["attribute_summary"] = [toy2d.summary(world.attributes, z[ok]) for z, ok in zip(zs, success)]
    record["time_s"] = {"sample_incl_compile": t_sample}
    return Output(grid=grid, pngs=pngs, arrays=arrays, record=record)


def _conditions(world, conds, sampler, options, n, chunk, request):
    cache: dict = {}
    results = []
    for k, expr in enumerate(conds):
        request.progress(f"condition {k + 1}/{len(conds)}: {expr!r} ({n} samples, {sampler})")
        try:
            res = workflow.sample_condition(
                world, expr, num_samples=n, seed=request.seed + k, sampler=sampler, options=options,
                chunk_size=chunk, out_dir=request.out_dir / "conditions" / f"{k:02d}", cache=cache,
                progress=lambda p, k=k: request.progress(f"condition {k + 1}: {p.line()}"))
        except chunks.BatchError as err:
            raise rq.RequestError(f"{err} (use another --out_dir or --fresh)") from None
        n_fail = int((~res.success).sum())
        if n_fail:
            request.progress(f"condition {k + 1}: {n_fail}/{n} solves failed (indices "
                             f"{res.failed_indices[:10].tolist()}{' ...' if n_fail > 10 else ''}); they are "
                             "excluded from grids and images")
        results.append(res)
    if all(not r.success.any() for r in results):
        raise rq.RequestError(f"every sample failed ({sampler}); the energy or the solver settings give NaN or too "
                              "many steps; see --max_steps, --rtol/--atol or another --sampler")
    return results


def _toy2d_pictures(world, exprs, labels, zs, success, sampler):
    """Scatter plots over the density of each condition (the 2-D world has no renderer)."""
    import jax
    import jax.numpy as jnp

    from lace_jax.runs import images
    from lace_jax.worlds import toy2d

    tiles = []
    for expr, label, z, ok in zip(exprs, labels, zs, success):
        bg = toy2d.density_grid(world.parse(expr), 160)
        cluster = np.asarray(jax.vmap(world.attributes["cluster"].fn)(jnp.asarray(np.nan_to_num(z))))
        png = images.scatter_png(z[ok], extent=toy2d.EXTENT, background=bg,
                                 colors=toy2d.CLUSTER_COLOURS[cluster.argmax(-1)[ok]])
        tiles.append(images.add_title(png, f"{label}  [{sampler}]"))
    pngs = {f"condition_{k}_{output.slug(labels[k])}.png": t for k, t in enumerate(tiles)}
    return (np.concatenate(tiles, axis=1) if len(tiles) > 1 else tiles[0]), pngs


def _sweep(world, request: rq.Request, t_start: float) -> None:
    from lace_jax import records
    from lace_jax.config import load_config

    try:
        cfg = load_config(request.sweep)
        settings = sweeps.settings_from_config(cfg, world.name)
    except (ValueError, FileNotFoundError) as err:
        raise rq.RequestError(f"--sweep: {err}") from None
    n = request.num_samples or int(cfg.get("num_samples", 256))
    request.progress(f"sweep {request.sweep}: {len(settings)} settings x {n} samples on {world.name}")
    rows = sweeps.run_sweep(world, settings, num_samples=n, seed=request.seed, tol=float(cfg.get("tol", 0.1)),
                            progress=lambda r: request.progress(
                                f"{r['setting']} accuracy {r['metrics']['accuracy']:.3f} nfe {r['nfe']} "
                                f"time {r['time_s']:.2f}s"))
    sweeps.write(rows, request.out_dir / "sweep", extra={"sweep": request.sweep, "config": cfg, "world": world.name,
                                                         "environment": records.environment(),
                                                         "wall_s": time.time() - t_start})
    request.progress(f"wrote {request.out_dir}/sweep/rows.json and table.md ({time.time() - t_start:.1f}s)")


def _stats_table(res) -> dict:
    return {k: np.asarray(v).tolist() for k, v in res.stats.items()}


__all__ = ["run"]
