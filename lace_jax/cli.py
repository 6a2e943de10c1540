"""Shared behaviour of the absl CLIs: bad input exits with code 2 and a one-line reason on stderr."""
from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags, logging


class UserError(Exception):
    """A problem with what the user asked for (flags, attributes, files): reported in one line, exit code 2."""


def _flags_parser(argv: list[str]) -> list[str]:
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        prog = argv[0].rsplit("/", 1)[-1] if argv else "lace_jax"
        sys.stderr.write(f"{prog}: error: {err}\n")
        sys.exit(2)


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)` where flag errors and `UserError`s print a reason (its first line stands alone; a
    parse error adds the expression and a caret below it) and exit with code 2."""

    def wrapped(argv: list[str]) -> None:
        logging.set_verbosity(logging.WARNING)   # keep progress lines readable (no backend-probe chatter)
        try:
            main(argv)
        except UserError as err:
            prog = argv[0].rsplit("/", 1)[-1] if argv else "lace_jax"
            sys.stderr.write(f"{prog}: error: {err}\n")
            sys.exit(2)

    app.run(wrapped, flags_parser=_flags_parser)
