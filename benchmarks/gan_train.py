"""GAN training throughput: one iteration per Python call vs many per jitted call vs V recipes vmapped.

Three ways to run the same iterations of `lace_jax.training.gan` (same maths; tests/training/test_gan_block.py):
  per_iteration  `make_steps`' train_step: 2–3 jitted calls per iteration (G+D+EMA or D only; lazy R1)
  block          `make_train_block`: `--steps_per_call` iterations per jitted call (`lax.fori_loop`)
  variants       `make_variants_block`: the block vmapped over `--variants` recipes (R1 γ, D lr, seed differ)
Images per second count `batch_size` images per iteration and variant (as `train.py` logs them); `variants` is
reported per variant and in total; images per CPU-second of this process are recorded too (on a shared CPU they
move less with other load; on a GPU they say how busy the host is). Modes are timed interleaved (a, b, c, a, b,
c, …) in one process, so the ratios are measured under the same load; the first call of each mode (compilation
included) is timed apart. On CPU a block is several times slower than separate calls (benchmarks/README.md).

    python benchmarks/gan_train.py --config shapes_gan_mid --out $OUT/gan_train.json        # a GPU
    python benchmarks/gan_train.py --tiny --out /tmp/gan_train_tiny.json                    # CPU rehearsal
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from lace_jax.config import apply_overrides, load_config  # noqa: E402
from lace_jax.data import shapes  # noqa: E402
from lace_jax.training import gan, gan_run  # noqa: E402

MODES = ("per_iteration", "block", "variants")


def _runners(config: dict, steps_per_call: int, num_variants: int) -> tuple[dict, gan.GanHyper]:
    """mode -> (state, run(state, step, n) -> state that waits for the result)."""
    _, _, _, state, g_apply, d_apply, key = gan_run.build(config)
    h = gan_run.hyper(config)
    res = int(config["resolution"])
    sample_real = lambda k, b: shapes.sample(k, b, res)[0]
    train_step = gan.make_steps(g_apply, d_apply, sample_real, h, key)
    train_block = gan.make_train_block(g_apply, d_apply, sample_real, h, key, steps_per_call)
    variants = gan.make_variants_block(g_apply, d_apply, sample_real, h, steps_per_call)
    # recipes of the kind experiments/gan_recipes.py tries (the speed does not depend on them)
    recipes = gan.stack_recipes([gan.recipe(h, jax.random.fold_in(key, v), r1_gamma=h.r1_gamma * 10 ** (v % 3),
                                            d_lr=h.d_lr / 2 ** (v // 3)) for v in range(num_variants)])
    r1s = jnp.zeros((num_variants,), jnp.float32)

    def per_iteration(st, step, n):
        for s in range(step, step + n):
            st, _ = train_step(st, s)
        return jax.block_until_ready(st)

    def block(st, step, n):
        for s in range(step, step + n, steps_per_call):
            st, _ = train_block(st, s, min(steps_per_call, step + n - s))
        return jax.block_until_ready(st)

    def vmapped(st, step, n):
        nonlocal r1s
        for s in range(step, step + n, steps_per_call):
            st, r1s, _ = variants(st, recipes, s, min(steps_per_call, step + n - s), r1s)
        return jax.block_until_ready(st)

    return {"per_iteration": (state, per_iteration), "block": (state, block),
            "variants": (gan.stack_recipes([state] * num_variants), vmapped)}, h


def measure(config: dict, steps: int, steps_per_call: int, num_variants: int, reps: int, modes=MODES,
            log=print) -> dict:
    """First-call and steady-state images/s of each mode over `steps` iterations per timed repetition."""
    runners, h = _runners(config, steps_per_call, num_variants)
    states = {m: s for m, (s, _) in runners.items()}
    per_call_images = {m: h.batch_size * (num_variants if m == "variants" else 1) for m in MODES}
    out = {m: {"first_call_s": None, "img_per_s": []} for m in modes}
    for m in modes:          # compile: one block's worth of iterations (the per-iteration path: an R1 one too)
        t = time.perf_counter()
        states[m] = runners[m][1](states[m], 0, steps_per_call)
        out[m]["first_call_s"] = round(time.perf_counter() - t, 3)
        log(f"{m}: first {steps_per_call} iterations (compilation included) {out[m]['first_call_s']} s")
    for r in range(reps):
        for m in modes:
            t, c = time.perf_counter(), time.process_time()
            states[m] = runners[m][1](states[m], 0, steps)     # iterations 0 … steps − 1 every time (same R1 steps)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            out[m]["img_per_s"].append(round(per_call_images[m] * steps / dt, 2))
            out[m].setdefault("img_per_cpu_s", []).append(round(per_call_images[m] * steps / max(dc, 1e-9), 2))
            log(f"rep {r} {m}: {out[m]['img_per_s'][-1]} img/s ({out[m]['img_per_cpu_s'][-1]} per CPU-second)")
    for m in modes:
        out[m]["img_per_s_median"] = statistics.median(out[m]["img_per_s"])
        out[m]["img_per_cpu_s_median"] = statistics.median(out[m]["img_per_cpu_s"])
    med = {m: out[m]["img_per_s_median"] for m in modes}
    if "variants" in med:
        out["variants"]["img_per_s_per_variant_median"] = round(med["variants"] / num_variants, 2)
    pairs = {"ratio_block_vs_per_iteration": ("block", "per_iteration", 1),
             "ratio_variants_total_vs_per_iteration": ("variants", "per_iteration", 1),
             "ratio_variants_per_variant_vs_per_iteration": ("variants", "per_iteration", num_variants),
             "ratio_variants_total_vs_block": ("variants", "block", 1)}
    ratios = {k: round(med[a] / div / med[b], 3) for k, (a, b, div) in pairs.items() if a in med and b in med}
    return {"results": out, **ratios}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="shapes_gan", help="a shapes GAN config name (shapes_gan, shapes_gan_mid)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the config's)")
    ap.add_argument("--set", action="append", default=[], help="config override key=value (repeatable)")
    ap.add_argument("--steps", type=int, default=None, help="iterations per timed repetition (default 400; tiny 8)")
    ap.add_argument("--steps_per_call", type=int, default=None, help="block length (default 100; tiny 8)")
    ap.add_argument("--variants", type=int, default=None, help="recipes vmapped together (default 4; tiny 2)")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions per mode (default 3; tiny 2)")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="which ways to time (all)")
    ap.add_argument("--tiny", action="store_true", help="configs/shapes_gan_tiny at CPU-rehearsal sizes")
    ap.add_argument("--out", required=True, help="path of the JSON written (its folder is created)")
    a = ap.parse_args(argv)
    name = "shapes_gan_tiny" if a.tiny else a.config
    overrides = list(a.set) + ([f"batch_size={a.batch}"] if a.batch else [])
    config = apply_overrides(load_config(name), overrides)
    steps = a.steps or (8 if a.tiny else 400)
    per_call = a.steps_per_call or (8 if a.tiny else 100)
    num_variants = a.variants or (2 if a.tiny else 4)
    reps = a.reps or (2 if a.tiny else 3)
    if min(steps, per_call, num_variants, reps) < 1:
        raise SystemExit("--steps, --steps_per_call, --variants and --reps must be ≥ 1")
    log = lambda line: print(line, file=sys.stderr, flush=True)
    load = os.getloadavg()
    t0 = time.time()
    result = {"benchmark": "gan_train", "config": name, "overrides": overrides, "batch_size": config["batch_size"],
              "steps_per_rep": steps, "steps_per_call": per_call, "variants": num_variants, "reps": reps,
              "backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
              "modes": a.modes, "cpu_count": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load]}
    result.update(measure(config, steps, per_call, num_variants, reps, tuple(a.modes), log))
    result["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["wall_s"] = round(time.time() - t0, 1)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
