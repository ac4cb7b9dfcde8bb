"""Reading a few columns of a large delimited file as fast as the ecosystem allows.

Localization tables run to millions of rows and a dozen columns, of which a read often
needs two or three (positions for ``info``, positions and precision for ``render``).
pyarrow's CSV reader parses on all cores *and* converts only the columns asked for;
pandas' C parser with ``usecols`` converts only those columns but on one thread (pandas
3.1 parallelises only whole-file reads). So large files go to pyarrow when it is
installed, and anything pyarrow cannot take (an option it lacks, a file it rejects)
is read again by pandas' C parser, whose error messages the readers already report.
In blocks of tens of MB, read from a memory map of the file, pyarrow's parse costs the
same CPU time on one thread as on several, and less than pandas' C parser with
``usecols`` (about 0.30 s of user time against 0.54-0.58 s for two columns of a 2 M-row
ThunderSTORM CSV), so it parses on every core even when no core is idle; only reads of
every column on a machine with no idle core (:func:`busy`) go to pandas' C parser.

A read of selected columns calls :func:`pyarrow.csv.read_csv` itself (pandas'
``engine="pyarrow"`` wrapper adds a conversion pass of its own): numeric columns
become numpy arrays without a copy beyond joining pyarrow's blocks, with the missing
values pandas' C parser recognises (:data:`NA_VALUES`) read as NaN, so either path
gives the same table. :func:`read_arrays` stops there (numeric columns as numpy arrays,
pandas never imported: what ``info`` needs); :func:`read_columns` returns a DataFrame.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: files smaller than this are read by pandas' C parser (thread start-up is not worth it)
PYARROW_MIN_BYTES = 4 * 1024 * 1024
#: pyarrow's blocks: a few per core, at most this big (its 1 MB default costs twice the
#: CPU time of pandas' C parser on a loaded 2-core machine; blocks of tens of MB as little)
PYARROW_MAX_BLOCK = 64 * 1024 * 1024
#: and at least this big
PYARROW_MIN_BLOCK = 1024 * 1024

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
    import pandas as pd

    raw = None
    # a whole file on a machine without an idle core: pandas' C parser (no threads)
    if _use_pyarrow(path) and (usecols is not None or not busy()):
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


def read_arrays(path, usecols, **kwargs) -> dict[str, np.ndarray] | None:
    """Numeric columns ``usecols`` of ``path`` as numpy arrays, without pandas.

    The arrays :func:`read_columns` would put in its DataFrame (pyarrow's parse, the
    same missing values), for files of any size; threads only for files of at least
    :data:`PYARROW_MIN_BYTES` on a machine with an idle core.

    Parameters
    ----------
    path : path-like
        A local delimited text file.
    usecols : list of str
        Column names as the header spells them.
    **kwargs
        ``sep``, and ``skiprows=1, header=None, names=...`` for a header quoted as one field.

    Returns
    -------
    dict or None
        ``{name: array}``; None when pyarrow is missing or refuses the file, or a column
        is not numeric: :func:`read_columns` then reads (or reports) it.
    """
    if not have_pyarrow():
        return None
    try:
        table = _arrow_table(path, list(usecols), threads=_use_pyarrow(path), **kwargs)
        cols = zip(table.column_names, table.columns, strict=True)
        out = {name: _numeric_array(col) for name, col in cols}
    except Exception:  # noqa: BLE001 - any refusal: the DataFrame path reads (or reports) it
        return None
    return None if any(v is None for v in out.values()) else out


def _arrow_table(path, usecols, sep=",", skiprows=None, header="infer", names=None, threads=True):
    """Columns ``usecols`` of ``path`` as a pyarrow Table (:func:`pyarrow.csv.read_csv`).

    Only the options :func:`read_columns`' callers use are translated (a header line,
    or ``skiprows=1, header=None, names=...`` for a header quoted as one field);
    anything else raises (the caller then reads with pandas). ``threads``: parse on
    every core (in blocks of tens of MB, read from a memory map, the parse costs the same
    CPU time on one thread or on several, so threads are used on a busy machine too).
    """
    import pyarrow as pa
    from pyarrow import csv

    block = min(PYARROW_MAX_BLOCK, os.path.getsize(path) // (2 * (os.cpu_count() or 1)))
    block = max(block, PYARROW_MIN_BLOCK)
    common = {"block_size": block, "use_threads": bool(threads)}
    if names is not None:
        if header is not None or skiprows not in (None, 0, 1):
            raise _Refused("names with a header line")
        read = csv.ReadOptions(column_names=list(names), skip_rows=skiprows or 0, **common)
    elif header == "infer" and not skiprows:
        read = csv.ReadOptions(**common)
    else:
        raise _Refused("header / skiprows")
    with pa.memory_map(os.fspath(path)) as source:  # the page cache itself: no read copies
        table = csv.read_csv(
            source,
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
    return table


def _numeric_array(col) -> np.ndarray | None:
    """A numeric pyarrow column as pandas' C parser gives it (NaN where missing), or None.

    Read from the Arrow buffers themselves: pyarrow's own ``to_numpy`` imports pandas.
    """
    import pyarrow as pa

    t = col.type
    if pa.types.is_null(t):  # no value at all: pandas' C parser gives float NaN
        return np.full(len(col), np.nan)
    dtype = _NUMPY.get(str(t))
    if dtype is None:
        return None
    if col.null_count:  # integers with gaps: float64 with NaN, as pandas
        dtype = np.float64
    parts = [_chunk_values(c, dtype) for c in col.chunks]
    if not parts:
        return np.empty(0, dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


#: Arrow types of the values pyarrow's CSV reader infers for numbers -> numpy
_NUMPY = {"double": np.float64, "int64": np.int64}


def _chunk_values(chunk, dtype) -> np.ndarray:
    """One chunk's values as ``dtype`` (a read-only view when nothing is missing)."""
    validity, data = chunk.buffers()[:2]
    native = _NUMPY[str(chunk.type)]
    n, first = len(chunk), chunk.offset
    v = np.frombuffer(data, native, count=n, offset=first * np.dtype(native).itemsize)
    if not chunk.null_count:
        return v if native is dtype else v.astype(dtype)
    bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
    v = v.astype(dtype)  # a copy
    v[~bits[first : first + n].astype(bool)] = np.nan
    return v


def _read_pyarrow(path, usecols, **kwargs) -> pd.DataFrame:
    """Columns ``usecols`` of ``path`` through :func:`_arrow_table`, as a DataFrame."""
    import pandas as pd
    import pyarrow as pa

    table = _arrow_table(path, usecols, **kwargs)
    out = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        t = col.type
        out[name] = _numeric_array(col)
        if out[name] is not None:
            continue
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            out[name] = _strings(col.to_pandas())
        else:  # booleans, dates...: pandas' own inference
            raise _Refused(f"column type {t}")
    return pd.DataFrame(out, copy=False)


def _strings(series: pd.Series) -> pd.Series:
    """Text as pandas' C parser gives it: NaN where missing; pandas' ``str`` dtype when
    pandas infers strings (pandas >= 3), Python objects otherwise."""
    import pandas as pd

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

    A read of every column then goes to pandas' C parser (one thread) rather than to
    pandas' pyarrow engine (a thread per core).
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
    return big and have_pyarrow()
