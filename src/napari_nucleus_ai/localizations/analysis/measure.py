"""One measurement run (merge, NeNA, FRC, clustering) for the dock and the command line.

:func:`measure_gen` is a core generator (yields :class:`~napari_nucleus_ai.core.progress.Progress`,
returns a :class:`MeasureResult`); the ``measure`` subcommand and the Localizations dock run
it, so both measure the same way: NeNA on the raw localizations (merging removes
next-frame pairs), FRC and clustering on the merged molecules when merging is asked.
:func:`cluster_points_layer` turns a clustering into a napari Points layer tuple coloured
by cluster (noise grey) with the cluster table joined to every point as ``features``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import Cancelled, InputError
from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.localizations.analysis._common import frame_of

NOISE_RGBA = (0.55, 0.55, 0.55, 0.6)


@dataclass
class MeasureResult:
    """What :func:`measure_gen` measured (``None`` for a step not asked).

    Attributes
    ----------
    summary : dict
        Flat numbers: ``n_localizations``, ``n_merged``, ``nena_nm``, ``nena_pairs``,
        ``frc_nm``, ``n_clusters``, ``fraction_clustered`` (those measured).
    data : DataFrame
        The table FRC and clustering ran on (merged molecules when merged).
    """

    summary: dict
    data: pd.DataFrame
    merge: object = None
    nena: object = None
    frc: object = None
    cluster: object = None
    params: dict = field(default_factory=dict)


def measure_gen(
    df,
    *,
    merge: bool = False,
    radius_nm: float | None = 30.0,
    max_dark_frames: int = 1,
    precision_factor: float | None = None,
    nena: bool = True,
    nena_model: str = "endesfelder",
    nena_range_nm: float = 150.0,
    frc: bool = False,
    frc_pixel_nm: float = 10.0,
    frc_splits: int = 5,
    cluster: str | None = None,
    eps_nm: float = 20.0,
    min_samples: int = 5,
    density_factor: float | None = None,
    cancel=None,
):
    """Measure a localization table; a generator returning :class:`MeasureResult`.

    Parameters
    ----------
    df : DataFrame or LocalizationTable
    merge, radius_nm, max_dark_frames, precision_factor
        :func:`.merge.merge_blinks` before FRC and clustering.
    nena, nena_model, nena_range_nm
        :func:`.precision.nena` (``model``, ``d_max_nm``) on the raw localizations (needs
        ``frame``).
    frc, frc_pixel_nm, frc_splits
        :func:`.resolution.frc`.
    cluster : {None, "dbscan", "hdbscan", "optics"}
    eps_nm, min_samples
        :func:`.cluster.cluster_localizations` parameters.
    density_factor : float, optional
        HDBSCAN / OPTICS noise rule (:func:`.cluster.density_floor`; default 5, 0 = off).
    cancel : callable, optional
        Polled between steps; when it returns True the run stops (:class:`Cancelled`).
    """
    from napari_nucleus_ai.localizations import analysis as qa

    df = frame_of(df)
    steps = [
        s for s, on in (("nena", nena), ("merge", merge), ("frc", frc), ("cluster", cluster)) if on
    ]
    if not steps:
        raise InputError(None, "nothing to measure: choose merging, NeNA, FRC or clustering")
    out = MeasureResult(summary={"n_localizations": len(df)}, data=df)
    out.params = dict(
        merge=merge, nena_model=nena_model, nena_range_nm=nena_range_nm, radius_nm=radius_nm,
        max_dark_frames=max_dark_frames, precision_factor=precision_factor, frc_pixel_nm=frc_pixel_nm, frc_splits=frc_splits,
        cluster=cluster, eps_nm=eps_nm, min_samples=min_samples, density_factor=density_factor,
    )  # fmt: skip
    total = len(steps)

    def step(i, name):
        if cancel is not None and cancel():
            raise Cancelled("cancelled")
        return Progress(i, total, name)

    data = df
    for i, name in enumerate(steps):
        yield step(i, name)
        if name == "nena":
            r = qa.nena(df, model=nena_model, d_max_nm=nena_range_nm)
            out.nena = r
            out.summary.update(nena_nm=r.precision_nm, nena_pairs=r.n_pairs)
        elif name == "merge":
            m = qa.merge_blinks(
                df,
                radius_nm=radius_nm,
                max_dark_frames=max_dark_frames,
                precision_factor=precision_factor,
            )
            out.merge = m
            data = m.data
            out.summary.update(n_merged=m.n_after)
        elif name == "frc":
            f = qa.frc(data, pixel_size_nm=frc_pixel_nm, n_splits=frc_splits)
            out.frc = f
            out.summary.update(frc_nm=f.resolution_nm)
        else:
            extra = {} if density_factor is None else {"density_factor": float(density_factor)}
            c = qa.cluster_localizations(data, cluster, eps_nm, min_samples, **extra)
            out.cluster = c
            out.summary.update(n_clusters=c.n_clusters, fraction_clustered=c.fraction_clustered)
    out.data = data
    yield step(total, "done")
    return out


def cluster_colors(labels: np.ndarray) -> np.ndarray:
    """``(n, 4)`` RGBA: a ``tab20`` colour per cluster id (cycling), noise (-1) grey."""
    from matplotlib import colormaps

    table = np.asarray(colormaps["tab20"].colors, float)
    rgba = np.empty((labels.size, 4))
    rgba[:] = NOISE_RGBA
    inside = labels >= 0
    rgba[inside, :3] = table[labels[inside] % len(table)]
    rgba[inside, 3] = 1.0
    return rgba


def cluster_points_layer(data, result, name: str, meta: dict | None = None, size_nm=None):
    """A Points layer tuple of ``data`` coloured by ``result.labels`` (noise grey).

    ``features`` holds every point's ``cluster`` and its cluster's row of
    ``result.clusters`` (count, centroid, radius of gyration, hull area, density; NaN for
    noise); ``metadata["clusters"]`` is the cluster table itself.
    """
    from napari_nucleus_ai.localizations.layers import points_layer

    data = frame_of(data).reset_index(drop=True)
    labels = np.asarray(result.labels)
    if labels.shape != (len(data),):
        raise InputError(None, f"{labels.size} cluster labels for {len(data)} localizations")
    stats = result.clusters.rename(columns=lambda c: c if c == "cluster" else f"cluster_{c}")
    feats = pd.DataFrame({"cluster": labels}).merge(stats, on="cluster", how="left")
    cols = [c for c in ("z_nm", "y_nm", "x_nm", "frame", "precision_nm") if c in data]
    feats = pd.concat([data[cols], feats], axis=1)
    meta = {**(meta or {}), "clusters": result.clusters, "cluster_params": dict(result.params)}
    coords, kwargs, kind = points_layer(feats, name, meta, size_nm=size_nm)
    kwargs["face_color"] = cluster_colors(labels)
    return coords, kwargs, kind
