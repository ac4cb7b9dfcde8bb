"""Nikon N-STORM / NIS-Elements localization TXT (tab-separated): read and write.

Two header generations: ``Channel Name  X  Y  Xc  Yc ...`` (older files start ``Name``)
and NIS-Elements 5 ``ID  X  Y  Z  Lateral Localization Accuracy  Channel ...``.
Positions are nm; ``Xc/Yc/Zc`` (drift corrected) are preferred when present;
``Xwc/Ywc`` (drift and warp corrected) are kept as extra columns. The channel name
(e.g. ``647``) becomes ``channel``.
"""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.detect import head_text
from napari_nucleus_ai.localizations.positions import POSITION
from napari_nucleus_ai.localizations.thunderstorm import columns_for, normalised_columns

if TYPE_CHECKING:  # pandas is imported by the reader that builds a table, not by ``info``
    import pandas as pd

    from napari_nucleus_ai.localizations.positions import PositionSummary


def header_names(path) -> list[str]:
    """The column names, as pandas names them (``Unnamed: i`` for an empty name, ``X.1``
    for a second ``X``), stripped."""
    first = head_text(path, 16384).split("\n", 1)[0].rstrip("\r")
    fields = next(csv.reader([first], delimiter="\t"), [])
    names = [f or f"Unnamed: {i}" for i, f in enumerate(fields)]
    header, counts = list(names), {}
    for i, base in enumerate(header):  # pandas' C parser's rule for repeated names
        name, n = base, counts.get(base, 0)
        while n > 0:
            counts[base] = n + 1
            name = f"{base}.{n}"
            n = n + 1 if name in header else counts.get(name, 0)
        names[i] = name
        counts[name] = n + 1
    return [n.strip() for n in names]


def mapping_for(names: list[str], prefer_corrected: bool = True) -> dict:
    """``{standard name: column}`` for N-STORM column names."""
    mapping = {}
    for std, plain in (("x_nm", "X"), ("y_nm", "Y"), ("z_nm", "Z")):
        corrected = plain + "c"
        if prefer_corrected and corrected in names:
            mapping[std] = corrected
        elif plain in names:
            mapping[std] = plain
    for std, col in (
        ("frame", "Frame"),
        ("photons", "Photons"),
        ("precision_nm", "Lateral Localization Accuracy"),
    ):
        if col in names:
            mapping[std] = col
    for col in ("Channel Name", "Name", "Channel"):
        if col in names:
            mapping["channel"] = col
            break
    return mapping


def read(path, positions_only: bool = False, only=None, prefer_corrected: bool = True, **_):
    import pandas as pd

    from napari_nucleus_ai.localizations.csvread import read_columns
    from napari_nucleus_ai.localizations.table import normalise

    names = header_names(path)
    mapping = mapping_for(names, prefer_corrected)
    if positions_only:
        only = POSITION
    usecols = None if only is None else columns_for(mapping, only)
    try:
        raw = read_columns(path, usecols, sep="\t")
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as e:
        raise InputError(path, f"not a readable N-STORM TXT ({' '.join(str(e).split())})") from e
    full = mapping
    if only is not None:
        mapping = {k: v for k, v in mapping.items() if k in (*POSITION, *only)}
    table = normalise(raw, mapping, path=path, fmt="nstorm", owned=True)
    table.metadata["columns"] = normalised_columns(names, full, table.is_3d)
    table.metadata["drift_corrected_columns"] = mapping.get("x_nm") == "Xc"
    return table


def read_positions(path, prefer_corrected: bool = True, **_) -> PositionSummary | None:
    """What ``info`` prints of an N-STORM file's positions, read without pandas (the
    columns and rules of :func:`read` with ``positions_only``; None when only it can tell)."""
    from napari_nucleus_ai.localizations.csvread import read_arrays
    from napari_nucleus_ai.localizations.positions import summarise

    names = header_names(path)
    mapping = mapping_for(names, prefer_corrected)
    raw = read_arrays(path, columns_for(mapping, POSITION), sep="\t")
    if raw is None:
        return None
    summary = summarise({k: raw[c] for k, c in mapping.items() if k in POSITION}, {}, "nstorm")
    if summary is not None:
        summary.metadata["columns"] = normalised_columns(names, mapping, summary.is_3d)
    return summary


def write_nstorm_txt(df: pd.DataFrame, path) -> str:
    """Write localizations as an N-STORM TXT (``Channel Name`` header, tab-separated).

    ``X/Y/Z`` and ``Xc/Yc/Zc`` both hold the table's positions (already corrected),
    ``Channel Name`` the channel, ``Frame``, ``Photons`` and ``Lateral Localization
    Accuracy`` the other standard columns. Written atomically; returns the path.
    """
    import numpy as np
    import pandas as pd

    from napari_nucleus_ai.core.files import atomic_write

    if "x_nm" not in df.columns or "y_nm" not in df.columns:
        raise InputError(path, "cannot write an N-STORM TXT without x_nm / y_nm")
    n = len(df)
    z = df["z_nm"].to_numpy() if "z_nm" in df else np.zeros(n)
    ch = df["channel"].astype(str).to_numpy() if "channel" in df else np.full(n, "647")
    out = pd.DataFrame(
        {
            "Channel Name": ch,
            "X": df["x_nm"].to_numpy(),
            "Y": df["y_nm"].to_numpy(),
            "Xc": df["x_nm"].to_numpy(),
            "Yc": df["y_nm"].to_numpy(),
            "Height": np.zeros(n),
            "Area": np.zeros(n),
            "Width": np.full(n, 300.0),
            "Phi": np.zeros(n),
            "Ax": np.ones(n),
            "BG": np.zeros(n),
            "I": df["photons"].to_numpy() if "photons" in df else np.zeros(n),
            "Frame": df["frame"].to_numpy() if "frame" in df else np.ones(n, int),
            "Length": np.ones(n, int),
            "Link": np.full(n, -1),
            "Valid": np.ones(n, int),
            "Z": z,
            "Zc": z,
            "Photons": df["photons"].to_numpy() if "photons" in df else np.zeros(n),
            "Lateral Localization Accuracy": df["precision_nm"].to_numpy()
            if "precision_nm" in df
            else np.zeros(n),
        }
    )
    with atomic_write(path, "w", newline="") as fh:
        out.to_csv(fh, sep="\t", index=False, float_format="%.6g")
    return str(path)
