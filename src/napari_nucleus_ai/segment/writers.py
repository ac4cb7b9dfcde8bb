"""Write label images and cell tables (Qt-free); also the npe2 writer entry points.

``<stem>_labels.tif`` is a uint32 TIFF of the label image (same height and width
as the source), with the pixel size in its resolution tags when known;
``<stem>_cells.csv`` is the cell table (:mod:`napari_nucleus_ai.cells`).
Both are written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.units import NM_PER

_UNIT_CM = {u: NM_PER[u] * 1e-7 for u in ("um", "nm")}


def write_labels_tif(
    path, labels: np.ndarray, scale=None, unit: str = "px", translate=None
) -> Path:
    """Write ``labels`` as a uint32 (zlib-compressed) TIFF, atomically.

    The pixel size goes into the resolution tags; ``scale`` and ``translate`` (napari's,
    in ``unit``) into the shaped-TIFF metadata (JSON description), so the labels can be
    placed back on their image exactly (ImageJ's own format has no uint32).
    """
    import tifffile

    from napari_nucleus_ai.core.files import atomic_path

    arr = np.asarray(labels)
    if arr.ndim not in (2, 3) or not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
        raise InputError(path, f"labels must be a 2D/3D integer array, got {arr.dtype} {arr.shape}")
    if arr.size and int(arr.min()) < 0:
        raise InputError(path, "labels must not be negative")
    kwargs = {}
    if scale is not None and unit in _UNIT_CM:
        sy, sx = (float(s) for s in list(scale)[-2:])
        # resolution = pixels per centimetre
        kwargs["resolution"] = (1.0 / (sx * _UNIT_CM[unit]), 1.0 / (sy * _UNIT_CM[unit]))
        kwargs["resolutionunit"] = "CENTIMETER"
    meta = {"axes": "TYX" if arr.ndim == 3 else "YX", "unit": unit}
    if scale is not None:
        meta["scale"] = [float(s) for s in scale]
    if translate is not None:
        meta["translate"] = [float(t) for t in translate]
    path = Path(path)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, arr.astype(np.uint32, copy=False), compression="zlib", metadata=meta, **kwargs
        )
    return path


def cells_path_for(labels_path) -> Path:
    p = Path(labels_path)
    stem = p.stem[: -len("_labels")] if p.stem.endswith("_labels") else p.stem
    return p.with_name(f"{stem}_cells.csv")


def _table_from(data, meta: dict) -> pd.DataFrame:
    from napari_nucleus_ai.cells import from_features, measure_cells

    feats = meta.get("features")
    if feats is not None and len(pd.DataFrame(feats)) and "label" in pd.DataFrame(feats).columns:
        return from_features(pd.DataFrame(feats))
    arr = np.asarray(data[0] if isinstance(data, list) else data)
    scale = meta.get("scale")
    translate = meta.get("translate")
    unit = (meta.get("metadata") or {}).get("unit", "px")
    return measure_cells(
        arr,
        scale=scale if scale is not None else 1.0,
        translate=translate if translate is not None else 0.0,
        unit=unit,
    )


def write_labels_layer(path: str, data, meta: dict) -> list[str]:
    """npe2 writer for a Labels layer.

    ``*.tif``/``*.tiff``: the labels (uint32) and the cell table beside them as
    ``<stem>_cells.csv``; ``*.csv``: the cell table only (the layer's ``features``,
    or measured from the labels when it has none).
    """
    from napari_nucleus_ai.cells import write_cell_table

    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if isinstance(data, list):  # multiscale labels: the full resolution
        data = data[0]
    table = _table_from(data, meta)
    if suffix == ".csv":
        write_cell_table(table, path)
        return [path]
    if suffix not in (".tif", ".tiff"):
        path = path + ".tif"
    unit = (meta.get("metadata") or {}).get("unit", "px")
    write_labels_tif(path, np.asarray(data), meta.get("scale"), unit, meta.get("translate"))
    csv = cells_path_for(path)
    write_cell_table(table, csv)
    return [path, os.fspath(csv)]
