"""Throughput of the analysis-by-synthesis judge (`lace_jax.data.fit_judge.judge`) at 32 px on this machine.

Scores `--num` real renders blurred by σ = `--sigma` px (fixed seed) and, with `--generator`, as many samples of
the shipped generator, `--reps` times after one compiling call; prints one JSON document: median images/s (wall
clock) and images per CPU-second of this process (less sensitive to other load on a shared machine), compile
time, the 1-minute load average around each measurement, and the settings.

    python benchmarks/fit_judge.py                        # 4096 renders, batch 256
    python benchmarks/fit_judge.py --generator --batch_sizes 64 256 1024
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from lace_jax.data import fit_judge, shapes  # noqa: E402


def measure(images: np.ndarray, batch: int, reps: int) -> dict:
    """Compile (first call on one chunk), then `reps` timed calls on all images."""
    t0 = time.perf_counter()
    fit_judge.judge(images[:batch], batch_size=batch)
    compile_s = time.perf_counter() - t0
    walls, cpus, loads = [], [], []
    for _ in range(reps):
        loads.append(os.getloadavg()[0])
        c0, t = os.times(), time.perf_counter()
        result = fit_judge.judge(images, batch_size=batch)
        jax.block_until_ready(result.score)
        walls.append(time.perf_counter() - t)
        c1 = os.times()
        cpus.append((c1.user - c0.user) + (c1.system - c0.system))
    loads.append(os.getloadavg()[0])
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    return {"batch": batch, "images": len(images), "images_per_s": round(len(images) / wall, 1),
            "images_per_cpu_s": round(len(images) / cpu, 1), "wall_s_median": round(wall, 3),
            "wall_s_all": [round(w, 3) for w in walls], "cpu_s_median": round(cpu, 3),
            "first_call_s": round(compile_s, 2), "loadavg_1min": [round(v, 2) for v in loads],
            "realistic_fraction": round(float(np.mean(np.asarray(result.realistic))), 4)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=4096)
    ap.add_argument("--sigma", type=float, default=0.7, help="blur of the real renders (0: exact renders)")
    ap.add_argument("--batch_sizes", type=int, nargs="*", default=[fit_judge.BATCH])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--generator", action="store_true", help="also time the shipped generator's samples")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    key_real, key_gen = jax.random.split(jax.random.PRNGKey(a.seed))
    inputs = {f"renders_sigma_{a.sigma:g}": fit_judge.gaussian_blur(np.asarray(shapes.sample(key_real, a.num)[0]),
                                                                     a.sigma)}
    if a.generator:
        from lace_jax.worlds.shapes import load_default
        model = load_default()
        z = jax.random.normal(key_gen, (a.num, model.generator_config.z_dim))
        inputs["shipped_generator"] = np.concatenate([np.asarray(model.generate(z[i:i + 512]))
                                                      for i in range(0, a.num, 512)])
    results = []
    for name, images in inputs.items():
        for batch in a.batch_sizes:
            row = {"input": name, **measure(images, batch, a.reps)}
            print(json.dumps(row), file=sys.stderr)
            results.append(row)
    print(json.dumps({
        "benchmark": "fit_judge", "resolution": fit_judge.RESOLUTION,
        "settings": {"steps": fit_judge.STEPS, "rotation_grid": list(fit_judge.ROTATION_GRID),
                     "starts": fit_judge.STARTS, "tau": fit_judge.TAU},
        "results": results,
        "best_images_per_s": max(r["images_per_s"] for r in results),
        "environment": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(), "jax": jax.__version__, "backend": jax.default_backend(),
                        "xla_flags": os.environ.get("XLA_FLAGS", "")},
    }, indent=1))


if __name__ == "__main__":
    main()
