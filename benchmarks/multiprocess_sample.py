"""`sample.py` as one process and as two `jax.distributed` processes on this machine: same samples, wall times.

    python benchmarks/multiprocess_sample.py --out $OUT/multiprocess_gpu.json              # a GPU machine
    python benchmarks/multiprocess_sample.py --cpu_devices 2 --num_samples 16 --chunk_size 8 \
        --out /tmp/multiprocess_cpu.json                                                     # CPU rehearsal

Issue 22's multi-process path is tested in CI on CPU (tests/runs/test_multiprocess.py: two processes with two
forced CPU devices each). This runs the same comparison with the real default model on whatever backend the
machine has: `sample.py` once as a single process, then as processes 0 and 1 of one job (coordinator on
127.0.0.1, both on this machine's devices; on a one-GPU machine they share the GPU), each with its own empty
compilation cache, and compares `samples.npz`. Across processes XLA may autotune to other kernels, so z is
compared by its largest absolute difference (the JSON says how large), `success` and the per-sample
stats (NFE, ...) exactly.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cache: Path, cpu_devices: int) -> dict:
    env = dict(os.environ, LACE_JAX_CACHE_DIR=str(cache), XLA_PYTHON_CLIENT_PREALLOCATE="false",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if cpu_devices:
        env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={cpu_devices}")
    return env


def _run(flags: list[str], work: Path, name: str, processes: int, cpu_devices: int, timeout: float) -> dict:
    """sample.py into work/name as `processes` processes; wall time, return codes and log tails."""
    out = work / name
    cmd = [sys.executable, str(REPO / "sample.py"), *flags, "--out_dir", str(out)]
    if processes > 1:
        cmd += ["--coordinator_address", f"127.0.0.1:{_free_port()}", "--num_processes", str(processes)]
    t0 = time.time()
    procs = []
    for i in range(processes):
        extra = ["--process_id", str(i)] if processes > 1 else []
        log = open(work / f"{name}_{i}.log", "w")
        procs.append((subprocess.Popen(cmd + extra, env=_env(work / f"cache_{name}_{i}", cpu_devices), cwd=REPO,
                                       stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for p, log in procs:
        try:
            codes.append(p.wait(timeout=max(timeout - (time.time() - t0), 1)))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append("timeout")
        log.close()
    wall = time.time() - t0
    tails = [(work / f"{name}_{i}.log").read_text()[-1500:] for i in range(processes)]
    return {"processes": processes, "wall_s": round(wall, 2), "return_codes": codes, "log_tails": tails,
            "samples": out / "samples.npz"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON report")
    ap.add_argument("--num_samples", type=int, default=512, help="samples per condition")
    ap.add_argument("--chunk_size", type=int, default=128)
    ap.add_argument("--cpu_devices", type=int, default=0, help="CPU rehearsal: force the CPU backend with this "
                                                                "many devices per process")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds per run (single, then both processes)")
    a = ap.parse_args(argv)
    flags = ["--num_samples", str(a.num_samples), "--chunk_size", str(a.chunk_size), "--seed", "0"]
    report = {"flags": flags, "cpu_devices": a.cpu_devices}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        single = _run(flags, work, "single", 1, a.cpu_devices, a.timeout)
        double = _run(flags, work, "two", 2, a.cpu_devices, a.timeout)
        for name, r in (("single", single), ("two_processes", double)):
            report[name] = {k: v for k, v in r.items() if k != "samples"}
        ok = single["return_codes"] == [0] and double["return_codes"] == [0, 0]
        if ok:
            x, y = np.load(single["samples"]), np.load(double["samples"])
            report["keys"], report["same_keys"] = sorted(x.files), sorted(x.files) == sorted(y.files)
            report["success_equal"] = bool(np.array_equal(x["success"], y["success"]))
            stats = [k for k in x.files if k.startswith("stats_")]
            report["stats_equal"] = {k: bool(np.array_equal(x[k], y[k])) for k in stats}
            diff = np.abs(np.nan_to_num(x["z"], nan=0.0) - np.nan_to_num(y["z"], nan=0.0))
            report["z_max_abs_diff"] = float(diff.max())
            report["z_bit_identical"] = bool(np.array_equal(x["z"], y["z"], equal_nan=True))
            report["z_shape"] = list(x["z"].shape)          # [conditions, samples, latent]
        report["ok"] = bool(ok and report.get("success_equal") and report.get("z_max_abs_diff", 1.0) <= 1e-5)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("single", "two_processes")}, indent=2))
    print(f"single {single['wall_s']} s, two processes {double['wall_s']} s; report {a.out}")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
