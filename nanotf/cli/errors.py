"""Errors the user can fix: :class:`CLIError` (one line, exit code 2 or its own), and the
switch to a backend, which turns a backend that cannot run here into one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CLIError", "as_cli_error", "use_backend"]


class CLIError(Exception):
    """A problem with the user's input: printed as one line, exit code 2 (or ``exit_code``)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextmanager
def as_cli_error() -> Iterator[None]:
    """Turn a ``ValueError`` raised inside the block (a bad value the user gave) into a
    :class:`CLIError` with the same message."""
    try:
        yield
    except ValueError as err:
        raise CLIError(str(err)) from err


def use_backend(name: str) -> None:
    """Switch to ``name``; a backend that cannot run here becomes a one-line error."""
    from ..backend import BackendUnavailableError, set_backend

    try:
        set_backend(name)
    except BackendUnavailableError as err:
        raise CLIError(str(err)) from err
