"""Filters on normalised localization tables: precision, photons, frames, channels, ROI."""

from __future__ import annotations

import numpy as np
import pandas as pd


def roi_mask(df: pd.DataFrame, shapes, shape_types=None) -> np.ndarray:
    """Localizations inside any of ``shapes`` (napari Shapes data: (N, 2) ``(y, x)`` nm).

    ``shape_types`` (napari ``shape_type`` per shape) makes ellipses exact (napari
    stores an ellipse as the 4 corners of its bounding box); other shapes are polygons.
    Extra leading dimensions (z) of 3D shapes are ignored.
    """
    from matplotlib.path import Path

    x = df["x_nm"].to_numpy()
    y = df["y_nm"].to_numpy()
    pts = np.column_stack([y, x])
    mask = np.zeros(len(df), bool)
    types = list(shape_types) if shape_types is not None else ["polygon"] * len(shapes)
    for verts, kind in zip(shapes, types, strict=False):
        v = np.asarray(verts, float)[:, -2:]
        if kind == "ellipse":
            c = v.mean(0)
            half = (v.max(0) - v.min(0)) / 2
            half[half == 0] = 1e-9
            mask |= (((pts - c) / half) ** 2).sum(1) <= 1
        elif kind in ("line", "path") or len(v) < 3:
            continue
        else:
            lo, hi = v.min(0), v.max(0)
            box = (
                (pts[:, 0] >= lo[0])
                & (pts[:, 0] <= hi[0])
                & (pts[:, 1] >= lo[1])
                & (pts[:, 1] <= hi[1])
            )
            idx = np.flatnonzero(box & ~mask)
            if idx.size:
                mask[idx] = Path(v).contains_points(pts[idx])
    return mask


def filter_localizations(
    df: pd.DataFrame,
    precision_max_nm: float | None = None,
    photons_min: float | None = None,
    frame_range: tuple | None = None,
    channels=None,
    roi=None,
    roi_types=None,
) -> pd.DataFrame:
    """Keep localizations that pass every given filter (None = no filter).

    Parameters
    ----------
    precision_max_nm : float, optional
        Drop rows with ``precision_nm`` above this (rows without precision are kept).
    photons_min : float, optional
        Drop rows with fewer ``photons`` (rows without photons are kept).
    frame_range : (first, last), optional
        Inclusive; either end may be None.
    channels : iterable of str, optional
    roi : list of (N, 2) arrays, optional
        napari Shapes data in nm; see :func:`roi_mask`.
    """
    keep = np.ones(len(df), bool)
    if precision_max_nm is not None and "precision_nm" in df:
        p = df["precision_nm"].to_numpy(dtype=float)
        keep &= ~(p > precision_max_nm)
    if photons_min is not None and "photons" in df:
        ph = df["photons"].to_numpy(dtype=float)
        keep &= ~(ph < photons_min)
    if frame_range is not None:
        f = df["frame"].to_numpy()
        lo, hi = frame_range
        if lo is not None:
            keep &= f >= lo
        if hi is not None:
            keep &= f <= hi
    if channels is not None:
        keep &= df["channel"].astype(str).isin([str(c) for c in channels]).to_numpy()
    if roi is not None and len(roi):
        keep &= roi_mask(df, roi, roi_types)
    out = df.loc[keep].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out
