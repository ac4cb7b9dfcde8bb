"""ThunderSTORM CSV: read (all header variants) and write (its current export layout).

ThunderSTORM writes ``"id","frame","x [nm]","y [nm]",...`` with units in brackets;
older versions write ``uncertainty [nm]`` instead of ``uncertainty_xy [nm]``; some
tools quote the whole header as one field. Units ``nm``, ``um``/``µm`` and ``px``
(with ``pixel_size_nm=``) are converted to nm.
"""

from __future__ import annotations

import csv
import re
from typing import TYPE_CHECKING

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.units import NM_PER
from napari_nucleus_ai.localizations.detect import clean_header, head_text
from napari_nucleus_ai.localizations.positions import POSITION, STANDARD

if TYPE_CHECKING:  # pandas is imported by the readers that build a table, not by ``info``
    import pandas as pd

    from napari_nucleus_ai.localizations.positions import PositionSummary
    from napari_nucleus_ai.localizations.table import LocalizationTable


def delimiter(path) -> str:
    """``,`` for ThunderSTORM CSV, tab for its TSV export."""
    first = head_text(path, 16384).split("\n", 1)[0]
    return "\t" if "\t" in first and "," not in first else ","


def header_names(path) -> tuple[list[str], bool]:
    """Column names and whether the header was quoted as one field."""
    first = head_text(path, 16384).split("\n", 1)[0].rstrip("\r")
    sep = delimiter(path)
    fields = next(csv.reader([first], delimiter=sep))
    if len(fields) == 1 and sep in fields[0]:
        return [f.strip() for f in clean_header(first).split(sep)], True
    return [f.strip() for f in fields], False


def _unit(name: str) -> tuple[str, str | None]:
    m = re.match(r"^(.*?)\s*\[(.+)\]\s*$", name)
    return (m.group(1).strip().lower(), m.group(2).strip()) if m else (name.strip().lower(), None)


def mapping_for(names: list[str], pixel_size_nm=None, path=None) -> tuple[dict, dict]:
    """``(mapping, factors)`` for ThunderSTORM column names."""
    mapping, factors = {}, {}
    by_base = {}
    for n in names:
        base, unit = _unit(n)
        by_base.setdefault(base, (n, unit))
    for std, bases in (
        ("x_nm", ("x",)),
        ("y_nm", ("y",)),
        ("z_nm", ("z",)),
        ("precision_nm", ("uncertainty_xy", "uncertainty")),
    ):
        for b in bases:
            if b in by_base:
                col, unit = by_base[b]
                mapping[std] = col
                factors[std] = _factor(unit, pixel_size_nm, path, col)
                break
    if "frame" in by_base:
        mapping["frame"] = by_base["frame"][0]
    if "intensity" in by_base:
        mapping["photons"] = by_base["intensity"][0]
    return mapping, factors


def _factor(unit, pixel_size_nm, path, col) -> float:
    if unit is None or unit in NM_PER:
        return NM_PER.get(unit, 1.0)
    if unit == "px":
        if not pixel_size_nm:
            raise InputError(path, f"column '{col}' is in camera pixels; pass --camera-pixel NM")
        return float(pixel_size_nm)
    raise InputError(path, f"column '{col}' has an unknown unit '{unit}'")


def read(
    path, positions_only: bool = False, only=None, pixel_size_nm=None, **_
) -> LocalizationTable:
    import pandas as pd

    from napari_nucleus_ai.localizations.csvread import read_columns
    from napari_nucleus_ai.localizations.table import normalise

    names, quoted_whole = header_names(path)
    mapping, factors = mapping_for(names, pixel_size_nm, path)
    if positions_only:
        only = POSITION
    usecols = None if only is None else columns_for(mapping, only)
    try:
        raw = read_columns(path, usecols, **_read_kwargs(path, names, quoted_whole))
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise InputError(path, f"not a readable ThunderSTORM CSV ({_short(e)})") from e
    full = mapping
    if only is not None:
        mapping = {k: v for k, v in mapping.items() if k in (*POSITION, *only)}
    table = normalise(raw, mapping, path=path, fmt="thunderstorm", factors=factors, owned=True)
    table.metadata["columns"] = normalised_columns(names, full, table.is_3d)
    return table


