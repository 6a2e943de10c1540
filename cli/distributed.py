"""Multi-process runs for the CLIs: the `jax.distributed` flags and the one call that must come before any JAX
computation (`initialize()`, first thing in a CLI's main).

    python sample.py ... --coordinator_address 10.0.0.1:1234 --num_processes 4 --process_id 2   # by hand
    srun python sample.py ...            # SLURM: found from the environment, no flags
    python sample.py ... --distributed=on   # let jax.distributed.initialize() find the cluster itself

`--distributed=auto` (the default) starts `jax.distributed` when the three flags are given, or when the
environment variables of a launcher that started several processes are there (SLURM with more than one task,
Open MPI with more than one rank, a TPU pod described by TPU_WORKER_HOSTNAMES / TPU_PROCESS_ADDRESSES). It looks
only at environment variables, so a plain single-process run never waits for a coordinator or a metadata server.
On a Cloud TPU pod slice the TPU runtime already knows its hosts (`jax.process_count()` > 1 without
initialising); `--distributed=on` calls `jax.distributed.initialize()` and lets it detect any cluster it knows
(including TPU metadata and mpi4py); `--distributed=off` never initialises. The library never reads these flags: it
takes each process's share from `jax.process_index()` / `jax.process_count()` (`lace_jax.runs.chunks.Processes`).
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

from absl import flags

from cli import UserError

FLAGS = flags.FLAGS

# Finished processes wait at exit (jax.distributed's shutdown barrier) until process 0 has merged the chunks and
# written the outputs; jax's default of 5 minutes would abort every process when that takes longer.
SHUTDOWN_TIMEOUT_S = 7 * 24 * 3600


def define() -> None:
    """Register the multi-process flags on absl's global FLAGS (call once, at import of a CLI script)."""
    flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"], "multi-process run with jax.distributed: "
                      "auto = when --coordinator_address/--num_processes/--process_id are given or a SLURM, Open "
                      "MPI or TPU-pod launcher started several processes (seen from its environment variables); "
                      "on = always call jax.distributed.initialize() (it detects the cluster); off = never")
    flags.DEFINE_string("coordinator_address", None, "multi-process: HOST:PORT where process 0 serves the "
                        "coordinator (the same on every process; with --num_processes and --process_id)")
    flags.DEFINE_integer("num_processes", None, "multi-process: how many processes share the run")
    flags.DEFINE_integer("process_id", None, "multi-process: this process's index, 0 … num_processes−1 (process "
                         "0 writes the final outputs)")


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env.get(name, ""))
    except ValueError:
        return 0


def cluster_env(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The launcher that started several processes of this job, as seen from environment variables alone
    ("slurm", "openmpi", "tpu"), or None. Only launchers `jax.distributed.initialize()` configures itself."""
    env = os.environ if env is None else env
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
    if all(k in env for k in slurm) and _int(env, "SLURM_NTASKS") > 1 and (
            "SLURM_STEP_NUM_TASKS" not in env or _int(env, "SLURM_STEP_NUM_TASKS") > 1):
        return "slurm"      # an srun step of several tasks (not a batch script's own single step)
    if "OMPI_MCA_orte_hnp_uri" in env and _int(env, "OMPI_COMM_WORLD_SIZE") > 1:
        return "openmpi"
    hosts = env.get("TPU_PROCESS_ADDRESSES") or env.get("TPU_WORKER_HOSTNAMES") or ""
    if len([h for h in hosts.split(",") if h.strip()]) > 1:
        return "tpu"
    return None


def initialize() -> tuple[int, int]:
    """Start `jax.distributed` as the flags and the environment ask (see the module docstring); returns (process
    index, process count). Must run before anything touches a JAX backend; bad flags are a UserError (exit 2)."""
    import jax

    explicit = {"coordinator_address": FLAGS.coordinator_address, "num_processes": FLAGS.num_processes,
                "process_id": FLAGS.process_id}
    given = [k for k, v in explicit.items() if v is not None]
    if given and len(given) < 3:
        missing = sorted(set(explicit) - set(given))
        raise UserError(f"--{' --'.join(given)} needs --{' --'.join(missing)} too (a multi-process run names the "
                        "coordinator, the number of processes and this process's id)")
    if given and FLAGS.distributed == "off":
        raise UserError("--distributed=off cannot be combined with --coordinator_address/--num_processes/"
                        "--process_id")
    if given:
        if FLAGS.num_processes < 1 or not 0 <= FLAGS.process_id < FLAGS.num_processes:
            raise UserError(f"need 0 <= --process_id < --num_processes, got --process_id {FLAGS.process_id} "
                            f"--num_processes {FLAGS.num_processes}")
        if ":" not in FLAGS.coordinator_address:
            raise UserError(f"--coordinator_address must be HOST:PORT, got {FLAGS.coordinator_address!r}")
    start = FLAGS.distributed == "on" or (FLAGS.distributed == "auto" and (given or cluster_env() is not None))
    if start and not jax.distributed.is_initialized():
        try:
            jax.distributed.initialize(**{k: v for k, v in explicit.items() if v is not None},
                                       shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
        except (RuntimeError, ValueError) as err:
            raise UserError(f"jax.distributed.initialize failed: {str(err).splitlines()[0]}") from None
    return jax.process_index(), jax.process_count()


__all__ = ["SHUTDOWN_TIMEOUT_S", "define", "cluster_env", "initialize"]
