"""Ctrl-C held back while a block runs (:func:`interrupts_deferred`): the update of a training
step happens whole or not at all."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["interrupts_deferred"]


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) inside the block and deliver it when the block ends.

    Use it around work that must happen whole or not at all, such as the update of a training
    step: a ``KeyboardInterrupt`` half way through the optimizer's loop over the parameters
    would leave some of them updated and others not, under the old step number. Inside the
    block a SIGINT is only noted; on leaving it the signal is raised again for the handler that
    was there before (by default Python's, which raises ``KeyboardInterrupt``)::

        with interrupts_deferred():
            scheduler.step()
            optimizer.step()
            step += 1

    Python can set signal handlers only in the main thread: elsewhere the block runs as it is.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield
        return
    noted: list[int] = []

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)

    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        signal.raise_signal(signal.SIGINT)  # to the previous handler, now that the work is done