def read_positions(path, pixel_size_nm=None, **_) -> PositionSummary | None:
    """What ``info`` prints of a ThunderSTORM file's positions, read without pandas.

    The same columns, units and rules as :func:`read` with ``positions_only``; None
    when only :func:`read` can tell (see :func:`.positions.summarise`).
    """
    from napari_nucleus_ai.localizations.csvread import read_arrays
    from napari_nucleus_ai.localizations.positions import summarise

    names, quoted_whole = header_names(path)
    mapping, factors = mapping_for(names, pixel_size_nm, path)
    usecols = columns_for(mapping, POSITION)
    raw = read_arrays(path, usecols, **_read_kwargs(path, names, quoted_whole))
    if raw is None:
        return None
    summary = summarise({k: raw[c] for k, c in mapping.items() if k in POSITION}, factors,
                        "thunderstorm")  # fmt: skip
    if summary is not None:
        summary.metadata["columns"] = normalised_columns(names, mapping, summary.is_3d)
    return summary


def _read_kwargs(path, names: list[str], quoted_whole: bool) -> dict:
    """How the file's table is parsed after its header: the separator (and the names of a
    header quoted as one field)."""
    sep = delimiter(path)
    if quoted_whole:
        return {"sep": sep, "skiprows": 1, "header": None, "names": names}
    return {"sep": sep}


def columns_for(mapping: dict, only) -> list[str]:
    """The file's columns to read for the positions and the standard columns ``only``."""
    return list(dict.fromkeys(mapping[k] for k in (*POSITION, *only) if k in mapping))


def normalised_columns(names: list[str], mapping: dict, is_3d: bool) -> list[str]:
    """The columns the full table has (known without reading every column)."""
    std = [c for c in STANDARD if c != "z_nm" or is_3d]
    used = set(mapping.values())
    return std + [n for n in names if n not in used]


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:160]


# ---------------------------------------------------------------- writer
def write_thunderstorm_csv(df: pd.DataFrame, path) -> str:
    """Write localizations as a ThunderSTORM CSV (current header, quoted names).

    Parameters
    ----------
    df : DataFrame
        Normalised localizations (``x_nm``, ``y_nm``, optional ``z_nm``, ``frame``,
        ``photons``, ``precision_nm``...). Columns ThunderSTORM knows keep their
        ThunderSTORM names; other numeric columns are appended under their own names.
    path : path-like
        Output ``.csv``, written atomically.

    Returns
    -------
    str
        The path written.
    """
    import numpy as np
    import pandas as pd

    from napari_nucleus_ai.core.files import atomic_write

    if "x_nm" not in df.columns or "y_nm" not in df.columns:
        raise InputError(path, "cannot write a ThunderSTORM CSV without x_nm / y_nm")
    n = len(df)
    cols = {"id": np.arange(1, n + 1)}
    frame = df["frame"].to_numpy() if "frame" in df else np.zeros(n, int)
    # ThunderSTORM numbers frames from 1; keep the table's numbering (documented).
    cols["frame"] = frame
    cols["x [nm]"] = df["x_nm"].to_numpy()
    cols["y [nm]"] = df["y_nm"].to_numpy()
    if "z_nm" in df:
        cols["z [nm]"] = df["z_nm"].to_numpy()
    if "photons" in df:
        cols["intensity [photon]"] = df["photons"].to_numpy()
    if "precision_nm" in df:
        cols["uncertainty_xy [nm]"] = df["precision_nm"].to_numpy()
    out = pd.DataFrame(cols)
    skip = {"x_nm", "y_nm", "z_nm", "frame", "photons", "precision_nm", "id"}
    for c in df.columns:
        if c in skip or c in out.columns:
            continue
        if c == "channel" or pd.api.types.is_numeric_dtype(df[c]):
            out[str(c)] = df[c].to_numpy()
    with atomic_write(path, "w", newline="") as fh:
        out.to_csv(fh, index=False, quoting=csv.QUOTE_NONNUMERIC, float_format="%.6g")
    return str(path)
