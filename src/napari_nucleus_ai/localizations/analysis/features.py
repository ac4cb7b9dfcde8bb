"""Per-nucleus chromatin nanostructure features for the cell table.

:func:`nucleus_features` describes the localizations of one nucleus:

``n_localizations``, ``area_um2`` (convex hull), ``density_per_um2``
    How much is labelled, where.
``nena_nm``
    NeNA precision (:mod:`.precision`) when frames are given and enough pairs exist.
``n_clusters``, ``cluster_mean_size``, ``cluster_mean_rg_nm``, ``fraction_clustered``, ``clusters_per_um2``
    DBSCAN (``eps_nm``, ``min_samples``; scikit-learn) clutch-scale clustering.
``ripley_l_<r>nm``
    Besag's ``L(r) - r`` at ``radii_nm`` (0 for complete spatial randomness, > 0 for
    clustering at that scale); ``K(r) = A / (n (n - 1)) * pairs(d < r)`` on at most
    ``max_points`` random localizations, hull area, no edge correction.
``periphery_ratio``, ``radial_1`` .. ``radial_5``
    Radial profile: the radius ``r / R(theta)`` of every localization relative to the
    nuclear edge (``R`` = 98th percentile radius in 36 angular sectors around the
    centroid); density in 5 equal-width rings relative to the mean, and the density
    ratio of the outer 20 % (periphery) to the interior.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError

RADII_NM = (50.0, 100.0, 200.0)
N_RINGS = 5
N_SECTORS = 36


def nucleus_features(
    xy_nm,
    frame=None,
    *,
    eps_nm: float = 30.0,
    min_samples: int = 10,
    radii_nm=RADII_NM,
    max_points: int = 20_000,
    seed: int = 0,
) -> dict:
    """Nanostructure features of one nucleus.

    Parameters
    ----------
    xy_nm : (n, 2) array
        Positions (x, y) in nm.
    frame : (n,) array, optional
        Frames (for NeNA; ``nena_nm`` is NaN without them).
    eps_nm, min_samples : DBSCAN parameters (clutch scale).
    radii_nm : sequence of float
        Ripley's L radii.
    max_points : int
        Ripley's L uses a random subset this large.

    Returns
    -------
    dict
        Feature name -> float (see the module docstring).
    """
    from scipy.spatial import ConvexHull, QhullError, cKDTree

    from napari_nucleus_ai.localizations.analysis.cluster import cluster_labels, cluster_stats

    xy = np.asarray(xy_nm, np.float64).reshape(-1, 2)
    n = len(xy)
    out: dict = {"n_localizations": float(n)}
    nan_keys = [
        "area_um2",
        "density_per_um2",
        "nena_nm",
        "n_clusters",
        "cluster_mean_size",
        "cluster_mean_rg_nm",
        "fraction_clustered",
        "clusters_per_um2",
        *(f"ripley_l_{r:g}nm" for r in radii_nm),
        "periphery_ratio",
        *(f"radial_{i + 1}" for i in range(N_RINGS)),
    ]
    out.update(dict.fromkeys(nan_keys, float("nan")))
    if n < 10:
        return out
    try:
        area = float(ConvexHull(xy).volume)
    except QhullError:
        return out
    area_um2 = area / 1e6
    out["area_um2"] = area_um2
    out["density_per_um2"] = n / area_um2 if area_um2 > 0 else float("nan")
    if frame is not None:
        from napari_nucleus_ai.localizations.analysis.precision import nena

        try:
            res = nena({"x_nm": xy[:, 0], "y_nm": xy[:, 1], "frame": np.asarray(frame)})
            out["nena_nm"] = res.precision_nm
        except InputError:
            pass
    labels = cluster_labels(xy, "dbscan", eps_nm, min_samples)
    st = cluster_stats(xy, labels, hull=False)
    out["n_clusters"] = float(len(st))
    out["fraction_clustered"] = float(np.mean(labels >= 0))
    out["clusters_per_um2"] = len(st) / area_um2
    if len(st):
        out["cluster_mean_size"] = float(st["n_localizations"].mean())
        out["cluster_mean_rg_nm"] = float(st["radius_of_gyration_nm"].mean())
    rng = np.random.default_rng(seed)
    sub = xy if n <= max_points else xy[rng.choice(n, max_points, replace=False)]
    m = len(sub)
    tree = cKDTree(sub)
    counts = tree.count_neighbors(tree, np.asarray(radii_nm, float)) - m  # ordered, no self
    k = area * counts / (m * (m - 1))
    for r, kr in zip(radii_nm, k, strict=True):
        out[f"ripley_l_{r:g}nm"] = float(np.sqrt(kr / np.pi) - r)
    out.update(radial_profile(xy))
    return out


def radial_profile(xy: np.ndarray) -> dict:
    """``periphery_ratio`` and ``radial_1..5`` (ring density / mean density), see module doc."""
    c = np.median(xy, axis=0)
    d = xy - c
    r = np.hypot(d[:, 0], d[:, 1])
    sector = ((np.arctan2(d[:, 1], d[:, 0]) + np.pi) / (2 * np.pi) * N_SECTORS).astype(np.int64)
    sector = np.clip(sector, 0, N_SECTORS - 1)
    o = np.lexsort((r, sector))
    cnt = np.bincount(sector, minlength=N_SECTORS)
    start = np.r_[0, np.cumsum(cnt)[:-1]]
    pick = start + np.floor(0.98 * np.maximum(cnt - 1, 0)).astype(np.int64)
    edge = np.where(cnt > 0, r[o][np.minimum(pick, len(r) - 1)], np.nan)
    rho = r / edge[sector]
    rho = rho[np.isfinite(rho)]
    rho = np.minimum(rho, 1.0)
    # ring i covers rho in [i/5, (i+1)/5): area share ((i+1)^2 - i^2) / 25
    ring = np.minimum((rho * N_RINGS).astype(np.int64), N_RINGS - 1)
    share = np.bincount(ring, minlength=N_RINGS) / max(rho.size, 1)
    i = np.arange(N_RINGS)
    area_share = ((i + 1) ** 2 - i**2) / N_RINGS**2
    out = {f"radial_{k + 1}": float(v) for k, v in enumerate(share / area_share)}
    peri = float(np.mean(rho >= 0.8))
    inner = 1 - peri
    out["periphery_ratio"] = float((peri / 0.36) / (inner / 0.64)) if inner > 0 else float("nan")
    return out


def nucleus_feature_table(localizations, label_column: str = "nucleus", **kw) -> pd.DataFrame:
    """One row of :func:`nucleus_features` per label ``> 0`` (column ``label``).

    ``localizations`` has ``x_nm, y_nm``, ``label_column`` (e.g. the ``nucleus`` column
    of :class:`~napari_nucleus_ai.segment.storm.StormNuclei`) and optionally ``frame``.
    """
    loc = localizations
    if label_column not in loc.columns:
        raise InputError(None, f"localizations have no {label_column!r} column")
    rows = []
    inside = loc[loc[label_column] > 0]
    for label, g in inside.groupby(label_column, sort=True):  # one call per nucleus
        frame = g["frame"].to_numpy() if "frame" in g.columns else None
        feats = nucleus_features(g[["x_nm", "y_nm"]].to_numpy(np.float64), frame, **kw)
        rows.append({"label": int(label), **feats})
    if not rows:
        cols = ["label", *nucleus_features(np.empty((0, 2))).keys()]
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows)


def add_nanostructure(cell_table: pd.DataFrame, localizations, **kw) -> pd.DataFrame:
    """The cell table with :func:`nucleus_feature_table` columns joined on ``label``.

    ``n_localizations`` already in the cell table is kept; the feature columns get the
    prefix ``nano_``.
    """
    feats = nucleus_feature_table(localizations, **kw)
    feats = feats.rename(columns={c: f"nano_{c}" for c in feats.columns if c != "label"})
    return cell_table.merge(feats, on="label", how="left")
