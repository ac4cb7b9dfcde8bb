"""Blink merging: one molecule from the localizations of its consecutive on-frames.

As Picasso's ``link`` (and ThunderSTORM's merging): a localization continues the
chain of an earlier one when it lies within ``radius_nm`` (or ``precision_factor``
times the larger of the two precisions) and at most ``max_dark_frames`` frames
without a localization separate them. Each localization links to its first
candidate in frame order; a candidate taken by several keeps the earliest; chains
are the connected components of these links (scipy.sparse.csgraph). Candidates
(the nearest localization of each later frame within reach) come from KD-tree queries
on ``(x, y, frame * s)``, one per frame gap, so there is no Python loop over
localizations.

Merged molecules have precision-weighted positions (weights ``1 / precision^2``;
equal weights when the precision is unknown), summed photons, the precision
``sqrt(1 / sum(weights))``, the first frame, ``n_merged`` (localizations) and
``len_frames`` (first to last frame).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.analysis._common import frame_of


@dataclass
class MergeResult:
    """Merged molecules and the molecule of every input row.

    Attributes
    ----------
    data : DataFrame
        One row per molecule: ``x_nm, y_nm, [z_nm], frame, photons, precision_nm,
        channel, n_merged, len_frames``.
    labels : (n,) int64
        Molecule index (row of ``data``) of every input localization, input order.
    n_before, n_after : int
        Localization and molecule counts.
    """

    data: pd.DataFrame
    labels: np.ndarray
    n_before: int
    n_after: int
    info: dict = field(default_factory=dict)


def link_pairs(x, y, frame, radius_nm, max_dark_frames, group=None):
    """Candidate links ``(a, b)``: ``b`` is the nearest localization within ``radius_nm`` in
    frame ``frame[a] + g``, for every gap ``g`` in ``1 .. max_dark_frames + 1``.

    One KD-tree on ``(x, y, frame * s)`` with ``s > radius`` (other frames are out of reach)
    and one nearest-neighbour query per gap (threaded). Returns int64 arrays ``a, b`` and
    the distances.
    """
    from scipy.spatial import cKDTree

    r = float(radius_nm)
    s = 3.0 * r
    cols = [x, y, frame.astype(np.float64) * s]
    if group is not None:
        cols.append(np.asarray(group, np.float64) * 10.0 * s)
    pts = np.column_stack(cols)
    tree = cKDTree(pts, balanced_tree=False, compact_nodes=False)  # faster build
    a_all, b_all, d_all = [], [], []
    for g in range(1, int(max_dark_frames) + 2):
        q = pts.copy()
        q[:, 2] += g * s
        d, j = tree.query(q, k=1, distance_upper_bound=r, workers=-1)
        hit = np.flatnonzero(np.isfinite(d))
        a_all.append(hit)
        b_all.append(j[hit].astype(np.int64))
        d_all.append(d[hit])
    return np.concatenate(a_all), np.concatenate(b_all), np.concatenate(d_all)


def chains(n, a, b) -> np.ndarray:
    """Molecule labels (0..m-1, in order of first row) of greedy chains through links.

    Rows must be sorted by frame (then any order). Each ``a`` keeps its first ``b``,
    each ``b`` its first ``a``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if a.size:
        o = np.lexsort((b, a))
        a, b = a[o], b[o]
        first = np.r_[True, a[1:] != a[:-1]]
        a, b = a[first], b[first]  # every row continues to its earliest candidate
        o = np.lexsort((a, b))
        a, b = a[o], b[o]
        first = np.r_[True, b[1:] != b[:-1]]
        a, b = a[first], b[first]  # every row continues at most one chain
    g = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(n, n))
    _, lab = connected_components(g, directed=True, connection="weak")
    # renumber by first occurrence
    _, first_idx, inv = np.unique(lab, return_index=True, return_inverse=True)
    rank = np.empty(first_idx.size, np.int64)
    rank[np.argsort(first_idx, kind="stable")] = np.arange(first_idx.size)
    return rank[inv]


