"""Temperature calibration of the shipped discrete latent classifiers (Guo et al., 2017, "temperature scaling").

Trained to convergence on well-separated judge labels, the latent classifiers' logits grow without bound (the
background head of the 2026-12-01 classifiers outputs ±100–270): the argmax is right, the confidence is absurd.
The conditional energy −log softmax(l)[y] saturates and does not care much, but everything that uses the logits
themselves does — LACE's sequential-editing anchor `reg_logits·‖f(z) − f(z_prev)‖²` had Hessian eigenvalues of
200–2,600 from the background head alone (the conditional energy: 45–55), so `--edit shape=star` exhausted
Dopri5's 4,096 steps on half the samples.

Temperature scaling divides a head's logits by one scalar T > 0 fitted on held-out data by minimum negative
log-likelihood. The argmax (hence every accuracy) is unchanged; the probabilities become calibrated; the logits
shrink to the scale the data supports. Here T is folded into the last layer (kernel and bias / T), so the stored
classifiers *are* the calibrated ones and nothing downstream needs to know. The held-out set is fresh: z ~ N(0, I)
with a seed the training never used, rendered by the shipped generator and labelled by the shipped judge — the
same labelling as the training data.

    python train.py --config shapes_calibrate --workdir runs/calibrate [--set num=20000] [--set assets=DIR]
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from lace_jax import checkpoint
from lace_jax.worlds.shapes import ASSETS, load_default

SEED = 20261201      # the held-out latents' PRNG seed (training used its config's seed and fold-ins of it)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels [N]` under `softmax(logits [N, K] / temperature)`."""
    x = np.asarray(logits, np.float64) / float(temperature)
    x = x - x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x).sum(axis=1))
    return float(np.mean(lse - x[np.arange(len(x)), np.asarray(labels)]))


def ece(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = 15) -> float:
    """Expected calibration error: Σ_bins (n_b/N)·|accuracy_b − mean confidence_b| over equal-width bins of the
    top-class probability."""
    x = np.asarray(logits, np.float64) / float(temperature)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    hit = pred == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return float(total)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 1e-2, hi: float = 1e3,
                    iters: int = 100) -> float:
    """The T minimising `nll(logits, labels, T)`, by golden-section search on log T in [lo, hi] (the NLL is
    convex in 1/T, so unimodal in log T). Deterministic; raises on data a temperature cannot fit."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],) or logits.shape[0] == 0:
        raise ValueError(f"fit_temperature: need logits [N, K] and labels [N], got {logits.shape}, {labels.shape}")
    if not np.all(np.isfinite(logits)):
        raise ValueError("fit_temperature: logits contain NaN/inf")
    a, b = np.log(lo), np.log(hi)
    g = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, labels, np.exp(c)), nll(logits, labels, np.exp(d))
    for _ in range(iters):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, labels, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, labels, np.exp(d))
    return float(np.exp((a + b) / 2.0))


def held_out(model: Any, num: int, seed: int = SEED, batch: int = 256) -> tuple[jax.Array, dict]:
    """`num` fresh latents and the judge's hard labels of their images (as the latent training data)."""
    from lace_jax.training.control import judge_labels
    z = jax.random.normal(jax.random.PRNGKey(seed), (num, model.z_dim))
    return z, judge_labels(model, z, batch=batch)


_batched_logits = jax.jit(jax.vmap(lambda c, x: c(x), in_axes=(None, 0)))


def _logits(clf: Any, z: jax.Array, batch: int = 4096) -> np.ndarray:
    return np.concatenate([np.asarray(_batched_logits(clf, z[i:i + batch])) for i in range(0, z.shape[0], batch)])


def scaled_variables(variables: Any, temperature: float) -> Any:
    """A DenseEmbedder's variables with its last layer (`heads` or `linear`) divided by `temperature`."""
    params = dict(variables["params"])
    last = "heads" if "heads" in params else "linear"
    params[last] = {k: np.asarray(v, np.float32) / np.float32(temperature) for k, v in params[last].items()}
    return {**variables, "params": params}


