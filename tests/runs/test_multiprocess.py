"""Several processes sharing one run: disjoint chunk shares that merge into the single-process samples, waiting for
the other processes' files, resuming with any process count, and `jax.distributed` on CPU end to end (two
`sample.py` processes with two devices each, one killed mid-run, both restarted)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cli import distributed as cli_distributed
from lace_jax.config import load_config
from lace_jax.runs import chunks, sampling
from lace_jax.runs.request import Request
from tests.runs.toys import PARAMS, toy_per_sample

REPO = Path(__file__).resolve().parents[2]


CACHE: dict = {}       # one compilation of the toy chunk function for every call below


def _same(a, b):
    np.testing.assert_array_equal(a.success, b.success)
    np.testing.assert_array_equal(np.nan_to_num(a.z, nan=123.0), np.nan_to_num(b.z, nan=123.0))
    np.testing.assert_array_equal(a.stats["nfe"], b.stats["nfe"])
    np.testing.assert_array_equal(a.failed_indices, b.failed_indices)


def test_shares_are_disjoint_and_merge_into_the_single_process_samples(tmp_path):
    ref = chunks.generate(toy_per_sample, PARAMS, num_samples=23, chunk_size=4, seed=5,
                          cache=CACHE)     # 6 chunks, in memory
    assert 0 < len(ref.failed_indices) < 23
    out = tmp_path / "three"
    shares = [chunks.Processes(index=i, count=3, chunk_offset=1) for i in range(3)]
    for share in shares[1:]:      # processes 1 and 2 write their chunks and leave
        assert chunks.generate(toy_per_sample, PARAMS, num_samples=23, chunk_size=4, seed=5, out_dir=out,
                               processes=share, wait=False, cache=CACHE) is None
    res = chunks.generate(toy_per_sample, PARAMS, num_samples=23, chunk_size=4, seed=5, out_dir=out,
                          processes=shares[0], cache=CACHE)      # process 0 finds the others' chunks and merges
    _same(res, ref)
    assert res.computed_chunks == (2, 5)            # (1 + k) % 3 == 0
    assert (out / "samples.npz").is_file()
    _same(chunks.merge(out, write=False), ref)

    # process 1 of 2 alone, killed after its share: a single process resumes and computes only the rest
    out2 = tmp_path / "resume"
    lines = []
    chunks.generate(toy_per_sample, PARAMS, num_samples=23, chunk_size=4, seed=5, out_dir=out2,
                    processes=chunks.Processes(index=1, count=2), wait=False, progress=lines.append, cache=CACHE)
    assert [p.chunk for p in lines] == [1, 3, 5] and lines[-1].done == lines[-1].total == 4 + 4 + 3
    with pytest.raises(chunks.BatchError, match=r"chunks \[0, 2, 4\] are missing"):
        chunks.merge(out2)
    res = chunks.generate(toy_per_sample, PARAMS, num_samples=23, chunk_size=4, seed=5, out_dir=out2,
                          processes=chunks.Processes(index=0, count=1), cache=CACHE)
    assert res.computed_chunks == (0, 2, 4)
    _same(res, ref)


def test_waiting_for_another_process_times_out_with_the_missing_chunks(tmp_path):
    share = chunks.Processes(index=0, count=2, timeout_s=0.3, poll_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(chunks.BatchError, match=r"waited 0s for .* chunks \[1\]"):
        chunks.generate(toy_per_sample, PARAMS, num_samples=8, chunk_size=4, seed=0, out_dir=tmp_path,
                        processes=share, cache=CACHE)
    # it gives up instead of hanging (the bound leaves room for computing chunk 0 on a loaded CI machine)
    assert 0.3 <= time.monotonic() - t0 < 120
    seen = []
    with pytest.raises(chunks.BatchError):
        chunks.merge(tmp_path, wait=True, timeout_s=0.1, poll_s=0.05, on_wait=seen.append)
    assert seen == [[1]]
    # a folder the other process does not see (a local disk per host) stops the run at its start
    with pytest.raises(chunks.BatchError, match="not shared by all 2 processes"):
        chunks.start_together(tmp_path / "local", chunks.Processes(index=1, count=2, poll_s=0.05), timeout_s=0.2)
    chunks.start_together(tmp_path / "local", chunks.Processes(index=0, count=2), timeout_s=0.2)   # now both are
    with pytest.raises(ValueError, match="index < count"):
        chunks.Processes(index=2, count=2)


# two conditions of one structure (one compilation per process), 3 chunks each
EXPRS = ("cluster=ne", "cluster=sw")


def _toy_request(out_dir: Path, **kw) -> Request:
    base = dict(out_dir=out_dir, exprs=EXPRS, sampler="sgld", options={"num_steps": 5},
                num_samples=6, chunk_size=2, seed=0, config_name="toy2d", progress=lambda msg: None)
    base.update(kw)
    return Request(**base)


def _in_threads(config, make_request, count=2):
    """sampling.run as `count` processes (threads sharing the folder), like jax.distributed processes."""
    results, errors = [None] * count, []

    def one(i):
        try:
            results[i] = sampling.run(config, make_request(i), processes=chunks.Processes(index=i, count=count,
                                                                                          poll_s=0.05))
        except Exception as err:     # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    return results


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The toy run on one process (one device), the reference for every shared run."""
    return sampling.run(load_config("toy2d"), _toy_request(tmp_path_factory.mktemp("single")),
                        processes=chunks.Processes())


