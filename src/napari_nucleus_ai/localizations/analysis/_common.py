"""Shared helpers of the analysis modules: tables in, coordinate arrays out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError


def frame_of(df) -> pd.DataFrame:
    """The DataFrame of a :class:`LocalizationTable`, a DataFrame or a mapping of arrays."""
    if hasattr(df, "data") and isinstance(getattr(df, "data", None), pd.DataFrame):
        df = df.data
    if not isinstance(df, pd.DataFrame):
        try:
            df = pd.DataFrame(df)
        except (ValueError, TypeError):
            raise InputError(None, "localizations must be a table with x_nm and y_nm") from None
    missing = [c for c in ("x_nm", "y_nm") if c not in df.columns]
    if missing:
        raise InputError(None, f"localizations have no {', '.join(missing)} column")
    return df


def coords(df, dims: int | None = None) -> np.ndarray:
    """``(n, 2)`` or ``(n, 3)`` float64 positions in nm (3D when ``z_nm`` exists)."""
    df = frame_of(df)
    cols = ["x_nm", "y_nm"]
    if (dims is None or dims == 3) and "z_nm" in df.columns:
        cols.append("z_nm")
    elif dims == 3:
        raise InputError(None, "3D requested but the localizations have no z_nm column")
    return np.column_stack([df[c].to_numpy(np.float64) for c in cols])


def region_mask(df, region) -> np.ndarray:
    """Rows inside ``region``: None (all), a boolean mask, ``{"x": [lo, hi], "y": [lo, hi]}``
    or a polygon as an (n, 2) array of napari ``(y, x)`` vertices in nm."""
    df = frame_of(df)
    n = len(df)
    if region is None:
        return np.ones(n, bool)
    if isinstance(region, dict):
        keep = np.ones(n, bool)
        for axis, (lo, hi) in region.items():
            v = df[f"{axis}_nm"].to_numpy()
            keep &= (v >= lo) & (v <= hi)
        return keep
    region = np.asarray(region)
    if region.dtype == bool:
        if region.shape != (n,):
            raise InputError(None, f"region mask has {region.size} entries for {n} rows")
        return region
    from matplotlib.path import Path

    verts = region[:, ::-1]  # (y, x) -> (x, y)
    return Path(verts).contains_points(df[["x_nm", "y_nm"]].to_numpy(np.float64))
