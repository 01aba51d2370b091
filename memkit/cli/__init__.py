"""Command lines for saved models: ``python -m memkit.generate`` (``cli.generate``) and ``python -m memkit.evaluate``
(``cli.evaluate``). Their code lives here; ``memkit/generate.py`` and ``memkit/evaluate.py`` only run it, so that
importing them never shadows ``memkit.evaluate`` (the trainer's function). A user's mistake is one line on stderr
and exit status 2 (``run``)."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Callable

from memkit.data.corpus import DataError
from memkit.models.pretrained import CheckpointError, InputTooLong
from memkit.spec import SpecError


class UsageError(ValueError):
    """A command-line value out of range or a file that is not there: one line, exit 2."""


USER_ERRORS = (CheckpointError, InputTooLong, SpecError, DataError, UsageError)


class Parser(argparse.ArgumentParser):
    """argparse with its mistakes as one line too (``run`` prints it), not the usage block; ``--help`` as usual."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def run(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> int:
    """Run a CLI's ``main``: 0, or 2 with ``error: ...`` on stderr for a user's mistake (no traceback); memkit's own
    warnings (a checkpoint saved without its shared memory) are one ``warning: ...`` line each."""
    try:
        with warnings.catch_warnings():  # restores showwarning on the way out
            warnings.showwarning = _one_line
            main(argv)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning from memkit as one line; any other library's as Python shows it."""
    if "memkit" in filename:
        print(f"warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def quiet_transformers() -> None:
    """No progress bars or load reports from transformers on a CLI's output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
