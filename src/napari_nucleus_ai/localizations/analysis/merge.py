"""Blink merging: one molecule from the localizations of its consecutive on-frames.

As Picasso's ``link`` (and ThunderSTORM's merging): a localization continues the
chain of an earlier one when it lies within ``radius_nm`` (or ``precision_factor``
times the larger of the two precisions) and at most ``max_dark_frames`` frames
without a localization separate them. Each localization links to its first
candidate in frame order (the nearest one within reach in the first later frame that has
one); a candidate taken by several keeps the earliest; chains follow these links
(pointer jumping). Candidates come from a sort-merge join on a grid of ``radius_nm``
cells (``numpy.searchsorted`` on sorted ``(frame, cell)`` keys, one pass per frame gap),
so there is no Python loop over localizations.

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
    """Links ``(a, b)``: ``b`` is the nearest localization within ``radius_nm`` in the first
    frame ``frame[a] + g`` (``g`` in ``1 .. max_dark_frames + 1``) that has one.

    A sort-merge join on a grid of ``radius_nm`` cells: rows are sorted by
    ``(group, frame, cell row, cell column)``; the candidates of a row in frame ``f + g``
    are three runs of that order (cell rows ``cy - 1 .. cy + 1``, columns ``cx - 1 ..
    cx + 1``), found with ``numpy.searchsorted``; rows linked at gap ``g`` are not
    searched at larger gaps. Rows must be sorted by frame. Returns int64 ``a, b`` and the
    distances.
    """
    n = x.size
    empty = np.empty(0, np.int64)
    if n == 0:
        return empty, empty, np.empty(0)
    r = float(radius_nm)
    cx = np.floor((x - x.min()) / r).astype(np.int64) + 1  # margin: cx - 1 >= 0
    cy = np.floor((y - y.min()) / r).astype(np.int64) + 1
    nx, ny = int(cx.max()) + 2, int(cy.max()) + 2
    f = frame.astype(np.int64) - int(frame.min())
    ng = 1
    if group is not None:
        group = np.asarray(group, np.int64)
        ng = int(group.max()) + 1
    n_f = int(f.max()) + int(max_dark_frames) + 2
    if float(n_f) * ng * ny * nx >= 2**62:
        raise InputError(None, "merge radius too small for this field of view")
    frame_step = ng * ny * nx
    key = f * frame_step + cy * nx + cx
    if group is not None:
        key += group * (ny * nx)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    a_all, b_all, d_all = [], [], []
    todo = order  # rows still without a link, in key order (sorted queries are faster)
    r2 = r * r
    for g in range(1, int(max_dark_frames) + 2):
        if not todo.size:
            break
        base = key[todo] + g * frame_step
        # one run from cell (cy - 1, cx - 1) to (cy + 1, cx + 1): a strip of three cell rows
        lo = np.searchsorted(skey, base - nx - 1, side="left")
        hi = np.searchsorted(skey, base + nx + 1, side="right")
        if (hi - lo).sum() > 8 * todo.size + 1000:  # dense frames: three short runs instead
            runs = []
            for dy in (-1, 0, 1):
                k0 = base + dy * nx
                runs.append(
                    (
                        np.searchsorted(skey, k0 - 1, side="left"),
                        np.searchsorted(skey, k0 + 1, side="right"),
                    )
                )
        else:
            runs = [(lo, hi)]
        qa, qb = [], []
        for lo, hi in runs:
            has = np.flatnonzero(hi > lo)
            if not has.size:
                continue
            lo, cnt = lo[has], (hi - lo)[has]
            rows = np.repeat(todo[has], cnt)
            # positions lo .. hi-1 of every run, concatenated
            off = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            qa.append(rows)
            qb.append(order[np.repeat(lo, cnt) + off])
        if not qa:
            continue
        qa, qb = np.concatenate(qa), np.concatenate(qb)
        d2 = (x[qa] - x[qb]) ** 2 + (y[qa] - y[qb]) ** 2
        ok = d2 <= r2
        qa, qb, d2 = qa[ok], qb[ok], d2[ok]
        if not qa.size:
            continue
        best = np.full(n, np.inf)
        np.minimum.at(best, qa, d2)
        near = d2 == best[qa]
        qa, qb, d2 = qa[near], qb[near], d2[near]
        # ties: keep the first candidate of each row
        if (np.bincount(qa, minlength=n)[qa] > 1).any():
            first = _first_of(qa)
            qa, qb, d2 = qa[first], qb[first], d2[first]
        a_all.append(qa)
        b_all.append(qb)
        d_all.append(np.sqrt(d2))
        linked = np.zeros(n, bool)
        linked[qa] = True
        todo = todo[~linked[todo]]
    if not a_all:
        return empty, empty, np.empty(0)
    return np.concatenate(a_all), np.concatenate(b_all), np.concatenate(d_all)


def _first_of(v):
    _, idx = np.unique(v, return_index=True)
    keep = np.zeros(v.size, bool)
    keep[idx] = True
    return keep


def chains(n, a, b) -> np.ndarray:
    """Molecule labels (0..m-1, in order of first row) of greedy chains through links.

    Rows must be sorted by frame, and every ``a`` has at most one ``b`` (later than ``a``);
    each ``b`` keeps its first ``a``. Chains are followed by pointer jumping (``log2`` of
    the longest chain gathers), no Python loop over rows.
    """
    prev = np.full(n, -1, np.int64)
    if a.size:
        first_a = np.full(n, n, np.int64)
        np.minimum.at(first_a, b, a)
        keep = first_a[b] == a
        prev[b[keep]] = a[keep]
    root = np.where(prev < 0, np.arange(n), prev)
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    is_root = prev < 0
    rank = np.cumsum(is_root) - 1
    return rank[root]


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
