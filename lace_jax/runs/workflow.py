"""The LACE workflow as functions over a `worlds.World`: conditional/compositional sampling, sequential editing,
rendering and judging in batches. `sample.py` and `evaluate.py` are thin flag layers over this module.

    world = worlds.world_from_config("shapes")
    res = workflow.sample_condition(world, "shape=circle & !background=white", num_samples=64, seed=0)
    steps = workflow.sequential_edit(world, ["shape=star", "background=black", "size=0.9"], num_samples=16)
    images = workflow.render(world, res.z)                 # NaN rows (failed solves) render as NaN
    labels, features = workflow.judge(world, images)

Keys: sample `i` of a condition draws its start `z0` and run key from `fold_in(PRNGKey(seed), i)` (see
`lace_jax.runs.chunks`), so results do not depend on the chunk size or the number of devices (the ODE's joint batch
mode is the exception: one step-size sequence per chunk). Sequential editing starts step k from step k−1's latents
(step 0: N(0, I) latents of the same keys) with LACE's sequential energy: the attributes edited so far, reweighted
(0.1 for earlier ones, 10 for a continuous current one), plus the anchors `reg_z·(‖w − w_prev‖² + ‖z − z_prev‖²)`
and `reg_logits·Σ_{j not edited} ‖f_j(z) − f_j(z_prev)‖²` that keep identity and the other attributes.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lace_jax import energy as en
from lace_jax import expressions
from lace_jax.runs import chunks
from lace_jax import samplers

# LACE's FFHQ sequential-editing regularisers (VPODE reg_z, reg_logits)
EDIT_REG_Z = 0.04
EDIT_REG_LOGITS = 0.01


class EditStep(NamedTuple):
    """One step of a sequential edit: the edit applied (`name=value`), the attributes edited so far in order,
    their targets, and the batch result (latents after this step)."""
    edit: str
    names: tuple
    targets: tuple
    result: chunks.BatchResult


def _per_sample_fn(sampler: str, options: samplers.SamplerOptions, latent_dim: int, *, edit: bool = False,
                   cache: Optional[dict] = None):
    """The per-sample (or joint-chunk) function; with `cache`, the same object for the same settings, so
    `chunks.generate(cache=...)` reuses its compiled chunk function."""
    if cache is None:
        return _make_per_sample(sampler, options, latent_dim, edit=edit)
    key = ("per_sample", sampler, options, int(latent_dim), edit)
    if key not in cache:
        cache[key] = _make_per_sample(sampler, options, latent_dim, edit=edit)
    return cache[key]


def _program_key(sampler: str, options: samplers.SamplerOptions, latent_dim: int, edit: bool = False) -> dict:
    """Everything `_make_per_sample` builds its chunk body from (`chunks.generate(program_key=...)`)."""
    return {"body": "lace_jax.runs.workflow._make_per_sample", "sampler": sampler,
            "options": dataclasses.asdict(options), "latent_dim": int(latent_dim), "edit": bool(edit)}


def _make_per_sample(sampler: str, options: samplers.SamplerOptions, latent_dim: int, *, edit: bool = False):
    if sampler in ("ode", "ode_tc") and options.batch_mode == "joint":
        if edit:
            return samplers.joint_ode_fn(options, latent_dim, init_for_indices=lambda p, idx: p.anchors[idx],
                                         sampler=sampler)
        return samplers.joint_ode_fn(options, latent_dim, sampler=sampler)
    if edit:
        return samplers.sampler_fn(sampler, options, latent_dim,
                                   energy_for_index=lambda p, i: p.take(i),
                                   init_for_index=lambda p, i: p.take(i).anchor)
    return samplers.sampler_fn(sampler, options, latent_dim)


def fingerprint(world: Any, kind: str, expr: Any, sampler: str, options: samplers.SamplerOptions,
                **extra) -> dict:
    """What identifies a batch run in its manifest (a different run in the same folder is refused)."""
    return {"world": world.name, "config": {k: v for k, v in world.config.items() if k != "conditions"},
            "kind": kind, "expr": expr, "sampler": sampler, "options": dataclasses.asdict(options), **extra}


def sample_condition(world: Any, expr: str, *, num_samples: int, seed: int = 0, sampler: str = "ode",
                     options: Optional[samplers.SamplerOptions] = None, chunk_size: int = 256,
                     out_dir: str | Path | None = None, progress: Optional[Callable] = None,
                     devices: Sequence[Any] | None = None, cache: Optional[dict] = None,
                     processes: Optional[chunks.Processes] = None, wait: bool = True,
                     ) -> Optional[chunks.BatchResult]:
    """`num_samples` latents under the expression's energy (conditional: `name=value`; compositional: `&`, `|`,
    `!`), in resumable chunks when `out_dir` is given. Failed solves have NaN rows and `success` False.
    Pass the same `cache` dict to several calls to compile once per energy structure. `processes` and `wait`:
    this process's share of a multi-process run (`chunks.generate`)."""
    options = options or world.sampler_options()
    cond = world.parse(expr)
    per = _per_sample_fn(sampler, options, world.latent_dim, cache=cache)
    return chunks.generate(per, cond, num_samples=num_samples, chunk_size=chunk_size, seed=seed,
                             out_dir=out_dir, progress=progress, devices=devices, cache=cache,
                             fingerprint=fingerprint(world, "condition", expr, sampler, options),
                             processes=processes, wait=wait,
                             program_key=_program_key(sampler, options, world.latent_dim))