def product_row(logits_w: np.ndarray, logits_z: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy, NLL and ECE of the product of the calibrated w and z classifiers (`ProductOfExperts`, the
    default model's discrete attributes), no temperature of its own. Its logits log_softmax(w) + log_softmax(z)
    differ from w + z by a per-row constant, which softmax (so accuracy, NLL and ECE) ignores."""
    lg = np.asarray(logits_w, np.float64) + np.asarray(logits_z, np.float64)
    return dict(accuracy=float(np.mean(lg.argmax(1) == labels)), nll=nll(lg, labels), ece=ece(lg, labels))


def calibrate(root: str | Path | None = None, num: int = 20000, seed: int = SEED, write: bool = True,
              log=print) -> dict:
    """Fit one temperature per discrete attribute and latent space of the default model in `root` on `num`
    held-out judged samples; with `write`, fold them into the stored classifiers and record them in the card."""
    t0 = time.time()
    root = Path(root) if root is not None else ASSETS
    model = load_default(root)
    z, labels = held_out(model, num, seed)
    report: dict = {"num": int(num), "seed": int(seed), "attributes": {}}
    for spec in model.specs:
        if spec["kind"] != "discrete":
            continue
        name = spec["name"]
        calibrated = {}
        for space, table in (("w", model.classifiers), ("z", model.classifiers_z)):
            if name not in table:
                continue
            lg = _logits(table[name], z)
            y = labels[name]
            t = fit_temperature(lg, y)
            calibrated[space] = lg / t
            row = dict(temperature=t, accuracy=float(np.mean(lg.argmax(1) == y)),
                       max_abs_logit_before=float(np.abs(lg).max()), max_abs_logit_after=float(np.abs(lg).max() / t),
                       nll_before=nll(lg, y), nll_after=nll(lg, y, t), ece_before=ece(lg, y), ece_after=ece(lg, y, t))
            report["attributes"].setdefault(name, {})[space] = row
            log(f"{space}/{name}: T = {t:.3f}, NLL {row['nll_before']:.4f} -> {row['nll_after']:.4f}, "
                f"ECE {row['ece_before']:.4f} -> {row['ece_after']:.4f}")
            if write:
                d = root / "classifiers" / f"{space}_{name}"
                meta = json.loads((d / "lace_jax.json").read_text())
                ccfg, cvars = checkpoint.load_classifier(d)
                extra = dict(meta.get("extra") or {})
                extra["temperature"] = float(extra.get("temperature", 1.0)) * t
                extra["calibration"] = {k: v for k, v in row.items()}
                checkpoint.save_classifier(d, ccfg, scaled_variables(cvars, t), extra=extra, overwrite=True)
        if len(calibrated) == 2:
            report["attributes"][name]["wz"] = product_row(calibrated["w"], calibrated["z"], labels[name])
    report["wall_s"] = time.time() - t0
    if write:
        card_path = root / "model_card.json"
        card = json.loads(card_path.read_text())
        card.setdefault("metrics", {})["calibration"] = report
        cmd = f"python train.py --config shapes_calibrate --workdir runs/calibrate --set num={num}"
        if cmd not in card.get("commands", []):
            card.setdefault("commands", []).insert(len(card.get("commands", [])) - 1, cmd)
        card_path.write_text(json.dumps(card, indent=2))
    return report


def run(config: dict, workdir: Path, log=print) -> dict:
    """`python train.py --config shapes_calibrate`: `calibrate` (unless `dry_run`, the fitted temperatures are
    folded into the classifiers of `assets`); the report is written to `workdir/calibration.json`."""
    from lace_jax import records

    report = calibrate(config.get("assets"), int(config["num"]), int(config["seed"]),
                       write=not config.get("dry_run", False), log=log)
    records.write_json(Path(workdir) / "calibration.json", report)
    return report
