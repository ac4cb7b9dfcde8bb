"""Drift from fiducials: bright beads localized in (nearly) every frame.

Fiducials are found as places where localizations occur in at least
``min_fraction`` of the frames (distinct frames per ``bin_nm`` square; a peak
of that occupancy map, refined to the median position of its localizations), or
are given by the user as ``positions_nm``. Each fiducial's track is the brightest
localization per frame within ``radius_nm`` of it; its deviation from its own median
position is the drift seen by that bead; the drift per frame is the median over
beads (frames without a bead interpolated, then a moving average of
``smooth_frames``). Cross-correlation (redundant, all segment pairs) stays in
:mod:`..drift`; both return a :class:`..drift.DriftResult`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.analysis._common import frame_of
from napari_nucleus_ai.localizations.drift import DriftResult


@dataclass
class FiducialDriftResult(DriftResult):
    """:class:`DriftResult` per frame (``segment_frames`` = every frame) + the beads used."""

    fiducials_nm: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    is_fiducial: np.ndarray = field(default_factory=lambda: np.empty(0, bool))


def find_fiducials(df, bin_nm: float = 500.0, min_fraction: float = 0.5) -> np.ndarray:
    """``(k, 2)`` (x, y) nm of places localized in at least ``min_fraction`` of the frames."""
    from scipy import ndimage as ndi

    df = frame_of(df)
    x = df["x_nm"].to_numpy(np.float64)
    y = df["y_nm"].to_numpy(np.float64)
    f = df["frame"].to_numpy(np.int64)
    n_frames = np.unique(f).size
    ix = np.floor((x - x.min()) / bin_nm).astype(np.int64)
    iy = np.floor((y - y.min()) / bin_nm).astype(np.int64)
    nx, ny = int(ix.max()) + 1, int(iy.max()) + 1
    cell = iy * nx + ix
    distinct = np.unique(cell * (f.max() + 1) + (f - f.min()))  # (cell, frame) pairs
    occ = np.bincount(distinct // (f.max() + 1), minlength=nx * ny).reshape(ny, nx)
    # a bead may straddle bins: sum 2x2 windows, keep local maxima over threshold
    occ2 = ndi.uniform_filter(occ.astype(float), size=2, mode="constant", origin=-1) * 4
    peaks = (occ2 == ndi.maximum_filter(occ2, size=3)) & (occ2 >= min_fraction * n_frames)
    py, px_ = np.nonzero(peaks)
    if not py.size:
        return np.empty((0, 2))
    guess = np.column_stack([(px_ + 1) * bin_nm + x.min(), (py + 1) * bin_nm + y.min()])
    return _refine(x, y, guess, bin_nm)


def _refine(x, y, guess, radius):
    from scipy.spatial import cKDTree

    d, k = cKDTree(guess).query(np.column_stack([x, y]), distance_upper_bound=radius)
    ok = np.isfinite(d)
    out = []
    for j in range(len(guess)):  # per bead (few), not per localization
        sel = k[ok] == j
        if sel.any():
            out.append([np.median(x[ok][sel]), np.median(y[ok][sel])])
    return np.unique(np.round(np.asarray(out), 1), axis=0)


def fiducial_drift(
    df,
    positions_nm=None,
    radius_nm: float = 300.0,
    min_fraction: float = 0.5,
    bin_nm: float = 500.0,
    smooth_frames: int = 1,
    remove_fiducials: bool = True,
) -> FiducialDriftResult:
    """Drift from fiducial tracks; returns the corrected table and drift per frame.

    Parameters
    ----------
    df : DataFrame or LocalizationTable
        ``x_nm, y_nm, frame`` (+ ``photons``: the brightest localization per frame is
        the bead's).
    positions_nm : (k, 2) array, optional
        Bead positions (x, y) picked by the user; default: :func:`find_fiducials`.
    radius_nm : float
        Track search radius around a bead (larger than the total drift).
    min_fraction, bin_nm
        Detection, see :func:`find_fiducials`.
    smooth_frames : int
        Moving-average width of the drift trace (1 = none).
    remove_fiducials : bool
        Drop the bead localizations from the corrected table.
    """
    from scipy.spatial import cKDTree

    df = frame_of(df)
    if "frame" not in df.columns:
        raise InputError(None, "fiducial drift needs a frame column")
    pos = (
        find_fiducials(df, bin_nm, min_fraction)
        if positions_nm is None
        else np.asarray(positions_nm, float).reshape(-1, 2)
    )
    if len(pos) == 0:
        raise InputError(
            None,
            f"no fiducials found (no place localized in {min_fraction:.0%} of the frames); "
            "pick bead positions or use cross-correlation drift",
        )
    x = df["x_nm"].to_numpy(np.float64)
    y = df["y_nm"].to_numpy(np.float64)
    f = df["frame"].to_numpy(np.int64)
    d, k = cKDTree(pos).query(np.column_stack([x, y]), distance_upper_bound=float(radius_nm))
    near = np.flatnonzero(np.isfinite(d))
    bead = k[near]
    bright = (
        df["photons"].to_numpy(np.float64)[near] if "photons" in df.columns else np.zeros(near.size)
    )
    f0, f1 = int(f.min()), int(f.max())
    nf = f1 - f0 + 1
    # brightest row per (bead, frame)
    key = bead * nf + (f[near] - f0)
    o = np.lexsort((-np.nan_to_num(bright, nan=-np.inf), key))
    first = np.r_[True, key[o][1:] != key[o][:-1]]
    rows = near[o][first]
    kk = key[o][first]
    tracks = np.full((2, len(pos), nf), np.nan)
    tracks[0].flat[kk] = x[rows]
    tracks[1].flat[kk] = y[rows]
    with warnings.catch_warnings():  # beads or frames without localizations: all-NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        dev = tracks - np.nanmedian(tracks, axis=2, keepdims=True)
        drift = np.nanmedian(dev, axis=1)  # (2, nf)
    frames = np.arange(f0, f1 + 1)
    for a in range(2):
        good = np.isfinite(drift[a])
        if not good.any():
            raise InputError(None, "the fiducials have no localizations to track")
        drift[a] = np.interp(frames, frames[good], drift[a][good])
        if smooth_frames > 1:
            k_ = int(smooth_frames)
            pad = np.pad(drift[a], k_ // 2, mode="edge")
            drift[a] = np.convolve(pad, np.ones(k_) / k_, mode="valid")[:nf]
    drift = drift.T - drift.T[0]
    is_fid = np.zeros(len(df), bool)
    is_fid[rows] = True  # the tracked (brightest) row of each bead and frame
    out = df.copy()
    out["x_nm"] = x - drift[f - f0, 0]
    out["y_nm"] = y - drift[f - f0, 1]
    if remove_fiducials:
        out = out[~is_fid].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return FiducialDriftResult(
        data=out,
        segment_frames=frames.astype(float),
        drift_nm=drift,
        fiducials_nm=pos,
        is_fiducial=is_fid,
    )