@pytest.mark.parametrize("mode", ["conditions", "edits", "sweep"])
def test_sampling_run_shared_by_two_processes_equals_one(tmp_path, mode, single):
    cfg = load_config("toy2d")
    if mode == "edits":     # step 2 starts from step 1's merged latents; cluster twice: one structure, one compile
        kw = dict(exprs=(), edits=("cluster=ne", "cluster=sw"))
    elif mode == "sweep":
        sweep = tmp_path / "sweep_tiny.py"
        sweep.write_text(textwrap.dedent("""
            def get_config():
                return {"tol": 0.1, "expressions": {"toy2d": ["cluster=ne & radius=2"]},
                        "grid": [{"sampler": "sgld", "step_size": [1e-2, 5e-2], "num_steps": [3, 6]}]}
        """))
        kw = dict(exprs=(), sweep=str(sweep))
    else:
        kw = {}
    if mode != "conditions":
        single = sampling.run(cfg, _toy_request(tmp_path / "one", **kw), processes=chunks.Processes())
    shared = _in_threads(cfg, lambda i: _toy_request(tmp_path / "two", **kw))
    assert shared[1] is None                        # only process 0 returns the outputs
    if mode == "sweep":
        one = json.loads((tmp_path / "one" / "sweep" / "rows.json").read_text())["rows"]
        two = json.loads((tmp_path / "two" / "sweep" / "rows.json").read_text())
        assert two["processes"] == 2 and len(two["rows"]) == 4
        assert [r["setting"] for r in two["rows"]] == [r["setting"] for r in one]
        assert [r["metrics"] for r in two["rows"]] == [r["metrics"] for r in one]
        assert [r["nfe"] for r in two["rows"]] == [r["nfe"] for r in one]
        rows = sorted((tmp_path / "two" / "sweep" / "rows").iterdir())
        assert [p.name for p in rows] == [f"row_{j:04d}.json" for j in range(4)]
        # a re-run of the same sweep keeps every finished row (one process now)
        mtimes = [p.stat().st_mtime_ns for p in rows]
        sampling.run(cfg, _toy_request(tmp_path / "two", **kw), processes=chunks.Processes())
        assert [p.stat().st_mtime_ns for p in rows] == mtimes
        again = json.loads((tmp_path / "two" / "sweep" / "rows.json").read_text())
        assert again["processes"] == 1 and again["rows"] == two["rows"]
        for path in [tmp_path / "two" / "sweep" / "rows.json", *rows]:      # the sweep file's folder is not named
            assert str(tmp_path) not in path.read_text(), path
        return
    np.testing.assert_array_equal(shared[0].arrays["success"], single.arrays["success"])
    np.testing.assert_array_equal(shared[0].arrays["z"], single.arrays["z"])
    assert shared[0].record["processes"] == 2 and single.record["processes"] == 1
    steps = "edits/step_*" if mode == "edits" else "conditions/*"
    assert len(list((tmp_path / "two").glob(f"{steps}/chunks/chunk_*.npz"))) == 6


