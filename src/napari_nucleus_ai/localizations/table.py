"""The normalised localization table every reader returns.

Columns, in this order: ``x_nm, y_nm, [z_nm], frame, photons, precision_nm, channel``
followed by the file's other columns under their original names. Positions are in
nanometres; ``frame`` is an integer as the file numbers it; ``photons`` and
``precision_nm`` are NaN when the format has no such column; ``channel`` is a string
(``"0"`` for single-colour files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.positions import (
    POSITION,
    STANDARD,
    all_zero,
    bounds_of,
    finite_rows,
    range_problem,
)


@dataclass
class LocalizationTable:
    """Localizations of one file, normalised.

    Attributes
    ----------
    data : pandas.DataFrame
        ``x_nm, y_nm, [z_nm], frame, photons, precision_nm, channel`` + extra columns.
    format : str
        Detected format name (``"thunderstorm"``, ``"nstorm"``, ``"picasso"``...).
    path : str or None
        The source file.
    n_dropped : int
        Rows dropped because a position was NaN or infinite.
    metadata : dict
        Format specifics (pixel size used for conversion, original column mapping...).
    """

    data: pd.DataFrame
    format: str
    path: str | None = None
    n_dropped: int = 0
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def is_3d(self) -> bool:
        return "z_nm" in self.data.columns

    @property
    def channels(self) -> list[str]:
        return sorted(str(c) for c in self.data["channel"].astype(str).unique().tolist())

    def bounds_nm(self) -> dict:
        return bounds_nm(self.data)


def bounds_nm(df: pd.DataFrame) -> dict:
    """``{"x": [min, max], "y": [min, max], ("z": ...)}`` in nm (floats), empty when no rows."""
    if len(df) == 0:
        return {}
    return bounds_of({c: df[c].to_numpy() for c in POSITION if c in df.columns})


def normalise(
    raw: pd.DataFrame,
    mapping: dict,
    *,
    path=None,
    fmt: str = "csv",
    factors: dict | None = None,
    metadata: dict | None = None,
    allow_empty: bool = False,
    owned: bool = False,
) -> LocalizationTable:
    """Build a :class:`LocalizationTable` from a raw table and a column mapping.

    Parameters
    ----------
    raw : DataFrame
        The table as the file holds it.
    mapping : dict
        ``{standard_name: raw_column}`` for any of :data:`STANDARD`; ``x_nm`` and
        ``y_nm`` are required.
    factors : dict, optional
        ``{standard_name: multiplier}`` turning the raw values into nm (e.g. the camera
        pixel size for positions in pixels).
    allow_empty : bool
        Return an empty table instead of raising for a file with no rows.
    owned : bool
        ``raw`` was read for this table and nothing else holds it (a reader's own
        frame): its numeric columns become the table's without a copy. Otherwise the
        table copies what it shares with ``raw``, so writing into one never changes
        the other.
    """
    factors = factors or {}
    mapping = {k: v for k, v in mapping.items() if v is not None}
    missing = [k for k in ("x_nm", "y_nm") if k not in mapping or mapping[k] not in raw.columns]
    if missing:
        cols = ", ".join(map(str, raw.columns[:12])) or "none"
        raise InputError(
            path,
            f"unknown columns ({cols}): no x/y positions found; pass --columns x=COL,y=COL "
            "(command line) or choose a column mapping (Localizations dock)",
        )
    z_col = mapping.get("z_nm")
    if z_col is not None and (z_col not in raw.columns or _all_zero(raw[z_col])):
        del mapping["z_nm"]  # a z column of zeros (2D export of a 3D-capable format)
    if len(raw) == 0 and not allow_empty:
        raise InputError(path, "no localizations in the file (header only or empty table)")
    n = len(raw)
    out = {}
    for name in POSITION:
        if name in mapping:
            out[name] = _scaled(raw[mapping[name]], path, mapping[name], factors.get(name), owned)
    if "frame" in mapping:
        f = _numeric(raw[mapping["frame"]], path, mapping["frame"])
        out["frame"] = np.nan_to_num(f, nan=-1).astype(np.int64)
    else:
        out["frame"] = np.zeros(n, np.int64)
    for name in ("photons", "precision_nm"):
        if name in mapping:
            out[name] = _scaled(raw[mapping[name]], path, mapping[name], factors.get(name), owned)
        else:
            out[name] = np.full(n, np.nan)
    if "channel" in mapping:
        ch = raw[mapping["channel"]]
        if pd.api.types.is_float_dtype(ch) and np.all(np.mod(ch.dropna(), 1) == 0):
            ch = ch.astype("Int64")
        ch = ch.astype(object)
        out["channel"] = ch.where(ch.notna(), "nan").astype("str")
    else:  # a string column built from one scalar: no per-row Python objects
        out["channel"] = pd.Series("0", index=raw.index, dtype="str")
    used = set(mapping.values())
    for c in raw.columns:  # the file's other columns, after the standard ones
        if c not in used and c not in out:
            out[c] = raw[c]
    # one pass: the columns are the arrays just built (and the file's), not copies; pandas
    # without copy-on-write copies them so the table never writes into the caller's frame
    df = pd.DataFrame(out, index=raw.index, copy=not _copy_on_write())
    pos = [c for c in POSITION if c in df.columns]
    finite = finite_rows([df[c].to_numpy() for c in pos], n)
    n_dropped = int(n - finite.sum())
    if n_dropped:
        df = df.loc[finite]
    df = df.reset_index(drop=True)
    if n and len(df) == 0 and not allow_empty:
        raise InputError(path, f"no localization has a finite position ({n_dropped} dropped)")
    for c in pos:
        problem = range_problem(c, df[c].to_numpy())
        if problem:
            raise InputError(path, problem)
    meta = dict(metadata or {})
    meta.setdefault("mapping", dict(mapping))
    return LocalizationTable(df, fmt, None if path is None else os.fspath(path), n_dropped, meta)


def _copy_on_write() -> bool:
    """True when pandas copies on write (always from pandas 3)."""
    if int(pd.__version__.split(".")[0]) >= 3:
        return True
    return bool(getattr(pd.options.mode, "copy_on_write", False) is True)


def _all_zero(series: pd.Series) -> bool:
    if not pd.api.types.is_numeric_dtype(series) or len(series) == 0:
        return False
    return all_zero(series.to_numpy())


def _scaled(series: pd.Series, path, name, factor=None, owned=False) -> np.ndarray:
    """The column as a writeable float64 array times ``factor``.

    A copy only when needed: a factor other than 1, a conversion, or a read-only view
    of a frame the table does not own (pandas' copy-on-write hands out read-only views).
    """
    v = _numeric(series, path, name)
    if factor is not None and float(factor) != 1.0:
        return v * float(factor)
    if not v.flags.writeable:
        if owned:
            try:  # the reader's own buffer: take it over
                v.flags.writeable = True
                return v
            except ValueError:  # memory numpy may not write (an Arrow buffer)
                pass
        v = v.copy()
    return v


def _numeric(series: pd.Series, path, name) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    conv = pd.to_numeric(series, errors="coerce")
    bad = conv.isna() & series.notna()
    if bad.mean() > 0.5 if len(series) else False:
        raise InputError(path, f"column '{name}' is not numeric (e.g. {series[bad].iloc[0]!r})")
    return conv.to_numpy(dtype=np.float64, na_value=np.nan)


def from_dataframe(df: pd.DataFrame, fmt: str = "dataframe", path=None) -> LocalizationTable:
    """Wrap an already-normalised DataFrame (e.g. a simulation) as a table."""
    if "x_nm" not in df.columns or "y_nm" not in df.columns:
        raise InputError(path, "table has no x_nm / y_nm columns")
    mapping = {c: c for c in STANDARD if c in df.columns}
    return normalise(df, mapping, path=path, fmt=fmt, allow_empty=True)


def standard_columns(df: pd.DataFrame) -> list[str]:
    """The standard columns present in ``df``, in order, then the extras."""
    std = [c for c in STANDARD if c in df.columns]
    return std + [c for c in df.columns if c not in std]
