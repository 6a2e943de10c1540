"""Quality of the default model, measured in the judge's penultimate features (a Fréchet distance that knows the
shapes world, since Inception weights cannot be downloaded here).

    python evaluate.py --config shapes_quality --set gan=runs/gan --set judge=runs/judge --set latent=runs/latent
    python evaluate.py --config shapes_quality --set assets=lace_jax/assets/default --set early=runs/gan_early \
        --set previous=runs/gan_run1_generator --set num=10000          # writes out/evaluate/quality.json

Reports FD(generated, real), the floor FD(real′, real) between two independent render sets of the same size, and
FD(early EMA snapshot, real) for a badly trained reference, plus the judge's class frequencies on generated images
(a uniform world has 1/4 per shape and 1/3 per background) and the fit judge's verdicts on them (`fit_summary`: the
realistic fraction and the realistic shapes' frequencies, what issue 21's bar is measured in).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from lace_jax.data import fit_judge, shapes
from lace_jax.metrics.frechet import frechet_distance
from lace_jax.models import stylegan2 as sg
from lace_jax.training import gan_run, judge_run, latent


def real_features(judge_model, judge_params, key, num, batch=500) -> np.ndarray:
    """Judge features of `num` renders from `key`."""
    fn = jax.jit(lambda k: judge_model.apply({"params": judge_params}, shapes.sample(k, batch)[0])["features"])
    return np.concatenate([np.asarray(fn(jax.random.fold_in(key, i))) for i in range(-(-num // batch))])[:num]


def generated_outputs(g_cfg, g_vars, judge_model, judge_params, key, num, batch=250, fit: bool = False) -> dict:
    """Judge features and hard labels of `num` EMA-generator samples (z from `key`, const noise); with `fit`, also
    the analysis-by-synthesis judge's verdicts (`fit_summary`) under "fit_judge"."""
    data = latent.label_latents(g_cfg, g_vars, judge_model, judge_params, key, num, batch, keep_images=fit)
    if fit:
        data["fit_judge"] = fit_summary(fit_judge.judge(data.pop("images"), batch_size=fit_batch()))
    return data


def fit_batch() -> int:
    """Images per compiled fit-judge call: the default on CPU, larger on an accelerator (each image is fitted on
    its own under vmap; the chunk only sizes the compiled program)."""
    return fit_judge.BATCH if jax.default_backend() == "cpu" else 1024


def fit_summary(result: fit_judge.FitResult) -> dict:
    """What the model card and the GAN A/B runs record of the fit judge's verdicts on unconditional samples: the
    realistic fraction (a render explains the image, score ≤ τ), the fraction of all samples that are a realistic
    sample of each shape / background, the best-fitting shape's counts over all samples, score quantiles, and the
    worst gap between a shape's realistic share among the realistic samples and the world's uniform share."""
    ok, best, bg = (np.asarray(a) for a in (result.realistic, result.shape, result.background))
    n = len(ok)
    per_shape = {name: float(np.mean(ok & (best == s))) for s, name in enumerate(shapes.SHAPES)}
    among = {name: float(np.sum(ok & (best == s)) / max(int(ok.sum()), 1)) for s, name in enumerate(shapes.SHAPES)}
    return {"num": n, "tau": fit_judge.TAU, "unconditional_realistic": float(ok.mean()),
            "realistic_shape_fractions_of_all": per_shape,
            "realistic_shape_frequencies": among,
            "max_shape_frequency_gap": float(max(abs(v - 1 / len(shapes.SHAPES)) for v in among.values())),
            "realistic_background_fractions_of_all": {name: float(np.mean(ok & (bg == b)))
                                                      for b, name in enumerate(shapes.BACKGROUNDS)},
            "best_shape_counts_all": {name: int(np.sum(best == s)) for s, name in enumerate(shapes.SHAPES)},
            "score_quantiles": {q: float(np.quantile(np.asarray(result.score), float(q)))
                                for q in ("0.05", "0.25", "0.5", "0.75", "0.95")}}


