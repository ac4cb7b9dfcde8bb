"""Clustering of localizations with scikit-learn (DBSCAN, HDBSCAN, OPTICS) + cluster stats.

DBSCAN labels are scikit-learn's, unchanged (``-1`` = noise). HDBSCAN and OPTICS have no
density floor of their own: a uniform background forms clusters too, and the clusters of real
structures take in a halo of background localizations. They get one noise rule,
:func:`density_floor`: a localization whose local density (``min_samples``-th neighbour) is
below ``density_factor`` x the mean density of the field becomes noise, and so does a cluster
left with fewer than its smallest size (default factor 5; ``density_factor=0`` keeps
scikit-learn's labels). Per cluster, with
``numpy.bincount`` over the labels: localization count, centroid, radius of gyration
``sqrt(mean |r - centroid|^2)``, convex-hull area (2D; volume in 3D; scipy's Qhull per
cluster) and density ``count / area``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.analysis._common import coords, region_mask

METHODS = ("dbscan", "hdbscan", "optics")
DENSITY_FACTOR = 5.0  # HDBSCAN / OPTICS noise rule (docs/quantification.md)


@dataclass
class ClusterResult:
    """Labels of every localization and one row per cluster.

    Attributes
    ----------
    labels : (n,) int64
        Cluster of every input row (-1 = noise; rows outside ``region`` are -1 too).
    clusters : DataFrame
        ``cluster, n_localizations, x_nm, y_nm, [z_nm], radius_of_gyration_nm,
        area_nm2`` (``volume_nm3`` in 3D), ``density_per_um2`` (``per_um3``).
    """

    labels: np.ndarray
    clusters: pd.DataFrame
    method: str
    params: dict

    @property
    def n_clusters(self) -> int:
        return len(self.clusters)

    @property
    def fraction_clustered(self) -> float:
        return float(np.mean(self.labels >= 0)) if self.labels.size else 0.0


def cluster_labels(
    xy: np.ndarray, method: str = "dbscan", eps_nm: float = 20.0, min_samples: int = 5, **kw
) -> np.ndarray:
    """scikit-learn labels for ``(n, d)`` coordinates in nm.

    ``dbscan``: ``eps_nm``, ``min_samples`` (labels unchanged unless a ``density_factor``
    is given). ``hdbscan``:
    ``min_cluster_size`` (default ``min_samples``), ``min_samples``,
    ``cluster_selection_epsilon`` (default 0). ``optics``: ``min_samples``, ``max_eps``
    (default ``5 * eps_nm``) and DBSCAN-style extraction at ``eps_nm``
    (``cluster_method="xi"`` with ``xi`` too). HDBSCAN and OPTICS labels then pass
    :func:`density_floor` with ``density_factor`` (default :data:`DENSITY_FACTOR`; 0 = off).
    """
    from sklearn import cluster as skc

    method = method.lower()
    if method not in METHODS:
        raise InputError(None, f"unknown clustering method {method!r}; use one of {METHODS}")
    if xy.shape[0] == 0:
        return np.empty(0, np.int64)
    if method == "dbscan":
        est = skc.DBSCAN(
            eps=float(eps_nm), min_samples=int(min_samples), n_jobs=kw.get("n_jobs", -1)
        )
    elif method == "hdbscan":
        est = skc.HDBSCAN(
            min_cluster_size=int(kw.get("min_cluster_size", max(int(min_samples), 2))),
            min_samples=int(min_samples),
            cluster_selection_epsilon=float(kw.get("cluster_selection_epsilon", 0.0)),
            copy=True,
        )
    else:
        cm = kw.get("cluster_method", "dbscan")
        extra = {"eps": float(eps_nm)} if cm == "dbscan" else {"xi": float(kw.get("xi", 0.05))}
        est = skc.OPTICS(
            min_samples=int(min_samples),
            max_eps=float(kw.get("max_eps", 5 * float(eps_nm))),
            cluster_method=cm,
            n_jobs=kw.get("n_jobs"),
            **extra,
        )
    labels = est.fit_predict(xy).astype(np.int64)
    factor = float(kw.get("density_factor", 0.0 if method == "dbscan" else DENSITY_FACTOR))
    if factor > 0:
        min_size = int(kw.get("min_cluster_size", max(int(min_samples), 2)))
        labels = density_floor(xy, labels, int(min_samples), factor, min_size)
    return labels


def density_floor(
    xy: np.ndarray, labels: np.ndarray, k: int, factor: float = DENSITY_FACTOR, min_size: int = 2
) -> np.ndarray:
    """Labels with the localizations below a density floor turned into noise.

    The local density of a localization is ``k / (pi r_k^2)`` (3D: ``k / (4/3 pi r_k^3)``),
    ``r_k`` the distance to its ``k``-th neighbour; the floor is ``factor`` x the mean
    density of the field, ``n / convex-hull area`` (volume) of all ``xy``. Localizations
    below it become noise (-1), then clusters left with fewer than ``min_size``; the other
    clusters are numbered ``0..m-1`` in their order. For a uniform (Poisson) background of
    density ``rho``, ``pi rho r_k^2`` follows Gamma(k, 1), so a background localization
    passes a floor of ``f rho`` with probability ``P(Gamma(k, 1) < k / f)``: 7e-7 for
    ``k = 15, f = 5``, 0.004 for ``k = 5``. The field mean is at least the background
    density, so the floor is at least that strict.

    Parameters
    ----------
    xy : (n, d) float
    labels : (n,) int
        Cluster ids, -1 = noise.
    k : int
        Neighbour rank for the local density (``min_samples``).
    factor : float
        Floor in units of the field's mean density.
    min_size : int
        Smallest cluster kept.

    Returns
    -------
    (n,) int64
    """
    from scipy.spatial import ConvexHull, QhullError, cKDTree

    labels = np.asarray(labels, np.int64).copy()
    n, dims = xy.shape
    if n <= max(k, dims + 1) or not (labels >= 0).any():
        return labels
    try:
        field = n / ConvexHull(xy).volume
    except QhullError:  # degenerate field (collinear points): no area to compare with
        return labels
    d, _ = cKDTree(xy).query(xy, k=k + 1, workers=-1)  # the point itself is the first
    r = d[:, -1]
    ball = np.pi * r**2 if dims == 2 else 4.0 / 3.0 * np.pi * r**3
    with np.errstate(divide="ignore"):
        local = np.where(ball > 0, k / ball, np.inf)
    labels[local < factor * field] = -1
    keep = labels >= 0
    if not keep.any():
        return labels
    ids, inverse, counts = np.unique(labels[keep], return_inverse=True, return_counts=True)
    new_id = np.where(counts >= min_size, np.cumsum(counts >= min_size) - 1, -1)
    labels[keep] = new_id[inverse]
    return labels


def cluster_stats(xy: np.ndarray, labels: np.ndarray, hull: bool = True) -> pd.DataFrame:
    """One row per cluster id ``>= 0``: count, centroid, radius of gyration, hull size, density."""
    dims = xy.shape[1]
    names = ["x_nm", "y_nm", "z_nm"][:dims]
    keep = labels >= 0
    lab = labels[keep]
    pts = xy[keep]
    m = int(lab.max()) + 1 if lab.size else 0
    count = np.bincount(lab, minlength=m).astype(np.float64)
    out = {"cluster": np.arange(m), "n_localizations": count.astype(np.int64)}
    sq = np.zeros(m)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i, name in enumerate(names):
            c = np.bincount(lab, pts[:, i], m) / count
            out[name] = c
            sq += np.bincount(lab, (pts[:, i] - c[lab]) ** 2, m)
        out["radius_of_gyration_nm"] = np.sqrt(sq / count)
    size_name = "area_nm2" if dims == 2 else "volume_nm3"
    dens_name = "density_per_um2" if dims == 2 else "density_per_um3"
    size = np.full(m, np.nan)
    if hull and m:
        size = hull_sizes(pts, lab, m)
    out[size_name] = size
    unit = 1e6 if dims == 2 else 1e9
    with np.errstate(invalid="ignore", divide="ignore"):
        out[dens_name] = np.where(size > 0, count / (size / unit), np.nan)
    df = pd.DataFrame(out)
    return df[count > 0].reset_index(drop=True)


def hull_sizes(pts: np.ndarray, lab: np.ndarray, m: int) -> np.ndarray:
    """Convex-hull area (2D) or volume (3D) per cluster (0 for degenerate clusters)."""
    from scipy.spatial import ConvexHull, QhullError

    order = np.argsort(lab, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(lab, minlength=m))]
    sorted_pts = pts[order]
    out = np.zeros(m)
    for k in np.flatnonzero(np.diff(bounds) > pts.shape[1]):  # one Qhull call per cluster
        try:
            out[k] = ConvexHull(sorted_pts[bounds[k] : bounds[k + 1]]).volume
        except QhullError:
            out[k] = 0.0
    return out


def cluster_localizations(
    df,
    method: str = "dbscan",
    eps_nm: float = 20.0,
    min_samples: int = 5,
    dims: int | None = None,
    region=None,
    hull: bool = True,
    **kw,
) -> ClusterResult:
    """Cluster localizations (2D, or 3D when ``z_nm`` exists and ``dims`` is not 2).

    Parameters
    ----------
    df : DataFrame or LocalizationTable
    method : {"dbscan", "hdbscan", "optics"}
    eps_nm : float
        DBSCAN radius (OPTICS extraction radius).
    min_samples : int
        Core-point neighbourhood size (HDBSCAN: also the smallest cluster by default).
    dims : {2, 3}, optional
    region : optional
        As in :func:`.precision.nena`.
    hull : bool
        Compute convex hulls (one Qhull call per cluster).
    **kw
        Passed to :func:`cluster_labels` (``min_cluster_size``, ``density_factor``, ...).

    Returns
    -------
    ClusterResult
    """
    xy = coords(df, dims)
    mask = region_mask(df, region)
    labels = np.full(len(xy), -1, np.int64)
    labels[mask] = cluster_labels(xy[mask], method, eps_nm, min_samples, **kw)
    stats = cluster_stats(xy, labels, hull=hull)
    params = {"eps_nm": float(eps_nm), "min_samples": int(min_samples), **kw}
    if method.lower() != "dbscan":
        params.setdefault("density_factor", DENSITY_FACTOR)
    return ClusterResult(labels, stats, method.lower(), params)
