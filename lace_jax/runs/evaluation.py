"""Evaluation by an image judge: conditional accuracy, Fréchet distance, sequential-editing preservation.

    world = worlds.world_from_config("shapes")
    res = workflow.sample_condition(world, "shape=circle & !background=white", num_samples=256)
    real, real_labels = evaluation.reference_set(world, 5000, seed=0)    # judge features + labels of renders
    row = evaluation.condition_metrics(world, "shape=circle & !background=white", res, real_features=real,
                                       real_labels=real_labels)     # fd (all real) and fd_matched
    z0, steps = workflow.sequential_edit(world, ["shape=star", "background=black"], num_samples=64)
    rows = evaluation.edit_metrics(world, z0, steps)
    print(evaluation.markdown(rows))

Success of an expression is read by the JUDGE on the rendered images (not by the latent classifiers the sampler
used): discrete atoms hold when the judge's class equals the target, continuous ones when |judge − target| < tol;
`&`, `|`, `!` are Boolean. A sample whose solve failed counts as a miss. The unconditional rate ("base rate") is the
same reading of images of the samples' own starting latents z0 ~ N(0, I) (the same keys as the sampler's).

Fréchet distances use the judge's penultimate features by default; pass `features=` (any callable or
pytree-callable `images → [B, F]`, e.g. an Inception network) to use another extractor. Worlds without real
images (user LACE worlds) take a reference sample set instead (`reference_features_from_images`).
"""
from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lace_jax.runs import chunks
from lace_jax.runs import workflow
from lace_jax.metrics.frechet import frechet_distance
from lace_jax import expressions, records

Features = Optional[Callable[[jax.Array], jax.Array]]


# --------------------------------------------------------------------------------------------------------------
# Success by the judge

def atom_by_judge(attribute: Any, value: Any, labels: np.ndarray, tol: float = 0.1) -> np.ndarray:
    """bool[N]: discrete label == value; continuous |label − value| < tol. Missing labels (−1 / NaN) are False."""
    v = np.asarray(labels)
    if attribute.kind == "discrete":
        return v.astype(np.int64) == int(value)
    v = v.astype(np.float64)
    return np.isfinite(v) & (np.abs(np.nan_to_num(v, nan=np.inf) - float(value)) < tol)


def judge_satisfied(expr: str, attributes: Mapping[str, Any], labels: Mapping[str, np.ndarray],
                    tol: float = 0.1) -> tuple[np.ndarray, dict]:
    """(bool[N] whether each image satisfies `expr` by the judge's `labels`, {"name=value": bool[N]} per atom)."""
    tree = expressions.parse(expr, attributes)
    for name, _ in expressions.atoms(tree):
        if name not in labels:
            raise ValueError(f"the judge gives no label for attribute {name!r} (it labels: {', '.join(labels)})")
    return expressions.satisfied(tree, attributes,
                                 lambda n, v: atom_by_judge(attributes[n], v, labels[n], tol))


# --------------------------------------------------------------------------------------------------------------
# Reference features and Fréchet distance

def reference_features(world: Any, num: int, seed: int = 0, features: Features = None,
                       batch: int = 500) -> np.ndarray:
    """Judge (or `features`) features of `num` real images of the world (its `real_images`)."""
    if world.real_images is None:
        raise ValueError(f"world {world.name!r} has no real images; pass a reference sample set "
                         "(reference_features_from_images) instead")
    out, key = [], jax.random.PRNGKey(int(seed) + 7919)
    for i in range(int(math.ceil(num / batch))):
        n = min(batch, num - i * batch)
        imgs = np.asarray(world.real_images(jax.random.fold_in(key, i), batch))[:n]
        out.append(workflow.judge(world, imgs, features=features)[1])
    return np.concatenate(out)


def reference_set(world: Any, num: int, seed: int = 0, features: Features = None,
                  batch: int = 500) -> tuple[np.ndarray, dict]:
    """(features [num, F], judge labels {name: [num]}) of `num` real images: the labels select the real images
    that satisfy a condition, the matched reference of a conditional Fréchet distance."""
    if world.real_images is None:
        raise ValueError(f"world {world.name!r} has no real images")
    feats, labels, key = [], {}, jax.random.PRNGKey(int(seed) + 7919)
    for i in range(int(math.ceil(num / batch))):
        n = min(batch, num - i * batch)
        imgs = np.asarray(world.real_images(jax.random.fold_in(key, i), batch))[:n]
        lab, f = workflow.judge(world, imgs, features=features)
        feats.append(f)
        for k, v in lab.items():
            labels.setdefault(k, []).append(v)
    return np.concatenate(feats), {k: np.concatenate(v) for k, v in labels.items()}


def matched_fd(expr: str, attributes: Mapping[str, Any], gen_features: np.ndarray,
               real_features: np.ndarray, real_labels: Mapping[str, np.ndarray], tol: float = 0.1
               ) -> tuple[float, int]:
    """(FD of generated features to the real images that satisfy `expr` by the judge, how many real ones):
    the realism of conditional samples measured against the conditional data distribution (an FD against all
    real images penalises every successful condition for not looking like the unconditional data)."""
    keep, _ = judge_satisfied(expr, attributes, real_labels, tol)
    return fd(gen_features, real_features[keep]), int(keep.sum())


def reference_features_from_images(world: Any, images: np.ndarray, features: Features = None) -> np.ndarray:
    """Features of a user-given reference set (NCHW in [−1, 1], e.g. unconditional samples of the generator)."""
    return workflow.judge(world, np.asarray(images, np.float32), features=features)[1]


