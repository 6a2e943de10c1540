"""Issue 9 on the shipped shapes model: latent directions for x, y, size and hue without labels, compared.

    python experiments/directions_shapes.py [--config configs/directions_shapes.py] [key=value overrides ...]

For each factor, with its image transformation (x → translate_x, y → translate_y, size → zoom, hue → hue):
  (a) Plumerault et al.: trajectories by inversion with the Fourier-weighted (low-pass) loss, monotone fit;
  (b) the same with plain MSE;
  (c) the linear-walk baseline (Jahanian et al., MSE);
  (d) LACE continuous-attribute editing (`workflow.sequential_edit` with one edit `factor=target`).
(a)-(c) are anchored to absolute values with `calibrate` on judged latents, then every method edits the same
fresh latents to the same targets. The image judge scores the response of the edited factor, the spread of the
other factors along each walk and the Fréchet distance (judge features) of the edited images to real renders.
Writes `<out_dir>/results.json`, `<out_dir>/results.md` (the table) and `<out_dir>/walk_<factor>.png`.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lace_jax import config as config_lib  # noqa: E402
from lace_jax.runs import images as images_lib  # noqa: E402
from lace_jax import records  # noqa: E402
from lace_jax.runs import workflow
from lace_jax import worlds
from lace_jax import directions as dirs  # noqa: E402
from lace_jax.directions import evaluation as ev  # noqa: E402
from lace_jax.directions import pipeline  # noqa: E402
from lace_jax.metrics.frechet import frechet_distance  # noqa: E402

METHODS = ("fourier", "mse", "walk", "lace")
METHOD_LABELS = {"fourier": "ours, Fourier loss", "mse": "ours, MSE loss", "walk": "linear walk (MSE)",
                 "lace": "LACE editing (ODE)"}
def read(world, z: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """(judge labels {name: [N]}, features [N, F], images [N, C, H, W]) of latents z[N, D]."""
    imgs = workflow.render(world, z)
    labels, feats = workflow.judge(world, imgs)
    return labels, feats, imgs


def read_frames(world, z_frames: np.ndarray):
    """Judge readings of z_frames[N, K, D] as {name: [N, K]}, features [N·K, F], images [N, K, C, H, W]."""
    n, k, d = z_frames.shape
    labels, feats, imgs = read(world, z_frames.reshape(n * k, d))
    return ({f: v.reshape(n, k) for f, v in labels.items()}, feats, imgs.reshape((n, k) + imgs.shape[1:]))


def find_directions(world, gen, factor: str, cfg: dict, key) -> tuple[dict, dict]:
    """Directions for one factor by (a) Fourier trajectories, (b) MSE trajectories, (c) the linear walk; plus
    diagnostics (inversion errors, fit residuals, walk losses, timings)."""
    tc = cfg["traj"]
    tf = pipeline.transform_for(factor)
    max_delta = float(cfg["max_delta"][factor])
    k_traj, k_walk = jax.random.split(key)
    found, diag = {}, {}
    for loss in ("fourier", "mse"):        # the same starts (k_traj) for both losses
        found[loss], diag[loss] = pipeline.find_direction(gen, tf, k_traj, world.latent_dim, max_delta, tc, loss)
    t0 = time.time()
    wc = cfg["walk"]
    walk = dirs.train_linear_walk(gen, tf, k_walk, world.latent_dim, steps=int(wc["steps"]),
                                  batch=int(wc["batch"]), alpha_max=max_delta,
                                  learning_rate=float(wc["learning_rate"]), loss=str(wc["loss"]),
                                  sigma=float(tc["sigma"]))
    norm = float(jnp.linalg.norm(walk.w))
    found["walk"] = dirs.linear_direction(walk.u, 1.0 / max(norm, 1e-12))
    losses = np.asarray(walk.loss)
    diag["walk"] = {"seconds": time.time() - t0, "w_norm": norm,
                    "loss_first": float(np.mean(losses[:10])), "loss_last": float(np.mean(losses[-10:]))}
    return found, diag


def lace_frames(world, factor: str, targets, z_eval: np.ndarray, cfg: dict, cache: dict) -> tuple[np.ndarray, dict]:
    """LACE sequential editing of z_eval to each target: latents [N, K, D] (NaN rows where a solve failed)."""
    out, nfe, t0 = [], [], time.time()
    for k, t in enumerate(targets):
        _, steps = workflow.sequential_edit(world, [f"{factor}={float(t)}"], num_samples=z_eval.shape[0],
                                            seed=int(cfg["seed"]) + 17 * k, z_start=z_eval,
                                            chunk_size=int(cfg["lace"]["chunk_size"]), cache=cache)
        res = steps[0].result
        out.append(np.asarray(res.z))
        if "nfe" in res.stats:
            nfe.append(float(np.nanmean(np.asarray(res.stats["nfe"], np.float64))))
    z = np.stack(out, axis=1)
    return z, {"seconds": time.time() - t0, "num_failed": int(np.sum(~np.all(np.isfinite(z), axis=(1, 2)))),
               "nfe_mean": float(np.mean(nfe)) if nfe else None}


def fit_metrics(world, factor: str, targets, imgs: np.ndarray) -> dict:
    """The fit judge's view of edited frames imgs[N, K, C, H, W] (K targets): the fraction a render explains
    (`realistic`; failed solves count as not), and on those the mean |fitted factor − target| (`target_mae_fit`)."""
    n, k = imgs.shape[:2]
    flat = imgs.reshape((n * k,) + imgs.shape[2:])
    ok = np.all(np.isfinite(flat), axis=(1, 2, 3))
    out = world.fit_judge(np.nan_to_num(flat))
    realistic = np.asarray(out["realistic"], bool) & ok
    err = np.abs(np.asarray(out["labels"][factor]).reshape(n, k) - np.asarray(targets)[None, :]).reshape(-1)
    return {"realistic": float(np.mean(realistic)),
            "target_mae_fit": float(np.mean(err[realistic])) if realistic.any() else float("nan")}


def strip(factor: str, targets, start_imgs: np.ndarray, frames: dict, num: int) -> np.ndarray:
    """PNG strip: for each method and each of `num` starts, the start then its frames at every target."""
    rows, labels = [], []
    for m in METHODS:
        if m not in frames:
            continue
        for s in range(min(num, start_imgs.shape[0])):
            rows.append(np.concatenate([start_imgs[s:s + 1], np.nan_to_num(frames[m][s], nan=-1.0)], axis=0))
            labels.append(f"{METHOD_LABELS[m]} #{s}")
    ncols = rows[0].shape[0]
    grid = images_lib.make_grid(np.concatenate(rows, axis=0), ncols=ncols)
    grid = images_lib.label_rows(grid, labels, row_height=grid.shape[0] // len(rows))
    head = "start | " + " | ".join(f"{factor}={t:g}" for t in targets)
    return images_lib.add_title(grid, f"{factor}: {head}")


def model_summary(model_dir) -> dict:
    """Which model was measured (from its model card)."""
    import json
    from lace_jax.worlds.shapes import ASSETS

    root = Path(model_dir).expanduser() if model_dir else ASSETS
    card = json.loads((root / "model_card.json").read_text())
    shown = root.name if root != ASSETS else "lace_jax/assets/default"     # names no user directory
    return {"dir": shown, "gan_steps": card.get("gan_steps"), "date": card.get("date"),
            "summary": card.get("summary")}


def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def markdown(record: dict) -> str:
    lines = [
        "| factor | method | slope | R² | monotone | Spearman | MAE to target | other factors' std | "
        "shape/bg changed | FD | reachable (judge units) | realistic (fit judge) | MAE to target, fit judge |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for factor, rows in record["results"].items():
        for m, r in rows.items():
            resp = r["response"]
            reach = r.get("reachable")
            reach_s = ({"walk": "unbounded", "lace": "–"}.get(m, "–") if reach is None
                       else f"{reach[0]:.2f}..{reach[1]:.2f}")
            lines.append(
                f"| {factor} | {METHOD_LABELS[m]} | {fmt(resp['slope'], 2)} | {fmt(resp['r2'], 2)} | "
                f"{fmt(100 * resp['monotone'], 0)} % | {fmt(resp['spearman'], 2)} | {fmt(r['target_mae'])} | "
                f"{fmt(r['spread_mean'])} | {fmt(100 * r['changed_any'], 0)} % | {fmt(r['fd'], 1)} | {reach_s} | "
                f"{fmt(100 * r['realistic'], 0) + ' %' if 'realistic' in r else '–'} | {fmt(r.get('target_mae_fit'))} |")
    base = record["fd_reference"]
    lines += ["", f"Reference: FD of {base['num']} unedited samples to {record['config']['num_real']} real renders "
              f"{base['generated']:.1f}; of {base['num']} real renders to the same real set {base['real']:.1f}. "
              + (f"Realistic by the fit judge (a render explains the image within τ): "
                 f"{100 * base['start_realistic']:.0f} % of the unedited starts; its MAE is over the realistic "
                 f"frames only. " if "start_realistic" in base else "")
              + "Other factors' std: x, y, size, hue except the edited one (rotation is in the JSON; it is undefined "
              "for circles). For scale, their std over independent samples (a uniform factor: 0.29): "
              + ", ".join(f"{k} {v:.3f}" for k, v in record["population_std"].items()) + "."]
    lines += ["", "Cosine between directions found by the three label-free methods:", "",
              "| factor | Fourier·MSE | Fourier·walk | MSE·walk |", "|---|---|---|---|"]
    for factor, c in record["cosines"].items():
        lines.append(f"| {factor} | {c['fourier_mse']:.3f} | {c['fourier_walk']:.3f} | {c['mse_walk']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/directions_shapes.py")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    cfg = config_lib.apply_overrides(config_lib.load_config(args.config), args.overrides)
    out_dir = Path(cfg["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    timings = {}

    world = worlds.world_from_config({"world": "shapes", "model_dir": cfg["model_dir"]} if cfg["model_dir"]
                                     else "shapes")
    gen = pipeline.generator_fn(world)
    key = jax.random.PRNGKey(int(cfg["seed"]))
    k_dirs, k_eval, k_cal, k_real, k_gen = jax.random.split(key, 5)
    n_eval = int(cfg["num_eval"])
    targets = [float(t) for t in cfg["targets"]]
    z_eval = np.asarray(jax.random.normal(k_eval, (n_eval, world.latent_dim), jnp.float32))
    z_cal = np.asarray(jax.random.normal(k_cal, (int(cfg["num_calibrate"]), world.latent_dim), jnp.float32))

    t0 = time.time()
    start, _, start_imgs = read(world, z_eval)
    cal, _, _ = read(world, z_cal)
    real_imgs = np.asarray(world.real_images(k_real, int(cfg["num_real"])))
    _, real_feats = workflow.judge(world, real_imgs)
    n_ref = n_eval * len(targets)
    z_gen = np.asarray(jax.random.normal(k_gen, (n_ref, world.latent_dim), jnp.float32))
    gen_labels, gen_feats, _ = read(world, z_gen)
    real2 = np.asarray(world.real_images(jax.random.fold_in(k_real, 1), n_ref))
    _, real2_feats = workflow.judge(world, real2)
    fd_reference = {"num": n_ref, "generated": frechet_distance(gen_feats, real_feats),
                    "real": frechet_distance(real2_feats, real_feats)}
    population_std = {f: float(np.std(v)) for f, v in gen_labels.items() if np.issubdtype(v.dtype, np.floating)}
    if world.fit_judge is not None:
        fd_reference["start_realistic"] = float(np.mean(world.fit_judge(start_imgs)["realistic"]))
    timings["reference"] = time.time() - t0
    print(f"reference FD: generated {fd_reference['generated']:.2f}, real {fd_reference['real']:.2f}", flush=True)

    results, diagnostics, cosines, strips = {}, {}, {}, {}
    lace_cache: dict = {}
    for fi, factor in enumerate(cfg["factors"]):
        t0 = time.time()
        found, diag = find_directions(world, gen, factor, cfg, jax.random.fold_in(k_dirs, fi))
        timings[f"directions_{factor}"] = time.time() - t0
        us = {m: np.asarray(d.u) for m, d in found.items()}
        cosines[factor] = {"fourier_mse": float(us["fourier"] @ us["mse"]),
                           "fourier_walk": float(us["fourier"] @ us["walk"]),
                           "mse_walk": float(us["mse"] @ us["walk"])}
        t0 = time.time()
        frames_z, rows, frame_imgs = {}, {}, {}
        a_cal = jnp.asarray(ev.shapes_amount(factor, cal[factor]), jnp.float32)
        a_targets = ev.shapes_amount(factor, np.asarray(targets))
        for m, d in found.items():
            d = dirs.calibrate(d, jnp.asarray(z_cal), a_cal)
            found[m] = d
            frames_z[m] = np.stack([np.asarray(dirs.edit_to(jnp.asarray(z_eval), d, float(a)))
                                    for a in a_targets], axis=1)
        if cfg["lace"]["enabled"]:
            frames_z["lace"], diag["lace"] = lace_frames(world, factor, targets, z_eval, cfg, lace_cache)
        for m, zf in frames_z.items():
            labels, feats, imgs = read_frames(world, zf)
            # rotation is undefined for circles (the judge's reading of it is noise there): listed, not averaged
            r = ev.walk_metrics(factor, targets, start, labels, ignore=("rotation",))
            ok = np.all(np.isfinite(feats), axis=1)
            r["fd"] = frechet_distance(feats[ok], real_feats) if ok.sum() > 2 else float("nan")
            r["latent_move_median"] = float(np.nanmedian(np.linalg.norm(zf - z_eval[:, None], axis=-1)))
            if world.fit_judge is not None:
                r.update(fit_metrics(world, factor, targets, imgs))
            if m in ("fourier", "mse"):
                lo, hi = dirs.factor_range(found[m])
                r["reachable"] = [float(np.clip(ev.shapes_value(factor, float(lo)), -9, 9)),
                                  float(np.clip(ev.shapes_value(factor, float(hi)), -9, 9))]
            rows[m] = r
            frame_imgs[m] = imgs
            resp = r["response"]
            print(f"{factor:5s} {m:8s} slope {resp['slope']:.2f} R2 {resp['r2']:.2f} mono {resp['monotone']:.2f} "
                  f"mae {r['target_mae']:.3f} spread {r['spread_mean']:.3f} changed {r['changed_any']:.2f} "
                  f"FD {r['fd']:.1f} realistic {r.get('realistic', float('nan')):.2f}", flush=True)
        timings[f"evaluate_{factor}"] = time.time() - t0
        results[factor] = rows
        diagnostics[factor] = diag
        img = strip(factor, targets, start_imgs, frame_imgs, int(cfg["strip_starts"]))
        strips[factor] = str(images_lib.save_png(out_dir / f"walk_{factor}.png", img))
        print(f"{factor}: directions {timings[f'directions_{factor}']:.0f} s, "
              f"evaluation {timings[f'evaluate_{factor}']:.0f} s", flush=True)

    timings["total"] = time.time() - t_start
    record = {"argv": sys.argv, "config": cfg, "model": model_summary(cfg["model_dir"]),
              "targets": targets, "fd_reference": fd_reference, "population_std": population_std,
              "results": results, "diagnostics": diagnostics, "cosines": cosines, "strips": strips,
              "timings_s": timings, "environment": records.environment()}
    records.write_json(out_dir / "results.json", record)
    md = markdown(record)
    (out_dir / "results.md").write_text(md)
    print(md)
    print(f"total {timings['total']:.0f} s", flush=True)
    return record


if __name__ == "__main__":
    main()
