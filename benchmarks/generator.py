"""Generator throughput: images/s of the jitted StyleGAN2 (mapping + synthesis) on the current JAX backend.

Random weights of two typical configs (stylegan2-ada's `cifar` spec at 32 px: 512 channels, 2 mapping layers, class
conditioning; its `paper256` spec at 256 px: channel_base 16384, 8 mapping layers), float32 and bfloat16 compute,
the non-fused (default) and fused modulated convolution, batch sizes 1..64. Prints one JSON document with every
measurement and the speed ratios bf16/f32 and fused/non-fused.

    python benchmarks/generator.py            # full sweep (slow on CPU)
    python benchmarks/generator.py --quick    # a small subset, seconds to minutes on CPU
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from lace_jax.models import stylegan2 as S  # noqa: E402

CONFIGS = {
    32: S.StyleGAN2Config(z_dim=512, c_dim=10, w_dim=512, img_resolution=32, mapping_layers=2, channel_base=32768,
                          channel_max=512, conv_clamp=256),
    256: S.StyleGAN2Config(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, mapping_layers=8, channel_base=16384,
                           channel_max=512, conv_clamp=256),
}


def measure(cfg: S.StyleGAN2Config, variables, batch: int, min_time: float, max_reps: int) -> dict:
    """Compile once, then time whole-batch calls until `min_time` seconds or `max_reps` calls; median per call."""
    gen = jax.jit(partial(S.generate, cfg, noise_mode="const", truncation_psi=0.7))
    key = jax.random.PRNGKey(batch)
    z = jax.random.normal(key, (batch, cfg.z_dim))
    c = jax.nn.one_hot(jnp.arange(batch) % cfg.c_dim, cfg.c_dim) if cfg.c_dim else None
    t0 = time.perf_counter()
    jax.block_until_ready(gen(variables, z, c))
    compile_s = time.perf_counter() - t0
    times = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < 2 or time.perf_counter() - start < min_time):
        t = time.perf_counter()
        jax.block_until_ready(gen(variables, z, c))
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return dict(resolution=cfg.img_resolution, dtype=cfg.dtype, fused_modconv=cfg.fused_modconv, batch=batch,
                img_per_s=round(batch / med, 3), ms_per_batch=round(1e3 * med, 3), reps=len(times),
                first_call_s=round(compile_s, 3))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="batch 1 and 4 at 32 px, batch 1 at 256 px (non-fused), short timing windows")
    ap.add_argument("--resolutions", type=int, nargs="*", default=[32, 256])
    ap.add_argument("--batches", type=int, nargs="*", default=None)
    ap.add_argument("--min-time", type=float, default=None, help="seconds of timed calls per point")
    args = ap.parse_args(argv)
    batches = args.batches or ([1, 4] if args.quick else [1, 2, 4, 8, 16, 32, 64])
    min_time = args.min_time if args.min_time is not None else (0.5 if args.quick else 3.0)
    max_reps = 5 if args.quick else 50

    results = []
    for res in args.resolutions:
        base = CONFIGS[res]
        variables = S.init(base, jax.random.PRNGKey(0))
        variants = [dict(dtype="float32", fused_modconv=False), dict(dtype="bfloat16", fused_modconv=False),
                    dict(dtype="float32", fused_modconv=True)]
        for var in variants:
            cfg = base.replace(**var)
            for b in batches:
                if args.quick and res > 32 and (var["fused_modconv"] or b > 1):
                    continue  # quick: the 256-px point is batch 1, non-fused only (CPU minutes otherwise)
                r = measure(cfg, variables, b, min_time, max_reps)
                print(json.dumps(r), file=sys.stderr, flush=True)
                results.append(r)

    def lookup(res, dtype, fused, b):
        for r in results:
            if (r["resolution"], r["dtype"], r["fused_modconv"], r["batch"]) == (res, dtype, fused, b):
                return r["img_per_s"]
        return None

    ratios = []
    for r in results:
        if r["dtype"] == "float32" and not r["fused_modconv"]:
            bf = lookup(r["resolution"], "bfloat16", False, r["batch"])
            fu = lookup(r["resolution"], "float32", True, r["batch"])
            ratios.append(dict(resolution=r["resolution"], batch=r["batch"],
                               bf16_over_f32=None if bf is None else round(bf / r["img_per_s"], 3),
                               fused_over_nonfused=None if fu is None else round(fu / r["img_per_s"], 3)))
    dev = jax.devices()[0]
    print(json.dumps(dict(benchmark="generator", backend=jax.default_backend(), device=str(dev.device_kind),
                          jax=jax.__version__, python=platform.python_version(), quick=args.quick,
                          configs={str(k): {f: getattr(CONFIGS[k], f) for f in ("z_dim", "c_dim", "w_dim",
                                   "mapping_layers", "channel_base", "channel_max", "conv_clamp")}
                                   for k in args.resolutions},
                          results=results, ratios=ratios), indent=1))


if __name__ == "__main__":
    main()
