"""Batch generation far larger than memory: chunks, per-sample keys, data parallelism, resumable on-disk chunks.

    per_sample = samplers.sampler_fn("ode", options, latent_dim=2)       # (energy, key, index) -> one sample
    res = chunks.generate(per_sample, cond_energy, num_samples=10**6, chunk_size=4096, seed=0,
                          out_dir="out/big", progress=print)
    res.z, res.success, res.stats, res.failed_indices

Design:
* Keys: sample `i` uses `fold_in(PRNGKey(seed), i)` and nothing else, so a sample does not depend on the chunk
  size, the chunk order, or the number of devices (each sample is computed by its own vmapped lane; batch-coupled
  algorithms such as the ODE's *joint* batch mode are therefore not used here: `sampler_fn` runs batch-1 solves).
* Data parallel: each chunk is padded to a multiple of the local device count and sharded along its batch axis
  over a 1-D `Mesh` of `jax.local_devices()`; the energy's parameters (the `params` argument) are replicated. The
  padding lanes are computed and dropped. Every chunk has the same padded shape, so there is one compilation.
* Resumable: chunk `k` (samples `[k·C, min((k+1)·C, N))`) is written atomically to
  `out_dir/chunks/chunk_{k:05d}.npz` (`index`, `z`, `success`, `stats_<name>`); `out_dir/chunks/manifest.json`
  records N, C, seed and the caller's `fingerprint` (sampler, options, expression...). A re-run checks the
  manifest (a different run in the same folder is an error, never a silent mix), skips every chunk that exists
  and is complete, and computes only the rest. `merge(out_dir)` concatenates the chunks into the full arrays.
* Failures (`success` False; their rows of `z` are NaN) are kept, counted in the progress lines and listed in
  `failed_indices`; they are never dropped.
* Several processes (`jax.distributed`, or any launcher that gives each process its `Processes(index, count)`)
  share one run through `out_dir` on a filesystem they all see: chunk `k` belongs to process
  `(chunk_offset + k) % count`, each process computes and writes only its own chunks on its local devices (nothing
  is compiled across hosts, no collective moves data), then waits for the others' chunk files (`merge(wait=True)`,
  polling) and merges. Samples depend only on (seed, index), so any process count gives the same samples, and a
  re-run with any process count skips every chunk already on disk. Without `out_dir` there is nothing to share
  and every process computes every chunk.
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
from lace_jax.runs import _programs

CHUNK_DIR = "chunks"
MANIFEST = "manifest.json"
MERGED = "samples.npz"

# (params, key[2] uint32, index int32 scalar) -> (z[D], success bool scalar, stats {name: scalar})
PerSampleFn = Callable[[Any, jax.Array, jax.Array], tuple]


class BatchError(ValueError):
    """A batch run cannot proceed (e.g. the output folder holds a different run)."""


class Progress(NamedTuple):
    """One progress report, given to the `progress` callback after each of this process's chunks (computed or
    found on disk); `done`/`total` count this process's share (all samples when it runs alone)."""
    chunk: int              # chunk index
    num_chunks: int         # chunks of the whole run
    done: int               # samples of this process's chunks finished so far (including resumed chunks)
    total: int              # samples of this process's chunks
    computed: bool          # False: the chunk was found complete on disk and skipped
    samples_per_s: float    # over the chunks computed in this process (compilation included in the first)
    eta_s: float            # remaining samples / samples_per_s (inf before the first computed chunk)
    failures: int           # failed samples so far

    def line(self) -> str:
        eta = "?" if not math.isfinite(self.eta_s) else f"{self.eta_s:.0f}s"
        how = "computed" if self.computed else "resumed "
        return (f"chunk {self.chunk + 1}/{self.num_chunks} {how} {self.done}/{self.total} samples, "
                f"{self.samples_per_s:.1f} samples/s, ETA {eta}, failures {self.failures}")


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's share of a run computed by `count` processes: chunk `k` of a `generate` call is this
    process's when `(chunk_offset + k) % count == index`. A caller running several `generate` calls (conditions,
    edit steps) advances `chunk_offset` by each call's chunk count so that small calls spread over the processes
    too. `timeout_s` bounds the wait for the other processes' chunks (None: wait; under `jax.distributed` a dead
    process ends the job anyway); `poll_s` is the polling interval."""
    index: int = 0
    count: int = 1
    chunk_offset: int = 0
    timeout_s: Optional[float] = None
    poll_s: float = 0.5

    def __post_init__(self):
        if not (int(self.count) >= 1 and 0 <= int(self.index) < int(self.count)):
            raise ValueError(f"Processes: need 0 <= index < count, got index={self.index}, count={self.count}")

    @classmethod
    def current(cls, **kwargs) -> "Processes":
        """`jax.process_index()` of `jax.process_count()` (1 of 1 unless `jax.distributed` or a TPU pod)."""
        return cls(index=jax.process_index(), count=jax.process_count(), **kwargs)

    def owns(self, k: int) -> bool:
        """Whether chunk `k` (of the current call) is computed by this process."""
        return (self.chunk_offset + int(k)) % self.count == self.index

    def after(self, num_chunks: int) -> "Processes":
        """The share for the next call, `num_chunks` chunks later."""
        return dataclasses.replace(self, chunk_offset=self.chunk_offset + int(num_chunks))


def barrier(name: str) -> None:
    """Wait until every `jax.distributed` process has reached `barrier(name)` (nothing when there is one process).
    For ordering a run's start (e.g. old chunks deleted before anyone writes new ones); results travel by files."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def start_together(out_dir: str | Path, processes: Processes, timeout_s: float = 120.0) -> None:
    """The start of a run shared by `processes`: each process leaves a marker file in `out_dir`, meets the others
    at a `barrier`, and checks that it sees every process's marker, so a folder that is not shared (a local disk
    per host) is a BatchError at once instead of a wait for chunks that never appear. Nothing with one process."""
    if processes.count == 1:
        return
    out = Path(out_dir)

    def marker(j: int) -> Path:
        return out / f".process_{j}_of_{processes.count}"

    out.mkdir(parents=True, exist_ok=True)
    records.write_text(marker(processes.index), "")
    barrier(f"lace_jax.runs.chunks.start_together {out}")
    try:
        wait_for(lambda: [j for j in range(processes.count) if not marker(j).is_file()], timeout_s=timeout_s,
                 poll_s=processes.poll_s, what="the start markers of processes")
    except BatchError as err:
        raise BatchError(f"{out} is not shared by all {processes.count} processes (process {processes.index}: "
                         f"{err}); give every process the same folder on a filesystem all hosts mount") from None


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


