"""`run(config, request)` for the worlds (shapes, toy2d, LACE worlds): conditions or sequential edits sampled in
resumable chunks, or a sweep; what `python sample.py` does for every world config (the research configs have
their own `run` in their packages).

Under `jax.distributed` (or on a TPU pod) every process calls `run` with the same request and a shared
`out_dir`: each computes its share of the chunks (`chunks.Processes`, counted across all conditions or edit steps
so that even one chunk per condition spreads out) or of a sweep's settings, and process 0 waits for the others'
files and returns the `Output`; the other processes return None once their share is on disk (sequential editing
makes every process wait for each step, whose latents the next one starts from)."""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Mapping, Optional

import numpy as np

from lace_jax.runs import chunks, evaluation, output, request as rq, sweeps, workflow
from lace_jax.runs.output import Output


def run(config: Mapping[str, Any], request: rq.Request,
        processes: Optional[chunks.Processes] = None) -> Optional[Output]:
    """Validate everything, then sample (or sweep); returns the `Output` for `output.write` (None for a sweep,
    which writes its own rows, and on every process but 0 of a multi-process run). `processes`: this process's
    share (default `chunks.Processes.current()`, from `jax.distributed`)."""
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
    output.prepare_out_dir(out_dir, fresh_dirs=("conditions", "edits", "sweep") if request.fresh else ())
    procs = processes or chunks.Processes.current()
    try:    # after every process prepared the folder: nobody writes a chunk before old ones are gone
        chunks.start_together(out_dir, procs)
    except chunks.BatchError as err:
        raise rq.RequestError(f"--out_dir: {err}") from None
    where = (f"devices={jax.device_count()}" if procs.count == 1 else
             f"process {procs.index}/{procs.count} local_devices={jax.local_device_count()} "
             f"devices={jax.device_count()}")
    say(f"world={world.name} sampler={sampler} backend={jax.default_backend()} {where}")
    if request.sweep:
        _sweep(world, request, t_start, procs)
        return None

    t0 = time.time()
    record: dict = {**request.record, "world": world.name, "config": dict(config), "sampler": sampler,
                    "options": dataclasses.asdict(options), "precision": world.precision, "num_samples": n,
                    "chunk_size": chunk, "seed": request.seed, "processes": procs.count}
    if edits:
        say(f"sequential editing: {' -> '.join(edits)} ({n} samples, {sampler})")
        try:
            z_start, steps = workflow.sequential_edit(
                world, edits, num_samples=n, seed=request.seed, sampler=sampler, options=options, chunk_size=chunk,
                out_dir=out_dir / "edits", reg_z=request.reg_z, reg_logits=request.reg_logits, cache={},
                progress=lambda k, p: say(f"edit {k + 1}/{len(edits)} ({edits[k]}): {p.line()}"), processes=procs)
        except chunks.BatchError as err:
            raise rq.RequestError(f"{err} (use another --out_dir or --fresh)") from None
        if procs.index != 0:
            return _share_done(say, procs, t0)
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
        results = _conditions(world, conds, sampler, options, n, chunk, request, procs)
        if results is None:
            return _share_done(say, procs, t0)
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
            for row in record["judge_summary"]:
                fit = row.get("fit_judge")
                if fit is not None:
                    n = fit["num"]
                    shown = (f"{round(fit['satisfied'] * n)}/{n} samples are a render that satisfies it, "
                             if "satisfied" in fit else "")
                    say(f"fit judge, {row['condition']!r}: {shown}{round(fit['realistic'] * n)}/{n} a render of any "
                        "shape (docs/fit_judge.md)")
    elif world.name == "toy2d":
        grid, pngs = _toy2d_pictures(world, ([world.expr] + edits) if edits else labels, labels, zs, success,
                                     sampler)
        from lace_jax.worlds import toy2d
        record["attribute_summary"] = [toy2d.summary(world.attributes, z[ok]) for z, ok in zip(zs, success)]
    record["time_s"] = {"sample_incl_compile": t_sample}
    return Output(grid=grid, pngs=pngs, arrays=arrays, record=record)


