"""Assemble the shipped default model (`lace_jax/assets/default/`) from the three training workdirs.

    python train.py --config shapes_export --workdir runs/export --set gan=runs/gan --set judge=runs/judge \
        --set latent=runs/latent --set out=lace_jax/assets/default --set card=card_extra.json
    python train.py --config shapes_export --workdir runs/export --set latent=runs/latent --set classifiers_only=True
    python train.py --config shapes_export --workdir runs/export --set gan=runs/gan2 --set generator_only=True

Writes the EMA generator (with w_avg = the mean of mapping(z), estimated by `shapes_latent`), the judge, the
latent classifiers (copied from the latent workdir) as `lace_jax.checkpoint` directories, and `model_card.json`.
`generator_only` replaces just the generator (a continued GAN run), dropping the classifiers and the metrics
that depend on it. `classifiers_only` replaces just the latent classifiers of an exported model (a `shapes_latent` run with
`--set assets=...`) and their metrics in its card, keeping the generator and judge.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lace_jax import checkpoint
from lace_jax.data import shapes
from lace_jax.models import stylegan2 as sg
from lace_jax.training import gan_run, judge_run, latent

REFERENCE_SEED = 7


def judge_config(model) -> dict:
    """The judge's architecture as the JSON config stored with its checkpoint."""
    return {"discrete": [[n, k] for n, k in model.discrete], "continuous": list(model.continuous),
            "widths": list(model.widths), "features": int(model.features), "resolution": 32}


def _write_generator(out: Path, g_cfg: sg.StyleGAN2Config, g_vars: dict, extra: dict) -> None:
    """out/generator and out/reference_samples.npz (4 images of a fixed key, for the assets' determinism test)."""
    checkpoint.save_generator(out / "generator", g_cfg, g_vars, overwrite=True, extra=extra)
    z = jax.random.normal(jax.random.PRNGKey(REFERENCE_SEED), (4, g_cfg.z_dim))
    np.savez(out / "reference_samples.npz", seed=np.int64(REFERENCE_SEED), z=np.asarray(z),
             images=np.asarray(sg.generate(g_cfg, g_vars, z)))


def export_default(gan_dir: str | Path, judge_dir: str | Path, latent_dir: str | Path, out: str | Path,
                   card_extra: dict) -> Path:
    """Write generator/, judge/, classifiers/ and model_card.json under `out` (replacing what is there)."""
    out, latent_dir = Path(out), Path(latent_dir)
    g_cfg, g_vars, gcfg = gan_run.load_gan_ema(gan_dir)
    w_avg = np.load(latent_dir / "w_avg.npy")
    g_vars = {"params": g_vars["params"], "buffers": dict(g_vars["buffers"], mapping={"w_avg": jnp.asarray(w_avg)})}
    _write_generator(out, g_cfg, g_vars, {"trained_steps": gcfg["trained_steps"], "ema": True})
    jmodel, jparams, jcfg = judge_run.load_judge(judge_dir)
    checkpoint.save(out / "judge", {"params": jparams}, judge_config(jmodel), "attribute_cnn", overwrite=True,
                    extra={"trained_steps": jcfg["trained_steps"]})
    if (out / "classifiers").exists():
        shutil.rmtree(out / "classifiers")
    shutil.copytree(latent_dir / "classifiers", out / "classifiers")
    specs = [s for s in shapes.attribute_specs() if s["name"] in latent.LATENT_ATTRIBUTES]
    card = {"name": "lace_jax shapes default", "resolution": 32, "z_dim": g_cfg.z_dim, "w_dim": g_cfg.w_dim,
            "attributes": specs, "all_factors": shapes.attribute_specs(),
            "gan_steps": gcfg["trained_steps"], "gan_batch_size": gcfg["batch_size"],
            "judge_steps": jcfg["trained_steps"]}
    card.update(card_extra)
    (out / "model_card.json").write_text(json.dumps(card, indent=2))
    return out


