"""Du et al.'s 2-D composition experiment: train score and energy diffusion models on exact 2-D targets,
compose them (product, mixture, negation), sample with reverse diffusion and annealed ULA/MALA/U-HMC/HMC, and
score every result against the exact composed density (mean log-likelihood, MMD, sliced Wasserstein).

    python experiments/diffusion_2d.py [--config configs/diffusion_2d.py] [key=value overrides ...]

Writes `<out_dir>/results.json`, `<out_dir>/results.md` (the table) and one scatter PNG per composition.
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
from lace_jax import diffusion  # noqa: E402
from lace_jax.runs import images
from lace_jax import densities2d
from lace_jax import energy as energy_lib  # noqa: E402
from lace_jax.metrics import sample_quality as sq  # noqa: E402

SAMPLER_ORDER = ("reverse", "ula", "uhmc", "mala", "hmc", "pf_ode")   # new ones at the end: keys stay


def exact_composition(targets: dict, comp: dict):
    """The exact composed energy, built from the exact normalised target energies with the same algebra."""
    es = [targets[p].energy for p in comp["parts"]]
    if comp["op"] == "product":
        return energy_lib.and_(*es)
    if comp["op"] == "mixture":
        return energy_lib.or_(*es, temperature=comp.get("temperature", 1.0))
    w = comp.get("weight", 0.3)
    return energy_lib.and_(energy_lib.weighted(es[0], 1.0 + w), energy_lib.not_(es[1], w))


def panel(points, grid, title, extent, size=220):
    bg = np.exp(np.asarray(grid.log_density))
    bg = bg / bg.max()
    img = images.scatter_png(np.asarray(points), extent=extent, size=size, background=bg, radius=1)
    return images.add_title(img, title)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/diffusion_2d.py")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    cfg = config_lib.apply_overrides(config_lib.load_config(args.config), args.overrides)
    out_dir = Path(cfg["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(cfg["seed"])
    k_train, k_eval = jax.random.split(key)
    t_start = time.time()

    targets = {}
    for name, spec in cfg["targets"].items():
        spec = dict(spec)
        targets[name] = densities2d.make(spec.pop("name"), **spec)
    models = diffusion.train_from_config(cfg, k_train)
    sched = diffusion.schedule_from_config(cfg)
    ev = cfg["eval"]
    extent = tuple(ev["extent"])
    num = int(ev["num_samples"])
    record = {"config": cfg, "training": {t: {k: {"losses": v["losses"].tolist(), "seconds": v["seconds"]}
                                              for k, v in d.items()} for t, d in models.items()},
              "runs": []}

    for ci, comp in enumerate(cfg["compositions"]):
        exact = exact_composition(targets, comp)
        grid = sq.density_grid(exact, extent, ev["grid"])
        kc = jax.random.fold_in(k_eval, ci)
        ref = sq.sample_grid(grid, jax.random.fold_in(kc, 999), num)
        ref2 = sq.sample_grid(grid, jax.random.fold_in(kc, 998), num)
        floor = {"loglik": sq.mean_log_likelihood(exact, grid.log_z, ref2)["mean"],
                 "mmd": sq.mmd(ref2, ref, ev["mmd_bandwidths"]),
                 "swd": sq.sliced_wasserstein(ref2, ref, jax.random.PRNGKey(7), ev["swd_projections"])}
        record["runs"].append({"composition": comp["name"], "kind": "exact", "sampler": "grid", **floor,
                               "seconds": 0.0, "nfe": 0, "acceptance": None})
        print(f"[{comp['name']}] exact-vs-exact: {floor}", flush=True)
        panels = [panel(ref, grid, "exact", extent)]
        for kind in diffusion.KINDS:
            try:
                target = diffusion.compose_from_config(models, comp, kind)
            except TypeError as e:
                print(f"[{comp['name']}/{kind}] not expressible: {e}", flush=True)
                record["runs"].append({"composition": comp["name"], "kind": kind, "sampler": "-",
                                       "error": str(e)})
                continue
            for si, sampler in enumerate(SAMPLER_ORDER):
                if sampler not in cfg["samplers"]:
                    continue
                ks = jax.random.fold_in(kc, 10 * diffusion.KINDS.index(kind) + si)
                t0 = time.time()
                try:
                    xs, acc, nfe = diffusion.sample_from_config(target, sched, sampler, cfg, ks, num)
                    xs = np.asarray(jax.block_until_ready(xs))
                except TypeError as e:
                    record["runs"].append({"composition": comp["name"], "kind": kind, "sampler": sampler,
                                           "error": str(e)})
                    continue
                secs = time.time() - t0
                ll = sq.mean_log_likelihood(exact, grid.log_z, xs)
                row = {"composition": comp["name"], "kind": kind, "sampler": sampler, "loglik": ll["mean"],
                       "clipped": ll["clipped_frac"], "mmd": sq.mmd(xs, ref, ev["mmd_bandwidths"]),
                       "swd": sq.sliced_wasserstein(xs, ref, jax.random.PRNGKey(7), ev["swd_projections"]),
                       "seconds": secs, "nfe": nfe,
                       "acceptance": None if acc is None else float(np.nanmean(np.asarray(acc)))}
                record["runs"].append(row)
                print(f"[{comp['name']}/{kind}/{sampler}] " + ", ".join(
                    f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)), flush=True)
                panels.append(panel(xs, grid, f"{kind} {sampler}", extent))
                (out_dir / "results.json").write_text(json.dumps(record, indent=1))
        ncols = 6
        while len(panels) % ncols:
            panels.append(np.full_like(panels[0], 255))
        sheet = images.add_title(images.make_grid(np.stack(panels), ncols=ncols), comp["name"])
        fname = comp["name"].replace(" ", "_").lower() + ".png"
        images.save_png(out_dir / fname, sheet)

    record["total_seconds"] = time.time() - t_start
    (out_dir / "results.json").write_text(json.dumps(record, indent=1))
    (out_dir / "results.md").write_text(table(record))
    print(table(record))
    return record


def table(record: dict) -> str:
    lines = ["| composition | parameterisation | sampler | mean log-lik ↑ | MMD² ↓ | sliced W1 ↓ | accept | NFE | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in record["runs"]:
        if "error" in r:
            lines.append(f"| {r['composition']} | {r['kind']} | {r['sampler']} | not expressible (needs energy "
                         f"values) | | | | | |")
            continue
        acc = "" if r.get("acceptance") is None else f"{r['acceptance']:.2f}"
        lines.append(f"| {r['composition']} | {r['kind']} | {r['sampler']} | {r['loglik']:.3f} | {r['mmd']:.4f} | "
                     f"{r['swd']:.4f} | {acc} | {r['nfe']} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