def fd(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between two feature sets (rows with NaN — failed samples — are dropped)."""
    a = features_a[np.all(np.isfinite(features_a), axis=1)]
    b = features_b[np.all(np.isfinite(features_b), axis=1)]
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return float(frechet_distance(a, b))


# --------------------------------------------------------------------------------------------------------------
# Conditional sampling

def start_latents(world: Any, num: int, seed: int, start: int = 0) -> np.ndarray:
    """The N(0, I) starts `dispatch.sampler_fn` draws for samples start … start+num−1 of `seed` (the unconditional
    set)."""
    return np.asarray(_start_latents(np.uint32(seed), np.int32(start), int(num), int(world.latent_dim)))


@functools.partial(jax.jit, static_argnums=(2, 3))
def _start_latents(seed, start, num: int, dim: int):
    keys = jax.vmap(lambda i: chunks.sample_key(seed, i))(start + jnp.arange(num))
    return jax.vmap(lambda k: jax.random.normal(jax.random.split(k)[0], (dim,), jnp.float32))(keys)


def fit_satisfied(world: Any, expr: str, images: np.ndarray, ok: np.ndarray, tol: float = 0.1,
                  fit: Optional[Mapping[str, Any]] = None) -> tuple[np.ndarray, np.ndarray]:
    """(bool[N]: the world's fit judge finds a render that explains the image AND that render satisfies `expr`,
    bool[N]: realistic) for rendered `images` (rows where not `ok`, i.e. failed solves: False). `fit`: the fit
    judge's output for these images when the caller has it already."""
    out = world.fit_judge(np.nan_to_num(np.asarray(images, np.float32))) if fit is None else fit
    sat, _ = judge_satisfied(expr, world.attributes, out["labels"], tol)
    realistic = np.asarray(out["realistic"], bool) & np.asarray(ok, bool)
    return sat & realistic, realistic


class ConditionScore(NamedTuple):
    """Running sums of one condition's scores: counts, NFE sum, and streaming Gaussian statistics
    (`metrics.fid.StatsState`) of the judge features of the successful samples and of their starting latents'
    images. Its size does not depend on how many samples were added (`condition_update`), so any number of samples
    is scored in the memory of one batch."""
    num: int = 0                     # samples added
    num_ok: int = 0                  # successful solves
    sat: int = 0                     # satisfied by the judge and successful
    base: int = 0                    # starting latents' images satisfying the condition
    atoms: tuple = ()                # ((name=value, satisfied and successful), ...)
    fit_sat: int = 0                 # the fit judge's counts (worlds with one)
    base_fit: int = 0
    realistic: int = 0
    base_realistic: int = 0
    nfe_sum: float = 0.0             # over successful samples
    nfe_num: int = 0
    gen: Any = None                  # StatsState of the successful samples' features (None before any)
    base_feats: Any = None           # StatsState of the starting latents' features


def _stats_add(state: Any, feats: np.ndarray) -> Any:
    from lace_jax.metrics import fid

    feats = feats[np.all(np.isfinite(feats), axis=1)]       # as `fd`: rows with NaN never count
    if state is None:
        state = fid.stats_init(feats.shape[1])
    return fid.stats_update(state, feats)


def condition_update(world: Any, expr: str, score: ConditionScore, z: np.ndarray, success: np.ndarray, *,
                     seed: int = 0, start: int = 0, nfe: Optional[np.ndarray] = None, tol: float = 0.1,
                     features: Features = None, batch: int = 256) -> ConditionScore:
    """`score` with samples start … start+len(z)−1 of the condition `expr` (sampled with `seed`) added: their
    latents `z`, `success` and per-sample `nfe`. Each latent and its starting latent are rendered once, in batches of
    `batch`, and read by the judge (and the fit judge)."""
    z = np.asarray(z, np.float32)
    success = np.asarray(success, bool)
    for i in range(0, len(z), batch):
        zb, ok = z[i:i + batch], success[i:i + batch]
        images = workflow.render(world, zb, batch=batch)            # rendered once, read by both judges
        labels, feats = workflow.judge(world, images, features=features)
        sat, per_atom = judge_satisfied(expr, world.attributes, labels, tol)
        base_images = workflow.render(world, start_latents(world, len(zb), seed, start + i), batch=batch)
        base_labels, base_feats = workflow.judge(world, base_images, features=features)
        base, _ = judge_satisfied(expr, world.attributes, base_labels, tol)
        atoms = dict(score.atoms)
        for k, v in per_atom.items():
            atoms[k] = atoms.get(k, 0) + int((v & ok).sum())
        upd = dict(num=score.num + len(zb), num_ok=score.num_ok + int(ok.sum()), sat=score.sat + int((sat & ok).sum()),
                   base=score.base + int(base.sum()), atoms=tuple(atoms.items()),
                   gen=_stats_add(score.gen, feats[ok]), base_feats=_stats_add(score.base_feats, base_feats))
        if world.fit_judge is not None:
            fit_sat, realistic = fit_satisfied(world, expr, images, ok, tol)
            base_sat, base_real = fit_satisfied(world, expr, base_images, np.ones(len(zb), bool), tol)
            upd.update(fit_sat=score.fit_sat + int((fit_sat & ok).sum()), base_fit=score.base_fit + int(base_sat.sum()),
                       realistic=score.realistic + int((realistic & ok).sum()),
                       base_realistic=score.base_realistic + int(base_real.sum()))
        if nfe is not None:
            v = np.asarray(nfe)[i:i + batch][ok]
            upd.update(nfe_sum=score.nfe_sum + float(np.sum(v, dtype=np.float64)), nfe_num=score.nfe_num + len(v))
        score = score._replace(**upd)
    return score


def _fd_stats(state: Any, real_features: np.ndarray) -> float:
    """Fréchet distance of accumulated statistics to a feature set (NaN with fewer than 2 on either side)."""
    from lace_jax.metrics import fid
    from lace_jax.metrics.frechet import frechet_distance_from_stats, gaussian_stats

    real = real_features[np.all(np.isfinite(real_features), axis=1)]
    if state is None or state.count < 2 or len(real) < 2:
        return float("nan")
    return float(frechet_distance_from_stats(*fid.stats_finalize(state), *gaussian_stats(real)))


def condition_row(world: Any, expr: str, score: ConditionScore, *, real_features: Optional[np.ndarray] = None,
                  real_labels: Optional[Mapping[str, np.ndarray]] = None, tol: float = 0.1,
                  time_s: Optional[float] = None, nfe: bool = True) -> dict:
    """The row of `condition_metrics` from accumulated sums (`condition_update`); `nfe=False` leaves NFE out."""
    n = max(score.num, 1)
    row = {"expr": expr, "num_samples": int(score.num), "accuracy": score.sat / n, "base_rate": score.base / n,
           "num_failed": int(score.num - score.num_ok), **{f"sat[{k}]": v / n for k, v in score.atoms}}
    if world.fit_judge is not None:
        row.update(accuracy_fit=score.fit_sat / n, base_rate_fit=score.base_fit / n, realistic=score.realistic / n,
                   base_realistic=score.base_realistic / n)
    if real_features is not None:
        row["fd"] = _fd_stats(score.gen, real_features)
        row["fd_unconditional"] = _fd_stats(score.base_feats, real_features)
        if real_labels is not None:
            keep, _ = judge_satisfied(expr, world.attributes, real_labels, tol)
            row["fd_matched"], row["num_real_matched"] = _fd_stats(score.gen, real_features[keep]), int(keep.sum())
    if nfe:
        row["nfe"] = score.nfe_sum / score.nfe_num if score.nfe_num else float("nan")
    if time_s is not None:
        row["time_s"] = float(time_s)
        row["samples_per_s"] = float(score.num / time_s) if time_s > 0 else float("nan")
    return row


def condition_metrics(world: Any, expr: str, result: chunks.BatchResult, *, seed: int = 0,
                      real_features: Optional[np.ndarray] = None, features: Features = None, tol: float = 0.1,
                      time_s: Optional[float] = None, real_labels: Optional[Mapping[str, np.ndarray]] = None
                      ) -> dict:
    """Judge accuracy of `result` (a `workflow.sample_condition` output for `expr` with `seed`) next to the
    unconditional rate (with a fit judge also `accuracy_fit` / `base_rate_fit`: explained by a render that
    satisfies `expr`, and the `realistic` fractions), per-atom rates, failures, Fréchet distance to `real_features` (`fd`) and, with
    `real_labels`, to the real images that satisfy `expr` (`fd_matched`, `num_real_matched`), NFE and time.
    The same sums as a streamed scoring (`condition_update` → `condition_row`), in one update."""
    nfe = result.stats.get("nfe")
    score = condition_update(world, expr, ConditionScore(), result.z, result.success, seed=seed, nfe=nfe, tol=tol,
                             features=features)
    return condition_row(world, expr, score, real_features=real_features, real_labels=real_labels, tol=tol,
                         time_s=time_s, nfe=nfe is not None)


# --------------------------------------------------------------------------------------------------------------
# Sequential editing

def _kept(attribute: Any, before: np.ndarray, after: np.ndarray, tol: float) -> np.ndarray:
    if attribute.kind == "discrete":
        return (np.asarray(before) == np.asarray(after)) & (np.asarray(before) >= 0)
    b, a = np.asarray(before, np.float64), np.asarray(after, np.float64)
    return np.isfinite(a) & np.isfinite(b) & (np.abs(a - b) < tol)


def edit_metrics(world: Any, z_start: np.ndarray, steps: Sequence[Any], *, tol: float = 0.1,
                 features: Features = None) -> list[dict]:
    """Per editing step (LACE's sequential-editing table): accuracy of the attribute edited now; preservation of
    the attributes edited earlier (their targets still hold); preservation of the never-edited attributes (the
    judge's labels of the start kept: class equal, value within tol); identity = mean L2 distance of judge
    features to the previous step and to the start, next to the distance between unrelated samples."""
    labels0, f0 = workflow.judge(world, workflow.render(world, z_start), features=features)
    unrelated = float(np.nanmean(np.linalg.norm(f0 - np.roll(f0, 1, axis=0), axis=1))) if len(f0) > 1 else math.nan
    prev_f = f0
    edited_all = [s.names[-1] for s in steps]
    rows = []
    for k, step in enumerate(steps):
        ok = np.asarray(step.result.success)
        labels, f = workflow.judge(world, workflow.render(world, step.result.z), features=features)
        current, target = step.names[-1], step.targets[-1]
        acc = atom_by_judge(world.attributes[current], target, labels[current], tol) & ok
        earlier = [(n, t) for n, t in zip(step.names[:-1], step.targets[:-1])]
        keep_earlier = [atom_by_judge(world.attributes[n], t, labels[n], tol) & ok for n, t in earlier]
        never = [n for n in world.attributes if n not in edited_all and n in labels]
        keep_never = {n: _kept(world.attributes[n], labels0[n], labels[n], tol) & ok for n in never}
        row = {"step": k + 1, "edit": step.edit, "num_samples": int(len(ok)), "num_failed": int((~ok).sum()),
               "accuracy": float(np.mean(acc)),
               "earlier_kept": float(np.mean(np.logical_and.reduce(keep_earlier))) if keep_earlier else None,
               "unedited_kept": float(np.mean(np.logical_and.reduce(list(keep_never.values()))))
               if keep_never else None,
               **{f"kept[{n}]": float(np.mean(v)) for n, v in keep_never.items()},
               "feature_dist_prev": float(np.nanmean(np.linalg.norm(f[ok] - prev_f[ok], axis=1))) if ok.any()
               else math.nan,
               "feature_dist_start": float(np.nanmean(np.linalg.norm(f[ok] - f0[ok], axis=1))) if ok.any()
               else math.nan,
               "feature_dist_unrelated": unrelated}
        nfe = step.result.stats.get("nfe")
        if nfe is not None:
            row["nfe"] = float(np.mean(np.asarray(nfe)[ok])) if ok.any() else math.nan
        rows.append(row)
        prev_f = f
    return rows


# --------------------------------------------------------------------------------------------------------------
# Sweeps scored by the judge

def sweep_row_metrics(world: Any, row: Mapping[str, Any], z: np.ndarray, success: np.ndarray, z0: np.ndarray,
                      *, real_features: Optional[np.ndarray] = None, features: Features = None,
                      tol: float = 0.1, real_labels: Optional[Mapping[str, np.ndarray]] = None) -> dict:
    """Judge metrics for one sweep row (`sweeps.run_sweep(..., extra_metrics=...)` calls this): the image
    judge's accuracy and unconditional rate, with a fit judge also its accuracy (`fit_satisfied`), unconditional
    rate and realistic fractions, and the Fréchet distances."""
    expr = row["setting"]["expr"]
    images, base_images = workflow.render(world, z), workflow.render(world, z0)
    labels, feats = workflow.judge(world, images, features=features)
    sat, _ = judge_satisfied(expr, world.attributes, labels, tol)
    base_labels, _ = workflow.judge(world, base_images, features=features)
    base, _ = judge_satisfied(expr, world.attributes, base_labels, tol)
    out = {"judge_accuracy": float(np.mean(sat & success)), "judge_base_rate": float(np.mean(base))}
    if world.fit_judge is not None:
        fit_sat, realistic = fit_satisfied(world, expr, images, success, tol)
        base_fit, base_realistic = fit_satisfied(world, expr, base_images, np.ones(len(z0), bool), tol)
        out.update(fit_accuracy=float(np.mean(fit_sat)), fit_base_rate=float(np.mean(base_fit)),
                   realistic=float(np.mean(realistic)), base_realistic=float(np.mean(base_realistic)))
    if real_features is not None:
        out["fd"] = fd(feats[success], real_features)
        if real_labels is not None:
            out["fd_matched"], _ = matched_fd(expr, world.attributes, feats[success], real_features, real_labels, tol)
    return out


# --------------------------------------------------------------------------------------------------------------
# Tables

markdown = records.markdown_table


def flat_sweep_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict]:
    """Sweep rows → flat dicts for `markdown`: the setting, then judge accuracy / unconditional rate / FD, the
    latent classifiers' accuracy, failures, NFE and time (per-atom rates stay in the JSON)."""
    out = []
    for r in rows:
        m = r["metrics"]
        flat = {k: v for k, v in r["setting"].items()}
        for k in ("judge_accuracy", "judge_base_rate", "fit_accuracy", "fit_base_rate", "realistic", "fd_matched",
                  "fd"):
            if k in m:
                flat[k] = m[k]
        flat["classifier_accuracy"] = m.get("accuracy")
        flat["num_failed"] = m.get("num_failed")
        flat["nfe"] = r.get("nfe")
        flat["time_s"] = r.get("time_s")
        out.append(flat)
    return out


