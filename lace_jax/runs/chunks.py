"""Batch generation far larger than memory: chunks, per-sample keys, data parallelism, resumable on-disk chunks.

    per_sample = batching.sampler_fn("ode", options, latent_dim=2)       # (energy, key, index) -> one sample
    res = batching.generate(per_sample, cond_energy, num_samples=10**6, chunk_size=4096, seed=0,
                            out_dir="out/big", progress=print)
    res.z, res.success, res.stats, res.failed_indices

Design:
* Keys: sample `i` uses `fold_in(PRNGKey(seed), i)` and nothing else, so a sample does not depend on the chunk
  size, the chunk order, or the number of devices (each sample is computed by its own vmapped lane; batch-coupled
  algorithms such as the ODE's *joint* batch mode are therefore not used here: `sampler_fn` runs batch-1 solves).
* Data parallel: each chunk is padded to a multiple of the local device count and sharded along its batch axis
  over a 1-D `Mesh` of `jax.devices()`; the energy's parameters (the `params` argument) are replicated. The
  padding lanes are computed and dropped. Every chunk has the same padded shape, so there is one compilation.
* Resumable: chunk `k` (samples `[k·C, min((k+1)·C, N))`) is written atomically to
  `out_dir/chunks/chunk_{k:05d}.npz` (`index`, `z`, `success`, `stats_<name>`); `out_dir/chunks/manifest.json`
  records N, C, seed and the caller's `fingerprint` (sampler, options, expression...). A re-run checks the
  manifest (a different run in the same folder is an error, never a silent mix), skips every chunk that exists
  and is complete, and computes only the rest. `merge(out_dir)` concatenates the chunks into the full arrays.
* Failures (`success` False; their rows of `z` are NaN) are kept, counted in the progress lines and listed in
  `failed_indices`; they are never dropped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from lace_jax import records

CHUNK_DIR = "chunks"
MANIFEST = "manifest.json"
MERGED = "samples.npz"

# (params, key[2] uint32, index int32 scalar) -> (z[D], success bool scalar, stats {name: scalar})
PerSampleFn = Callable[[Any, jax.Array, jax.Array], tuple]


class BatchError(ValueError):
    """A batch run cannot proceed (e.g. the output folder holds a different run)."""


class Progress(NamedTuple):
    """One progress report, given to the `progress` callback after each chunk (computed or found on disk)."""
    chunk: int              # chunk index
    num_chunks: int
    done: int               # samples finished so far (including resumed chunks)
    total: int
    computed: bool          # False: the chunk was found complete on disk and skipped
    samples_per_s: float    # over the chunks computed in this process (compilation included in the first)
    eta_s: float            # remaining samples / samples_per_s (inf before the first computed chunk)
    failures: int           # failed samples so far

    def line(self) -> str:
        eta = "?" if not math.isfinite(self.eta_s) else f"{self.eta_s:.0f}s"
        how = "computed" if self.computed else "resumed "
        return (f"chunk {self.chunk + 1}/{self.num_chunks} {how} {self.done}/{self.total} samples, "
                f"{self.samples_per_s:.1f} samples/s, ETA {eta}, failures {self.failures}")


class BatchResult(NamedTuple):
    z: np.ndarray               # [N, D]; NaN rows where success is False
    success: np.ndarray         # [N] bool
    stats: dict                 # name -> [N]
    failed_indices: np.ndarray  # [F] int64 sample indices whose solve failed
    computed_chunks: tuple      # chunk indices computed by this call (empty for merge)


# --------------------------------------------------------------------------------------------------------------
# Keys and the per-sample function

def sample_key(seed: int | jax.Array, index) -> jax.Array:
    """The PRNG key of sample `index`: `fold_in(PRNGKey(seed), index)`."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), index)


# --------------------------------------------------------------------------------------------------------------
# Sharded chunk function

def make_mesh(devices: Sequence[Any] | None = None) -> Mesh:
    """A 1-D mesh with axis 'batch' over `devices` (default: all local devices)."""
    devs = list(jax.local_devices() if devices is None else devices)
    return Mesh(np.array(devs), ("batch",))