def merge_blinks(
    df,
    radius_nm: float | None = 30.0,
    max_dark_frames: int = 1,
    precision_factor: float | None = None,
) -> MergeResult:
    """Merge the blinks of one molecule across frames into one localization.

    Parameters
    ----------
    df : DataFrame or LocalizationTable
        ``x_nm, y_nm, frame`` (+ ``photons, precision_nm, channel, z_nm`` when present).
    radius_nm : float, optional
        Largest distance between linked localizations (default 30 nm).
    max_dark_frames : int
        Frames without a localization that a chain may bridge (0 = consecutive only).
    precision_factor : float, optional
        Instead of a fixed radius: link within ``k * max(precision_a, precision_b)``.
        Rows without a precision do not link.

    Returns
    -------
    MergeResult
    """
    df = frame_of(df)
    if "frame" not in df.columns:
        raise InputError(None, "merging needs a frame column")
    if max_dark_frames < 0:
        raise InputError(None, f"max dark frames must be >= 0 (got {max_dark_frames})")
    n = len(df)
    order = np.argsort(df["frame"].to_numpy(), kind="stable")
    x = df["x_nm"].to_numpy(np.float64)[order]
    y = df["y_nm"].to_numpy(np.float64)[order]
    frame = df["frame"].to_numpy(np.int64)[order]
    prec = (
        df["precision_nm"].to_numpy(np.float64)[order]
        if "precision_nm" in df.columns
        else np.full(n, np.nan)
    )
    group = None
    if "channel" in df.columns and df["channel"].nunique() > 1:
        group = pd.factorize(df["channel"].to_numpy()[order])[0]
    if precision_factor is not None:
        k = float(precision_factor)
        good = prec[np.isfinite(prec)]
        if not good.size or k <= 0:
            raise InputError(None, "precision-based merging needs positive precisions and k > 0")
        search = k * float(good.max())
        a, b, d = link_pairs(x, y, frame, search, max_dark_frames, group)
        keep = d <= k * np.fmax(prec[a], prec[b])
        a, b = a[keep], b[keep]
        radius_used = None
    else:
        if radius_nm is None or not radius_nm > 0:
            raise InputError(None, f"merge radius must be positive (got {radius_nm})")
        a, b, _ = link_pairs(x, y, frame, radius_nm, max_dark_frames, group)
        radius_used = float(radius_nm)
    lab_sorted = chains(n, a, b) if n else np.empty(0, np.int64)
    m = int(lab_sorted.max()) + 1 if n else 0
    cols = {c: df[c].to_numpy()[order] for c in ("z_nm", "photons", "channel") if c in df}
    data = _combine(cols, lab_sorted, m, x, y, prec, frame)
    labels = np.empty(n, np.int64)
    labels[order] = lab_sorted
    info = {
        "n_before": n,
        "n_after": m,
        "radius_nm": radius_used,
        "precision_factor": precision_factor,
        "max_dark_frames": int(max_dark_frames),
    }
    data.attrs = {**df.attrs, "merge": info}
    return MergeResult(data, labels, n, m, info)


def _combine(cols, lab, m, x, y, prec, frame) -> pd.DataFrame:
    count = np.bincount(lab, minlength=m).astype(np.float64)
    w = 1.0 / prec**2
    has_w = np.isfinite(w) & (w > 0)
    w = np.where(has_w, w, 0.0)
    wsum = np.bincount(lab, w, m)
    use_w = wsum > 0
    # molecules with some unknown precision fall back to plain means

    def mean(v):
        wm = np.bincount(lab, w * np.where(has_w, v, 0.0), m) / np.where(use_w, wsum, 1)
        return np.where(use_w, wm, np.bincount(lab, v, m) / count)

    out = {"x_nm": mean(x), "y_nm": mean(y)}
    if "z_nm" in cols:
        out["z_nm"] = mean(cols["z_nm"].astype(np.float64))
    o = np.argsort(lab, kind="stable")  # rows are frame-sorted: first row = first frame
    starts = np.r_[0, np.flatnonzero(np.diff(lab[o])) + 1]
    first = frame[o][starts]
    last = frame[o][np.r_[starts[1:], lab.size] - 1]
    out["frame"] = first
    if "photons" in cols:
        out["photons"] = np.bincount(lab, np.nan_to_num(cols["photons"].astype(np.float64)), m)
    out["precision_nm"] = np.where(use_w, 1.0 / np.sqrt(np.where(use_w, wsum, 1)), np.nan)
    if "channel" in cols:
        out["channel"] = cols["channel"][o][starts]
    out["n_merged"] = count.astype(np.int64)
    out["len_frames"] = (last - first + 1).astype(np.int64)
    return pd.DataFrame(out)