def _chunk_body(per_sample: PerSampleFn) -> Callable:
    def run(params, seed, indices):
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(indices)
        if getattr(per_sample, "batched", False):      # a chunk body such as joint_ode_fn
            return per_sample(params, keys, indices)
        return jax.vmap(per_sample, in_axes=(None, 0, 0))(params, keys, indices)
    return run


def chunk_function(per_sample: PerSampleFn, mesh: Mesh) -> Callable:
    """`f(params, seed, indices[B]) -> (z[B, D], success[B], stats)`, jitted with the batch axis sharded over the
    mesh and `params` replicated. B must be a multiple of the mesh size."""
    batch, repl = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
    return jax.jit(_chunk_body(per_sample), in_shardings=(repl, repl, batch), out_shardings=batch)


def _chunk_program(per_sample: PerSampleFn, mesh: Mesh, params: Any, padded: int,
                   program_key: Optional[Mapping], cache: Optional[dict]) -> Callable:
    """The chunk function for `params` (already replicated on the mesh): the stored traced program when
    `program_key` is given and JAX's persistent compilation cache is on (`_programs`), else `chunk_function`."""
    devices = tuple(d.id for d in mesh.devices.flat)
    directory = _programs.store_dir() if program_key is not None else None
    name = None
    if directory is not None:
        leaves, treedef = jax.tree_util.tree_flatten(params)
        idx = jax.device_put(np.arange(padded, dtype=np.int32), NamedSharding(mesh, P("batch")))
        example = (leaves, np.uint32(0), idx)
        name = _programs.key(program_key, params, example[1:], mesh.devices.size)
    ck = (per_sample, devices, name)
    fn = cache.get(ck) if cache is not None else None
    if fn is None:
        if name is None:
            fn = chunk_function(per_sample, mesh)
        else:
            body = _chunk_body(per_sample)
            batch, repl = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
            flat = jax.jit(lambda lv, seed, indices: body(treedef.unflatten(lv), seed, indices),
                           in_shardings=(repl, repl, batch), out_shardings=batch)
            program = _programs.stored(flat, example, directory, name)
            fn = lambda p, seed, indices: program(jax.tree_util.tree_leaves(p), seed, indices)  # noqa: E731
        if cache is not None:
            cache[ck] = fn
    return fn


def padded_size(chunk_size: int, num_devices: int) -> int:
    """`chunk_size` rounded up to a multiple of `num_devices`."""
    return int(math.ceil(chunk_size / num_devices) * num_devices)


