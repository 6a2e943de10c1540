"""What train.py, sample.py and evaluate.py share (the library never reads flags): bad input exits with code 2 and
a one-line reason on stderr (`UserError`, and the library's `RequestError` for a bad request); `cli.flags` holds the
flags of sample.py and evaluate.py."""
from __future__ import annotations

import sys
from typing import Callable

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


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)` where flag errors and `UserError`s print a reason (its first line stands alone; a
    parse error adds the expression and a caret below it) and exit with code 2."""

    def wrapped(argv: list[str]) -> None:
        logging.set_verbosity(logging.WARNING)   # keep progress lines readable (no backend-probe chatter)
        from lace_jax.runs.request import RequestError

        try:
            main(argv)
        except (UserError, RequestError) as err:
            prog = argv[0].rsplit("/", 1)[-1] if argv else "lace_jax"
            sys.stderr.write(f"{prog}: error: {err}\n")
            sys.exit(2)

    app.run(wrapped, flags_parser=_flags_parser)
