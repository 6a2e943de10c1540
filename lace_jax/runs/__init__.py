"""lace_jax.runs: the work the CLIs ask for, as functions — sampling and sequential editing over a world in
resumable, sharded chunks, sweeps of sampler settings, scoring by a judge, and the pictures people look at.

    world = worlds.world_from_config("shapes")
    res = runs.sample_condition(world, "shape=circle & !background=white", num_samples=64, seed=0)
    z_start, steps = runs.sequential_edit(world, ["shape=star", "background=black"], num_samples=16)
    labels, features = runs.judge(world, runs.render(world, res.z))

* `workflow` — `sample_condition`, `sequential_edit`, `edit_step`, `render`, `judge`;
* `chunks` — `generate`: N samples in chunks keyed by `fold_in(seed, i)`, sharded over local devices, resumable;
* `sweeps` — `run_sweep` over grids of sampler settings, compiled once per structure;
* `evaluation` — accuracy by the judge, Fréchet distances, editing metrics;
* `request`, `sampling`, `output` — what `sample.py` runs: `Request` → `sampling.run` (or a research config's
  `run`) → `Output` → `output.write`; `images` — uint8, labelled grids, scatter plots.
"""
from lace_jax.runs.chunks import BatchError, BatchResult, Progress, generate, merge, sample_key
from lace_jax.runs.evaluation import condition_metrics, edit_metrics, judge_satisfied
from lace_jax.runs.output import Output, write
from lace_jax.runs.request import Request, RequestError
from lace_jax.runs.sweeps import run_sweep
from lace_jax.runs.workflow import EditStep, edit_step, judge, render, sample_condition, sequential_edit

__all__ = ["BatchError", "BatchResult", "Progress", "generate", "merge", "sample_key", "condition_metrics",
           "edit_metrics", "judge_satisfied", "Output", "write", "Request", "RequestError", "run_sweep", "EditStep",
           "edit_step", "judge", "render", "sample_condition", "sequential_edit"]