def parse_edit(world: Any, text: str) -> tuple[str, Any]:
    """An edit `name=value` → (name, value) with class names resolved; anything else is a ValueError."""
    tree = expressions.parse(text, world.attributes)
    if not isinstance(tree, expressions.Atom):
        raise ValueError(f"an edit is one condition name=value, got {text!r} (apply several edits in order "
                         "with one --edit each)")
    return tree.name, tree.value


def edit_energy(world: Any, names: Sequence[str], targets: Sequence[Any], anchors: jax.Array, *,
                reg_z: float = EDIT_REG_Z, reg_logits: float = EDIT_REG_LOGITS) -> "AnchoredBatch":
    """LACE's sequential-editing energy per sample, anchored at `anchors[N, D]` (the previous step's latents):
    a `BatchedEnergy` whose `take(i)` is sample i's energy, with `.anchor` giving its start latent. Only the
    anchor leaves are batched; weights and targets stay shared."""
    attrs = list(world.attributes.values())
    order = list(world.attributes)
    seq = [order.index(n) for n in names]
    anchors = jnp.asarray(anchors, jnp.float32)
    dim = anchors.shape[1]

    def build(anchor):
        return en.lace_sequential(attrs, list(targets), z_anchor=anchor, g=world.mapping, reg_z=reg_z,
                                  reg_logits=reg_logits, seq_indices=seq)

    # the anchor leaves are exactly those that change with the anchor (same structure, same other objects)
    la, treedef = jax.tree_util.tree_flatten(build(jnp.zeros((dim,), jnp.float32)))
    lb, _ = jax.tree_util.tree_flatten(build(jnp.ones((dim,), jnp.float32)))
    is_anchor = [a is not b and jnp.shape(a) == (dim,) and not np.array_equal(np.asarray(a), np.asarray(b))
                 for a, b in zip(la, lb)]
    leaves = [anchors if m else a for a, m in zip(la, is_anchor)]
    axes = tuple(0 if m else None for m in is_anchor)
    return AnchoredBatch(energy=jax.tree_util.tree_unflatten(treedef, leaves), axes=axes, anchors=anchors)


@flax.struct.dataclass
class AnchoredBatch(en.BatchedEnergy):
    """A `BatchedEnergy` of edit energies that also carries the anchors (`take(i).anchor` → z_prev[i])."""
    anchors: Any = None

    def take(self, index) -> Any:
        index = jnp.asarray(index)
        sub = en.BatchedEnergy.take(self, index)
        if index.ndim == 0:
            return _WithAnchor(energy=sub, anchor=self.anchors[index])
        return AnchoredBatch(energy=sub.energy, axes=self.axes, anchors=self.anchors[index])


