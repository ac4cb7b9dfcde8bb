"""Nanoscale quantification of localization tables (Qt-free, vectorised).

Modules
-------
:mod:`.merge`
    :func:`merge_blinks` - one molecule from its blinks across frames (as Picasso ``link``).
:mod:`.precision`
    :func:`nena` - NeNA localization precision (Endesfelder et al. 2014) with its fit.
:mod:`.resolution`
    :func:`frc` - FRC resolution (Nieuwenhuizen et al. 2013), 1/7 threshold, random halves.
:mod:`.cluster`
    :func:`cluster_localizations` - scikit-learn DBSCAN / HDBSCAN / OPTICS + per-cluster stats.
:mod:`.fiducial`
    :func:`fiducial_drift` - drift from bright persistent beads.
:mod:`.measure`
    :func:`measure_gen` - one run of the above for the dock and the ``measure`` command;
    :func:`cluster_points_layer` - a Points layer coloured by cluster.
:mod:`.features`
    :func:`nucleus_features`, :func:`nucleus_feature_table`, :func:`add_nanostructure` -
    per-nucleus chromatin nanostructure for the cell table.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "MergeResult": ".merge",
    "merge_blinks": ".merge",
    "NenaResult": ".precision",
    "nena": ".precision",
    "next_frame_distances": ".precision",
    "nearest_next_frame_distances": ".precision",
    "FrcResult": ".resolution",
    "frc": ".resolution",
    "ClusterResult": ".cluster",
    "cluster_localizations": ".cluster",
    "cluster_labels": ".cluster",
    "cluster_stats": ".cluster",
    "FiducialDriftResult": ".fiducial",
    "fiducial_drift": ".fiducial",
    "find_fiducials": ".fiducial",
    "MeasureResult": ".measure",
    "measure_gen": ".measure",
    "cluster_points_layer": ".measure",
    "nucleus_features": ".features",
    "nucleus_feature_table": ".features",
    "add_nanostructure": ".features",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)