def judge_summary(attributes: Mapping[str, Any], labels: Mapping[str, np.ndarray], ok: np.ndarray) -> dict:
    """Per attribute: class frequencies (discrete) or mean/std (continuous) of the judge's labels over the
    samples where `ok`."""
    out = {}
    for name, a in attributes.items():
        if name not in labels:
            continue
        v = np.asarray(labels[name])[ok]
        if len(v) == 0:
            continue
        if a.kind == "discrete":
            counts = np.bincount(v.astype(int), minlength=a.num_classes)[:a.num_classes] / len(v)
            names = a.classes or [str(i) for i in range(a.num_classes)]
            out[name] = {c: round(float(f), 4) for c, f in zip(names, counts)}
        else:
            out[name] = {"mean": round(float(np.mean(v)), 4), "std": round(float(np.std(v)), 4)}
    return out


def judge_summaries(world: Any, zs: Sequence[np.ndarray], labels: Sequence[str],
                    success: Sequence[np.ndarray]) -> list[dict]:
    """Per row: the judge's class frequencies / mean and std of every attribute over the successful samples; with
    a fit judge also `fit_judge`: the fraction of successful samples a render explains (`realistic`), the fraction
    explained by a render that satisfies the row's expression (`satisfied`; rows whose label is not an expression
    have none) and the same summary of the fitted renders' labels over the realistic samples."""
    out = []
    for label, z, ok in zip(labels, zs, success):
        ok = np.asarray(ok, bool)
        images = workflow.render(world, z)
        lab, _ = workflow.judge(world, images)
        row = {"condition": label, **judge_summary(world.attributes, lab, ok)}
        if world.fit_judge is not None:
            fit = world.fit_judge(np.nan_to_num(np.asarray(images, np.float32)))
            realistic = np.asarray(fit["realistic"], bool) & ok
            n = max(int(ok.sum()), 1)
            row["fit_judge"] = {"num": int(ok.sum()), "realistic": round(float(realistic.sum() / n), 4)}
            try:
                sat, _ = fit_satisfied(world, label, images, ok, fit=fit)
                row["fit_judge"]["satisfied"] = round(float(sat.sum() / n), 4)
            except ValueError:
                pass
            row["fit_judge"].update(judge_summary(world.attributes, fit["labels"], realistic))
        out.append(row)
    return out


