"""A small resumable training loop: orbax checkpoints of the whole train state, exact resume.

Exactness comes from two rules: every random number of step `s` is drawn from `fold_in(base_key, s)` (so it
does not depend on how many steps ran in this process), and the checkpoint holds everything the next step reads
(params, optimizer states, EMA, step counter). Restoring into an abstract target built from a fresh state makes a
mismatched checkpoint fail with a clear orbax error instead of silently loading the wrong shapes.
"""
from __future__ import annotations

import json

import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

State = Any
StepFn = Callable[..., tuple[State, dict]]   # (state, step) or, in blocks, (state, step, n)


def checkpoint_manager(directory: str | Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """An orbax manager for train states under `directory` (created if needed)."""
    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def restore_latest(manager: ocp.CheckpointManager, template: State) -> tuple[State, int]:
    """(state, step) from the newest checkpoint, or (template, 0) if there is none."""
    step = manager.latest_step()
    if step is None:
        return template, 0
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
    state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    return state, int(step)


def save(manager: ocp.CheckpointManager, step: int, state: State) -> None:
    """Save `state` as checkpoint `step` and wait for the asynchronous write to finish (the saved folder names no
    directory of this machine: `checkpoint.forget_save_paths`)."""
    from lace_jax.checkpoint import forget_save_paths

    manager.save(step, args=ocp.args.StandardSave(state), force=True)
    manager.wait_until_finished()
    forget_save_paths(Path(manager.directory) / str(step))


def run(state: State, step_fn: StepFn, *, num_steps: int, workdir: str | Path, ckpt_every: int = 500,
        log_every: int = 50, max_wall_s: float | None = None, images_per_step: int = 0,
        on_log: Callable[[int, dict, float], None] | None = None,
        on_checkpoint: Callable[[int, State], None] | None = None, steps_per_call: int = 1) -> tuple[State, int]:
    """Run `step_fn(state, step)` from the last checkpoint in `workdir/checkpoints` up to `num_steps`.

    Stops early (with a checkpoint) once `max_wall_s` seconds have passed. `on_log(step, metrics, img_per_s)` is
    called every `log_every` steps with float metrics; `on_checkpoint(step, state)` after each save (sample grids).
    With `steps_per_call` > 1, `step_fn(state, step, n)` runs iterations step … step + n − 1 (n ≤ steps_per_call)
    in one call and returns metrics per iteration (a leading axis; row n − 1 is logged). Blocks end at every log
    and checkpoint step and at `num_steps`, so the same steps are logged and saved as one iteration per call
    would; the wall budget is checked between blocks.
    Returns the final state and the number of steps done in total.
    """
    if steps_per_call < 1:
        raise ValueError(f"loop.run: steps_per_call must be ≥ 1, got {steps_per_call}")
    manager = checkpoint_manager(Path(workdir) / "checkpoints")
    state, step = restore_latest(manager, state)
    start = time.time()
    last_t, last_step = start, step
    saved_at = step
    while step < num_steps:
        if steps_per_call == 1:
            n = 1
            state, metrics = step_fn(state, step)
        else:
            n = min(steps_per_call, num_steps - step, log_every - step % log_every, ckpt_every - step % ckpt_every)
            state, metrics = step_fn(state, step, n)
        step += n
        if on_log is not None and (step % log_every == 0 or step == num_steps):
            metrics = {k: float(np.asarray(v)[n - 1] if steps_per_call > 1 else np.asarray(v))
                       for k, v in metrics.items()}
            now = time.time()
            rate = images_per_step * (step - last_step) / max(now - last_t, 1e-9)
            on_log(step, metrics, rate)
            last_t, last_step = now, step
        out_of_time = max_wall_s is not None and time.time() - start > max_wall_s
        if step % ckpt_every == 0 or step == num_steps or out_of_time:
            save(manager, step, state)
            saved_at = step
            if on_checkpoint is not None:
                on_checkpoint(step, state)
        if out_of_time:
            break
    if saved_at != step:
        save(manager, step, state)
    manager.close()
    return state, step


def run_config(workdir: str | Path) -> dict:
    """The config a training run wrote into its workdir."""
    return json.loads((Path(workdir) / "config.json").read_text())


def restore_newest(workdir: str | Path, template, config: dict, what: str):
    """The newest checkpoint of a training workdir restored against `template`; records `trained_steps` in
    `config`. No checkpoint is a FileNotFoundError naming the folder."""
    manager = checkpoint_manager(Path(workdir) / "checkpoints")
    state, step = restore_latest(manager, template)
    manager.close()
    if step == 0:
        raise FileNotFoundError(f"no {what} checkpoint in {Path(workdir)}/checkpoints")
    config["trained_steps"] = step
    return state
