"""Keep a cell table in step with edited labels (paint / erase / fill), Qt-free.

Measured columns are recomputed from the labels; every other column
(``class``, ``p_*``, ``uncertainty``, corrections...) is carried over by label
id, so an annotator's fix to a mask never loses a prediction. New objects get
empty prediction columns; erased ones leave the table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def measured_columns(df: pd.DataFrame) -> set[str]:
    from napari_nucleus_ai.cells import base_columns

    cols = set(base_columns(2)) | set(base_columns(3))
    cols |= {"perimeter", "eccentricity", "solidity", "mean_intensity"}
    cols |= {c for c in df.columns if c.startswith("mean_")}
    return cols


def refresh_table(
    labels: np.ndarray,
    old: pd.DataFrame | None,
    intensity: np.ndarray | None = None,
    *,
    scale=1.0,
    translate=0.0,
    unit: str = "px",
    per_frame: bool = False,
) -> pd.DataFrame:
    """The cell table of ``labels`` with ``old``'s non-measured columns kept per label.

    ``per_frame``: ``labels`` is (T, Y, X) and each time point is measured in 2D
    (a ``t`` column says which), as the time-lapse tables are.
    """
    from napari_nucleus_ai.cells import measure_cells

    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int64)
    if intensity is not None and np.asarray(intensity).shape[: labels.ndim] != labels.shape:
        intensity = None
    source = None
    if old is not None and "source" in old.columns and len(old):
        source = old["source"].dropna().iloc[0] if old["source"].notna().any() else None
    if per_frame and labels.ndim == 3:
        sc = np.broadcast_to(np.asarray(scale, float), (3,))[-2:]
        tr = np.broadcast_to(np.asarray(translate, float), (3,))[-2:]
        parts = []
        for t in range(labels.shape[0]):
            inten = None if intensity is None else np.asarray(intensity[t])
            df = measure_cells(labels[t], inten, scale=sc, translate=tr, unit=unit, source=source)
            df.insert(1, "t", t)
            parts.append(df)
        new = pd.concat(parts, ignore_index=True).drop_duplicates("label")
    else:
        new = measure_cells(
            labels, intensity, scale=scale, translate=translate, unit=unit, source=source
        )
    if old is None or not len(old) or "label" not in old.columns:
        return new
    skip = measured_columns(old) | {"index", "source", "t"}
    keep = [c for c in old.columns if c not in skip]
    if not keep:
        return new
    extra = old[["label", *keep]].drop_duplicates("label")
    return new.merge(extra, on="label", how="left")
