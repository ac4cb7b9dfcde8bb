"""NeNA: the localization precision of a data set (Endesfelder et al. 2014).

A molecule that blinks in two consecutive frames is localized twice; the distance
between the two localizations has the pdf of the difference of two Gaussian
positions of precision ``sigma`` (per axis): ``d / (2 sigma^2) exp(-d^2 / (4 sigma^2))``.
Every localization is paired with its nearest neighbour in the next frame (one
KD-tree query on ``(x, y, frame * s)``, no loop over rows), the distances are
histogrammed and fitted (``scipy.optimize.curve_fit``) with the published model::

    p(d) = A1 d / (2 s^2) exp(-d^2 / (4 s^2))                  same molecule
         + A2 / (sqrt(2 pi) w) exp(-(d - dc)^2 / (2 w^2))     short-range correlated pairs
         + A3 d                                                uniform (random) neighbours

``s`` is the NeNA precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.analysis._common import frame_of, region_mask


@dataclass
class NenaResult:
    """NeNA precision with the histogram and fit to plot.

    Attributes
    ----------
    precision_nm : float
        The fitted ``s``.
    d_nm, histogram, fit : ndarray
        Bin centres (nm), pair counts per bin, fitted model at the bin centres.
    params : dict
        ``a1, s, a2, dc, w, a3``.
    n_pairs : int
    """

    precision_nm: float
    d_nm: np.ndarray
    histogram: np.ndarray
    fit: np.ndarray
    params: dict = field(default_factory=dict)
    n_pairs: int = 0


def nena_pdf(d, a1, s, a2, dc, w, a3):
    """The NeNA model (counts per bin when the amplitudes are counts x bin width)."""
    single = a1 * d / (2 * s**2) * np.exp(-(d**2) / (4 * s**2))
    short = a2 / (np.sqrt(2 * np.pi) * w) * np.exp(-0.5 * ((d - dc) / w) ** 2)
    return single + short + a3 * d


def next_frame_distances(df, d_max_nm: float = 150.0) -> np.ndarray:
    """Distance of every localization to its nearest neighbour in the next frame (<= d_max)."""
    from scipy.spatial import cKDTree

    df = frame_of(df)
    if "frame" not in df.columns:
        raise InputError(None, "NeNA needs a frame column")
    x = df["x_nm"].to_numpy(np.float64)
    y = df["y_nm"].to_numpy(np.float64)
    f = df["frame"].to_numpy(np.float64)
    s = 3.0 * float(d_max_nm)  # frames apart by one are >= s > d_max apart in the 3rd axis
    cols = [x, y, f * s]
    if "channel" in df.columns and df["channel"].nunique() > 1:
        import pandas as pd

        cols.append(pd.factorize(df["channel"].to_numpy())[0] * 10.0 * s)
    pts = np.column_stack(cols)
    q = pts.copy()
    q[:, 2] += s
    tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)  # faster build
    d, _ = tree.query(q, k=1, distance_upper_bound=float(d_max_nm), workers=-1)
    return d[np.isfinite(d)]


def nena(
    df,
    region=None,
    d_max_nm: float = 150.0,
    bin_nm: float = 1.0,
    distances: np.ndarray | None = None,
) -> NenaResult:
    """NeNA localization precision of a file or a region.

    Parameters
    ----------
    df : DataFrame or LocalizationTable
        ``x_nm, y_nm, frame`` (+ ``precision_nm`` for the start value).
    region : optional
        Rows to use: a boolean mask, ``{"x": [lo, hi], "y": [lo, hi]}`` or a polygon of
        napari ``(y, x)`` vertices in nm.
    d_max_nm : float
        Largest next-frame distance considered (default 150 nm).
    bin_nm : float
        Histogram bin (default 1 nm).
    distances : ndarray, optional
        Precomputed next-frame distances (skips the search).

    Returns
    -------
    NenaResult

    Raises
    ------
    InputError
        Too few next-frame pairs, or the fit does not converge.
    """
    from scipy.optimize import curve_fit

    df = frame_of(df)
    if distances is None:
        sel = df if region is None else df[region_mask(df, region)]
        distances = next_frame_distances(sel, d_max_nm)
    else:
        sel = df
    d = np.asarray(distances, float)
    if d.size < 50:
        raise InputError(None, f"NeNA needs localizations in consecutive frames ({d.size} pairs)")
    edges = np.arange(0.0, float(d_max_nm) + bin_nm, float(bin_nm))
    hist, _ = np.histogram(d, edges)
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    area = hist.sum() * bin_nm
    peak = centres[int(np.argmax(hist))]
    med = np.nan
    if "precision_nm" in sel.columns:
        med = float(np.nanmedian(sel["precision_nm"].to_numpy(np.float64)))
    guesses = [g for g in (peak / np.sqrt(2), med) if np.isfinite(g) and g > 0]
    hi = centres[-1]
    starts = []
    for g in guesses:
        starts.append([0.8 * area, g, 0.1 * area, 2 * g, g, 0.1 * area / hi**2])
        starts.append([0.8 * area, g, 0.1 * area, 0.5 * hi, 0.3 * hi, 0.01 * area / hi**2])
    lower = [0, 0.1 * bin_nm, 0, 0, bin_nm, 0]
    upper = [np.inf, hi, np.inf, hi, hi, np.inf]
    best, popt = np.inf, None
    for p0 in starts:
        p0 = np.clip(p0, lower, [u if np.isfinite(u) else np.inf for u in upper])
        try:
            cand, _ = curve_fit(
                nena_pdf, centres, hist / bin_nm * 1.0, p0=p0, bounds=(lower, upper), maxfev=20000
            )
        except (RuntimeError, ValueError):
            continue
        res = float(np.sum((nena_pdf(centres, *cand) - hist / bin_nm) ** 2))
        if res < best:
            best, popt = res, cand
    if popt is None:
        raise InputError(None, "the NeNA fit did not converge")
    names = ("a1", "s", "a2", "dc", "w", "a3")
    return NenaResult(
        precision_nm=float(popt[1]),
        d_nm=centres,
        histogram=hist,
        fit=nena_pdf(centres, *popt) * bin_nm,
        params={k: float(v) for k, v in zip(names, popt, strict=True)},
        n_pairs=int(d.size),
    )