def _conditions(world, conds, sampler, options, n, chunk, request, procs: chunks.Processes):
    """Every condition's chunks of this process (without waiting, so no process idles between conditions), then,
    on process 0 only, each condition's full result once all chunk files are there (None on the others)."""
    cache: dict = {}
    dirs = [request.out_dir / "conditions" / f"{k:02d}" for k in range(len(conds))]
    share = procs
    for k, expr in enumerate(conds):
        request.progress(f"condition {k + 1}/{len(conds)}: {expr!r} ({n} samples, {sampler})")
        try:
            workflow.sample_condition(
                world, expr, num_samples=n, seed=request.seed + k, sampler=sampler, options=options,
                chunk_size=chunk, out_dir=dirs[k], cache=cache, processes=share, wait=False,
                progress=lambda p, k=k: request.progress(f"condition {k + 1}: {p.line()}"))
        except chunks.BatchError as err:
            raise rq.RequestError(f"{err} (use another --out_dir or --fresh)") from None
        share = share.after(chunks.num_chunks(n, chunk))
    if procs.index != 0:
        return None
    results = []
    for k in range(len(conds)):
        try:
            res = chunks.merge(dirs[k], wait=procs.count > 1, timeout_s=procs.timeout_s, poll_s=procs.poll_s,
                               on_wait=lambda left, k=k: request.progress(
                                   f"condition {k + 1}: waiting for chunks {list(left)[:10]} of the other processes"))
        except chunks.BatchError as err:
            raise rq.RequestError(str(err)) from None
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


def _share_done(say, procs: chunks.Processes, t0: float) -> None:
    say(f"process {procs.index}/{procs.count}: its share is on disk ({time.time() - t0:.1f}s); process 0 writes "
        "the outputs")
    return None


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


def _sweep(world, request: rq.Request, t_start: float, procs: chunks.Processes) -> None:
    """Setting j runs on process j % count and lands in `sweep/rows/row_<j>.json` (with what it was computed for,
    so a re-run with the same sweep skips it); process 0 waits for every row and writes rows.json and table.md."""
    from lace_jax import records
    from lace_jax.config import load_config

    try:
        cfg = load_config(request.sweep)
        settings = sweeps.settings_from_config(cfg, world.name)
    except (ValueError, FileNotFoundError) as err:
        raise rq.RequestError(f"--sweep: {err}") from None
    n = request.num_samples or int(cfg.get("num_samples", 256))
    tol = float(cfg.get("tol", 0.1))
    request.progress(f"sweep {request.sweep}: {len(settings)} settings x {n} samples on {world.name}")
    rows_dir = request.out_dir / "sweep" / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    world_cfg = {k: v for k, v in world.config.items() if k != "conditions"}
    # a row's key names the world's model folders by records.path_identities (rows of earlier versions
    # hold the paths themselves: `legacy`, still accepted)
    legacy = [json.loads(json.dumps(records.to_jsonable(
        {"setting": dict(s), "num_samples": n, "seed": request.seed, "tol": tol, "world": world.name,
         "config": world_cfg}))) for s in settings]
    keys = [dict(k, config=records.path_identities(k["config"])) for k in legacy]

    def done_row(j: int) -> Optional[dict]:
        path = rows_dir / f"row_{j:04d}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data["row"] if data.get("key") in (keys[j], legacy[j]) else None

    runner = sweeps.Runner()
    for j in range(len(settings)):
        if j % procs.count != procs.index or done_row(j) is not None:
            continue
        row, = sweeps.run_sweep(world, [settings[j]], num_samples=n, seed=request.seed, tol=tol, runner=runner)
        records.write_json(rows_dir / f"row_{j:04d}.json", {"key": keys[j], "row": row})
        request.progress(f"{row['setting']} accuracy {row['metrics']['accuracy']:.3f} nfe {row['nfe']} "
                         f"time {row['time_s']:.2f}s")
    if procs.index != 0:
        _share_done(request.progress, procs, t_start)
        return
    try:
        chunks.wait_for(lambda: [j for j in range(len(settings)) if done_row(j) is None], timeout_s=procs.timeout_s,
                        poll_s=procs.poll_s, what=f"{rows_dir} rows",
                        on_wait=lambda left: request.progress(f"waiting for sweep rows {list(left)[:10]} of the "
                                                              "other processes"))
    except chunks.BatchError as err:
        raise rq.RequestError(str(err)) from None
    rows = [done_row(j) for j in range(len(settings))]
    sweeps.write(rows, request.out_dir / "sweep", extra=records.shareable(
        {"sweep": request.sweep, "config": cfg, "world": world.name, "processes": procs.count,
         "environment": records.environment(), "wall_s": time.time() - t_start}))
    request.progress(f"wrote {request.out_dir}/sweep/rows.json and table.md ({time.time() - t_start:.1f}s)")


def _stats_table(res) -> dict:
    return {k: np.asarray(v).tolist() for k, v in res.stats.items()}


__all__ = ["run"]