STALE_WITH_A_NEW_GENERATOR = ("latent", "control", "calibration", "quality", "fit_judge")


def export_generator(gan_dir: str | Path, out: str | Path, card_extra: dict) -> Path:
    """Replace the generator of the exported model in `out` by a GAN run's EMA generator (any architecture),
    keeping the judge.

    The latent classifiers read the old generator's w and labels, so they are removed together with the card
    metrics measured through them (`STALE_WITH_A_NEW_GENERATOR`); retrain them with `train.py --config
    shapes_latent --set assets=<out>` and `--classifiers_only`, then re-measure."""
    out = Path(out)
    card = json.loads((out / "model_card.json").read_text())
    g_cfg, g_vars, gcfg = gan_run.load_gan_ema(gan_dir)
    w_avg = np.asarray(sg.estimate_w_avg(g_cfg, g_vars, jax.random.PRNGKey(0), 10000))
    g_vars = {"params": g_vars["params"], "buffers": dict(g_vars["buffers"], mapping={"w_avg": jnp.asarray(w_avg)})}
    _write_generator(out, g_cfg, g_vars, {"trained_steps": gcfg["trained_steps"], "ema": True,
                                          "init_from": gcfg.get("init_from")})
    if (out / "classifiers").exists():
        shutil.rmtree(out / "classifiers")
    for key in STALE_WITH_A_NEW_GENERATOR:
        card.get("metrics", {}).pop(key, None)
    card.update({"gan_steps": gcfg["trained_steps"], "gan_batch_size": gcfg["batch_size"]})
    card.update(card_extra)
    (out / "model_card.json").write_text(json.dumps(card, indent=2))
    return out


def export_classifiers(latent_dir: str | Path, out: str | Path, card_extra: dict) -> Path:
    """Replace `out/classifiers` by a latent run's classifiers and its metrics in `out/model_card.json`.

    The run must have labelled samples of the generator stored in `out` (`train.py --config shapes_latent
    --set assets=<out>`): a run of another generator is refused, since its classifiers would read the wrong w."""
    out, latent_dir = Path(out), Path(latent_dir)
    card = json.loads((out / "model_card.json").read_text())
    metrics = json.loads((latent_dir / "metrics.json").read_text())
    run_cfg = json.loads((latent_dir / "config.json").read_text())
    if not run_cfg.get("assets") or Path(run_cfg["assets"]).resolve() != out.resolve():
        raise ValueError(f"{latent_dir} was not trained on the generator in {out} (its config has assets="
                         f"{run_cfg.get('assets')!r}); run train.py --config shapes_latent --set assets={out}")
    if metrics.get("gan_steps") != card.get("gan_steps"):
        raise ValueError(f"{latent_dir} labelled a generator at step {metrics.get('gan_steps')}, "
                         f"{out} holds step {card.get('gan_steps')}")
    if (out / "classifiers").exists():
        shutil.rmtree(out / "classifiers")
    shutil.copytree(latent_dir / "classifiers", out / "classifiers")
    card.setdefault("metrics", {})["latent"] = metrics
    card.setdefault("wall_time_s", {})["latent"] = metrics.get("wall_s")
    card.update(card_extra)
    (out / "model_card.json").write_text(json.dumps(card, indent=2))
    return out


def run(config: dict, workdir: Path, log=print) -> dict:
    """`python train.py --config shapes_export`: assemble (or patch) a default-model directory `out` from the
    training workdirs (`gan`, `judge`, `latent`); `generator_only` / `classifiers_only` replace one part."""
    extra = json.loads(Path(config["card"]).read_text()) if config.get("card") else {}
    if config.get("classifiers_only"):
        result = export_classifiers(config["latent"], config["out"], extra)
    elif config.get("generator_only"):
        result = export_generator(config["gan"], config["out"], extra)
    else:
        result = export_default(config["gan"], config["judge"], config["latent"], config["out"], extra)
    log(f"export: wrote {config['out']}")
    return {"out": str(result)}
