"""The cell table: one row per object, keyed by label id.

This is the single data contract between readers, segmentation, classifiers,
the review dock, the CLI and CSV files. It travels as a napari Labels layer's
``features`` (with an ``index`` column so napari maps label ids to rows) and as
CSV.

Columns
-------
label : int
    The object's id in the label image (> 0, unique).
centroid_<axis>, bbox_<axis>0, bbox_<axis>1 : float
    Centroid and bounding box (half-open) in physical units, i.e. pixel
    coordinates times the layer ``scale`` plus its ``translate``. Axes are
    ``y, x`` for 2D and ``z, y, x`` for 3D labels.
unit : str
    The physical unit of those columns (``"um"``, ``"nm"`` or ``"px"``).
area : float
    Pixel count times the pixel area (``unit``**2; voxel volume in 3D).
perimeter, eccentricity, solidity : float
    2D shape measurements (perimeter in ``unit``).
mean_intensity or mean_r, mean_g, mean_b : float
    Mean of the intensity image inside the object, when one is given.
class : str, p_<class> : float, uncertainty : float, source : str
    Added by classifiers (see :func:`join_predictions`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError

UNITS = ("nm", "um", "px")
AXES_2D = ("y", "x")
AXES_3D = ("z", "y", "x")
PREDICTION_COLUMNS = ("class", "uncertainty", "source")
CLASS_UNIDENTIFIED = "unidentified"
CLASS_ARTEFACT = "artefact"


def axes_for(ndim: int) -> tuple[str, ...]:
    """Axis names used in column names for ``ndim``-dimensional labels."""
    if ndim == 2:
        return AXES_2D
    if ndim == 3:
        return AXES_3D
    raise InputError(None, f"labels must be 2D or 3D, got {ndim}D")


def base_columns(ndim: int = 2) -> list[str]:
    """The columns every cell table has, in order."""
    axes = axes_for(ndim)
    cols = ["label"]
    cols += [f"centroid_{a}" for a in axes]
    cols += [f"bbox_{a}0" for a in axes] + [f"bbox_{a}1" for a in axes]
    cols += ["unit", "area"]
    return cols


def empty_table(ndim: int = 2, unit: str = "px") -> pd.DataFrame:
    """A cell table with no rows but all base columns."""
    df = pd.DataFrame({c: pd.Series(dtype=float) for c in base_columns(ndim)})
    df["label"] = df["label"].astype(np.int64)
    df["unit"] = df["unit"].astype(object)
    return df


def _as_vector(value, ndim: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value if value is not None else 1.0, float), (ndim,))
    if not np.all(np.isfinite(arr)):
        raise InputError(None, f"{name} must be finite, got {value!r}")
    return arr.copy()


def measure_cells(
    labels: np.ndarray,
    intensity: np.ndarray | None = None,
    *,
    scale: Sequence[float] | float = 1.0,
    translate: Sequence[float] | float = 0.0,
    unit: str = "px",
    source: str | None = None,
) -> pd.DataFrame:
    """Measure every object in a label image into a cell table.

    Parameters
    ----------
    labels : (Y, X) or (Z, Y, X) int array
        Label image, 0 = background.
    intensity : array, optional
        Image of the same spatial shape, grey or with a trailing channel axis
        (RGB gives ``mean_r, mean_g, mean_b``; other channel counts
        ``mean_c0, mean_c1, ...``).
    scale, translate : float or sequence
        Physical pixel size and offset per axis, as in the napari layer.
    unit : {"um", "nm", "px"}
        Unit of ``scale`` and ``translate``.
    source : str, optional
        Recorded in a ``source`` column (e.g. the image file).

    Returns
    -------
    pandas.DataFrame
        One row per label, sorted by label.
    """
    from skimage.measure import regionprops_table

    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise InputError(None, f"labels must be 2D or 3D, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if labels.dtype == bool:
            labels = labels.astype(np.uint8)
        else:
            raise InputError(None, f"labels must be integers, got {labels.dtype}")
    if unit not in UNITS:
        raise InputError(None, f"unit must be one of {UNITS}, got {unit!r}")
    ndim = labels.ndim
    axes = axes_for(ndim)
    sc = _as_vector(scale, ndim, "scale")
    tr = _as_vector(translate, ndim, "translate")
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.shape[:ndim] != labels.shape:
            raise InputError(
                None,
                f"intensity shape {intensity.shape} does not match labels shape {labels.shape}",
            )
    if labels.max(initial=0) == 0:
        df = empty_table(ndim, unit)
        if source is not None:
            df["source"] = pd.Series(dtype=object)
        return df

    props = ["label", "centroid", "bbox", "area"]
    if ndim == 2:
        props += ["perimeter", "eccentricity", "solidity"]
    table = regionprops_table(labels, properties=props)
    out: dict[str, np.ndarray] = {"label": table["label"].astype(np.int64)}
    for i, a in enumerate(axes):
        out[f"centroid_{a}"] = table[f"centroid-{i}"] * sc[i] + tr[i]
    for i, a in enumerate(axes):
        out[f"bbox_{a}0"] = table[f"bbox-{i}"] * sc[i] + tr[i]
    for i, a in enumerate(axes):
        out[f"bbox_{a}1"] = table[f"bbox-{i + ndim}"] * sc[i] + tr[i]
    df = pd.DataFrame(out)
    df["unit"] = unit
    df["area"] = table["area"].astype(float) * float(np.prod(sc))
    if ndim == 2:
        px = float(np.sqrt(sc[0] * sc[1]))
        df["perimeter"] = table["perimeter"] * px
        df["eccentricity"] = table["eccentricity"]
        df["solidity"] = table["solidity"]
    if intensity is not None:
        df = df.join(_mean_intensity(labels, intensity, df["label"].to_numpy()))
    if source is not None:
        df["source"] = source
    return df.sort_values("label", ignore_index=True)


def _mean_intensity(labels: np.ndarray, image: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    """Mean intensity per label (per channel when ``image`` has a channel axis).

    Only the labelled pixels are summed (background adds to no cell): the same sums, in
    the same order, as over every pixel, at a fraction of the memory and time on a
    slide region that is mostly background.
    """
    flat = labels.ravel()
    fg = np.flatnonzero(flat)
    lab = flat[fg].astype(np.intp)
    counts = np.bincount(lab, minlength=int(ids.max()) + 1).astype(float)
    counts[counts == 0] = 1.0
    img = image.reshape(flat.size, -1)[fg].astype(np.float64)
    nch = img.shape[1]
    if nch == 1:
        names = ["mean_intensity"]
    elif nch in (3, 4) and image.ndim == labels.ndim + 1:
        names = ["mean_r", "mean_g", "mean_b", "mean_a"][:nch]
    else:
        names = [f"mean_c{i}" for i in range(nch)]
    data = {}
    for c, name in enumerate(names):
        sums = np.bincount(lab, weights=img[:, c], minlength=counts.size)
        data[name] = (sums / counts)[ids]
    return pd.DataFrame(data)


def validate_cell_table(df: pd.DataFrame, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Check the contract; return the table with ``label`` as int64.

    Raises
    ------
    InputError
        When ``label`` is missing, not integer, not positive or not unique.
    """
    if "label" not in df.columns:
        raise InputError(path, "cell table has no 'label' column")
    labels = pd.to_numeric(df["label"], errors="coerce")
    if labels.isna().any() or (labels % 1 != 0).any():
        raise InputError(path, "cell table 'label' column must hold whole numbers")
    if (labels <= 0).any():
        raise InputError(path, "cell table labels must be > 0 (0 is background)")
    if labels.duplicated().any():
        dup = int(labels[labels.duplicated()].iloc[0])
        raise InputError(path, f"cell table has label {dup} more than once")
    out = df.copy()
    out["label"] = labels.astype(np.int64)
    return out


