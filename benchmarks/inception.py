"""FID feature-extractor throughput: images/s of `lace_jax.metrics.fid.inception_features` (resize to 299 + the
FID InceptionV3) on the current JAX backend, uint8 inputs of one size, one batch size.

Weights are random (`FIDInceptionV3().init`; the values do not change the work). The first call compiles the
resize and the network and runs one batch (`first_call_s`; `compile_s` = that minus the median batch); then
`--batches` whole batches are timed, one `inception_features` call each, the median giving `images_per_s`. The
load average before and after is recorded because a shared machine moves the number a lot. Prints one JSON
document.

    python benchmarks/inception.py                       # batch 50, 32-px inputs (CIFAR-10's FID protocol)
    python benchmarks/inception.py --size 1024 --batch 8  # FFHQ-sized inputs
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lace_jax.metrics import fid  # noqa: E402
from lace_jax.models import inception  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=50, help="batch size (pytorch-fid's default: 50)")
    ap.add_argument("--size", type=int, default=32, help="input height = width in pixels")
    ap.add_argument("--batches", type=int, default=3, help="timed batches after the compiling one")
    args = ap.parse_args(argv)

    x = jax.ShapeDtypeStruct((1, inception.RESOLUTION, inception.RESOLUTION, 3), jnp.float32)
    variables = jax.jit(inception.FIDInceptionV3().init)(jax.random.PRNGKey(0), jnp.zeros(x.shape, x.dtype))
    variables = jax.tree_util.tree_map(np.asarray, variables)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    fid.inception_features(variables, images, args.batch)
    first_call_s = time.perf_counter() - t0
    times = []
    for _ in range(args.batches):
        t = time.perf_counter()
        fid.inception_features(variables, images, args.batch)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    print(json.dumps({
        "what": "lace_jax.metrics.fid.inception_features: uint8 NHWC -> bilinear 299 -> FID InceptionV3 pool3",
        "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
        "jax": jax.__version__, "batch_size": args.batch, "input_px": args.size,
        "images_per_s": round(args.batch / med, 3), "s_per_batch": [round(t, 3) for t in times],
        "first_call_s": round(first_call_s, 3), "compile_s": round(first_call_s - med, 3),
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
    }, indent=2))


if __name__ == "__main__":
    main()