# --------------------------------------------------------------------------------------------------------------
# Chunk files

def chunk_path(out_dir: str | Path, k: int) -> Path:
    return Path(out_dir) / CHUNK_DIR / f"chunk_{k:05d}.npz"


def num_chunks(num_samples: int, chunk_size: int) -> int:
    """How many chunks `num_samples` samples make in chunks of `chunk_size`."""
    return int(math.ceil(int(num_samples) / int(chunk_size)))


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


def _manifest(num_samples: int, chunk_size: int, seed: int, fingerprint: Mapping | None,
              paths: Callable[[Any], Any] = records.path_identities) -> dict:
    """The run's identity as written to the manifest; absolute paths in the fingerprint (a model folder) as
    `paths` gives them: by default a name and a digest, so the shared folder names no directory of this machine
    (manifests of earlier versions hold the paths themselves: `paths=lambda x: x`)."""
    fingerprint = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
                   for k, v in dict(fingerprint or {}).items()}   # e.g. {"options": SamplerOptions(...)}
    return records.to_jsonable({"format": "lace_jax.runs.chunks", "version": 1, "num_samples": int(num_samples),
                                "chunk_size": int(chunk_size), "seed": int(seed),
                                "fingerprint": paths(records.to_jsonable(fingerprint))})


def _check_manifest(out_dir: Path, manifest: dict, legacy: Optional[dict] = None) -> None:
    """Write the manifest of a new run, or check that the one on disk is this run's (or its `legacy` form)."""
    path = out_dir / CHUNK_DIR / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        # compare through JSON so tuples/lists and numpy scalars compare as written
        new = json.loads(json.dumps(manifest))
        if old != new and (legacy is None or old != json.loads(json.dumps(legacy))):
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
             merge_output: bool = True, cache: Optional[dict] = None, processes: Optional[Processes] = None,
             wait: bool = True, program_key: Optional[Mapping] = None) -> Optional[BatchResult]:
    """Compute samples `0 … num_samples−1` in chunks of `chunk_size` (see the module docstring).

    With `out_dir`, finished chunks are written there and a re-run resumes (the manifest must match); the merged
    arrays are also written to `out_dir/samples.npz` when `merge_output` (by process 0 only). Without `out_dir`
    everything stays in memory. `progress(Progress)` is called after every chunk of this process; an exception
    raised there stops the run after that chunk was saved (so it is never recomputed). `cache` (a dict the caller
    keeps) reuses the jitted chunk function across calls with the same `per_sample` object and devices: a new
    condition of the same structure (another target, another expression of the same shape) then runs without
    recompiling. `program_key` (JSON-able: what defines `per_sample` beyond lace_jax's code, e.g. its sampler and
    options) lets a later process reuse the traced chunk program when JAX's persistent compilation cache is on
    (`lace_jax.runs._programs`); without it the program is traced in every process.

    `processes` (default `Processes.current()`, i.e. jax's process index and count): with `out_dir`, only this
    process's chunks are computed, and the result merges every process's chunk files once they are all on disk.
    `wait=False` (needs `out_dir`) returns None as soon as this process's chunks are written; `merge(out_dir,
    wait=True)` collects the run later (so a caller can start its next call instead of idling)."""
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if not wait and out_dir is None:
        raise ValueError("generate(wait=False) needs an out_dir (the chunks are collected from it by merge())")
    num_samples, chunk_size, seed = int(num_samples), int(chunk_size), int(seed)
    total_chunks = num_chunks(num_samples, chunk_size)
    out = None if out_dir is None else Path(out_dir)
    share = (processes or Processes.current()) if out is not None else Processes()
    mine = [k for k in range(total_chunks) if share.owns(k)]
    mesh = make_mesh(devices)
    ndev = mesh.devices.size
    padded = padded_size(min(chunk_size, num_samples), ndev)
    if out is not None:
        _check_manifest(out, _manifest(num_samples, chunk_size, seed, fingerprint),
                        legacy=_manifest(num_samples, chunk_size, seed, fingerprint, paths=lambda x: x))
    fn = None
    params_dev = None
    in_memory: dict[int, dict] = {}
    computed: list[int] = []
    done = failures = 0
    my_total = sum(_chunk_range(k, chunk_size, num_samples)[1] - k * chunk_size for k in mine)
    t_compute, n_compute = 0.0, 0
    for k in mine:
        start, stop = _chunk_range(k, chunk_size, num_samples)
        data = read_chunk(chunk_path(out, k), start, stop) if out is not None else None
        was_computed = data is None
        if data is None:
            if fn is None:
                params_dev = jax.device_put(params, NamedSharding(mesh, P()))
                fn = _chunk_program(per_sample, mesh, params_dev, padded, program_key, cache)
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
            eta = (my_total - done) / rate if rate > 0 else (0.0 if done == my_total else math.inf)
            progress(Progress(k, total_chunks, done, my_total, was_computed, rate, eta, failures))
    if not wait:
        return None
    if out is None:
        res = _concat([in_memory[k] for k in range(total_chunks)])
    else:
        res = merge(out, write=merge_output and share.index == 0, wait=share.count > 1,
                    timeout_s=share.timeout_s, poll_s=share.poll_s)
    return res._replace(computed_chunks=tuple(computed))


