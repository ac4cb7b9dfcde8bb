"""One progress printer for every command: a bar on a terminal, plain lines in a log, nothing with --quiet.

Commands drive core generators with :func:`~napari_nucleus_ai.core.progress.run_sync`
and pass a :class:`ProgressPrinter` as ``on_progress``; the docks' progress bars are
fed by the same :class:`~napari_nucleus_ai.core.progress.Progress` objects.

On a terminal (stderr is a TTY) the line is redrawn in place::

    predict [########----------------] 21/64 crops  0:00:19 < 0:00:38

Otherwise (a log, a pipe, CI) a plain line is written at most every ``every``
seconds, plus the last: ``predict: 21/64 crops (33%), 0:00:19 elapsed``. Nothing is
shown for work that ends within ``delay`` seconds (0.5 s on a terminal, 2 s otherwise),
so quick commands and one-line errors stay one line.
"""

from __future__ import annotations

import sys
import time


def _hms(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressPrinter:
    """Callable ``on_progress`` for :func:`run_sync`; call :meth:`close` when done."""

    def __init__(
        self,
        label: str,
        *,
        quiet: bool = False,
        stream=None,
        tty: bool | None = None,
        width: int = 24,
        every: float = 5.0,
        delay: float | None = None,
    ):
        self.label = label
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty()) if tty is None else tty
        self.width = width
        self.every = every
        self.delay = (0.5 if self.tty else 2.0) if delay is None else delay
        self.start = time.monotonic()
        self.last = -1e9
        self.drawn = False
        self.lines = 0

    def __call__(self, p) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not self.lines and now - self.start < self.delay:
            return  # quick work shows no progress at all
        final = p.total is not None and p.done >= p.total
        if not final and now - self.last < (0.1 if self.tty else self.every):
            return
        self.last = now
        elapsed = now - self.start
        frac = p.fraction
        text = p.message or (f"{p.done}/{p.total}" if p.total else f"{p.done}")
        if self.tty:
            fill = int(round((frac or 0.0) * self.width))
            eta = ""
            if frac and 0 < frac < 1:
                eta = f" < {_hms(elapsed / frac - elapsed)}"
            line = f"{self.label} [{'#' * fill}{'-' * (self.width - fill)}] {text}  {_hms(elapsed)}{eta}"
            self.stream.write(f"\r{line[:120]:<120}")
            self.drawn = True
        else:
            pct = f" ({frac:.0%})" if frac is not None else ""
            self.stream.write(f"{self.label}: {text}{pct}, {_hms(elapsed)} elapsed\n")
        self.lines += 1
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line (terminal) so the next output starts on its own line."""
        if self.tty and self.drawn and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
        self.drawn = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
