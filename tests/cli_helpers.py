"""Running the repository's CLIs from tests: one subprocess per call, and the exit-2 contract for bad input."""
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