# --------------------------------------------------------------------------------------------------------------
# Inception FID of generated samples (pytorch-fid's network and statistics, lace_jax.metrics.fid)

class InceptionFID(NamedTuple):
    """What an Inception FID needs: the converted network's variables, the reference statistics, and whether the
    samples are quantised to uint8 first (what PNGs hold, pytorch-fid's input) or fed as floats (LACE's scripts)."""
    variables: Any
    mu: np.ndarray
    sigma: np.ndarray
    quantize: bool = True
    batch_size: int = 50


def image_batches(world: Any, z: np.ndarray, batch: int = 50, quantize: bool = True):
    """Rendered images of the finite rows of `z`, `batch` at a time (NHWC uint8, or NHWC floats in [−1, 1]):
    memory bounded by one batch, whatever N."""
    from lace_jax.models.stylegan2 import to_uint8

    z = np.asarray(z, np.float32)
    z = z[np.all(np.isfinite(z), axis=-1)]
    for i in range(0, len(z), batch):
        imgs = workflow.render(world, z[i:i + batch], batch=batch)
        yield to_uint8(imgs) if quantize else np.transpose(imgs, (0, 2, 3, 1))


def inception_stats(world: Any, z: np.ndarray, spec: InceptionFID, progress: Optional[Callable] = None):
    """A streaming `metrics.fid.StatsState` of the Inception features of the images of `z`'s finite rows."""
    from lace_jax.metrics import fid

    state = fid.stats_init()
    n = int(np.all(np.isfinite(np.asarray(z)), axis=-1).sum())
    for feats in fid.iter_features(spec.variables, image_batches(world, z, spec.batch_size, spec.quantize),
                                   batch_size=spec.batch_size, progress=progress, total=n):
        state = fid.stats_update(state, feats)
    return state


