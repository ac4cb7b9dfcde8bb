"""Progress reports from core generators, with no Qt in sight.

Long-running core functions are written as generators: they ``yield``
:class:`Progress` objects and ``return`` their result. The napari widgets drive
them in a ``thread_worker`` (see ``widgets/_worker.py``); the CLI and tests drive
them with :func:`run_sync`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of long work: ``done`` of ``total`` units, with a short message."""

    done: int
    total: int | None = None
    message: str = ""

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))


def run_sync(
    gen: Generator[Any, None, T],
    on_progress: Callable[[Progress], None] | None = None,
) -> T:
    """Drive a core generator to completion in this thread and return its result.

    Parameters
    ----------
    gen : generator
        A generator that yields :class:`Progress` (anything else is ignored) and
        returns a result.
    on_progress : callable, optional
        Called with each :class:`Progress` yielded.
    """
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None and isinstance(item, Progress):
            on_progress(item)


@dataclass(frozen=True)
class EpochProgress(Progress):
    """Progress after one epoch, with that epoch's numbers in ``metrics``."""

    metrics: dict = field(default_factory=dict)
