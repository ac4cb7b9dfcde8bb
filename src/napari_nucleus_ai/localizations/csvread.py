"""Reading a few columns of a large delimited file as fast as the ecosystem allows.

Localization tables run to millions of rows and a dozen columns, of which a read often
needs two or three (positions for ``info``, positions and precision for ``render``).
pyarrow's CSV reader parses on all cores *and* converts only the columns asked for;
pandas' C parser with ``usecols`` converts only those columns but on one thread (pandas
3.1 parallelises only whole-file reads). So large files go to pyarrow when it is
installed, and anything pyarrow cannot take (an option it lacks, a file it rejects)
is read again by pandas' C parser, whose error messages the readers already report.
"""

from __future__ import annotations

import importlib.util
import os

import pandas as pd

#: files smaller than this are read by pandas' C parser (thread start-up is not worth it)
PYARROW_MIN_BYTES = 4 * 1024 * 1024


def have_pyarrow() -> bool:
    """True when pyarrow can be imported (checked without importing it)."""
    return importlib.util.find_spec("pyarrow") is not None


def read_columns(path, usecols=None, strip: bool = True, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv(path, **kwargs)`` restricted to ``usecols``.

    Parameters
    ----------
    path : path-like
        A local delimited text file.
    usecols : list of str, optional
        Column names to keep (as the header spells them after stripping); all when None.
    strip : bool
        Strip surrounding whitespace from the column names.
    **kwargs
        Passed to :func:`pandas.read_csv` (``sep``, ``skiprows``, ``header``, ``names``).

    Returns
    -------
    DataFrame
        The selected columns, in the order of ``usecols``.
    """
    raw = None
    if _use_pyarrow(path):
        try:
            raw = pd.read_csv(path, usecols=usecols, engine="pyarrow", **kwargs)
        except Exception:  # noqa: BLE001 - any refusal: the C parser reads (or reports) it
            raw = None
    if raw is None:
        raw = pd.read_csv(path, usecols=usecols, **kwargs)
    if strip:
        raw.columns = [str(c).strip() for c in raw.columns]
    if usecols is not None:
        raw = raw[list(usecols)]
    return raw


def _use_pyarrow(path) -> bool:
    try:
        big = os.path.getsize(path) >= PYARROW_MIN_BYTES
    except OSError:
        return False
    return big and have_pyarrow()