def chunk_function(per_sample: PerSampleFn, mesh: Mesh) -> Callable:
    """`f(params, seed, indices[B]) -> (z[B, D], success[B], stats)`, jitted with the batch axis sharded over the
    mesh and `params` replicated. B must be a multiple of the mesh size."""
    batch = NamedSharding(mesh, P("batch"))
    repl = NamedSharding(mesh, P())

    def run(params, seed, indices):
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(indices)
        if getattr(per_sample, "batched", False):      # a chunk body such as joint_ode_fn
            return per_sample(params, keys, indices)
        return jax.vmap(per_sample, in_axes=(None, 0, 0))(params, keys, indices)

    return jax.jit(run, in_shardings=(repl, repl, batch), out_shardings=batch)


def padded_size(chunk_size: int, num_devices: int) -> int:
    """`chunk_size` rounded up to a multiple of `num_devices`."""
    return int(math.ceil(chunk_size / num_devices) * num_devices)


# --------------------------------------------------------------------------------------------------------------
# Chunk files

def chunk_path(out_dir: str | Path, k: int) -> Path:
    return Path(out_dir) / CHUNK_DIR / f"chunk_{k:05d}.npz"


def _chunk_range(k: int, chunk_size: int, num_samples: int) -> tuple[int, int]:
    return k * chunk_size, min((k + 1) * chunk_size, num_samples)


