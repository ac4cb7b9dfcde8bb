"""NeNA: the localization precision of a data set (Endesfelder et al. 2014).

A molecule that blinks in two consecutive frames is localized twice; the distance
between the two localizations has the pdf of the difference of two Gaussian
positions of precision ``sigma`` (per axis): ``d / (2 sigma^2) exp(-d^2 / (4 sigma^2))``.
As Picasso's ``postprocess.nena``, every pair of localizations in consecutive frames
(``f`` and ``f + 1``, same channel) closer than ``d_max_nm`` counts (KD-tree queries on
``(x, y, frame * s)``, no loop over rows); the distances are histogrammed and fitted
(``scipy.optimize.curve_fit``). Two models:

``"endesfelder"`` (default), the published three-term model::

    p(d) = A1 d / (2 s^2) exp(-d^2 / (4 s^2))                  same molecule
         + A2 / (sqrt(2 pi) w) exp(-(d - dc)^2 / (2 w^2))     short-range correlated pairs
         + A3 d                                                uniform (random) neighbours

``"picasso"``, Picasso's two-term model (no uniform term, ``A1 >= A2``) fitted to
``d_max / 1000`` bins with Picasso's start values. Both agree on sparse data; on dense
data, where pairs of different molecules dominate, the two-term model lacks the term for
them and its result moves with the range and the bin width (see docs/quantification.md).

``"locan"``, Locan's ``LocalizationPrecision``: for every localization of frame ``f`` only
the *nearest* localization of frame ``f + 1`` within ``d_max_nm`` (Locan's ``radius``;
Locan skips the last pair of frames), and the maximum-likelihood fit of the 2D pair
distance (Rayleigh) pdf ``d / sigma^2 exp(-d^2 / (2 sigma^2))`` with ``loc = 0``, which
has the closed form ``sigma^2 = mean(d^2) / 2``; the precision is ``sigma / sqrt(2)``,
i.e. ``sqrt(mean(d^2) / 4)``. No term for other molecules: it grows with ``d_max_nm`` and
the density.

``s`` is the NeNA precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.analysis._common import frame_of, region_mask

MODELS = ("endesfelder", "picasso", "locan")


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
        ``a1, s, a2, dc, w, a3`` (``a3`` = 0 for the Picasso model).
    n_pairs : int
    model : str
    """

    precision_nm: float
    d_nm: np.ndarray
    histogram: np.ndarray
    fit: np.ndarray
    params: dict = field(default_factory=dict)
    n_pairs: int = 0
    model: str = "endesfelder"

    def same_molecule(self) -> np.ndarray:
        """The fitted same-molecule term alone, in the units of :attr:`histogram`."""
        p = self.params
        d = self.d_nm
        bin_nm = float(d[1] - d[0]) if d.size > 1 else 1.0
        scale = 1.0 if self.model == "picasso" else bin_nm
        s = p["s"]
        return scale * p["a1"] * d / (2 * s**2) * np.exp(-(d**2) / (4 * s**2))


def nena_pdf(d, a1, s, a2, dc, w, a3):
    """The NeNA model (counts per bin when the amplitudes are counts x bin width)."""
    single = a1 * d / (2 * s**2) * np.exp(-(d**2) / (4 * s**2))
    short = a2 / (np.sqrt(2 * np.pi) * w) * np.exp(-0.5 * ((d - dc) / w) ** 2)
    return single + short + a3 * d


def _picasso_pdf(d, delta_a, s, ac, dc, sc):
    """Picasso's two-term model (``a = ac + delta_a`` keeps ``a >= ac``)."""
    return nena_pdf(d, ac + delta_a, s, ac, dc, sc, 0.0)