def class_columns(df: pd.DataFrame) -> list[str]:
    """The ``p_<class>`` probability columns, in table order."""
    return [c for c in df.columns if c.startswith("p_")]


def join_predictions(table: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Join per-label predictions (``label``, ``class``, ``p_*``, ``uncertainty``...) into a table.

    Existing prediction columns in ``table`` are replaced; cells without a
    prediction keep NaN / empty values.
    """
    table = validate_cell_table(table)
    predictions = validate_cell_table(predictions)
    new_cols = [c for c in predictions.columns if c != "label"]
    keep = table.drop(columns=[c for c in new_cols if c in table.columns])
    return keep.merge(predictions, on="label", how="left")


def to_features(df: pd.DataFrame) -> pd.DataFrame:
    """The table as napari Labels ``features``: adds the ``index`` column napari maps labels by."""
    feats = validate_cell_table(df).reset_index(drop=True)
    feats["index"] = feats["label"]
    return feats


def from_features(features: pd.DataFrame) -> pd.DataFrame:
    """Back from napari ``features`` to a cell table (drops napari's ``index`` column)."""
    df = pd.DataFrame(features).drop(columns=["index"], errors="ignore")
    if "label" not in df.columns:
        return empty_table()
    return validate_cell_table(df.dropna(subset=["label"]))


def cell_table_for(
    labels: np.ndarray,
    features: pd.DataFrame | None = None,
    *,
    scale: Sequence[float] | float = 1.0,
    translate: Sequence[float] | float = 0.0,
    unit: str = "px",
) -> pd.DataFrame:
    """The cell table of a label image, keeping what its layer's ``features`` already say.

    Any Labels layer can be classified: one painted by hand has no ``features``, one
    from the segmentation has a full table, one edited since may have rows for cells
    that are gone. The geometry is measured from ``labels`` (one row per object in
    it); columns of ``features`` that are not measured here (intensities, a ``class``,
    notes) are joined by ``label``. ``features`` that are not a cell table (no or bad
    ``label`` column) are ignored.

    Parameters
    ----------
    labels : (Y, X) or (Z, Y, X) int array
    features : DataFrame, optional
        The layer's ``features``.
    scale, translate, unit
        As in :func:`measure_cells`.

    Returns
    -------
    pandas.DataFrame
        One row per object of ``labels``, sorted by label.
    """
    table = measure_cells(labels, scale=scale, translate=translate, unit=unit)
    if features is None or not len(features):
        return table
    try:
        given = from_features(features)
    except InputError:  # not a cell table: measuring is all there is
        return table
    extra = [c for c in given.columns if c not in table.columns]
    if not extra:
        return table
    return table.merge(given[["label", *extra]], on="label", how="left")


def write_cell_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a cell table as CSV atomically (temporary file, then rename)."""
    from napari_nucleus_ai.core.files import atomic_write

    df = validate_cell_table(df).drop(columns=["index"], errors="ignore")
    with atomic_write(path, "w", newline="") as fh:
        df.to_csv(fh, index=False)


def read_cell_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a cell table CSV, with one-line errors for bad files."""
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except pd.errors.EmptyDataError:
        raise InputError(path, "file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise InputError(path, f"not a readable CSV ({' '.join(str(e).split())[:120]})") from None
    return validate_cell_table(df, path)


def table_unit(df: pd.DataFrame) -> str | None:
    """The unit of a table's geometry columns (its ``unit`` column), ``None`` when unknown."""
    if "unit" not in df.columns or not len(df):
        return None
    values = df["unit"].dropna().unique()
    return str(values[0]) if len(values) == 1 else None


def in_frame(
    df: pd.DataFrame,
    labels: np.ndarray,
    *,
    scale: Sequence[float] | float = 1.0,
    translate: Sequence[float] | float = 0.0,
    unit: str = "px",
) -> pd.DataFrame:
    """The table with its geometry in the frame of the layer that shows ``labels``.

    A table whose ``unit`` is ``unit`` is returned as is. Otherwise (a table in um
    shown on a layer in pixels, say) its geometry is measured again from ``labels``
    with the layer's ``scale``/``translate``/``unit``, keeping every other column, so
    that markers drawn from the table land on the cells.
    """
    have = table_unit(df)
    if have == unit or not len(df):
        return df
    return cell_table_for(labels, df, scale=scale, translate=translate, unit=unit)
