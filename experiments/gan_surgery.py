"""Function-preserving copies of a shapes_gan train state with another recipe, to continue a trained run (issue 21).

    python experiments/gan_surgery.py mapping_lr experiments/gan_long_state /tmp/m1 --lr_multiplier 1
    python experiments/gan_surgery.py widen_d experiments/gan_long_state /tmp/wide --d_channels 64 64 64 64
    python train.py --config shapes_gan --workdir /tmp/m1 --set generator.lr_multiplier=1     # then resume
    python train.py --config shapes_gan --workdir /tmp/wide --set "d_channels=[64, 64, 64, 64]"

Both write DST/config.json and one checkpoint at the source's step; the copy computes what the source computes
(G's images, D's logits), so what changes afterwards is the recipe's effect alone.

`mapping_lr`: the mapping's equalised-lr parameters are stored as raw · lr_multiplier (weights also / √fan_in), so
a new multiplier m' keeps the function with raw' = raw · m / m'; Adam's moments follow the gradient of the raw
parameters (first moments · m / m', second · (m / m')²).
`widen_d`: the discriminator's width at each resolution may grow (not the last, 4×4 width, which the minibatch-std
epilogue reads). New channels get fresh N(0, 1) weights into them and zero weights out of them into the old
channels, and the old weights are rescaled by √(fan_in' / fan_in) so that the equalised-lr scale 1/√fan_in gives
the same effective weights. D's Adam moments are rescaled likewise; the new entries start with the mean second
moment of their layer (0 would make their first steps 10× the learning rate).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lace_jax.training import gan_run, loop  # noqa: E402


def _load(src: str) -> tuple[dict, dict, int]:
    cfg = loop.run_config(src)
    *_, template, _, _, _ = gan_run.build(cfg)
    state = loop.restore_newest(src, template, cfg, "GAN")
    return cfg, state, cfg.pop("trained_steps")


def _write(dst: str, cfg: dict, state: dict, step: int) -> None:
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=False)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    manager = loop.checkpoint_manager(out / "checkpoints")
    loop.save(manager, step, state)
    manager.close()


def mapping_lr(cfg: dict, state: dict, lr_multiplier: float) -> tuple[dict, dict]:
    """(config, state) whose mapping trains with `lr_multiplier`, computing the same images."""
    old = gan_run.generator_config(cfg).lr_multiplier
    k = old / lr_multiplier
    scale = lambda tree, f: {**tree, "mapping": jax.tree_util.tree_map(lambda x: np.asarray(x) * f, tree["mapping"])}
    adam, *rest = state["g_opt"]
    state = {**state, "g": scale(state["g"], k), "g_ema": scale(state["g_ema"], k),
             "g_opt": (adam._replace(mu=scale(adam.mu, k), nu=scale(adam.nu, k * k)), *rest)}
    return {**cfg, "generator": {**cfg["generator"], "lr_multiplier": lr_multiplier}}, state


def _d_layers(resolution: int, index: int) -> tuple[list[str], list[str]]:
    """(layers whose outputs are width `index`, layers whose inputs are) in `Discriminator`'s naming."""
    r = resolution >> index
    producers = ["fromrgb"] if index == 0 else [f"b{2 * r}_conv1", f"b{2 * r}_skip"]
    return producers + [f"b{r}_conv0"], [f"b{r}_conv0", f"b{r}_conv1", f"b{r}_skip"]


def widen_d(cfg: dict, state: dict, channels: list[int], seed: int) -> tuple[dict, dict]:
    """(config, state) with the discriminator's widths grown to `channels`, computing the same logits (numpy
    throughout: no kernel to compile per shape); `seed` draws the new channels' weights."""
    old = [int(c) for c in cfg["d_channels"]]
    if len(channels) != len(old) or any(n < o for n, o in zip(channels, old)) or channels[-1] != old[-1]:
        raise SystemExit(f"widen_d: d_channels {channels} must have {len(old)} entries, none below {old}, and the "
                         f"last (4x4, read by the minibatch-std epilogue) equal to {old[-1]}")
    as_np = lambda tree: {name: {k: np.asarray(v) for k, v in layer.items()} for name, layer in tree.items()}
    d = as_np(state["d"])
    adam, *rest = state["d_opt"]
    mu, nu = as_np(adam.mu), as_np(adam.nu)
    rng = np.random.default_rng(seed)
    res = int(cfg["resolution"])
    for index, (o, n) in enumerate(zip(old, channels)):
        if n == o:
            continue
        producers, consumers = _d_layers(res, index)
        for name in consumers:                 # input axis 2 of HWIO: old inputs rescaled, new inputs zero
            w = d[name]["weight"]
            s = np.float32(np.sqrt(n / o))
            pad = [(0, 0), (0, 0), (0, n - o), (0, 0)]
            d[name]["weight"] = np.pad(w * s, pad)
            mu[name]["weight"] = np.pad(mu[name]["weight"] / s, pad)
            v = nu[name]["weight"] / (s * s)
            nu[name]["weight"] = np.pad(v, pad, constant_values=v.mean())
        for name in producers:                 # output axis 3: new outputs get fresh weights from every input
            w = d[name]["weight"]
            fresh = rng.standard_normal(w.shape[:3] + (n - o,)).astype(w.dtype)
            d[name]["weight"] = np.concatenate([w, fresh], axis=3)
            zeros = np.zeros_like(fresh)
            mu[name]["weight"] = np.concatenate([mu[name]["weight"], zeros], axis=3)
            nu[name]["weight"] = np.concatenate([nu[name]["weight"], zeros + nu[name]["weight"].mean()], axis=3)
            if "bias" in d[name]:
                d[name]["bias"] = np.pad(d[name]["bias"], (0, n - o))
                mu[name]["bias"] = np.pad(mu[name]["bias"], (0, n - o))
                nu[name]["bias"] = np.pad(nu[name]["bias"], (0, n - o), constant_values=nu[name]["bias"].mean())
    state = {**state, "d": d, "d_opt": (adam._replace(mu=mu, nu=nu), *rest)}
    return {**cfg, "d_channels": list(channels)}, state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["mapping_lr", "widen_d"])
    ap.add_argument("src", help="a shapes_gan workdir (config.json, checkpoints/)")
    ap.add_argument("dst", help="the new workdir (must not exist)")
    ap.add_argument("--lr_multiplier", type=float, help="mapping_lr: the mapping's new lr multiplier")
    ap.add_argument("--d_channels", type=int, nargs="+", help="widen_d: the new widths (32, 16, 8, 4 px)")
    ap.add_argument("--seed", type=int, default=0, help="widen_d: the key of the new channels' weights")
    a = ap.parse_args()
    cfg, state, step = _load(a.src)
    if a.what == "mapping_lr":
        if a.lr_multiplier is None:
            raise SystemExit("mapping_lr needs --lr_multiplier")
        cfg, state = mapping_lr(cfg, state, a.lr_multiplier)
    else:
        if a.d_channels is None:
            raise SystemExit("widen_d needs --d_channels")
        cfg, state = widen_d(cfg, state, a.d_channels, a.seed)
    _write(a.dst, cfg, state, step)
    print(json.dumps({"src": Path(a.src).name, "dst": Path(a.dst).name, "step": step, a.what: a.lr_multiplier
                      if a.what == "mapping_lr" else a.d_channels}))


if __name__ == "__main__":
    main()
