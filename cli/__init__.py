"""What train.py, sample.py and evaluate.py share (the library never reads flags): bad input exits with code 2 and
a one-line reason on stderr (`UserError`, and the library's `RequestError` for a bad request); `cli.flags` holds the
flags of sample.py and evaluate.py; the persistent compilation cache (`compilation_cache_dir`,
`use_compilation_cache`), on by default in the CLIs run through `run`."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Mapping

from absl import app, logging
from absl import flags as absl_flags


class UserError(Exception):
    """A problem with what the user asked for (flags, attributes, files): reported in one line, exit code 2."""


def _flags_parser(argv: list[str]) -> list[str]:
    try:
        return absl_flags.FLAGS(argv)
    except absl_flags.Error as err:
        prog = argv[0].rsplit("/", 1)[-1] if argv else "lace_jax"
        sys.stderr.write(f"{prog}: error: {err}\n")
        sys.exit(2)


CACHE_ENV = "LACE_JAX_CACHE_DIR"


def compilation_cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the CLIs keep compiled programs: `$LACE_JAX_CACHE_DIR`, else `$XDG_CACHE_HOME/lace_jax/jax`, else
    `~/.cache/lace_jax/jax`."""
    if environ.get(CACHE_ENV):
        return Path(environ[CACHE_ENV]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "lace_jax" / "jax"


def use_compilation_cache(directory: str | Path) -> Path:
    """Keep every program XLA compiles in `directory` (JAX's persistent compilation cache) and load it from there
    next time, so a second run with the same settings compiles nothing. Every compile is kept (no minimum compile
    time): a run's small programs add up too. Entries are keyed by the program, the XLA flags and the jax/jaxlib
    version and backend, so a change of any of them compiles afresh; the directory only grows (delete it to
    reclaim the space; docs/performance.md has the sizes). Call before the first compile."""
    import jax

    path = Path(directory).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _apply_cache_flag() -> None:
    """`--compilation_cache` (defined by `cli.flags.define_compilation_cache`; on by default): the cache at
    `compilation_cache_dir()`. A directory that cannot be made leaves the run uncached, with a warning."""
    if "compilation_cache" not in absl_flags.FLAGS or not absl_flags.FLAGS.compilation_cache:
        return
    try:
        use_compilation_cache(compilation_cache_dir())
    except OSError as err:
        logging.warning("compilation cache off: %s", err)


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)` where flag errors and `UserError`s print a reason (its first line stands alone; a
    parse error adds the expression and a caret below it) and exit with code 2."""

    def wrapped(argv: list[str]) -> None:
        logging.set_verbosity(logging.WARNING)   # keep progress lines readable (no backend-probe chatter)
        _apply_cache_flag()
        from lace_jax.runs.request import RequestError

        try:
            main(argv)
        except (UserError, RequestError) as err:
            prog = argv[0].rsplit("/", 1)[-1] if argv else "lace_jax"
            sys.stderr.write(f"{prog}: error: {err}\n")
            sys.exit(2)

    app.run(wrapped, flags_parser=_flags_parser)