def inception_fid(state: Any, spec: InceptionFID) -> float:
    """FID of accumulated statistics against the reference (NaN with fewer than 2 samples)."""
    from lace_jax.metrics import fid

    if state.count < 2:
        return float("nan")
    return fid.frechet_distance(*fid.stats_finalize(state), spec.mu, spec.sigma)


# --------------------------------------------------------------------------------------------------------------
# `python evaluate.py` over a world

OUTPUTS = ("results.json", "results.md")


def run(config: Mapping[str, Any], request: Any, *, num_real: int = 2000, use_fd: bool = True,
        tol: float = 0.1, inception: Optional[InceptionFID] = None) -> tuple[dict, str]:
    """Sample the request's conditions (or edits, or sweep) on the config's world and score them by its judge:
    (record with one row per condition / step / setting, Markdown table). Fréchet distances use `num_real` real
    images of the world (judge features) when `use_fd`. With `inception`, every condition's row gets its Inception
    FID against the reference (`fid_inception`) and the record the FID of all conditions pooled
    (`fid_inception_all`, LACE's CIFAR-10 protocol: 5,000 per class); a world without a judge is then scored by
    FID alone."""
    import dataclasses

    from lace_jax.config import load_config
    from lace_jax.runs import output, request as rq, sweeps

    say = request.progress
    world = rq.load_world(config, request.config_name)
    if world.render is None or (world.judge is None and inception is None):
        raise rq.RequestError(f"world {world.name!r} has no image judge to evaluate with (the shipped shapes model "
                              "has one; for your own weights give --fid_inception and --fid_ref, or use sample.py)")
    if inception is not None and (request.edits or request.sweep):
        raise rq.RequestError("--fid_inception scores conditions (--expr/--attr or the config's), not --edit or "
                              "--sweep")
    edits = rq.edits(world, request.edits)
    if edits and (request.exprs or request.attrs):
        raise rq.RequestError("--edit cannot be combined with --expr/--attr")
    protocol = dict(config.get("fid") or {}) if inception is not None else {}
    conds = [] if edits or request.sweep else rq.conditions(
        world, rq.expressions(request) or protocol.get("conditions", []))
    sampler = rq.sampler_name(world, request)
    options = rq.sampler_options(world, sampler, request.options)
    n = rq.num_samples(world, request, default=int(protocol.get("samples_per_condition", 64)))
    chunk = rq.chunk_size(world, request)
    if num_real < 2 and use_fd:
        raise rq.RequestError(f"--num_real must be >= 2 for a Fréchet distance, got {num_real}")
    sweep_cfg = None
    if request.sweep:
        try:
            sweep_cfg = load_config(request.sweep)
            settings = sweeps.settings_from_config(sweep_cfg, world.name)
        except (ValueError, FileNotFoundError) as err:
            raise rq.RequestError(f"--sweep: {err}") from None
    out_dir = request.out_dir
    output.prepare_out_dir(out_dir, OUTPUTS)
    say(f"world={world.name} sampler={sampler} backend={jax.default_backend()} devices={jax.device_count()}")

    real = real_labels = None
    if use_fd and world.real_images is not None and world.judge is not None:
        (real, real_labels), t_real = timed(lambda: reference_set(world, num_real, request.seed))
        say(f"reference: {num_real} real renders in {t_real:.1f}s")
    record: dict = {**request.record, "world": world.name, "config": dict(config), "sampler": sampler,
                    "precision": world.precision, "options": dataclasses.asdict(options), "num_samples": n,
                    "num_real": num_real if real is not None else 0, "tol": tol}
    if sweep_cfg is not None:
        n_sweep = request.num_samples or int(sweep_cfg.get("num_samples", 256))
        say(f"sweep {request.sweep}: {len(settings)} settings x {n_sweep} samples")
        rows = sweeps.run_sweep(
            world, settings, num_samples=n_sweep, seed=request.seed, tol=tol,
            extra_metrics=lambda row, z, ok, z0: sweep_row_metrics(
                world, row, z, ok, z0, real_features=real, real_labels=real_labels, tol=tol),
            progress=lambda r: say(f"{r['setting'].get('label', '')} {r['setting']['expr']!r}: judge accuracy "
                                   f"{r['metrics']['judge_accuracy']:.3f} (base {r['metrics']['judge_base_rate']:.3f}) "
                                   + (f"fit judge {r['metrics']['fit_accuracy']:.3f} (base "
                                      f"{r['metrics']['fit_base_rate']:.3f}, realistic {r['metrics']['realistic']:.3f}) "
                                      if "fit_accuracy" in r["metrics"] else "")
                                   + f"nfe {r['nfe']} time {r['time_s']:.2f}s"))
        record.update(sweep=request.sweep, sweep_config=sweep_cfg, rows=rows)
        return record, markdown(flat_sweep_rows(rows))
    if edits:
        z0, steps = workflow.sequential_edit(
            world, edits, num_samples=n, seed=request.seed, sampler=sampler, options=options, chunk_size=chunk,
            out_dir=out_dir / "edits", reg_z=request.reg_z, reg_logits=request.reg_logits, cache={},
            progress=lambda k, p: say(f"edit {k + 1}/{len(edits)} ({edits[k]}): {p.line()}"))
        rows = edit_metrics(world, z0, steps, tol=tol)
        record.update(edits=edits, rows=rows, reg_z=request.reg_z, reg_logits=request.reg_logits,
                      failed_indices=[s.result.failed_indices.tolist() for s in steps])
        return record, markdown(rows)
    cache: dict = {}
    rows = []
    pooled = None
    if inception is not None:
        from lace_jax.metrics import fid
        pooled = fid.stats_init()
    for k, expr in enumerate(conds):
        seed = request.seed + k
        try:
            res, t = timed(lambda: workflow.sample_condition(
                world, expr, num_samples=n, seed=seed, sampler=sampler, options=options, chunk_size=chunk,
                out_dir=out_dir / "conditions" / f"{k:02d}", cache=cache,
                progress=lambda p: say(f"condition {k + 1}/{len(conds)} {expr!r}: {p.line()}")))
        except chunks.BatchError as err:
            raise rq.RequestError(f"{err} (use another --out_dir)") from None
        if not res.success.any():
            raise rq.RequestError(f"every sample of {expr!r} failed ({sampler}); see --max_steps, --rtol/--atol")
        if world.judge is not None:
            row = condition_metrics(world, expr, res, seed=seed, real_features=real, tol=tol, time_s=t,
                                    real_labels=real_labels)
        else:
            ok = np.asarray(res.success)
            row = {"expr": expr, "num_samples": int(len(ok)), "num_failed": int((~ok).sum()), "time_s": float(t)}
            if res.stats.get("nfe") is not None and ok.any():
                row["nfe"] = float(np.mean(np.asarray(res.stats["nfe"])[ok]))
        if inception is not None:
            state = inception_stats(world, res.z, inception, progress=lambda done, total: say(
                f"condition {k + 1}/{len(conds)} {expr!r}: Inception features {done}/{total}"))
            row["fid_inception"] = inception_fid(state, inception)
            pooled = fid.stats_merge(pooled, state)
        row["failed_indices"] = res.failed_indices.tolist()
        say(f"{expr!r}: " + (f"accuracy {row['accuracy']:.3f} vs unconditional {row['base_rate']:.3f}, "
                             if "accuracy" in row else "")
            + (f"by the fit judge {row['accuracy_fit']:.3f} vs {row['base_rate_fit']:.3f} (realistic "
               f"{row['realistic']:.3f}), " if "accuracy_fit" in row else "")
            + (f"FD matched {row['fd_matched']:.2f} (all real {row['fd']:.2f}), " if "fd" in row else "")
            + (f"Inception FID {row['fid_inception']:.3f}, " if "fid_inception" in row else "")
            + f"NFE {row.get('nfe', 0):.1f}")
        rows.append(row)
    record["rows"] = rows
    if inception is not None:
        record["fid_inception_all"] = inception_fid(pooled, inception)
        record["fid_inception_num"] = int(pooled.count)
        record["fid_quantized"] = bool(inception.quantize)
        say(f"Inception FID of all {int(pooled.count)} samples: {record['fid_inception_all']:.3f}")
    return record, markdown([{k: v for k, v in r.items() if k != "failed_indices"} for r in rows])