def read_chunk(path: Path, start: int, stop: int) -> Optional[dict]:
    """The arrays of a complete chunk file for samples [start, stop), or None if it is missing or incomplete."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    except Exception:   # any unreadable file (truncated zip, bad header, ...) is an incomplete chunk
        return None
    n = stop - start
    if not {"index", "z", "success"} <= set(data):
        return None
    if data["index"].shape != (n,) or not np.array_equal(data["index"], np.arange(start, stop)):
        return None
    if data["z"].shape[0] != n or data["success"].shape != (n,):
        return None
    if any(v.shape[:1] != (n,) for k, v in data.items() if k.startswith("stats_")):
        return None
    return data


def _manifest(num_samples: int, chunk_size: int, seed: int, fingerprint: Mapping | None) -> dict:
    fingerprint = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                   for k, v in dict(fingerprint or {}).items()}   # e.g. {"options": SamplerOptions(...)}
    return records.to_jsonable({"format": "lace_jax.runs.chunks", "version": 1, "num_samples": int(num_samples),
                                "chunk_size": int(chunk_size), "seed": int(seed),
                                "fingerprint": dict(fingerprint or {})})


def _check_manifest(out_dir: Path, manifest: dict) -> None:
    path = out_dir / CHUNK_DIR / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        # compare through JSON so tuples/lists and numpy scalars compare as written
        new = json.loads(json.dumps(manifest))
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise BatchError(f"{out_dir} holds chunks of a different run (differs in: {', '.join(diff)}; on disk "
                             f"{ {k: old.get(k) for k in diff} }, now { {k: new.get(k) for k in diff} }); use a new "
                             "out_dir or delete the old chunks")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        records.write_json(path, manifest)


# --------------------------------------------------------------------------------------------------------------
# Driver

def generate(per_sample: PerSampleFn, params: Any, *, num_samples: int, chunk_size: int, seed: int = 0,
             out_dir: str | Path | None = None, progress: Optional[Callable[[Progress], None]] = None,
             devices: Sequence[Any] | None = None, fingerprint: Mapping | None = None,
             merge_output: bool = True, cache: Optional[dict] = None) -> BatchResult:
    """Compute samples `0 … num_samples−1` in chunks of `chunk_size` (see the module docstring).

    With `out_dir`, finished chunks are written there and a re-run resumes (the manifest must match); the merged
    arrays are also written to `out_dir/samples.npz` when `merge_output`. Without `out_dir` everything stays in
    memory. `progress(Progress)` is called after every chunk; an exception raised there stops the run after that
    chunk was saved (so it is never recomputed). `cache` (a dict the caller keeps) reuses the jitted chunk
    function across calls with the same `per_sample` object and devices: a new condition of the same structure
    (another target, another expression of the same shape) then runs without recompiling."""
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    num_samples, chunk_size, seed = int(num_samples), int(chunk_size), int(seed)
    num_chunks = int(math.ceil(num_samples / chunk_size))
    mesh = make_mesh(devices)
    ndev = mesh.devices.size
    padded = padded_size(min(chunk_size, num_samples), ndev)
    out = None if out_dir is None else Path(out_dir)
    if out is not None:
        _check_manifest(out, _manifest(num_samples, chunk_size, seed, fingerprint))
    fn = None
    params_dev = None
    in_memory: dict[int, dict] = {}
    computed: list[int] = []
    done = failures = 0
    t_compute, n_compute = 0.0, 0
    for k in range(num_chunks):
        start, stop = _chunk_range(k, chunk_size, num_samples)
        data = read_chunk(chunk_path(out, k), start, stop) if out is not None else None
        was_computed = data is None
        if data is None:
            if fn is None:
                ck = (per_sample, tuple(d.id for d in mesh.devices.flat))
                fn = cache.get(ck) if cache is not None else None
                if fn is None:
                    fn = chunk_function(per_sample, mesh)
                    if cache is not None:
                        cache[ck] = fn
                params_dev = jax.device_put(params, NamedSharding(mesh, P()))
            t0 = time.perf_counter()
            idx = np.arange(start, start + padded, dtype=np.int32)
            idx = jax.device_put(idx, NamedSharding(mesh, P("batch")))
            z, success, stats = jax.block_until_ready(fn(params_dev, np.uint32(seed), idx))
            n = stop - start
            data = {"index": np.arange(start, stop, dtype=np.int64), "z": np.asarray(z)[:n],
                    "success": np.asarray(success)[:n].astype(bool)}
            data.update({f"stats_{name}": np.asarray(v)[:n] for name, v in stats.items()})
            if out is not None:
                records.write_npz(chunk_path(out, k), **data)
            t_compute += time.perf_counter() - t0
            n_compute += n
            computed.append(k)
        if out is None:
            in_memory[k] = data
        done += stop - start
        failures += int((~data["success"]).sum())
        if progress is not None:
            rate = n_compute / t_compute if t_compute > 0 else 0.0
            eta = (num_samples - done) / rate if rate > 0 else (0.0 if done == num_samples else math.inf)
            progress(Progress(k, num_chunks, done, num_samples, was_computed, rate, eta, failures))
    if out is None:
        res = _concat([in_memory[k] for k in range(num_chunks)])
    else:
        res = merge(out, write=merge_output)
    return res._replace(computed_chunks=tuple(computed))


def _concat(chunks: list[dict]) -> BatchResult:
    z = np.concatenate([c["z"] for c in chunks])
    success = np.concatenate([c["success"] for c in chunks]).astype(bool)
    names = sorted({k for c in chunks for k in c if k.startswith("stats_")})
    stats = {n[len("stats_"):]: np.concatenate([c[n] for c in chunks]) for n in names
             if all(n in c for c in chunks)}
    index = np.concatenate([c["index"] for c in chunks])
    return BatchResult(z, success, stats, index[~success].astype(np.int64), ())


def merge(out_dir: str | Path, *, write: bool = True) -> BatchResult:
    """The full arrays from the chunks in `out_dir` (every chunk must be complete). With `write`, also
    `out_dir/samples.npz` (`z`, `success`, `failed_indices`, `stats_<name>`), written atomically."""
    out = Path(out_dir)
    mpath = out / CHUNK_DIR / MANIFEST
    if not mpath.is_file():
        raise BatchError(f"{out} has no {CHUNK_DIR}/{MANIFEST}: not a batch output folder")
    m = json.loads(mpath.read_text())
    n, c = int(m["num_samples"]), int(m["chunk_size"])
    chunks, missing = [], []
    for k in range(int(math.ceil(n / c))):
        start, stop = _chunk_range(k, c, n)
        data = read_chunk(chunk_path(out, k), start, stop)
        if data is None:
            missing.append(k)
        else:
            chunks.append(data)
    if missing:
        raise BatchError(f"{out}: chunks {missing[:10]}{' ...' if len(missing) > 10 else ''} are missing or "
                         "incomplete; re-run generate() with the same settings to finish them")
    res = _concat(chunks)
    if write:
        records.write_npz(out / MERGED, z=res.z, success=res.success, failed_indices=res.failed_indices,
                          **{f"stats_{k}": v for k, v in res.stats.items()})
    return res


__all__ = ["BatchError", "BatchResult", "Progress", "sample_key", "make_mesh", "chunk_function",
           "padded_size", "chunk_path", "read_chunk", "generate", "merge"]