def wait_for(missing: Callable[[], Sequence], *, timeout_s: Optional[float] = None, poll_s: float = 0.5,
             on_wait: Optional[Callable[[Sequence], None]] = None, what: str = "chunks") -> None:
    """Poll `missing()` (what is not yet on disk) every `poll_s` seconds until it is empty; `on_wait(missing)` is
    called when the wait starts and about once a minute after. Past `timeout_s` a BatchError names what is
    missing. How one process waits for the files of the others (it works across hosts on a shared filesystem,
    and after a restart)."""
    t0 = last = time.monotonic()
    left = list(missing())
    if left and on_wait is not None:
        on_wait(left)
    while left:
        now = time.monotonic()
        if timeout_s is not None and now - t0 > timeout_s:
            raise BatchError(f"waited {timeout_s:.0f}s for {what} {left[:10]}{' ...' if len(left) > 10 else ''} "
                             "from the other processes; re-run to finish them")
        if on_wait is not None and now - last > 60:
            on_wait(left)
            last = now
        time.sleep(poll_s)
        left = list(missing())


def _concat(chunks: list[dict]) -> BatchResult:
    z = np.concatenate([c["z"] for c in chunks])
    success = np.concatenate([c["success"] for c in chunks]).astype(bool)
    names = sorted({k for c in chunks for k in c if k.startswith("stats_")})
    stats = {n[len("stats_"):]: np.concatenate([c[n] for c in chunks]) for n in names
             if all(n in c for c in chunks)}
    index = np.concatenate([c["index"] for c in chunks])
    return BatchResult(z, success, stats, index[~success].astype(np.int64), ())


def merge(out_dir: str | Path, *, write: bool = True, wait: bool = False, timeout_s: Optional[float] = None,
          poll_s: float = 0.5, on_wait: Optional[Callable[[Sequence], None]] = None) -> BatchResult:
    """The full arrays from the chunks in `out_dir` (every chunk must be complete). With `write`, also
    `out_dir/samples.npz` (`z`, `success`, `failed_indices`, `stats_<name>`), written atomically. With `wait`,
    missing chunks are waited for (other processes are computing them; see `wait_for`) instead of an error."""
    out = Path(out_dir)
    mpath = out / CHUNK_DIR / MANIFEST
    if not mpath.is_file():
        raise BatchError(f"{out} has no {CHUNK_DIR}/{MANIFEST}: not a batch output folder")
    m = json.loads(mpath.read_text())
    n, c = int(m["num_samples"]), int(m["chunk_size"])
    loaded: dict[int, dict] = {}

    def missing() -> list[int]:
        for k in range(num_chunks(n, c)):
            if k not in loaded:
                data = read_chunk(chunk_path(out, k), *_chunk_range(k, c, n))
                if data is not None:
                    loaded[k] = data
        return [k for k in range(num_chunks(n, c)) if k not in loaded]

    if wait:
        wait_for(missing, timeout_s=timeout_s, poll_s=poll_s, on_wait=on_wait, what=f"{out} chunks")
    left = missing()
    if left:
        raise BatchError(f"{out}: chunks {left[:10]}{' ...' if len(left) > 10 else ''} are missing or "
                         "incomplete; re-run generate() with the same settings to finish them")
    res = _concat([loaded[k] for k in range(num_chunks(n, c))])
    if write:
        records.write_npz(out / MERGED, z=res.z, success=res.success, failed_indices=res.failed_indices,
                          **{f"stats_{k}": v for k, v in res.stats.items()})
    return res


__all__ = ["BatchError", "BatchResult", "Progress", "Processes", "barrier", "start_together", "sample_key",
           "make_mesh", "chunk_function", "padded_size", "num_chunks", "chunk_path", "read_chunk", "generate",
           "wait_for", "merge"]