# --------------------------------------------------------------------------------------------------------------
# `python evaluate.py --samples_dir DIR`: score what sample.py wrote, streamed, without sampling again

class SamplesDirError(ValueError):
    """A folder that is not a complete `sample.py` output of conditions (the message says what is missing)."""


def _npy_rows(zf: Any, name: str):
    """(open member stream, shape, dtype) of array `name` in an open .npz `ZipFile`, positioned at its data: rows
    are then read in order with `_read_rows`, never the whole array."""
    member = f"{name}.npy"
    if member not in zf.namelist():
        raise SamplesDirError(f"{zf.filename} has no array {name!r}")
    f = zf.open(member)
    version = np.lib.format.read_magic(f)
    shape, fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                             else np.lib.format.read_array_header_2_0(f))
    if fortran or dtype.hasobject:
        raise SamplesDirError(f"{zf.filename}: array {name!r} is not a plain C-order array")
    return f, shape, dtype


def _read_rows(f: Any, dtype: np.dtype, row_shape: tuple, n: int) -> np.ndarray:
    size = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize
    buf = f.read(size * n)
    if len(buf) != size * n:
        raise SamplesDirError("samples.npz ends early (a truncated file)")
    return np.frombuffer(buf, dtype).reshape((n,) + tuple(row_shape))


