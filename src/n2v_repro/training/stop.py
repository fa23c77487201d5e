"""SIGTERM as a flag the training loop checks between steps, so nothing is left half-done."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from n2v_repro.training.job import TrainingInterruptedError

logger = logging.getLogger(__name__)


class StopFlag:
    def __init__(self) -> None:
        self.signal: int | None = None

    def check(self, epoch: int) -> None:
        if self.signal is not None:
            raise TrainingInterruptedError(
                f"stopped by signal {signal.Signals(self.signal).name} during epoch {epoch}; "
                f"rerun to resume from the last complete epoch's checkpoint"
            )


@contextlib.contextmanager
def sigterm_stops_at_step_boundary() -> Iterator[StopFlag]:
    """Turn SIGTERM into a `StopFlag` for the duration of the block."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        logger.warning("received %s: stopping at the next step", signal.Signals(signum).name)
        flag.signal = signum

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
