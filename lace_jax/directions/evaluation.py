"""Scoring latent edits with a ground-truth judge (issue 9's measurements; `experiments/directions_shapes.py`).

An *edit walk* takes ``N`` start latents to ``K`` targets of one factor (absolute values in the judge's units,
the same targets for every start), and the judge reads every factor of every frame. From the readings:

* **response** of the edited factor: the requested change ``A(target) − A(start)`` against the achieved change
  ``A(frame) − A(start)``, both in the transformation's units ``A`` (``shapes_amount``: x, y in fractions of the
  width, size as the log of the radius, hue in turns), pooled over starts and targets: least-squares slope and
  intercept, R², the mean absolute error of the judged value against the target, and per walk whether the
  achieved amounts increase with the targets (``monotone``: every step up; ``spearman``: rank correlation);
* **spread of the other factors**: per start, the standard deviation of each other continuous factor over the
  walk's frames (Plumerault et al.'s disentanglement measure), averaged over starts, plus the fraction of frames
  whose discrete labels (shape, background) differ from the start's.

All functions are numpy, NaN-aware (rows with a NaN frame, e.g. a failed LACE solve, are dropped and counted).
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from lace_jax.data import shapes

# the transformation that realises each shapes factor (names in lace_jax.directions.transforms.TRANSFORMS)
SHAPES_TRANSFORMS = {"x": "x", "y": "y", "size": "zoom", "hue": "hue"}


def shapes_amount(name: str, value) -> np.ndarray:
    """A factor value of the shapes world (judge units, [0, 1]) in its transformation's units, up to a constant:
    x, y → centre in fractions of the width/height; size → log(radius in px); hue → HSV hue in turns."""
    v = np.asarray(value, np.float64)
    if name in ("x", "y"):
        return (shapes.CENTRE_FRACTION[1] - shapes.CENTRE_FRACTION[0]) * v
    if name == "size":
        r0, r1 = shapes.RADIUS_PX_32
        return np.log(np.maximum(r0 + (r1 - r0) * v, 1e-6))
    if name == "hue":
        return (shapes.HUE_RANGE[1] - shapes.HUE_RANGE[0]) * v
    raise ValueError(f"shapes_amount: no transformation units for factor {name!r}; known: {sorted(SHAPES_TRANSFORMS)}")


def shapes_value(name: str, amount) -> np.ndarray:
    """Inverse of ``shapes_amount``: judge units from transformation units."""
    a = np.asarray(amount, np.float64)
    if name in ("x", "y"):
        return a / (shapes.CENTRE_FRACTION[1] - shapes.CENTRE_FRACTION[0])
    if name == "size":
        r0, r1 = shapes.RADIUS_PX_32
        return (np.exp(a) - r0) / (r1 - r0)
    if name == "hue":
        return a / (shapes.HUE_RANGE[1] - shapes.HUE_RANGE[0])
    raise ValueError(f"shapes_value: no transformation units for factor {name!r}; known: {sorted(SHAPES_TRANSFORMS)}")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt(np.sum(ra * ra) * np.sum(rb * rb))
    return float(np.sum(ra * rb) / den) if den > 0 else 0.0


def response(requested: np.ndarray, achieved: np.ndarray) -> dict:
    """Response of a factor to requested changes, ``requested[N, K]`` and ``achieved[N, K]`` (each row one walk,
    columns ordered by increasing request): pooled least-squares ``achieved ≈ slope·requested + intercept``, R²
    of that line, and per walk monotonicity (all steps up) and Spearman rank correlation, averaged. Rows with a
    NaN are dropped (``num_dropped``)."""
    req = np.asarray(requested, np.float64)
    ach = np.asarray(achieved, np.float64)
    if req.shape != ach.shape or req.ndim != 2:
        raise ValueError(f"response: need requested and achieved of equal shape [N, K], got {req.shape}, {ach.shape}")
    ok = np.all(np.isfinite(req) & np.isfinite(ach), axis=1)
    req, ach = req[ok], ach[ok]
    out = {"num_walks": int(ok.sum()), "num_dropped": int((~ok).sum())}
    if req.shape[0] == 0:
        return {**out, "slope": float("nan"), "intercept": float("nan"), "r2": float("nan"),
                "monotone": float("nan"), "spearman": float("nan")}
    x, y = req.reshape(-1), ach.reshape(-1)
    xc = x - x.mean()
    slope = float(np.sum(xc * (y - y.mean())) / max(np.sum(xc * xc), 1e-300))
    intercept = float(y.mean() - slope * x.mean())
    ss_res = np.sum((y - (slope * x + intercept)) ** 2)
    ss_tot = np.sum((y - y.mean()) ** 2)
    r2 = float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan")
    order = np.argsort(req, axis=1)
    ach_sorted = np.take_along_axis(ach, order, axis=1)
    monotone = float(np.mean(np.all(np.diff(ach_sorted, axis=1) > 0, axis=1)))
    spearman = float(np.mean([_spearman(r, a) for r, a in zip(req, ach)]))
    return {**out, "slope": slope, "intercept": intercept, "r2": r2, "monotone": monotone, "spearman": spearman}


def walk_metrics(name: str, targets: Sequence[float], start: Mapping[str, np.ndarray],
                 frames: Mapping[str, np.ndarray], *, amount: Callable = shapes_amount,
                 discrete: Sequence[str] = ("shape", "background"), ignore: Sequence[str] = ()) -> dict:
    """Everything about one factor's edit walk. ``start[f]`` are the judge's readings of the unedited starts
    ``[N]``, ``frames[f]`` of the edited frames ``[N, K]`` (frame k edited to ``targets[k]``); continuous factors are
    floats, discrete ones (``discrete``) integer labels. Returns the ``response`` of ``name`` (in ``amount`` units),
    ``target_mae`` (judge units), ``spread`` (per other continuous factor: mean over starts of the std over the
    walk), ``spread_mean`` (their average, leaving out the factors in ``ignore``), ``changed`` (per discrete factor: fraction of frames whose label differs
    from the start's) and ``changed_any``."""
    t = np.asarray(targets, np.float64)
    v0 = np.asarray(start[name], np.float64)
    v = np.asarray(frames[name], np.float64)
    if v.ndim != 2 or v.shape != (v0.shape[0], t.shape[0]):
        raise ValueError(f"walk_metrics: frames[{name!r}] must be [N, K] = [{v0.shape[0]}, {t.shape[0]}], "
                         f"got {v.shape}")
    a0 = amount(name, v0)[:, None]
    requested = amount(name, t)[None, :] - a0
    achieved = amount(name, v) - a0
    ok = np.all(np.isfinite(v), axis=1) & np.isfinite(v0)
    out = {"response": response(requested, achieved),
           "target_mae": float(np.mean(np.abs(v[ok] - t[None]))) if ok.any() else float("nan")}
    spread = {}
    for f in frames:
        if f == name or f in discrete:
            continue
        x = np.asarray(frames[f], np.float64)[ok]
        spread[f] = float(np.mean(np.std(x, axis=1))) if len(x) else float("nan")
    out["spread"] = spread
    kept = [v for f, v in spread.items() if f not in ignore]
    out["spread_mean"] = float(np.mean(kept)) if kept else float("nan")
    changed = {}
    any_changed = np.zeros((int(ok.sum()), t.shape[0]), bool)
    for f in discrete:
        if f not in frames:
            continue
        diff = np.asarray(frames[f])[ok] != np.asarray(start[f])[ok][:, None]
        changed[f] = float(np.mean(diff)) if diff.size else float("nan")
        any_changed |= diff
    out["changed"] = changed
    out["changed_any"] = float(np.mean(any_changed)) if any_changed.size and changed else float("nan")
    return out


__all__ = ["SHAPES_TRANSFORMS", "shapes_amount", "shapes_value", "response", "walk_metrics"]