def iter_condition_chunks(samples_dir: str | Path, num_conditions: int, num_samples: int, *, rows: int = 4096):
    """Yield `(k, start, z, success, stats)` for every condition k of a sample.py output folder, in order, `rows`
    samples (or one chunk file) at a time: from the condition's chunk files (`conditions/kk/chunks/`) when they are
    all there, else from `samples.npz` (`z [C, N, D]`, `success [C, N]`) read row block by row block. Memory: one
    block, whatever N."""
    import zipfile

    root = Path(samples_dir)
    from_chunks = []
    for k in range(num_conditions):
        cdir = root / "conditions" / f"{k:02d}"
        mpath = cdir / chunks.CHUNK_DIR / chunks.MANIFEST
        ok = mpath.is_file()
        if ok:
            import json

            m = json.loads(mpath.read_text())
            ok = int(m.get("num_samples", -1)) == num_samples and int(m.get("chunk_size", 0)) >= 1
            c = int(m.get("chunk_size", 1))
            ok = ok and all(chunks.chunk_path(cdir, j).is_file() for j in range(math.ceil(num_samples / c)))
        from_chunks.append((cdir, c) if ok else None)
    npz = None
    if not all(from_chunks):
        path = root / "samples.npz"
        if not path.is_file():
            raise SamplesDirError(f"{root}: neither the chunk files of every condition (conditions/NN/chunks/) nor "
                                  "samples.npz are there")
        npz = zipfile.ZipFile(path)
    try:
        if npz is not None:
            fz, zshape, zdtype = _npy_rows(npz, "z")
            fs, sshape, sdtype = _npy_rows(npz, "success")
            if len(zshape) != 3 or zshape[:2] != (num_conditions, num_samples) or sshape != zshape[:2]:
                raise SamplesDirError(f"{root}/samples.npz holds z {zshape} and success {sshape}; the record says "
                                      f"{num_conditions} conditions of {num_samples} samples")
        for k in range(num_conditions):
            if from_chunks[k] is not None:
                cdir, c = from_chunks[k]
                for j in range(math.ceil(num_samples / c)):
                    start, stop = j * c, min((j + 1) * c, num_samples)
                    data = chunks.read_chunk(chunks.chunk_path(cdir, j), start, stop)
                    if data is None:
                        raise SamplesDirError(f"{chunks.chunk_path(cdir, j)} is incomplete or unreadable")
                    stats = {n[len("stats_"):]: v for n, v in data.items() if n.startswith("stats_")}
                    yield k, start, data["z"], data["success"].astype(bool), stats
                if npz is not None:                  # keep the npz streams at condition k + 1
                    for i in range(0, num_samples, rows):
                        m = min(rows, num_samples - i)
                        _read_rows(fz, zdtype, zshape[2:], m), _read_rows(fs, sdtype, (), m)
            else:
                for i in range(0, num_samples, rows):
                    m = min(rows, num_samples - i)
                    yield (k, i, _read_rows(fz, zdtype, zshape[2:], m).astype(np.float32),
                           _read_rows(fs, sdtype, (), m).astype(bool), {})
    finally:
        if npz is not None:
            npz.close()


def read_sample_record(samples_dir: str | Path) -> dict:
    """The `record.json` of a sample.py output folder of conditions (a `SamplesDirError` for anything else)."""
    import json

    root = Path(samples_dir)
    path = root / "record.json"
    if not root.is_dir():
        raise SamplesDirError(f"--samples_dir {root} is not a folder")
    if not path.is_file():
        raise SamplesDirError(f"{root} has no record.json: not a (complete) sample.py output folder")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SamplesDirError(f"{path} is not readable JSON ({err})") from None
    if not isinstance(record, dict) or not {"world", "config", "num_samples", "seed"} <= set(record):
        raise SamplesDirError(f"{path} is not a sample.py record (no world/config/num_samples/seed)")
    if "edits" in record:
        raise SamplesDirError(f"{root} holds sequential edits; --samples_dir scores conditions (evaluate.py --edit "
                              "samples and scores edits)")
    if not record.get("conditions"):
        raise SamplesDirError(f"{path} lists no conditions")
    return record