@flax.struct.dataclass
class _WithAnchor:
    energy: Any
    anchor: Any

    def __call__(self, z, *args):
        return self.energy(z, *args)


def edit_step(world: Any, names: Sequence[str], targets: Sequence[Any], z_prev: np.ndarray, *, seed: int = 0,
              sampler: str = "ode", options: Optional[samplers.SamplerOptions] = None, chunk_size: int = 256,
              out_dir: str | Path | None = None, progress: Optional[Callable] = None, reg_z: float = EDIT_REG_Z,
              reg_logits: float = EDIT_REG_LOGITS, devices: Sequence[Any] | None = None,
              cache: Optional[dict] = None, processes: Optional[chunks.Processes] = None) -> chunks.BatchResult:
    """One sequential-editing step from `z_prev[N, D]` (rows of failed earlier steps stay failed); with
    `processes`, this process computes its share and every process gets the whole step."""
    options = options or world.sampler_options()
    z_prev = np.asarray(z_prev, np.float32)
    ok_prev = np.all(np.isfinite(z_prev), axis=-1)
    anchors = jnp.asarray(np.where(ok_prev[:, None], z_prev, 0.0))
    params = edit_energy(world, names, targets, anchors, reg_z=reg_z, reg_logits=reg_logits)
    per = _per_sample_fn(sampler, options, world.latent_dim, edit=True, cache=cache)
    fp = fingerprint(world, "edit", [f"{n}={t}" for n, t in zip(names, targets)], sampler, options,
                     reg_z=reg_z, reg_logits=reg_logits,
                     z_prev_checksum=float(np.nansum(np.abs(z_prev))) if z_prev.size else 0.0)
    res = chunks.generate(per, params, num_samples=z_prev.shape[0], chunk_size=chunk_size, seed=seed,
                            out_dir=out_dir, progress=progress, devices=devices, fingerprint=fp, cache=cache,
                            processes=processes, program_key=_program_key(sampler, options, world.latent_dim, edit=True))
    success = res.success & ok_prev
    z = np.where(success[:, None], res.z, np.nan)
    return res._replace(z=z, success=success, failed_indices=np.flatnonzero(~success).astype(np.int64))


def sequential_edit(world: Any, edits: Sequence[str], *, num_samples: int, seed: int = 0, sampler: str = "ode",
                    options: Optional[samplers.SamplerOptions] = None, chunk_size: int = 256,
                    z_start: Optional[np.ndarray] = None, out_dir: str | Path | None = None,
                    progress: Optional[Callable[[int, Any], None]] = None, reg_z: float = EDIT_REG_Z,
                    reg_logits: float = EDIT_REG_LOGITS, cache: Optional[dict] = None,
                    processes: Optional[chunks.Processes] = None) -> tuple[np.ndarray, list[EditStep]]:
    """Apply `edits` (`name=value` each) in order to the same latents. Returns (z_start, steps). Step k's
    energy holds every attribute edited up to k (an attribute edited twice keeps its newest target and moves
    to the end, i.e. becomes the current one). `z_start` defaults to N(0, I) latents from the sample keys.
    With `out_dir`, step k's chunks live in `out_dir/step_{k}` and every step resumes; several processes
    (`processes`, default jax's) share each step's chunks and all of them get every step's latents."""
    parsed = [parse_edit(world, e) for e in edits]
    if not parsed:
        raise ValueError("sequential_edit: no edits given")
    if z_start is None:
        keys = jax.vmap(lambda i: chunks.sample_key(seed, i))(jnp.arange(num_samples))
        z_start = np.asarray(jax.vmap(
            lambda k: jax.random.normal(jax.random.split(k)[0], (world.latent_dim,), jnp.float32))(keys))
    z = np.asarray(z_start, np.float32)
    names: list[str] = []
    targets: list[Any] = []
    steps: list[EditStep] = []
    for k, ((name, value), text) in enumerate(zip(parsed, edits)):
        if name in names:
            j = names.index(name)
            names.pop(j)
            targets.pop(j)
        names.append(name)
        targets.append(value)
        sub = None if out_dir is None else Path(out_dir) / f"step_{k}"
        prog = None if progress is None else (lambda p, k=k: progress(k, p))
        res = edit_step(world, names, targets, z, seed=seed + 1000 * (k + 1), sampler=sampler, options=options,
                        chunk_size=chunk_size, out_dir=sub, progress=prog, reg_z=reg_z, reg_logits=reg_logits,
                        cache=cache, processes=processes)
        if processes is not None:
            processes = processes.after(chunks.num_chunks(z.shape[0], chunk_size))
        steps.append(EditStep(text, tuple(names), tuple(targets), res))
        z = res.z
    return np.asarray(z_start), steps