def next_frame_distances(df, d_max_nm: float = 150.0) -> np.ndarray:
    """Distances of all pairs in consecutive frames (same channel) closer than ``d_max_nm``.

    Localizations are points ``(x, y, frame * s)`` with ``s = 3 d_max`` (other frames are out
    of reach); a query shifted by one frame finds the next frame's neighbours: ``k = 2`` per
    row first, rows with ``k`` hits again with ``4 k`` until none is cut off.
    """
    from scipy.spatial import cKDTree

    df = frame_of(df)
    if "frame" not in df.columns:
        raise InputError(None, "NeNA needs a frame column")
    x = df["x_nm"].to_numpy(np.float64)
    y = df["y_nm"].to_numpy(np.float64)
    f = df["frame"].to_numpy(np.float64)
    r = float(d_max_nm)
    s = 3.0 * r
    cols = [x, y, f * s]
    if "channel" in df.columns and df["channel"].nunique() > 1:
        import pandas as pd

        cols.append(pd.factorize(df["channel"].to_numpy())[0] * 10.0 * s)
    pts = np.column_stack(cols)
    if not len(pts):
        return np.empty(0)
    q = pts.copy()
    q[:, 2] += s
    tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)  # faster build
    out = []
    rows = np.arange(len(q))
    k = 2
    while rows.size:
        d, _ = tree.query(q[rows], k=k, distance_upper_bound=r, workers=-1)
        full = np.isfinite(d[:, -1])  # k hits: there may be more
        out.append(d[~full][np.isfinite(d[~full])])
        rows = rows[full]
        k = min(4 * k, len(pts))
        if k == len(pts) and rows.size:
            d, _ = tree.query(q[rows], k=k, distance_upper_bound=r, workers=-1)
            out.append(d[np.isfinite(d)])
            break
    return np.concatenate(out)


def nearest_next_frame_distances(df, d_max_nm: float = 150.0) -> np.ndarray:
    """Locan's pairs: each localization's nearest neighbour in the next frame within reach.

    Rows of the last two frames are skipped, as Locan's loop ``range(min, max - 1)`` does
    (it never pairs frame ``max - 1`` with ``max``). Channels are ignored, as in Locan.
    """
    from scipy.spatial import cKDTree

    df = frame_of(df)
    if "frame" not in df.columns:
        raise InputError(None, "NeNA needs a frame column")
    f = df["frame"].to_numpy(np.int64)
    if not f.size:
        return np.empty(0)
    r = float(d_max_nm)
    s = 3.0 * r
    pts = np.column_stack([df["x_nm"].to_numpy(np.float64), df["y_nm"].to_numpy(np.float64), f * s])
    q = pts[f < f.max() - 1].copy()
    q[:, 2] += s
    d, _ = cKDTree(pts).query(q, k=1, distance_upper_bound=r, workers=-1)
    return d[np.isfinite(d)]


def _locan(d: np.ndarray, d_max_nm: float, bin_nm: float) -> NenaResult:
    """Locan's estimate from nearest next-frame distances (closed-form Rayleigh MLE)."""
    s = float(np.sqrt(np.mean(d**2) / 4.0))
    n_bins = max(int(round(float(d_max_nm) / bin_nm)), 2)
    edges = np.arange(n_bins + 1) * bin_nm
    hist, _ = np.histogram(d, edges)
    centres = (edges[:-1] + edges[1:]) / 2
    params = {"a1": float(d.size), "s": s, "a2": 0.0, "dc": 0.0, "w": 1.0, "a3": 0.0}
    fit = nena_pdf(centres, d.size, s, 0.0, 0.0, 1.0, 0.0) * bin_nm
    return NenaResult(s, centres, hist.astype(np.float64), fit, params, int(d.size), "locan")


def _starts_endesfelder(centres, hist, area, guesses):
    hi = centres[-1]
    starts = []
    for g in guesses:
        starts.append([0.8 * area, g, 0.1 * area, 2 * g, g, 0.1 * area / hi**2])
        starts.append([0.8 * area, g, 0.1 * area, 0.5 * hi, 0.3 * hi, 0.01 * area / hi**2])
    return starts


