"""The CLIs' persistent compilation cache: where it lives, that a repeated run loads every program instead of
compiling it, and that --nocompilation_cache turns it off."""
import os
import subprocess
import sys
from pathlib import Path

import cli
from tests.conftest import REPO

MISS = "PERSISTENT COMPILATION CACHE MISS"


def test_cache_dir_from_the_environment():
    assert cli.compilation_cache_dir({"LACE_JAX_CACHE_DIR": "/data/c", "XDG_CACHE_HOME": "/x"}) == Path("/data/c")
    assert cli.compilation_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/lace_jax/jax")
    assert cli.compilation_cache_dir({}) == Path.home() / ".cache" / "lace_jax" / "jax"
    assert cli.compilation_cache_dir({"LACE_JAX_CACHE_DIR": ""}) == Path.home() / ".cache" / "lace_jax" / "jax"


def test_the_suite_never_writes_the_users_cache():
    # tests/conftest.py points every CLI the suite starts at a temporary cache
    assert Path(os.environ["LACE_JAX_CACHE_DIR"]).resolve() != cli.compilation_cache_dir({}).resolve()


def _sample(cache: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), LACE_JAX_CACHE_DIR=str(cache), JAX_EXPLAIN_CACHE_MISSES="1")
    args = ["--config", "toy2d", "--expr", "cluster=ne", "--num_samples", "2", "--sampler", "sgld",
            "--num_steps", "2", "--out_dir", str(out), *extra]
    return subprocess.run([sys.executable, str(REPO / "sample.py"), *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=REPO)


def test_a_repeated_run_compiles_nothing(tmp_path):
    cache = tmp_path / "cache"
    first = _sample(cache, tmp_path / "a")
    assert first.returncode == 0, first.stderr[-2000:]
    entries = sorted(p.name for p in cache.iterdir())
    assert first.stderr.count(MISS) >= 3 and len(entries) >= 3, (first.stderr.count(MISS), entries)
    second = _sample(cache, tmp_path / "b")          # a new out_dir: nothing to resume, everything recomputed
    assert second.returncode == 0, second.stderr[-2000:]
    misses = [line for line in second.stderr.splitlines() if MISS in line]
    assert not misses, misses[:3]
    assert sorted(p.name for p in cache.iterdir()) == entries


def test_nocompilation_cache_leaves_jax_uncached(tmp_path):
    code = ("import sys; from absl import flags; import cli; from cli import flags as f; f.define(); "
            "flags.FLAGS(sys.argv); cli._apply_cache_flag(); import jax; "
            "print(jax.config.jax_compilation_cache_dir)")
    env = dict(os.environ, PYTHONPATH=str(REPO), LACE_JAX_CACHE_DIR=str(tmp_path / "c"))
    run = lambda *a: subprocess.run([sys.executable, "-c", code, *a], capture_output=True, text=True, env=env,
                                    cwd=REPO, timeout=300)
    on, off = run(), run("--nocompilation_cache")
    assert on.returncode == 0 and off.returncode == 0, (on.stderr[-1000:], off.stderr[-1000:])
    assert on.stdout.split()[-1] == str(tmp_path / "c") and (tmp_path / "c").is_dir()
    assert off.stdout.split()[-1] == "None"