@functools.partial(jax.jit, static_argnums=())
def _call(fn: Any, x: jax.Array) -> Any:
    """`fn(x)` jitted with `fn` (a pytree-callable: weights as leaves) as an argument, so every call with the
    same structure and shapes reuses one compilation."""
    return fn(x)


def render(world: Any, z: np.ndarray, batch: int = 256) -> np.ndarray:
    """NCHW images in [−1, 1] of latents `z[N, D]` through `world.render`, in fixed-size jitted batches (one
    compilation); rows with non-finite latents give NaN images."""
    if world.render is None:
        raise ValueError(f"world {world.name!r} has no image renderer")
    z = np.asarray(z, np.float32)
    ok = np.all(np.isfinite(z), axis=-1)
    fn = _call
    out = []
    b = min(batch, max(len(z), 1))
    for i in range(0, len(z), b):
        part = np.where(ok[i:i + b, None], z[i:i + b], 0.0)
        n = part.shape[0]
        if n < b:
            part = np.concatenate([part, np.zeros((b - n, z.shape[1]), np.float32)])
        out.append(np.asarray(fn(world.render, jnp.asarray(part)))[:n])
    images = np.concatenate(out) if out else np.zeros((0, 3, 1, 1), np.float32)
    images[~ok] = np.nan
    return images


def judge(world: Any, images: np.ndarray, batch: int = 500,
          features: Optional[Callable[[jax.Array], jax.Array]] = None) -> tuple[dict, np.ndarray]:
    """(labels {name: [N]}, features [N, F]) of images by the world's judge; `features` replaces the judge's
    feature extractor (e.g. an Inception network; a pytree-callable or plain function) for Fréchet distances.
    NaN images give NaN rows."""
    if world.judge is None:
        raise ValueError(f"world {world.name!r} has no judge (an image classifier for evaluation)")
    images = np.asarray(images, np.float32)
    ok = np.all(np.isfinite(images.reshape(len(images), -1)), axis=-1) if len(images) else np.zeros(0, bool)
    jfn = _call
    features = None if features is None else en.as_pytree_callable(features)
    labels: dict[str, list] = {}
    feats = []
    b = min(batch, max(len(images), 1))
    for i in range(0, len(images), b):
        part = np.nan_to_num(images[i:i + b])
        n = part.shape[0]
        if n < b:
            part = np.concatenate([part, np.zeros((b - n,) + part.shape[1:], np.float32)])
        out = jfn(world.judge, jnp.asarray(part))
        for name, v in out["labels"].items():
            labels.setdefault(name, []).append(np.asarray(v)[:n])
        f = out["features"] if features is None else _call(features, jnp.asarray(part))
        feats.append(np.asarray(f, np.float32)[:n])
    labels_np = {k: np.concatenate(v) for k, v in labels.items()}
    for k, v in labels_np.items():
        if np.issubdtype(v.dtype, np.floating):
            v[~ok] = np.nan
        else:
            labels_np[k] = np.where(ok, v, -1)
    f = np.concatenate(feats) if feats else np.zeros((0, 0), np.float32)
    f[~ok] = np.nan
    return labels_np, f


__all__ = ["EDIT_REG_Z", "EDIT_REG_LOGITS", "EditStep", "fingerprint", "sample_condition", "parse_edit",
           "edit_energy", "edit_step", "sequential_edit", "render", "judge", "AnchoredBatch"]
