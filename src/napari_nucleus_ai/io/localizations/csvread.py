"""Reading a few columns of a large delimited file as fast as pandas can.

pandas 3.1 parses large local CSV files on several threads, but only when every column
is read: ``usecols`` sends the read down the single-threaded path. On a machine with
more than one core, reading all columns in parallel and selecting afterwards is then
faster than the restricted serial read (and costs the memory of the other columns for
the duration of the call). Older pandas, one core, or small files keep ``usecols``.
"""

from __future__ import annotations

import os

import pandas as pd

#: below this size pandas reads serially anyway, so ``usecols`` is the faster route
PARALLEL_MIN_BYTES = 10 * 1024 * 1024


def parallel_csv_threads() -> int:
    """How many threads this pandas would parse a large CSV with (1: no parallel reads)."""
    try:
        threads = pd.get_option("mode.max_threads")
    except (KeyError, pd.errors.OptionError):
        return 1  # pandas < 3.1 has no parallel reader
    if threads is not None:
        return max(1, int(threads))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def read_columns(path, usecols=None, strip: bool = True, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv(path, **kwargs)`` restricted to ``usecols``.

    Parameters
    ----------
    path : path-like
        A local delimited text file.
    usecols : list of str, optional
        Column names to keep (after stripping, when ``strip``); all when None.
    strip : bool
        Strip surrounding whitespace from the column names.
    **kwargs
        Passed to :func:`pandas.read_csv` (``sep``, ``skiprows``, ``header``, ``names``).

    Returns
    -------
    DataFrame
        The selected columns, in the order of ``usecols``.
    """
    parallel = usecols is not None and parallel_csv_threads() > 1
    if parallel:
        try:
            parallel = os.path.getsize(path) >= PARALLEL_MIN_BYTES
        except OSError:
            parallel = False
    raw = pd.read_csv(path, usecols=None if parallel else usecols, **kwargs)
    if strip:
        raw.columns = [str(c).strip() for c in raw.columns]
    if usecols is not None:
        raw = raw[list(usecols)]
    return raw