def score_samples_dir(samples_dir: str | Path, *, num_real: int = 2000, use_fd: bool = True, tol: float = 0.1,
                      checkpoint_dir: Optional[str] = None, inception: Optional[InceptionFID] = None,
                      progress: Optional[Callable[[str], None]] = None, batch: int = 256,
                      rows: int = 4096) -> tuple[dict, str]:
    """Score the conditions a `sample.py` run wrote into `samples_dir` without sampling again: per condition the
    same row as `evaluate.py` (judge accuracy next to the unconditional rate of the samples' own starting latents,
    per-atom rates, the fit judge's rates, FD to `num_real` real renders and to the matched ones, mean NFE; with
    `inception`, Inception FID per condition and pooled), streamed block by block (`iter_condition_chunks`) into
    running sums (`ConditionScore`): memory does not grow with the number of samples. The world is the one the
    record names (its config; `checkpoint_dir` replaces its model location). Returns (record, Markdown table);
    a folder that is not a sample.py output of conditions raises `SamplesDirError`."""
    from lace_jax.runs import request as rq

    say = progress or (lambda msg: None)
    record_in = read_sample_record(samples_dir)
    config = dict(record_in["config"])
    if checkpoint_dir:
        config["model_dir" if config.get("world") == "shapes" else "checkpoint_dir"] = checkpoint_dir
    for field in ("model_dir", "checkpoint_dir"):
        if str(config.get(field) or "").startswith("…"):
            raise SamplesDirError(f"{samples_dir}/record.json names the model folder only as {config[field]!r} "
                                  "(shared records keep no absolute paths): give it with --checkpoint_dir")
    world = rq.load_world(config, str(record_in.get("world", "")))
    if world.render is None or (world.judge is None and inception is None):
        raise SamplesDirError(f"world {world.name!r} has no image judge to score with (give --fid_inception and "
                              "--fid_ref for an Inception FID)")
    conds = [c["expr"] for c in record_in["conditions"]]
    n, seed = int(record_in["num_samples"]), int(record_in["seed"])
    real = real_labels = None
    if use_fd and world.real_images is not None and world.judge is not None:
        (real, real_labels), t_real = timed(lambda: reference_set(world, num_real, seed))
        say(f"reference: {num_real} real renders in {t_real:.1f}s")
    scores = [ConditionScore() for _ in conds]
    fid_states: list = [None] * len(conds)
    has_nfe = [False] * len(conds)
    t0 = time.perf_counter()
    for k, start, z, ok, stats in iter_condition_chunks(samples_dir, len(conds), n, rows=rows):
        nfe = stats.get("nfe")
        if nfe is None and "stats" in record_in["conditions"][k]:
            listed = record_in["conditions"][k]["stats"].get("nfe")
            nfe = None if listed is None else np.asarray(listed[start:start + len(z)])
        has_nfe[k] = has_nfe[k] or nfe is not None
        if world.judge is not None:
            scores[k] = condition_update(world, conds[k], scores[k], z, ok, seed=seed + k, start=start, nfe=nfe,
                                         tol=tol, batch=batch)
        else:
            scores[k] = scores[k]._replace(num=scores[k].num + len(z), num_ok=scores[k].num_ok + int(ok.sum()))
        if inception is not None:
            from lace_jax.metrics import fid

            state = inception_stats(world, z, inception)
            fid_states[k] = state if fid_states[k] is None else fid.stats_merge(fid_states[k], state)
        say(f"condition {k + 1}/{len(conds)} {conds[k]!r}: {start + len(z)}/{n} samples scored "
            f"({time.perf_counter() - t0:.1f}s)")
    out_rows = []
    for k, expr in enumerate(conds):
        if world.judge is not None:
            row = condition_row(world, expr, scores[k], real_features=real, real_labels=real_labels, tol=tol,
                                nfe=has_nfe[k])
        else:
            row = {"expr": expr, "num_samples": scores[k].num, "num_failed": scores[k].num - scores[k].num_ok}
        if inception is not None:
            row["fid_inception"] = inception_fid(fid_states[k], inception)
        out_rows.append(row)
    record = {"samples_dir": str(samples_dir), "world": world.name, "config": config,
              "sampler": record_in.get("sampler"), "options": record_in.get("options"), "num_samples": n,
              "seed": seed, "num_real": num_real if real is not None else 0, "tol": tol,
              "sample_argv": record_in.get("argv"), "rows": out_rows}
    if inception is not None:
        from lace_jax.metrics import fid

        pooled = fid.stats_init()
        for state in fid_states:
            pooled = fid.stats_merge(pooled, state) if state is not None else pooled
        record.update(fid_inception_all=inception_fid(pooled, inception), fid_inception_num=int(pooled.count),
                      fid_quantized=bool(inception.quantize))
    return record, markdown(out_rows)


def write_results(out_dir, record: dict, table: str, t_start: float) -> None:
    """results.md, then results.json last (its presence marks a complete run), both atomically."""
    from pathlib import Path

    record = {**record, "time_s": time.time() - t_start, "environment": records.environment()}
    records.write_text(Path(out_dir) / "results.md", table)
    records.write_json(Path(out_dir) / "results.json", records.shareable(record))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn(), seconds)."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


__all__ = ["atom_by_judge", "judge_satisfied", "reference_features", "reference_set", "matched_fd",
           "reference_features_from_images", "fd",
           "start_latents", "condition_metrics", "edit_metrics", "sweep_row_metrics", "flat_sweep_rows", "markdown",
           "judge_summary", "judge_summaries", "run", "InceptionFID", "image_batches",
           "inception_stats", "inception_fid", "fit_satisfied", "write_results", "OUTPUTS",
           "timed", "ConditionScore", "condition_update", "condition_row", "SamplesDirError", "read_sample_record",
           "iter_condition_chunks", "score_samples_dir"]