def test_cluster_env_is_read_from_environment_variables_only():
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "4", "SLURM_PROCID": "1",
             "SLURM_LOCALID": "1"}
    assert cli_distributed.cluster_env(slurm) == "slurm"
    assert cli_distributed.cluster_env({**slurm, "SLURM_NTASKS": "1"}) is None        # one task: single process
    assert cli_distributed.cluster_env({**slurm, "SLURM_STEP_NUM_TASKS": "1"}) is None
    assert cli_distributed.cluster_env({k: v for k, v in slurm.items() if k != "SLURM_STEP_NODELIST"}) is None
    assert cli_distributed.cluster_env({"OMPI_MCA_orte_hnp_uri": "1.0;tcp://h:1", "OMPI_COMM_WORLD_SIZE": "2"}) \
        == "openmpi"
    assert cli_distributed.cluster_env({"TPU_WORKER_HOSTNAMES": "t-0,t-1,t-2,t-3"}) == "tpu"
    assert cli_distributed.cluster_env({"TPU_WORKER_HOSTNAMES": "localhost"}) is None
    assert cli_distributed.cluster_env({}) is None


# ----------------------------------------------------------------------------------------------------------------
# jax.distributed on CPU: two processes with two devices each

_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import jax
    address, pid, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    jax.distributed.initialize(coordinator_address=address, num_processes=2, process_id=pid)
    assert jax.process_count() == 2 and jax.local_device_count() == 2, (jax.process_count(), jax.devices())
    from lace_jax.config import load_config
    from lace_jax.runs import sampling
    from lace_jax.runs.request import Request

    def progress(msg):
        print(msg, flush=True)
        if pid == 1 and " computed " in msg:        # process 1 dies right after writing its first chunk
            os.kill(os.getpid(), signal.SIGKILL)

    sampling.run(load_config("toy2d"), Request(out_dir=out, exprs=("cluster=ne", "cluster=sw"), sampler="sgld",
                 options={"num_steps": 5}, num_samples=6, chunk_size=2, seed=0, config_name="toy2d",
                 progress=progress))
""")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    return dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_two_jax_processes_killed_mid_run_and_restarted_give_the_single_process_samples(tmp_path, single):
    out = tmp_path / "run"
    address = f"127.0.0.1:{_free_port()}"
    logs = [tmp_path / f"killed_{i}.log" for i in range(2)]
    procs = []
    for i in range(2):
        with open(logs[i], "w") as f:
            procs.append(subprocess.Popen([sys.executable, "-c", _KILLED_RUN, address, str(i), str(out)], env=_env(),
                                          cwd=REPO, stdout=f, stderr=subprocess.STDOUT))
    try:
        assert procs[1].wait(timeout=240) == -signal.SIGKILL, logs[1].read_text()[-3000:]
    finally:
        procs[0].kill()          # the job is dead: its scheduler would stop the other process too
        procs[0].wait()
    # chunk k of the run belongs to process k % 2, counted across both conditions (3 chunks each)
    first = out / "conditions" / "00" / "chunks" / "chunk_00001.npz"
    assert first.is_file()
    assert not (out / "conditions" / "01" / "chunks" / "chunk_00000.npz").is_file()
    assert not (out / "record.json").exists()
    mtime = first.stat().st_mtime_ns

    address = f"127.0.0.1:{_free_port()}"
    flags = ["--config", "toy2d", "--expr", EXPRS[0], "--expr", EXPRS[1], "--sampler", "sgld", "--num_steps",
             "5", "--num_samples", "6", "--chunk_size", "2", "--out_dir", str(out),
             "--coordinator_address", address, "--num_processes", "2"]
    procs = [subprocess.Popen([sys.executable, str(REPO / "sample.py"), *flags, "--process_id", str(i)], env=_env(),
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    logs = [p.communicate(timeout=240) for p in procs]
    for p, (stdout, stderr) in zip(procs, logs):
        assert p.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert "[sample 0/2]" in logs[0][0] and "wrote" in logs[0][0]
    assert "[sample 1/2] process 1/2: its share is on disk" in logs[1][0]
    assert "condition 1: chunk 2/3 resumed" in logs[1][0]       # process 1's finished chunk was not recomputed
    assert first.stat().st_mtime_ns == mtime

    data = np.load(out / "samples.npz")
    np.testing.assert_array_equal(data["success"], single.arrays["success"])
    np.testing.assert_allclose(data["z"], single.arrays["z"], rtol=1e-6, atol=1e-6)
    record = json.loads((out / "record.json").read_text())
    assert record["processes"] == 2 and (out / "grid.png").is_file()


def test_sample_cli_rejects_incomplete_process_flags(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "sample.py"), "--config", "toy2d", "--num_processes", "2",
                           "--out_dir", str(tmp_path / "out")], env=_env(), cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--num_processes needs --coordinator_address --process_id too" in proc.stderr
    assert not (tmp_path / "out").exists()
