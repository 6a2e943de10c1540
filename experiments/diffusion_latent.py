"""Issue 8, latent-space variant: an energy diffusion model over the shipped generator's w, composed with its LACE
latent classifiers and sampled by annealed MCMC, against LACE-ODE on z at comparable NFE, judged by the image judge.

    python train.py --config diffusion_latent --workdir runs/wdiff
    python experiments/diffusion_latent.py --workdir runs/wdiff [--config configs/diffusion_latent.py] [key=value ...]

(Without a trained model in `<workdir>/model` the script trains one first, with the same config.)
Writes `<out_dir>/results.json`, `<out_dir>/results.md` and `<out_dir>/grid_*.png` (rows: samplers; 8 samples each).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lace_jax import config as config_lib  # noqa: E402
from lace_jax import diffusion, records  # noqa: E402
from lace_jax.runs import evaluation, images, workflow
from lace_jax import latent_diffusion as ld  # noqa: E402
from lace_jax.worlds import world_from_config  # noqa: E402

GRID_SAMPLES = 8


def _class_rates(world, labels: dict) -> dict:
    out = {}
    for name, attr in world.attributes.items():
        if attr.kind == "discrete" and name in labels:
            v = np.asarray(labels[name])
            out[name] = {c: round(float(np.mean(v == i)), 4) for i, c in enumerate(attr.classes)}
    return out


def _fit_verdicts(world, expr, imgs, fit=None):
    """(bool[N]: the fit judge explains the image by a render that satisfies `expr`, bool[N]: realistic, the fit
    judge's output) — `fit` reuses an earlier output for the same images."""
    fit = world.fit_judge(np.nan_to_num(np.asarray(imgs, np.float32))) if fit is None else fit
    ok = np.all(np.isfinite(np.asarray(imgs)), axis=(1, 2, 3))
    if expr is None:
        realistic = np.asarray(fit["realistic"], bool) & ok
        return realistic, realistic, fit
    return (*evaluation.fit_satisfied(world, expr, imgs, ok, fit=fit), fit)


def _judged(world, w_or_z, expr, ref_feats, ref_labels):
    """(row of metrics by both judges, images, CNN-judge labels, the fit judge's output or None)."""
    imgs = workflow.render(world, w_or_z)
    fit = None
    labels, feats = workflow.judge(world, imgs)
    row = {}
    if expr is not None:
        sat, per_atom = evaluation.judge_satisfied(expr, world.attributes, labels)
        row["accuracy"] = float(np.mean(sat))
        row.update({f"sat[{k}]": float(np.mean(v)) for k, v in per_atom.items()})
        row["fd_matched"], row["num_real_matched"] = evaluation.matched_fd(expr, world.attributes, feats,
                                                                           ref_feats, ref_labels)
    if world.fit_judge is not None:
        fit_sat, realistic, fit = _fit_verdicts(world, expr, imgs)
        if expr is not None:
            row["accuracy_fit"] = float(np.mean(fit_sat))
        row["realistic"] = float(np.mean(realistic))
        row["classes_fit"] = {name: {c: round(float(np.mean((np.asarray(fit["labels"][name]) == i) & realistic)), 4)
                                     for i, c in enumerate(world.attributes[name].classes)}
                              for name in ("shape",) if name in fit["labels"]}
    row["fd"] = evaluation.fd(feats, ref_feats)
    return row, imgs, labels, fit


def _sampler_kwargs(spec: dict, schedule) -> dict:
    spec = dict(spec)
    out = {"ancestral": bool(spec.pop("ancestral", True))}
    if "small" in spec:
        out["step_size"] = diffusion.step_sizes(schedule, spec.pop("small"), spec.pop("large"))
    out.update(spec)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/diffusion_latent.py")
    ap.add_argument("--workdir", required=True, help="directory of `train.py --config diffusion_latent`")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    cfg = config_lib.apply_overrides(config_lib.load_config(args.config), args.overrides)
    out_dir = Path(cfg["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    log = lambda s: print(s, flush=True)  # noqa: E731

    world = world_from_config(dict(cfg["world"]))
    wworld = ld.w_world(world)
    model_dir = Path(args.workdir) / "model"
    if not model_dir.is_dir():
        log(f"no trained model in {model_dir}: training one")
        ld.train_w_diffusion(cfg, args.workdir, log=log, world=world)
    model, stats, model_cfg = ld.load(model_dir)
    train_meta = {}
    summary_path = Path(args.workdir) / "config.json"
    if summary_path.is_file():
        train_meta["train_config"] = json.loads(summary_path.read_text()).get("train")

    n, seed = int(cfg["num_samples"]), int(cfg["seed"])
    weights = [float(v) for v in cfg["guidance_weights"]]
    ref_feats, ref_labels = evaluation.reference_set(world, int(cfg["num_reference"]), seed=seed + 1)
    log(f"reference: {len(ref_feats)} real renders judged")

    # ---- unconditional: the GAN's own prior vs the learned w density
    z0 = evaluation.start_latents(world, n, seed)
    gan_row, gan_imgs, gan_labels, base_fit = _judged(world, z0, None, ref_feats, ref_labels)
    uncond = [{"sampler": "GAN prior (z ~ N(0, I))", "nfe": 0, **gan_row,
               "classes": _class_rates(world, gan_labels)}]
    w_true = ld.w_samples(world, jax.random.PRNGKey(seed + 2), 4 * n)
    x_true = np.asarray(stats.to_x(w_true))
    prior = diffusion.level_energy(model)
    for name in [s for s in ("reverse", "pf_ode", "hmc") if s in cfg["samplers"]]:
        res = ld.sample_w(prior, model, stats, jax.random.PRNGKey(seed + 3), n, method=name,
                          **({} if name != "hmc" else _sampler_kwargs(cfg["samplers"][name], model.schedule)))
        row, _, lab, _ = _judged(wworld, res.w, None, ref_feats, ref_labels)
        x = np.asarray(stats.to_x(res.w))
        uncond.append({"sampler": f"w-diffusion {name}", "nfe": res.nfe, **row, "acceptance": res.acceptance,
                       "seconds": res.seconds, "classes": _class_rates(wworld, lab),
                       "w_mean_err": float(np.abs(x.mean(0) - x_true.mean(0)).mean()),
                       "w_std_ratio": float(np.mean(x.std(0) / x_true.std(0)))})
        log(f"unconditional {name}: FD {row['fd']:.1f}, NFE {res.nfe}, {res.seconds:.1f} s")

    # ---- the exact composed target, by importance weighting prior samples: weights exp(−λ E_c(w)) on
    # w = mapping(z), z ~ N(0, I); what a perfect sampler of p(w)·exp(−λ E_c(w)) would score by the judge
    n_is = int(cfg["num_importance"])
    w_is = ld.w_samples(world, jax.random.PRNGKey(seed + 4), n_is)
    is_imgs = workflow.render(wworld, w_is)
    is_labels, _ = workflow.judge(world, is_imgs)
    is_fit = world.fit_judge(is_imgs) if world.fit_judge is not None else None
    energy_fn = jax.jit(lambda e, w: jax.vmap(e)(w))

    # ---- conditions
    rows, grids = [], {}
    cache: dict = {}
    for ci, expr in enumerate(cfg["conditions"]):
        base, _ = evaluation.judge_satisfied(expr, world.attributes, gan_labels)
        cls_energy = wworld.parse(expr)
        e_is = np.asarray(energy_fn(cls_energy, w_is), np.float64)
        sat_is, _ = evaluation.judge_satisfied(expr, world.attributes, is_labels)
        strip = []
        for weight in weights:
            lw = -weight * e_is
            iw = np.exp(lw - lw.max())
            rows.append({"expr": expr, "method": f"exact target λ={weight:g} (importance-weighted prior)",
                         "weight": weight, "nfe": 0, "base_rate": float(np.mean(base)),
                         "accuracy": float(np.sum(iw * sat_is) / np.sum(iw)),
                         "ess": float(np.sum(iw) ** 2 / np.sum(iw ** 2)), "fd_matched": float("nan"),
                         "acceptance": None, "seconds": 0.0})
            if is_fit is not None:
                fit_is, real_is, _ = _fit_verdicts(world, expr, is_imgs, is_fit)
                rows[-1].update(accuracy_fit=float(np.sum(iw * fit_is) / np.sum(iw)),
                                realistic=float(np.sum(iw * real_is) / np.sum(iw)))
            log(f"{expr} | exact target λ={weight:g}: accuracy {rows[-1]['accuracy']:.3f} "
                f"(ESS {rows[-1]['ess']:.0f} of {n_is})")
            target = ld.conditioned(model, cls_energy, stats, weight)
            for name, spec in cfg["samplers"].items():
                kw = {} if name in ("reverse", "pf_ode") else _sampler_kwargs(spec, model.schedule)
                res = ld.sample_w(target, model, stats, jax.random.fold_in(jax.random.PRNGKey(seed + 10), ci), n,
                                  method=name, **kw)
                row, imgs, _, _ = _judged(wworld, res.w, expr, ref_feats, ref_labels)
                rows.append({"expr": expr, "method": f"w-diffusion λ={weight:g}: {name}", "weight": weight,
                             "nfe": res.nfe, "base_rate": float(np.mean(base)), **row, "acceptance": res.acceptance,
                             "seconds": res.seconds, "num_failed": int((~np.all(np.isfinite(res.w), 1)).sum())})
                strip.append((f"{name} lam={weight:g}", imgs[:GRID_SAMPLES]))  # PIL's default font has no λ
                log(f"{expr} | {name} λ={weight:g}: accuracy {row['accuracy']:.3f} (base {np.mean(base):.3f}), "
                    f"NFE {res.nfe}, {res.seconds:.1f} s")
        for tol in cfg["ode_tolerances"]:
            opts = world.sampler_options(solver="dopri5", rtol=float(tol), atol=float(tol))
            t0 = time.time()
            r = workflow.sample_condition(world, expr, num_samples=n, seed=seed, sampler="ode", options=opts,
                                          cache=cache)
            secs = time.time() - t0
            ok = np.asarray(r.success)
            row, imgs, _, _ = _judged(world, np.asarray(r.z)[ok], expr, ref_feats, ref_labels)
            rows.append({"expr": expr, "method": f"LACE-ODE (z, dopri5 {tol:g})", "weight": 1.0,
                         "nfe": float(np.mean(np.asarray(r.stats["nfe"])[ok])), "base_rate": float(np.mean(base)),
                         **row, "acceptance": None, "seconds": secs, "num_failed": int((~ok).sum())})
            strip.append((f"ode {tol:g}", imgs[:GRID_SAMPLES]))
            log(f"{expr} | LACE-ODE {tol:g}: accuracy {row['accuracy']:.3f}, NFE {rows[-1]['nfe']:.1f}, "
                f"{secs:.1f} s")
        if base_fit is not None:
            base_rate_fit = float(np.mean(_fit_verdicts(world, expr, gan_imgs, base_fit)[0]))
            for r in rows:
                if r["expr"] == expr:
                    r["base_rate_fit"] = base_rate_fit
        grid = images.make_grid(np.concatenate([s[1] for s in strip]), ncols=GRID_SAMPLES)
        h = grid.shape[0] // len(strip)
        grid = images.label_rows(grid, [s[0] for s in strip], row_height=h, width=90)
        fname = f"grid_{ci}.png"
        images.save_png(out_dir / fname, images.add_title(grid, expr))
        grids[expr] = fname

    result = {"config": cfg, "model": model_cfg, **train_meta, "unconditional": uncond, "rows": rows,
              "grids": grids, "total_seconds": time.time() - t_start, "environment": records.environment()}
    (out_dir / "results.json").write_text(json.dumps(result, indent=1, default=str))
    (out_dir / "results.md").write_text(markdown(result))
    log(f"wrote {out_dir}/results.json, results.md and {len(grids)} grids in {time.time() - t_start:.0f} s")
    return result


def markdown(result: dict) -> str:
    """The two tables: unconditional realism of the learned w density, and conditional accuracy per sampler."""
    fmt = lambda d: ", ".join(f"{k} {v:.2f}" for k, v in d.items())  # noqa: E731
    opt = lambda r, k: "" if r.get(k) is None else f"{r[k]:.3f}"  # noqa: E731
    lines = ["| sampler | NFE | FD to real ↓ | shape frequencies (CNN judge) | background frequencies | "
             "realistic (fit judge) | realistic shapes (fit judge) | acceptance |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["unconditional"]:
        cls = r.get("classes", {})
        acc = "" if r.get("acceptance") is None else f"{r['acceptance']:.2f}"
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['fd']:.1f} | {fmt(cls.get('shape', {}))} | "
                     f"{fmt(cls.get('background', {}))} | {opt(r, 'realistic')} | "
                     f"{fmt(r.get('classes_fit', {}).get('shape', {}))} | {acc} |")
    lines += ["", "| condition | method | NFE | judge accuracy | unconditional rate | fit-judge accuracy | "
              "unconditional rate (fit) | realistic | matched FD ↓ | acceptance | s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        acc = "" if r.get("acceptance") is None else f"{r['acceptance']:.2f}"
        if "ess" in r:
            acc = f"ESS {r['ess']:.0f}"
        fdm = "" if not np.isfinite(r["fd_matched"]) else f"{r['fd_matched']:.1f}"
        expr = r["expr"].replace("|", "\\|")
        lines.append(f"| `{expr}` | {r['method']} | {r['nfe']:.0f} | {r['accuracy']:.3f} | "
                     f"{r['base_rate']:.3f} | {opt(r, 'accuracy_fit')} | {opt(r, 'base_rate_fit')} | "
                     f"{opt(r, 'realistic')} | {fdm} | {acc} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
