"""Calibrate the analysis-by-synthesis judge's threshold τ and score a generator with it (issue #21, part 1).

    python experiments/fit_judge_calibration.py                       # shipped generator → docs/fit_judge/
    python experiments/fit_judge_calibration.py --generator DIR --label NAME --out docs/fit_judge/NAME

1. Renders `--num` real images (fixed seed), blurs them by Gaussians of σ = 0.7 and σ = 2 px
   (`fit_judge.gaussian_blur`) and scores them; τ is the geometric midpoint between the smallest threshold that
   passes 99 % of the σ = 0.7 renders *with the right shape* and the largest that passes at most 5 % of the
   σ = 2 renders, rounded to two decimals (other σ are scored for context).
2. Scores `--gen_num` unconditional samples of the generator (`--generator`: a directory laid out like
   `lace_jax/assets/default`, default the shipped one; z ~ N(0, I)), with the CNN judge's shape labels next to it.
3. Checks the judge's search depth on `--search_num` of those samples against an exhaustive search (every
   rotation of a 12-point grid refined for 20 steps).
4. Writes `results.json`, `histograms.png` (score histograms by best shape, τ marked), `near_tau.png` (images just
   under and just over τ) and `generator_fits.png` (samples next to the render that explains them best).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lace_jax.runs import images as images_lib  # noqa: E402
from lace_jax.data import fit_judge, shapes  # noqa: E402
from lace_jax.worlds.shapes import load_default  # noqa: E402

SHAPE_COLOURS = ((220, 120, 30), (40, 110, 200), (60, 160, 70), (200, 50, 140))   # square circle triangle star
CONTEXT_SIGMAS = (0.5, 1.0, 1.4)
EXHAUSTIVE = dict(steps=20, rotation_grid=tuple(float(v) for v in np.arange(-6, 6) / 12), starts=12)


def calibrate_tau(score_sharp: np.ndarray, right_sharp: np.ndarray, score_blob: np.ndarray) -> dict:
    """τ from scores of lightly blurred renders (must pass with the right shape, ≥ 99 %) and blobs (≤ 5 % pass)."""
    needed = np.where(right_sharp, score_sharp, np.inf)
    low = float(np.quantile(needed, 0.99, method="higher"))   # passes ≥ 99 % with the right shape
    high = float(np.quantile(score_blob, 0.05, method="lower"))  # passes ≤ 5 % of the blobs (ties aside)
    if not low < high:
        raise RuntimeError(f"no threshold separates the calibration sets: need τ ≥ {low:.4f} and τ < {high:.4f}")
    return {"tau": round(float(np.sqrt(low * high)), 2), "tau_min": low, "tau_max": high}


QUANTILES = ("0.0", "0.01", "0.05", "0.5", "0.95", "0.99", "1.0")


def pass_rates(result: fit_judge.FitResult, factors: shapes.Factors, tau: float) -> dict:
    """Pass rates, score and RMSE quantiles, and the fitted factors' errors (of the true shape's fit)."""
    score, shape, true_shape = np.asarray(result.score), np.asarray(result.shape), np.asarray(factors.shape)
    err = np.abs(np.asarray(result.shape_params)[np.arange(len(shape)), true_shape]
                 - np.stack([np.asarray(getattr(factors, n)) for n in fit_judge.PARAMS], 1))
    not_circle = true_shape != shapes.SHAPES.index("circle")
    return {"pass": float(np.mean(score <= tau)),
            "pass_right_shape": float(np.mean((score <= tau) & (shape == true_shape))),
            "right_shape": float(np.mean(shape == true_shape)),
            "score_quantiles": {q: float(np.quantile(score, float(q))) for q in QUANTILES},
            "rmse_quantiles": {q: float(np.quantile(np.asarray(result.rmse), float(q))) for q in QUANTILES},
            "factor_error_max": {n: float((err[not_circle, i] if n == "rotation" else err[:, i]).max())
                                 for i, n in enumerate(fit_judge.PARAMS)},
            "factor_error_p99": {n: float(np.quantile(err[not_circle, i] if n == "rotation" else err[:, i], 0.99))
                                 for i, n in enumerate(fit_judge.PARAMS)}}


def rmse_separation(light: fit_judge.FitResult, blob: fit_judge.FitResult) -> dict:
    """What plain RMSE could do: the threshold passing 99 % of σ = 0.7 renders and the blobs it lets through."""
    threshold = float(np.quantile(np.asarray(light.rmse), 0.99, method="higher"))
    return {"rmse_threshold_99pct_sigma_0.7": threshold,
            "sigma_2_pass_at_that_threshold": float(np.mean(np.asarray(blob.rmse) <= threshold))}


def timed_judge(images: np.ndarray, **kw) -> tuple[fit_judge.FitResult, dict]:
    """Judge `images` once for compilation (a first chunk), then all of them timed (wall and process CPU)."""
    fit_judge.judge(images[:fit_judge.BATCH], **kw)
    load_before, c0, t0 = os.getloadavg(), os.times(), time.perf_counter()
    result = fit_judge.judge(images, **kw)
    wall, c1 = time.perf_counter() - t0, os.times()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return result, {"images": len(images), "wall_s": round(wall, 3), "images_per_s": round(len(images) / wall, 1),
                    "cpu_s": round(cpu, 3), "images_per_cpu_s": round(len(images) / cpu, 1),
                    "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]}


def generate(model, num: int, key: jax.Array, batch: int = 500) -> np.ndarray:
    z = jax.random.normal(key, (num, model.generator_config.z_dim))
    return np.concatenate([np.asarray(model.generate(z[i:i + batch])) for i in range(0, num, batch)])


def cnn_shapes(model, images: np.ndarray, batch: int = 500) -> np.ndarray:
    return np.concatenate([np.asarray(np.argmax(model.judge(images[i:i + batch])["logits"]["shape"], -1))
                           for i in range(0, len(images), batch)])


# ----------------------------------------------------------------------------------------------- figures (pillow)
def _text(draw: ImageDraw.ImageDraw, xy: tuple, text: str, fill=(0, 0, 0)) -> None:
    draw.text(xy, text, fill=fill)


def histogram_panel(scores: np.ndarray, shape: np.ndarray, title: str, tau: float, *, x_max: float = 1.5,
                    bins: int = 60, width: int = 720, height: int = 170) -> np.ndarray:
    """One stacked bar histogram (bars split by best shape) of `scores` on [0, x_max] (the last bin holds
    everything above), fraction of images per bin, τ as a red line."""
    edges = np.linspace(0.0, x_max, bins + 1)
    clipped = np.minimum(scores, x_max - 1e-6)
    counts = np.stack([np.histogram(clipped[shape == s], edges)[0] for s in range(len(shapes.SHAPES))]) / len(scores)
    left, right, top, bottom = 46, 12, 22, 28
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(float(counts.sum(0).max()), 1e-9)
    x_of = lambda v: left + v / x_max * plot_w  # noqa: E731
    for b in range(bins):
        y = top + plot_h
        for s in range(len(shapes.SHAPES)):
            h = counts[s, b] / peak * plot_h
            if h > 0:
                draw.rectangle((x_of(edges[b]) + 1, y - h, x_of(edges[b + 1]) - 1, y), fill=SHAPE_COLOURS[s])
            y -= h
    draw.line((left, top + plot_h, left + plot_w, top + plot_h), fill=(0, 0, 0))
    draw.line((left, top, left, top + plot_h), fill=(0, 0, 0))
    for v in np.arange(0.0, x_max + 1e-9, 0.25):
        draw.line((x_of(v), top + plot_h, x_of(v), top + plot_h + 4), fill=(0, 0, 0))
        _text(draw, (x_of(v) - 10, top + plot_h + 6), f"{v:.2f}")
    _text(draw, (2, top - 4), f"{peak:.0%}")
    _text(draw, (2, top + plot_h - 10), "0")
    for yy in range(top, top + plot_h, 6):
        draw.line((x_of(tau), yy, x_of(tau), yy + 3), fill=(220, 0, 0), width=2)
    _text(draw, (x_of(tau) + 4, top), f"tau = {tau:.2f}", fill=(200, 0, 0))
    passed = float(np.mean(scores <= tau))
    _text(draw, (left, 4), f"{title}   (n = {len(scores)}, {passed:.1%} <= tau)")
    return np.asarray(img)


def legend(width: int = 720) -> np.ndarray:
    img = Image.new("RGB", (width, 22), "white")
    draw = ImageDraw.Draw(img)
    x = 46
    _text(draw, (x, 5), "best shape:")
    x += 80
    for s, name in enumerate(shapes.SHAPES):
        draw.rectangle((x, 6, x + 12, 16), fill=SHAPE_COLOURS[s])
        _text(draw, (x + 16, 5), name)
        x += 90
    _text(draw, (x + 4, 5), "x: score; last bin: >= 1.5")
    return np.asarray(img)


def stack(panels: list) -> np.ndarray:
    width = max(p.shape[1] for p in panels)
    padded = [np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in panels]
    return np.concatenate(padded, 0)


def cells(images: np.ndarray, captions: list, *, scale: int = 3, ncols: int = 8, fits: np.ndarray | None = None,
          caption_h: int = 14) -> np.ndarray:
    """A grid of NCHW [−1, 1] images upscaled `scale`× (nearest), each with a caption underneath and, with
    `fits`, the fitted render to its right."""
    u8 = images_lib.to_uint8_nhwc(images)
    f8 = images_lib.to_uint8_nhwc(fits) if fits is not None else None
    side = u8.shape[1] * scale
    cell_w = side * (2 if f8 is not None else 1) + (2 if f8 is not None else 0)
    pad = 6
    nrows = int(np.ceil(len(u8) / ncols))
    img = Image.new("RGB", (ncols * (cell_w + pad) + pad, nrows * (side + caption_h + pad) + pad), "white")
    draw = ImageDraw.Draw(img)
    for i in range(len(u8)):
        r, c = divmod(i, ncols)
        x, y = pad + c * (cell_w + pad), pad + r * (side + caption_h + pad)
        img.paste(Image.fromarray(u8[i]).resize((side, side), Image.NEAREST), (x, y))
        if f8 is not None:
            img.paste(Image.fromarray(f8[i]).resize((side, side), Image.NEAREST), (x + side + 2, y))
        _text(draw, (x, y + side + 1), captions[i])
    return np.asarray(img)


def titled_rows(rows: list) -> np.ndarray:
    """Stack (title, image) rows, each with its title above."""
    return stack([images_lib.add_title(img, title) for title, img in rows])


def caption(result: fit_judge.FitResult, i: int) -> str:
    return f"{shapes.SHAPES[int(result.shape[i])]} {float(result.score[i]):.2f}"


def nearest(scores: np.ndarray, tau: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the k scores just under (≤) τ, closest first, and the k just over."""
    under = np.flatnonzero(scores <= tau)
    over = np.flatnonzero(scores > tau)
    return under[np.argsort(tau - scores[under])[:k]], over[np.argsort(scores[over] - tau)[:k]]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num", type=int, default=2000, help="real renders per blur level")
    ap.add_argument("--gen_num", type=int, default=10000, help="generator samples")
    ap.add_argument("--search_num", type=int, default=1024, help="samples for the search-depth check (0: skip)")
    ap.add_argument("--generator", default=None, help="model directory (default: the shipped one)")
    ap.add_argument("--label", default="shipped generator")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/fit_judge")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    k_real, k_gen, k_mix, k_sig = jax.random.split(jax.random.PRNGKey(a.seed), 4)
    t_start = time.perf_counter()

    # 1. real renders, blurred
    real, factors = shapes.sample(k_real, a.num)
    real, true_shape = np.asarray(real), np.asarray(factors.shape)
    scored = {}
    for sigma in (0.0, 0.7, 2.0) + CONTEXT_SIGMAS:
        scored[sigma] = fit_judge.judge(fit_judge.gaussian_blur(real, sigma))
        print(f"σ={sigma}: scored {a.num} renders ({time.perf_counter() - t_start:.0f}s)", file=sys.stderr)
    cal = calibrate_tau(np.asarray(scored[0.7].score), np.asarray(scored[0.7].shape) == true_shape,
                        np.asarray(scored[2.0].score))
    tau = cal["tau"]
    if tau != fit_judge.TAU:
        print(f"WARNING: calibrated τ = {tau} differs from fit_judge.TAU = {fit_judge.TAU}; figures use the "
              f"calibrated value", file=sys.stderr)
    real_rates = {f"sigma_{s:g}": pass_rates(r, factors, tau) for s, r in sorted(scored.items())}
    real_rates["plain_rmse_instead"] = rmse_separation(scored[0.7], scored[2.0])

    # 2. the generator
    model = load_default(a.generator)
    gen = generate(model, a.gen_num, k_gen)
    g, speed = timed_judge(gen, tau=tau)
    cnn = cnn_shapes(model, gen)
    print(f"generator: scored {a.gen_num} samples ({time.perf_counter() - t_start:.0f}s)", file=sys.stderr)
    ok, best = np.asarray(g.realistic), np.asarray(g.shape)
    gen_stats = {
        "num": a.gen_num, "realistic_fraction": float(ok.mean()),
        "realistic_shape_counts": {n: int(np.sum(ok & (best == s))) for s, n in enumerate(shapes.SHAPES)},
        "realistic_shape_fractions_of_all": {n: float(np.mean(ok & (best == s))) for s, n in enumerate(shapes.SHAPES)},
        "realistic_background_counts": {n: int(np.sum(ok & (np.asarray(g.background) == b)))
                                        for b, n in enumerate(shapes.BACKGROUNDS)},
        "best_shape_counts_all": {n: int(np.sum(best == s)) for s, n in enumerate(shapes.SHAPES)},
        "score_quantiles": {q: float(np.quantile(np.asarray(g.score), float(q)))
                            for q in ("0.01", "0.05", "0.25", "0.5", "0.75", "0.95")},
        "cnn_judge_vs_fit_judge": {
            n: {"cnn_count": int(np.sum(cnn == s)),
                "fit_realistic_same_shape": int(np.sum((cnn == s) & ok & (best == s))),
                "fit_realistic_other_shape": int(np.sum((cnn == s) & ok & (best != s))),
                "fit_unrealistic": int(np.sum((cnn == s) & ~ok))}
            for s, n in enumerate(shapes.SHAPES)},
    }

    # 3. search depth: the default search against an exhaustive one on the same samples
    search = None
    if a.search_num:
        sub = gen[:a.search_num]
        d = fit_judge.judge(sub, tau=tau)
        t0 = time.perf_counter()
        x = fit_judge.judge(sub, tau=tau, **EXHAUSTIVE)
        excess = np.asarray(d.shape_rmse) - np.asarray(x.shape_rmse)
        xr = np.asarray(x.realistic)
        search = {"num": a.search_num, "exhaustive": {k: v for k, v in EXHAUSTIVE.items()},
                  "exhaustive_wall_s": round(time.perf_counter() - t0, 1),
                  "realistic_flag_agreement": float(np.mean(np.asarray(d.realistic) == xr)),
                  "shape_agreement_among_realistic": float(np.mean(np.asarray(d.shape)[xr] == np.asarray(x.shape)[xr]))
                  if xr.any() else None,
                  "best_shape_agreement_all": float(np.mean(np.asarray(d.shape) == np.asarray(x.shape))),
                  "rmse_excess_per_shape_mean": [round(float(v), 5) for v in excess.mean(0)],
                  "rmse_excess_per_shape_p99": [round(float(v), 5) for v in np.percentile(excess, 99, 0)],
                  "score_abs_diff_max_among_realistic":
                      float(np.abs(np.asarray(d.score) - np.asarray(x.score))[xr].max()) if xr.any() else None}
        print(f"search check done ({time.perf_counter() - t_start:.0f}s)", file=sys.stderr)

    # 4. figures
    hist = stack([legend()] + [histogram_panel(np.asarray(scored[s].score), np.asarray(scored[s].shape),
                                               f"real renders, Gaussian blur sigma = {s:g} px", tau)
                               for s in (0.7, 1.0, 1.4, 2.0)]
                 + [histogram_panel(np.asarray(g.score), best, f"{a.label}: unconditional samples", tau)])
    images_lib.save_png(out / "histograms.png", hist)

    mix_sigma = np.asarray(jax.random.uniform(k_sig, (a.num,), minval=0.4, maxval=2.5))
    mix_src = np.asarray(shapes.sample(k_mix, a.num)[0])
    mix = np.concatenate([fit_judge.gaussian_blur(mix_src[i:i + 1], float(s)) for i, s in enumerate(mix_sigma)])
    m = fit_judge.judge(mix, tau=tau)
    rows = []
    for name, res, imgs, extra in (("renders blurred by random sigma in [0.4, 2.5]", m, mix, mix_sigma),
                                   (a.label, g, gen, None)):
        under, over = nearest(np.asarray(res.score), tau, 8)
        for tag, idx in (("just under tau (realistic)", under), ("just over tau (not realistic)", over)):
            caps = [caption(res, i) + (f" s{extra[i]:.1f}" if extra is not None else "") for i in idx]
            rows.append((f"{name}: {tag}", cells(imgs[idx], caps)))
    images_lib.save_png(out / "near_tau.png", titled_rows(rows))

    fits = np.asarray(shapes.render(g.factors))
    order = np.argsort(np.asarray(g.score))
    rows = []
    for s, n in enumerate(shapes.SHAPES):
        idx = [i for i in order if ok[i] and best[i] == s][:6]
        if idx:
            rows.append((f"realistic, {n} (sample | best render), lowest scores",
                         cells(gen[idx], [caption(g, i) for i in idx], fits=fits[idx], ncols=6)))
    rng = np.random.default_rng(a.seed)
    idx = rng.choice(np.flatnonzero(~ok), size=min(12, int((~ok).sum())), replace=False)
    rows.append(("not realistic, random picks (sample | best render)", cells(gen[idx], [caption(g, i) for i in idx],
                                                                          fits=fits[idx], ncols=6)))
    for s, n in enumerate(shapes.SHAPES):
        idx = np.flatnonzero(cnn == s)
        if len(idx):
            idx = rng.choice(idx, size=min(6, len(idx)), replace=False)
            rows.append((f"the CNN judge says {n}: random picks (sample | best render)",
                         cells(gen[idx], [caption(g, i) for i in idx], fits=fits[idx], ncols=6)))
    images_lib.save_png(out / "generator_fits.png", titled_rows(rows))

    results = {
        "tau": tau, "module_tau": fit_judge.TAU, "calibration": cal,
        "rule": "tau = sqrt(tau_min * tau_max) rounded to 2 decimals; tau_min = 99th percentile of sigma=0.7 scores "
                "(wrong shape counts as failing), tau_max = 5th percentile of sigma=2 scores",
        "real_renders": {"num": a.num, "seed": a.seed, **real_rates},
        "generator": {"label": a.label, "path": a.generator or "lace_jax/assets/default (shipped)", **gen_stats},
        "search_check": search, "speed": speed,
        "settings": {"steps": fit_judge.STEPS, "rotation_grid": list(fit_judge.ROTATION_GRID),
                     "starts": fit_judge.STARTS, "batch": fit_judge.BATCH},
        "environment": {"python": platform.python_version(), "jax": jax.__version__, "cpu_count": os.cpu_count(),
                        "backend": jax.default_backend()},
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({"tau": tau, "calibration": cal, "sigma_0.7": real_rates["sigma_0.7"]["pass_right_shape"],
                      "sigma_2": real_rates["sigma_2"]["pass"], "generator_realistic": gen_stats["realistic_fraction"],
                      "generator_shapes": gen_stats["realistic_shape_counts"], "speed": speed}, indent=1))


if __name__ == "__main__":
    main()
