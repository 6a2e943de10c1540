"""The judge's training run: `train.py --config shapes_judge` (resumable, evaluated on held-out renders)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import jax

from lace_jax.training import judge, loop


def train_judge(config: dict, workdir: str | Path, log: Callable[[str], None] = print) -> dict:
    """Train to `config["steps"]` (or the wall budget), evaluate, write `<workdir>/metrics.json`."""
    workdir = Path(workdir)
    key = jax.random.PRNGKey(int(config["seed"]))
    init_key, data_key = jax.random.split(key)
    model, tx, state = judge.init_state(config, init_key)
    step_fn = judge.make_step(model, tx, config, data_key)
    t0 = time.time()

    def on_log(step, m, rate):
        log(f"judge step {step:6d} loss {m['loss']:.4f} ce_shape {m['ce_shape']:.4f} "
            f"ce_bg {m['ce_background']:.4f} mse {m['mse']:.5f} {rate:.0f} img/s")

    # `stop_after` ends the run early (reproducibly) without changing the learning-rate schedule of `steps`.
    num_steps = min(int(config["steps"]), int(config.get("stop_after") or config["steps"]))
    state, steps = loop.run(state, step_fn, num_steps=num_steps, workdir=workdir,
                            ckpt_every=int(config["ckpt_every"]), log_every=int(config["log_every"]),
                            max_wall_s=config.get("max_wall_s"), images_per_step=int(config["batch_size"]),
                            on_log=on_log)
    wall = time.time() - t0
    metrics = judge.evaluate(model, state["params"], jax.random.PRNGKey(int(config["eval_seed"])),
                             int(config["eval_num"]), int(config["resolution"]))
    metrics.update({"steps": steps, "wall_s_this_run": wall})
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log("judge eval " + json.dumps(metrics))
    return metrics


def load_judge(judge_workdir: str | Path):
    """(judge module, params, the judge run's config) from a shapes_judge workdir."""
    jcfg = loop.run_config(judge_workdir)
    model, _, template = judge.init_state(jcfg, jax.random.PRNGKey(0))
    state = loop.restore_newest(judge_workdir, template, jcfg, "judge")
    return model, state["params"], jcfg
