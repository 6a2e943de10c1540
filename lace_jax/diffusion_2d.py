"""The 2-D diffusion-composition world as a train/sample workflow (issue 8; the full study is
`experiments/diffusion_2d.py`).

    python train.py  --config diffusion_2d --workdir runs/d2                    # every target × parameterisation
    python sample.py --config diffusion_2d --checkpoint_dir runs/d2 --expr "gmm & !bar" --set sampler=mala

Expressions over the trained models' names: `a & b` product, `a | b` mixture (temperature `mixture_temperature`),
`a & !b` negation p_a^(1+w)/p_b^w (weight `negation_weight`); `&` binds tighter than `|`, every `|`-term needs
at least one positive name. They are built with `diffusion.product/mixture/negation` for the models and with the
same algebra over the exact target energies (`energy.and_/or_/not_`), so every sample is scored against the
exact composed density.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lace_jax import diffusion
from lace_jax import energy as energy_lib
from lace_jax import expressions

CHECKPOINT_KIND = "diffusion_2d"


class ExpressionError(ValueError):
    """A malformed composition expression or an unknown model name (the message says which and where)."""


def parse(expr: str, names) -> list[tuple[list[str], list[str]]]:
    """`expr` → its OR-terms, each (positive names, negated names), read from the one expression parser
    (`lace_jax.expressions.parse_names`). Raises ExpressionError naming the problem."""
    names = list(names)
    if not isinstance(expr, str) or not expr.strip():
        raise ExpressionError("empty expression; e.g. 'gmm & bar', 'bar | ring', 'gmm & !bar'")
    try:
        tree = expressions.parse_names(expr, names, what="model")
    except ValueError as err:
        first = str(err).splitlines()[0].rstrip(":")
        raise ExpressionError(first if first.startswith("unknown model") else f"malformed expression: {first}") \
            from None
    terms = []
    for term in (tree.items if isinstance(tree, expressions.Or) else (tree,)):
        pos_t, neg_t = [], []
        for item in (term.items if isinstance(term, expressions.And) else (term,)):
            negated = isinstance(item, expressions.Not)
            leaf = item.item if negated else item
            if not isinstance(leaf, expressions.Atom):
                raise ExpressionError(f"malformed expression {expr!r}: a product is of names and negated names "
                                      "(no nested '|' or '!!')")
            (neg_t if negated else pos_t).append(leaf.name)
        if not pos_t:
            raise ExpressionError(f"a term of {expr!r} has no positive model (a negation needs one: 'a & !b')")
        terms.append((pos_t, neg_t))
    return terms


def _build(terms, leaf: Callable[[str], Any], product, mixture, negation, *, weight: float, temperature: float):
    built = []
    for pos, neg in terms:
        t = leaf(pos[0]) if len(pos) == 1 else product(*[leaf(p) for p in pos])
        for n in neg:
            t = negation(t, leaf(n), weight=weight)
        built.append(t)
    return built[0] if len(built) == 1 else mixture(*built, temperature=temperature)


def compose_models(expr: str, models: Mapping[str, diffusion.DiffusionModel], *, weight: float = 0.3,
                   temperature: float = 1.0) -> Any:
    """The composed target of `expr` over trained models (one parameterisation); TypeError where score models
    cannot express it (a mixture needs energy values)."""
    return _build(parse(expr, models), models.__getitem__, diffusion.product, diffusion.mixture,
                  diffusion.negation, weight=weight, temperature=temperature)


def _exact_negation(a, b, weight):
    return energy_lib.and_(energy_lib.weighted(a, 1.0 + weight), energy_lib.not_(b, weight))


def compose_exact(expr: str, energies: Mapping[str, Callable], *, weight: float = 0.3,
                  temperature: float = 1.0) -> Callable:
    """The same composition over exact (normalised) target energies: the density samples are scored against."""
    return _build(parse(expr, energies), energies.__getitem__, lambda *e: energy_lib.and_(*e),
                  lambda *e, temperature: energy_lib.or_(*e, temperature=temperature), _exact_negation,
                  weight=weight, temperature=temperature)


def targets(config: Mapping[str, Any]) -> dict:
    """{name: densities2d.Target} of a diffusion_2d config (exact energies and samplers)."""
    from lace_jax import densities2d

    out = {}
    for name, spec in config["targets"].items():
        spec = dict(spec)
        out[name] = densities2d.make(spec.pop("name"), **spec)
    return out


def _model_config(config: Mapping[str, Any], target: str, kind: str) -> dict:
    return {"target": target, "spec": dict(config["targets"][target]), "kind": kind, "net": dict(config["net"]),
            "schedule": config.get("schedule", "cosine"), "num_levels": int(config.get("num_levels", 100))}


def train_and_save(config: Mapping[str, Any], workdir: str | Path, log: Callable[[str], None] = print) -> dict:
    """`train.py --config diffusion_2d`: one model per target and parameterisation (`kinds`, default both),
    saved to `<workdir>/models/<target>/<kind>` (checkpoint kind `diffusion_2d`)."""
    from lace_jax import checkpoint

    t0 = time.time()
    kinds = tuple(config.get("kinds", diffusion.KINDS))
    trained = diffusion.train_from_config(dict(config), jax.random.PRNGKey(int(config.get("seed", 0))),
                                          kinds=kinds, log=log)
    out = {}
    for tname, per_kind in trained.items():
        for kind, r in per_kind.items():
            path = Path(workdir) / "models" / tname / kind
            losses = np.asarray(r["losses"])
            checkpoint.save(path, jax.tree_util.tree_map(np.asarray, {"params": r["model"].params}),
                            _model_config(config, tname, kind), CHECKPOINT_KIND, overwrite=True,
                            extra={"loss_first": float(losses[0]), "loss_last": float(losses[-1]),
                                   "seconds": float(r["seconds"])})
            out[f"{tname}/{kind}"] = {"loss_first": float(losses[0]), "loss_last": float(losses[-1]),
                                      "seconds": float(r["seconds"])}
    log(f"saved {len(out)} models to {Path(workdir) / 'models'}")
    return {"models": out, "wall_s": time.time() - t0}


def load_models(workdir: str | Path, kind: str) -> tuple[dict[str, diffusion.DiffusionModel], dict]:
    """({target: model} of one parameterisation, {target: its config}) from `train_and_save`'s workdir."""
    from lace_jax import checkpoint

    root = Path(workdir) / "models"
    if not root.is_dir():
        raise checkpoint.CheckpointError(f"no trained 2-D models in {root}")
    models, cfgs = {}, {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if not (d / kind).is_dir():
            continue
        meta = checkpoint.read_meta(d / kind)
        cfg = meta["config"]
        if meta["kind"] != CHECKPOINT_KIND:
            raise checkpoint.CheckpointError(f"{d / kind} holds a {meta['kind']!r} checkpoint, not "
                                             f"{CHECKPOINT_KIND!r}")
        sched = diffusion.schedule_from_config(cfg)
        model = diffusion.init_model(jax.random.PRNGKey(0), kind=kind, schedule=sched, **cfg["net"])
        abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), {"params": model.params})
        _, _, variables = checkpoint.load(d / kind, abstract=abstract, kind=CHECKPOINT_KIND)
        models[d.name] = model.replace(params=jax.tree_util.tree_map(jnp.asarray, variables["params"]))
        cfgs[d.name] = cfg
    if not models:
        raise checkpoint.CheckpointError(f"no {kind!r}-parameterised models in {root}")
    return models, cfgs


