"""Errors that carry a one-line message meant for the user.

Every reader, writer and core function raises :class:`InputError` (or another
:class:`NucleusAIError`) for bad input. The CLI prints ``str(error)`` as a single
line and exits non-zero; widgets show it as a napari notification.
"""

from __future__ import annotations

import os


class NucleusAIError(Exception):
    """Base class: ``str(error)`` is one line a user can act on."""


class InputError(NucleusAIError, ValueError):
    """A file or array the plugin cannot use.

    Parameters
    ----------
    path : str or os.PathLike or None
        The file (or layer name) the problem is in; ``None`` for in-memory data.
    problem : str
        What is wrong, in a few words (no trailing period needed).
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(self.problem if self.path is None else f"{self.path}: {self.problem}")

    def __reduce__(self):
        # pickled by its file and problem (worker processes, Dask), whatever a subclass's
        # own constructor takes
        return _rebuild_input_error, (type(self), self.path, self.problem)


def _rebuild_input_error(cls, path, problem):
    err = cls.__new__(cls)
    InputError.__init__(err, path, problem)
    return err


class UsageError(InputError):
    """A parameter or option outside what is allowed (the command line exits with 2).

    The message is one line naming the option, the value and the allowed range; see
    :func:`napari_nucleus_ai.core.params.validate`. It is an :class:`InputError`
    with no file, so code that catches bad input catches it too.
    """

    def __init__(self, message: str):
        super().__init__(None, message)


class DeviceError(NucleusAIError, RuntimeError):
    """A compute device was asked for that this machine does not have."""


class Cancelled(NucleusAIError):
    """Long work was cancelled by the user."""


def one_line(error: BaseException, path: str | os.PathLike | None = None) -> str:
    """Return a one-line message for any exception, naming ``path`` when known."""
    if isinstance(error, NucleusAIError):
        return str(error)
    text = " ".join(str(error).split()) or type(error).__name__
    if path is not None and os.fspath(path) not in text:
        return f"{os.fspath(path)}: {text}"
    return text