def measure_generator(g_cfg: sg.StyleGAN2Config, g_vars: dict, judge_model, judge_params, num: int,
                      seed: int = 31, references: dict | None = None, fit: bool = True) -> dict:
    """FD(generated, real) and the floor FD(real′, real) over `num` images per set, the judge's class
    frequencies and continuous means/stds on the generated set, `fd_<name>_vs_real` for each reference
    generator (`references`: name -> params of the same architecture and buffers, e.g. an early snapshot), and
    with `fit` the fit judge's verdicts on the generated set (`fit_summary`, under "fit_judge")."""
    t0 = time.time()
    k_a, k_b, k_g, k_e = jax.random.split(jax.random.PRNGKey(seed), 4)
    real_a = real_features(judge_model, judge_params, k_a, num)
    real_b = real_features(judge_model, judge_params, k_b, num)
    gen = generated_outputs(g_cfg, g_vars, judge_model, judge_params, k_g, num, fit=fit)
    result = {"num_per_set": num,
              "fd_generated_vs_real": frechet_distance(gen["features"], real_a),
              "fd_floor_real_vs_real": frechet_distance(real_b, real_a)}
    for i, (name, params) in enumerate((references or {}).items()):
        key = k_e if i == 0 else jax.random.fold_in(k_e, i)
        ref = generated_outputs(g_cfg, {"params": params, "buffers": g_vars["buffers"]}, judge_model, judge_params,
                                key, num)
        result[f"fd_{name}_vs_real"] = frechet_distance(ref["features"], real_a)
        result[f"{name}_label_freq"] = _label_freq(ref, num)
    result["generated_label_freq"] = _label_freq(gen, num)
    if fit:
        result["fit_judge"] = gen["fit_judge"]
    result["generated_continuous_mean_std"] = {
        n: [float(np.mean(gen[n])), float(np.std(gen[n]))] for n in shapes.CONTINUOUS}
    result["wall_s"] = time.time() - t0
    return result


def _label_freq(data: dict, num: int) -> dict:
    return {n: (np.bincount(data[n], minlength=len(c)) / num).round(4).tolist() for n, c in shapes.DISCRETE.items()}


def _early_params(gan_dir: str | Path, params_template) -> tuple[int, dict] | None:
    """(step, EMA params) of a shapes_gan workdir's early snapshot (`early_ema_<step>`), or None."""
    early = sorted(Path(gan_dir).glob("early_ema_*"))
    if not early:
        return None
    with ocp.StandardCheckpointer() as ckptr:
        return int(early[0].name.split("_")[-1]), ckptr.restore(early[0].resolve(), params_template)


def measure(gan_dir, judge_dir, latent_dir, num: int, seed: int = 31) -> dict:
    """`measure_generator` for the training workdirs: the GAN's EMA generator against its own early snapshot."""
    g_cfg, g_vars, gcfg = gan_run.load_gan_ema(gan_dir)
    w_path = Path(latent_dir) / "w_avg.npy" if latent_dir else None
    w_avg = np.load(w_path) if w_path is not None and w_path.is_file() else \
        np.asarray(sg.estimate_w_avg(g_cfg, g_vars, jax.random.PRNGKey(0), 10000))     # ψ = 1 here: only recorded for symmetry
    g_vars = {"params": g_vars["params"], "buffers": dict(g_vars["buffers"], mapping={"w_avg": jnp.asarray(w_avg)})}
    jm, jp, _ = judge_run.load_judge(judge_dir)
    early = _early_params(gan_dir, g_vars["params"])
    result = measure_generator(g_cfg, g_vars, jm, jp, num, seed, {"early": early[1]} if early else None)
    result["gan_steps"] = gcfg["trained_steps"]
    if early:
        result["early_snapshot_step"] = early[0]
    return result


def measure_assets(assets: str | Path, num: int, seed: int = 31, early_gan: str | Path | None = None,
                   previous: str | Path | None = None) -> dict:
    """`measure_generator` for an exported default model (its generator and judge), with the early snapshot of
    the shapes_gan workdir `early_gan` and a previous generator checkpoint `previous` as references."""
    from lace_jax import checkpoint
    from lace_jax.worlds.shapes import load_default
    model = load_default(assets)
    refs, extra = {}, {"gan_steps": int(model.card.get("gan_steps", 0))}
    if early_gan:
        early = _early_params(early_gan, model.generator["params"])
        if early is None:
            raise FileNotFoundError(f"no early_ema_* snapshot in {early_gan}")
        refs["early"], extra["early_snapshot_step"] = early[1], early[0]
    if previous:
        p_cfg, p_vars = checkpoint.load_generator(previous)
        if p_cfg != model.generator_config:
            raise ValueError(f"{previous} has another generator architecture than {assets}")
        refs["previous"] = jax.tree_util.tree_map(jnp.asarray, p_vars["params"])
        extra["previous_generator"] = str(previous)
    result = measure_generator(model.generator_config, model.generator, model.judge_model, model.judge_params,
                               num, seed, refs)
    result.update(extra)
    return result


def run(config: dict, out_dir: Path, log=print) -> dict:
    """`python evaluate.py --config shapes_quality`: `measure_assets` for an exported model (`assets`, with the
    `early` / `previous` references) or `measure` for training workdirs (`gan`, `judge`, `latent`); writes
    `out_dir/quality.json`."""
    from lace_jax import records

    if config.get("assets"):
        result = measure_assets(config["assets"], int(config["num"]), early_gan=config.get("early"),
                                previous=config.get("previous"))
    else:
        result = measure(config["gan"], config["judge"], config.get("latent"), int(config["num"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(out_dir / "quality.json", result)
    log(json.dumps(result, indent=2))
    return result