# --------------------------------------------------------------------------------------------------------------
# `python sample.py --config diffusion_2d --checkpoint_dir <train.py workdir>`

SAMPLERS = ("reverse", "pf_ode", "ula", "uhmc", "mala", "hmc")


def run(config: Mapping[str, Any], request: Any) -> Any:
    """Compositions of the trained 2-D models (`request.exprs`: `a & !b`, `|`, `&`, `!`), sampled by the config's
    (or the request's) sampler with its `parameterisation`, each scored against its exact composed density (mean
    log-likelihood, MMD², sliced W1 to exact samples); scatter plots, npz and record
    (`lace_jax.runs.output.Output`)."""
    from lace_jax import checkpoint, densities2d
    from lace_jax.metrics import sample_quality as sq
    from lace_jax.runs import images, output, request as rq

    say = request.progress

    if request.edits or request.sweep or request.attrs:
        raise rq.RequestError("--config diffusion_2d samples compositions: give them as --expr \"gmm & !bar\"")
    if not request.checkpoint_dir:
        raise rq.RequestError("--config diffusion_2d needs --checkpoint_dir: the --workdir of "
                              "`python train.py --config diffusion_2d --workdir DIR`")
    sampler = request.sampler or str(config.get("sampler", "mala"))
    if sampler not in SAMPLERS or sampler not in config["samplers"]:
        raise rq.RequestError(f"sampler {sampler!r} does not sample the 2-D diffusion models; use one of "
                              f"{', '.join(s for s in SAMPLERS if s in config['samplers'])}")
    kind = str(config.get("parameterisation", "energy"))
    if kind not in diffusion.KINDS:
        raise rq.RequestError(f"--set parameterisation={kind!r}: expected one of {', '.join(diffusion.KINDS)}")
    try:
        models, model_cfgs = load_models(Path(request.checkpoint_dir).expanduser(), kind)
    except checkpoint.CheckpointError as err:
        raise rq.RequestError(f"{err} (make them with: python train.py --config diffusion_2d --workdir "
                              f"{request.checkpoint_dir})") from None
    exact_targets = {}
    for name, mcfg in model_cfgs.items():
        spec = dict(mcfg["spec"])
        exact_targets[name] = densities2d.make(spec.pop("name"), **spec).energy
    exprs = list(request.exprs) or list(config.get("sample_exprs", []))
    weight, temp = float(config.get("negation_weight", 0.3)), float(config.get("mixture_temperature", 1.0))
    composed = []
    for expr in exprs:                       # every expression is built before any sampling
        try:
            composed.append((compose_models(expr, models, weight=weight, temperature=temp),
                             compose_exact(expr, exact_targets, weight=weight, temperature=temp)))
        except ExpressionError as err:
            raise rq.RequestError(str(err)) from None
        except TypeError as err:
            raise rq.RequestError(f"{expr!r} with {kind} models: {err}") from None
    if not composed:
        raise rq.RequestError("no expressions: give --expr (or the config's sample_exprs)")
    n = int(request.num_samples or config.get("sample_num_samples", 500))
    output.prepare_out_dir(request.out_dir)
    ev = config["eval"]
    extent = tuple(ev["extent"])
    sched = diffusion.schedule_from_config(next(iter(model_cfgs.values())))
    say(f"world=diffusion_2d models {', '.join(models)} ({kind}) sampler={sampler} backend={jax.default_backend()}")
    tiles, runs, xs_all, pngs = [], [], [], {}
    t0 = time.time()
    for k, (expr, (target, exact)) in enumerate(zip(exprs, composed)):
        key = jax.random.fold_in(jax.random.PRNGKey(request.seed), k)
        t1 = time.time()
        xs, acc, nfe = diffusion.sample_from_config(target, sched, sampler, config, key, n)
        xs = np.asarray(jax.block_until_ready(xs))
        secs = time.time() - t1
        ok = np.all(np.isfinite(xs), axis=-1)
        grid = sq.density_grid(exact, extent, ev["grid"])
        ref = np.asarray(sq.sample_grid(grid, jax.random.fold_in(key, 999), n))
        good = xs[ok]
        ll = sq.mean_log_likelihood(exact, grid.log_z, good) if len(good) else {"mean": float("nan"),
                                                                             "clipped_frac": float("nan")}
        row = {"expr": expr, "nfe": int(nfe), "seconds": secs, "num_failed": int((~ok).sum()),
               "acceptance": None if acc is None else float(np.nanmean(np.asarray(acc))),
               "loglik": float(ll["mean"]), "clipped": float(ll["clipped_frac"]),
               "mmd": float(sq.mmd(good, ref, ev["mmd_bandwidths"])) if len(good) else float("nan"),
               "swd": float(sq.sliced_wasserstein(good, ref, jax.random.PRNGKey(7), ev["swd_projections"]))
               if len(good) else float("nan")}
        runs.append(row)
        xs_all.append(xs.astype(np.float32))
        bg = np.exp(np.asarray(grid.log_density))
        tiles.append(images.add_title(images.scatter_png(good, extent=extent, size=220, background=bg / bg.max(),
                                                         radius=1), f"{expr}  [{kind} {sampler}]"))
        pngs[f"condition_{k}_{output.slug(expr)}.png"] = tiles[-1]
        say(f"{k + 1}/{len(exprs)} {expr!r}: {n} samples, NFE {nfe}, {secs:.1f}s, log-lik {row['loglik']:.3f}, "
            f"MMD² {row['mmd']:.4f}" + (f", acceptance {row['acceptance']:.2f}" if acc is not None else "")
            + (f", {row['num_failed']} non-finite (excluded)" if row["num_failed"] else ""))
    record = {**request.record, "world": "diffusion_2d", "config": dict(config), "models": model_cfgs, "kind": kind,
              "sampler": sampler, "num_samples": n, "seed": request.seed, "conditions": runs,
              "time_s": {"sample_incl_compile": time.time() - t0}}
    return output.Output(grid=np.concatenate(tiles, axis=1) if len(tiles) > 1 else tiles[0], pngs=pngs,
                         arrays={"x": np.stack(xs_all), "success": np.all(np.isfinite(np.stack(xs_all)), -1)},
                         record=record)


__all__ = ["CHECKPOINT_KIND", "ExpressionError", "parse", "compose_models", "compose_exact", "targets",
           "train_and_save", "load_models", "run", "SAMPLERS"]