def nena(
    df,
    region=None,
    d_max_nm: float = 150.0,
    bin_nm: float | None = None,
    distances: np.ndarray | None = None,
    model: str = "endesfelder",
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
        Largest next-frame distance considered (default 150 nm; Picasso uses one camera
        pixel).
    bin_nm : float, optional
        Histogram bin (default 1 nm; ``d_max_nm / 1000`` for ``model="picasso"``).
    distances : ndarray, optional
        Precomputed next-frame distances (skips the search; for ``model="locan"`` the
        nearest next-frame distances, :func:`nearest_next_frame_distances`).
    model : {"endesfelder", "picasso", "locan"}
        Fit model, see the module docstring.

    Returns
    -------
    NenaResult

    Raises
    ------
    InputError
        Too few next-frame pairs, or the fit does not converge.
    """
    from scipy.optimize import curve_fit

    model = str(model).lower()
    if model not in MODELS:
        raise InputError(None, f"unknown NeNA model {model!r}; use one of {MODELS}")
    df = frame_of(df)
    if distances is None:
        sel = df if region is None else df[region_mask(df, region)]
        pairs = nearest_next_frame_distances if model == "locan" else next_frame_distances
        distances = pairs(sel, d_max_nm)
    else:
        sel = df
    d = np.asarray(distances, float)
    if d.size < 50:
        raise InputError(None, f"NeNA needs localizations in consecutive frames ({d.size} pairs)")
    if bin_nm is None:
        bin_nm = float(d_max_nm) / 1000 if model == "picasso" else 1.0
    bin_nm = float(bin_nm)
    if model == "locan":
        return _locan(d, d_max_nm, bin_nm)
    n_bins = max(int(round(float(d_max_nm) / bin_nm)), 2)
    edges = np.arange(n_bins + 1) * bin_nm
    hist, _ = np.histogram(d, edges)
    hist = hist.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    area = hist.sum() * bin_nm
    peak = centres[int(np.argmax(hist))]
    med = np.nan
    if "precision_nm" in sel.columns:
        med = float(np.nanmedian(sel["precision_nm"].to_numpy(np.float64)))
    hi = centres[-1]
    if model == "picasso":
        fn, y = _picasso_pdf, hist  # counts per bin, as Picasso
        area = np.trapezoid(hist, centres)
        g = med if np.isfinite(med) and med > 0 else peak / np.sqrt(2)
        starts = [
            [0.8 * area, g, 0.1 * area, 2 * g, g],
            [0.8 * area, peak / np.sqrt(2), 0.1 * area, 0.7 * hi, 0.3 * hi],
            [0.8 * area, g, 0.1 * area, 0.5 * hi, g],
        ]
        lower, upper = [0.0] * 5, [np.inf] * 5
    else:
        fn, y = nena_pdf, hist / bin_nm
        guesses = [g for g in (peak / np.sqrt(2), med) if np.isfinite(g) and g > 0]
        starts = _starts_endesfelder(centres, hist, area, guesses)
        lower = [0, 0.1 * bin_nm, 0, 0, bin_nm, 0]
        upper = [np.inf, hi, np.inf, hi, hi, np.inf]
    best, popt = np.inf, None
    for p0 in starts:
        p0 = np.clip(p0, np.add(lower, 1e-12), upper)
        try:
            cand, _ = curve_fit(fn, centres, y, p0=p0, bounds=(lower, upper), maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        res = float(np.sum((fn(centres, *cand) - y) ** 2))
        if res < best:
            best, popt = res, cand
    if popt is None:
        raise InputError(None, "the NeNA fit did not converge")
    if model == "picasso":
        delta_a, s, ac, dc, sc = popt
        params = {"a1": ac + delta_a, "s": s, "a2": ac, "dc": dc, "w": sc, "a3": 0.0}
        fit = _picasso_pdf(centres, *popt)
    else:
        params = dict(zip(("a1", "s", "a2", "dc", "w", "a3"), popt, strict=True))
        fit = nena_pdf(centres, *popt) * bin_nm
    return NenaResult(
        precision_nm=float(params["s"]),
        d_nm=centres,
        histogram=hist,
        fit=fit,
        params={k: float(v) for k, v in params.items()},
        n_pairs=int(d.size),
        model=model,
    )
