"""Running the repository's CLIs and scripts from tests: one subprocess per call, the exit-2 contract for bad
input, and a script imported as a module."""
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """`python <repo>/<script> *args` from the repository root, output captured."""
    return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


def assert_usage_errors(run, cases) -> None:
    """Every `(args, message)` in `cases`: `run(*args)` exits 2 with `message` in its stderr."""
    for args, msg in cases:
        r = run(*args)
        assert r.returncode == 2 and msg in r.stderr, (args, r.returncode, r.stderr[-500:])


def load_script(path: str, name: str):
    """The repository script `path` (e.g. "benchmarks/sampling.py") imported as module `name`, without running
    its main."""
    spec = importlib.util.spec_from_file_location(name, REPO / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
