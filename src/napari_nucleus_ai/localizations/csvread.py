"""Reading a few columns of a large delimited file as fast as the ecosystem allows.

Localization tables run to millions of rows and a dozen columns, of which a read often
needs two or three (positions for ``info``, positions and precision for ``render``).
pyarrow's CSV reader parses on all cores *and* converts only the columns asked for;
pandas' C parser with ``usecols`` converts only those columns but on one thread (pandas
3.1 parallelises only whole-file reads). So large files go to pyarrow when it is
installed, and anything pyarrow cannot take (an option it lacks, a file it rejects)
is read again by pandas' C parser, whose error messages the readers already report.
On a machine with no idle core (:func:`busy`) pandas' C parser reads everything: threads
would only wait for a core there, and pyarrow's parse costs more CPU time than it.

A read of selected columns calls :func:`pyarrow.csv.read_csv` itself (pandas'
``engine="pyarrow"`` wrapper adds a conversion pass of its own): numeric columns
become numpy arrays without a copy beyond joining pyarrow's blocks, with the missing
values pandas' C parser recognises (:data:`NA_VALUES`) read as NaN, so either path
gives the same table.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pandas as pd

#: files smaller than this are read by pandas' C parser (thread start-up is not worth it)
PYARROW_MIN_BYTES = 4 * 1024 * 1024
#: pyarrow's blocks: a few per core, at most this big (its 1 MB default costs twice the
#: CPU time of pandas' C parser on a loaded 2-core machine; blocks of tens of MB as little)
PYARROW_MAX_BLOCK = 64 * 1024 * 1024

#: the strings pandas' C parser reads as missing (its default ``na_values``)
NA_VALUES = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)


class _Refused(Exception):
    """pyarrow cannot give this read exactly as pandas would: read it with pandas."""


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
            if usecols is not None:
                raw = _read_pyarrow(path, list(usecols), **kwargs)
            else:
                raw = pd.read_csv(path, engine="pyarrow", **kwargs)
        except Exception:  # noqa: BLE001 - any refusal: the C parser reads (or reports) it
            raw = None
    if raw is None:
        raw = pd.read_csv(path, usecols=usecols, **kwargs)
    if strip:
        raw.columns = [str(c).strip() for c in raw.columns]
    if usecols is not None:
        raw = raw[list(usecols)]
    return raw


def _read_pyarrow(path, usecols, sep=",", skiprows=None, header="infer", names=None):
    """Columns ``usecols`` of ``path`` through :func:`pyarrow.csv.read_csv`.

    Only the options :func:`read_columns`' callers use are translated (a header line,
    or ``skiprows=1, header=None, names=...`` for a header quoted as one field);
    anything else raises (the caller then reads with pandas).
    """
    import pyarrow as pa
    from pyarrow import csv

    block = min(PYARROW_MAX_BLOCK, os.path.getsize(path) // (2 * (os.cpu_count() or 1)))
    block = max(block, 1 << 20)
    if names is not None:
        if header is not None or skiprows not in (None, 0, 1):
            raise _Refused("names with a header line")
        read = csv.ReadOptions(column_names=list(names), skip_rows=skiprows or 0, block_size=block)
    elif header == "infer" and not skiprows:
        read = csv.ReadOptions(block_size=block)
    else:
        raise _Refused("header / skiprows")
    table = csv.read_csv(
        path,
        read_options=read,
        parse_options=csv.ParseOptions(delimiter=sep),
        convert_options=csv.ConvertOptions(
            include_columns=usecols,
            null_values=list(NA_VALUES),
            strings_can_be_null=True,
        ),
    )
    if table.num_columns != len(usecols):
        raise _Refused("columns")
    out = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        t = col.type
        if pa.types.is_null(t):  # no value at all: pandas' C parser gives float NaN
            out[name] = np.full(len(col), np.nan)
        elif pa.types.is_floating(t) or (pa.types.is_integer(t) and col.null_count == 0):
            out[name] = col.to_numpy()  # NaN where missing (floats)
        elif pa.types.is_integer(t):  # integers with gaps: float64 with NaN, as pandas
            out[name] = col.cast(pa.float64()).to_numpy()
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            out[name] = _strings(col.to_pandas())
        else:  # booleans, dates...: pandas' own inference
            raise _Refused(f"column type {t}")
    return pd.DataFrame(out, copy=False)


def _strings(series: pd.Series) -> pd.Series:
    """Text as pandas' C parser gives it: NaN where missing; pandas' ``str`` dtype when
    pandas infers strings (pandas >= 3), Python objects otherwise."""
    series = series.astype(object).where(series.notna(), np.nan)
    if int(pd.__version__.split(".")[0]) >= 3:  # strings are pandas' ``str`` dtype
        return series.astype("str")
    try:  # pandas 2.x infers ``str`` only when asked to
        infer = bool(pd.get_option("future.infer_string"))
    except (KeyError, pd.errors.OptionError):
        infer = False
    return series.astype("str") if infer else series


def busy() -> bool:
    """True when no core is idle (1-minute load average at least the number of cores).

    pyarrow's parallel parse then has no core to run on, and costs more CPU time (and
    twice the memory) than pandas' C parser reading the same columns on one thread.
    """
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): assume idle cores
        return False
    return load >= (os.cpu_count() or 1)


def _use_pyarrow(path) -> bool:
    try:
        big = os.path.getsize(path) >= PYARROW_MIN_BYTES
    except OSError:
        return False
    return big and have_pyarrow() and not busy()
