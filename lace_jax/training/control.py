"""Control of the shipped default model: LACE-ODE conditional sampling scored by the judge.

For each condition, z0 ~ N(0, I) is carried by LACE's PF-ODE (dopri5, rtol = atol = 1e-3, t: 1 → 0) under the
conditional energy of the latent classifiers (by default discrete attributes by the product of the w and z
classifiers, continuous ones on w = mapping(z); `--classifier_space w`: LACE's w classifiers alone); the
generated images of the end points are labelled by the judge. The same z0 rendered directly give the
unconditional rate. `*_fit` columns score the same images by the analysis-by-synthesis judge (`data.fit_judge`: a
hit needs a render that explains the image and satisfies the condition); `realistic` is the fraction explained at
all. `*_in_world` counts a hit only when the judge also reads the object as no smaller than the
world's smallest (size ≥ −0.05): the generator draws tiny blobs that no real render has, and there the judge's
shape label is not to be trusted.

    python evaluate.py --config shapes_control --set num=256 [--set update_card=True]   # out/evaluate/control.json
    python evaluate.py --config shapes_control --set classifier_space=w      # LACE's w classifiers alone
    python evaluate.py --config shapes_control --set sampler='{"kind": "tc", "solver": "bosh3", "rtol": 3e-3, "atol": 3e-3}'

`--sampler` replaces LACE's solve by another ODE setting (`kind` 'ode' or 'tc', the autonomous time-changed flow,
with `samplers.SamplerOptions` fields), to check that a cheaper
setting keeps the judge's accuracy on a trained model (docs/performance.md).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lace_jax import energy
from lace_jax.runs import evaluation
from lace_jax.data import shapes
from lace_jax.worlds.shapes import ASSETS, DEFAULT_SPACE, DefaultModel, load_default
from lace_jax import samplers

LACE_SAMPLER = {"kind": "ode", "solver": "dopri5", "rtol": 1e-3, "atol": 1e-3}


def make_solve(sampler: dict | None = None):
    """A jitted `(energy, z0) -> samplers.SampleOutput` for t: 1 → 0 through `samplers.run`; `sampler` as in the
    module docstring (None: LACE's dopri5 at 1e-3 on the joint batch)."""
    opts = dict(LACE_SAMPLER if sampler is None else sampler)
    kind = opts.pop("kind", "ode")
    if kind not in _KINDS:
        raise ValueError(f"control: sampler kind must be 'ode' or 'tc', got {kind!r}")
    options = samplers.SamplerOptions(**{"batch_mode": "joint", **opts, "t_end": 0.0})
    return jax.jit(lambda e, z: samplers.run(None, _KINDS[kind], e, z, options))


_KINDS = {"ode": "ode", "tc": "ode_tc"}


def judge_labels(model: DefaultModel, z: jax.Array, batch: int = 64) -> dict:
    """The judge's hard labels (discrete) and values (continuous) of the images of latents `z`, by name."""
    return both_labels(model, z, batch, fit=False)[0]


def both_labels(model: DefaultModel, z: jax.Array, batch: int = 64, fit: bool = True) -> tuple[dict, dict | None]:
    """(the CNN judge's labels as `judge_labels`, the analysis-by-synthesis judge's `{"labels", "realistic"}`
    (`data.fit_judge.labels`) or None) of the images of latents `z`, each batch generated once for both."""
    from lace_jax.data import fit_judge

    out = {n: [] for n in list(shapes.DISCRETE) + list(shapes.CONTINUOUS)}
    fits = []
    for i in range(0, z.shape[0], batch):
        images = model.generate(z[i:i + batch])
        o = model.judge(images)
        for n in shapes.DISCRETE:
            out[n].append(np.asarray(jnp.argmax(o["logits"][n], -1)))
        for j, n in enumerate(shapes.CONTINUOUS):
            out[n].append(np.asarray(o["values"][:, j]))
        if fit:
            fits.append(fit_judge.labels(np.asarray(images)))
    cnn = {n: np.concatenate(v) for n, v in out.items()}
    if not fit:
        return cnn, None
    return cnn, {"labels": {n: np.concatenate([f["labels"][n] for f in fits]) for n in fits[0]["labels"]},
                 "realistic": np.concatenate([f["realistic"] for f in fits])}


# (row label, expression, NOT operator): every single attribute, ANDs, ORs and NOTs — LACE's bounded scaled
# negation (the language's default `!`) next to the probabilistic complement −log(1 − p) that configs/shapes.py
# selects (`not_op: complement`). Scored by the judge with `evaluation.judge_satisfied` (continuous: |judge − y| <
# CONTINUOUS_TOL).
CONDITIONS = tuple(
    [(f"{n}={c}", f"{n}={c}", "lace") for n in shapes.DISCRETE for c in shapes.DISCRETE[n]]
    + [(f"{n}={t}", f"{n}={t}", "lace") for n, t in (("x", 0.2), ("x", 0.8), ("size", 0.8), ("hue", 0.1))]
    + [(e, e, "lace") for e in ("shape=circle & background=black", "shape=triangle & background=white",
                                "shape=triangle | shape=star", "shape=square | shape=star",
                                "background=black | background=grey")]
    + [("!background=white [lace NOT]", "!background=white", "lace"), ("!background=white", "!background=white",
                                                                       "complement"),
       ("!shape=circle [lace NOT]", "!shape=circle", "lace"), ("!shape=circle", "!shape=circle", "complement"),
       ("shape=square & !background=black", "shape=square & !background=black", "complement"),
       ("shape=star & !background=white", "shape=star & !background=white", "complement")])
CONTINUOUS_TOL = 0.15

SIZE_FLOOR = -0.05   # the world's smallest object is size 0 (radius 4.5 px); the judge's size MAE is 0.04


def _in_world(lab: dict) -> np.ndarray:
    """Images whose object the judge reads as at least as large as the world's smallest (size ≥ −0.05): on
    smaller blobs, which no real render has, the judge's shape label is an extrapolation, not a measurement."""
    return lab["size"] >= SIZE_FLOOR


def measure(model: DefaultModel, num: int = 64, seed: int = 5, sampler: dict | None = None, log=print) -> dict:
    """Judge accuracy of LACE-ODE samples per condition next to the unconditional rate of the same z0
    (`sampler`: another ODE setting than LACE's dopri5 1e-3, see `make_solve`), under `model.attributes`
    (recorded: `model.classifier_space`)."""
    t0 = time.time()
    z0 = jax.random.normal(jax.random.PRNGKey(seed), (num, model.z_dim))
    base, base_fit = both_labels(model, z0)
    base_in_world = _in_world(base)       # the same z0 for every condition
    solve = make_solve(sampler)
    results: dict = {"num_per_condition": num, "seed": int(seed), "conditions": {},
                     "classifier_space": model.classifier_space,
                     "solver": "dopri5 rtol=atol=1e-3, t 1→0" if sampler is None else json.dumps(sampler)}

    a = model.attributes
    for label, expr, not_name in CONDITIONS:
        r = solve(energy.parse(expr, a, not_op=energy.not_op(not_name)), z0)
        lab, fit = both_labels(model, r.z_unchecked)
        in_world = _in_world(lab)
        hit, _ = evaluation.judge_satisfied(expr, a, lab, tol=CONTINUOUS_TOL)
        base_hit, _ = evaluation.judge_satisfied(expr, a, base, tol=CONTINUOUS_TOL)
        fit_hit, _ = evaluation.judge_satisfied(expr, a, fit["labels"], tol=CONTINUOUS_TOL)
        fit_hit &= fit["realistic"]
        base_fit_hit, _ = evaluation.judge_satisfied(expr, a, base_fit["labels"], tol=CONTINUOUS_TOL)
        base_fit_hit &= base_fit["realistic"]
        results["conditions"][label] = {"lace_ode": float(np.mean(hit)), "unconditional": float(np.mean(base_hit)),
                                        "lace_ode_in_world": float(np.mean(hit & in_world)),
                                        "unconditional_in_world": float(np.mean(base_hit & base_in_world)),
                                        "in_world": float(np.mean(in_world)),
                                        "lace_ode_fit": float(np.mean(fit_hit)),
                                        "unconditional_fit": float(np.mean(base_fit_hit)),
                                        "realistic": float(np.mean(fit["realistic"])),
                                        "success": float(np.mean(np.asarray(r.success))),
                                        "mean_nfe": float(np.mean(np.asarray(r.nfe)))}
        row = results["conditions"][label]
        log(f"control {label}: LACE-ODE {row['lace_ode']:.3f} (in world {row['lace_ode_in_world']:.3f}) vs "
            f"unconditional {row['unconditional']:.3f}; by the fit judge {row['lace_ode_fit']:.3f} vs "
            f"{row['unconditional_fit']:.3f} (realistic {row['realistic']:.3f}); NFE {row['mean_nfe']:.0f} "
            f"({time.time() - t0:.0f}s)")
    results["wall_s"] = time.time() - t0
    return results


def run(config: dict, out_dir: Path, log=print) -> dict:
    """`python evaluate.py --config shapes_control`: `measure` on the default model in `assets` (None: the shipped
    one) with `classifier_space`, `num` samples per condition, `seed` and an optional `sampler` dict; writes
    `out_dir/control.json` and, with `update_card`, stores it as `metrics.control` in the model card."""
    from lace_jax import records

    sampler = config.get("sampler")
    if config.get("update_card") and (sampler is not None or config["classifier_space"] != DEFAULT_SPACE):
        raise ValueError("control: update_card records the default setting only; drop sampler / classifier_space")
    model = load_default(config.get("assets"), classifier_space=config["classifier_space"])
    result = measure(model, int(config["num"]), seed=int(config["seed"]), sampler=sampler, log=log)
    out_dir.mkdir(parents=True, exist_ok=True)
    records.write_json(out_dir / "control.json", result)
    if config.get("update_card"):
        card_path = Path(config.get("assets") or ASSETS) / "model_card.json"
        card = json.loads(card_path.read_text())
        card.setdefault("metrics", {})["control"] = result
        records.write_json(card_path, card)
    return result
