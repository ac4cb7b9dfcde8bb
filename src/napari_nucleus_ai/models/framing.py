"""Crop geometry, in one place: which window around a cell every model input is cut from.

Training, ``predict``, ``classify``, ``retrain``, the training-set export and the
docks all ask this module; nothing else decides a window's size.

:func:`window_side` / :func:`window_source_px`
    The window cut around a segmented cell: the extent of the model's training
    crops, ``crop_size x pixel_size / field``, in physical units or source pixels.
:func:`window_size_px`
    What that window is resampled to, so its centre ``field`` is the network's input.
:func:`default_window`
    The window for cells of a table when there is no model yet (training-set export,
    training from labelled layers): 1.5 x the 90th-percentile cell size.
:func:`centre_field`, :func:`auto_field`
    The card's ``input.field``, below.

How much of a cell crop the network sees: the card's ``input.field``.

Crops made for people are framed loosely: the PBC crops show a white cell at
about a third of the crop side among red cells. A fixed descriptor measured on
the whole crop spends most of its pixels on the neighbours. ``field`` is the
fraction of the (centre-squared) crop side that is kept around its centre before
it is resized to the network's ``crop_size``; 1 keeps everything (and is what a
card without the key means).

The field is fixed when a model is trained and stored in its card, so every
later crop (a file given to ``predict``, or a window cut around a segmented cell
by ``classify``) is framed the same way: windows around cells are cut at the
full extent ``crop_size x pixel_size / field`` and the centre ``field`` of them
goes to the network.

:func:`auto_field` chooses the field from the training crops themselves: large
enough that the 90th-percentile cell (measured with the morphology descriptor's
cell mask) fills :data:`FILL` of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_nucleus_ai.core.units import convert

if TYPE_CHECKING:
    import pandas as pd

FILL = 1.0 / 1.4  # the 90th-percentile cell diameter is this fraction of the field
MIN_FIELD = 0.2


def field_of(card: dict) -> float:
    """The card's field (1.0 when absent)."""
    return float(card.get("input", {}).get("field", 1.0))


def centre_field(img: np.ndarray, field: float) -> np.ndarray:
    """The central ``field`` fraction of ``img``'s centre square (no resampling)."""
    if field >= 1.0:
        return img
    h, w = img.shape[:2]
    s = min(h, w)
    k = max(1, int(round(s * field)))
    y0, x0 = (h - k) // 2, (w - k) // 2
    return img[y0 : y0 + k, x0 : x0 + k]


def cell_diameters(samples, size: int = 96, limit: int = 200, seed: int = 0) -> np.ndarray:
    """Equivalent diameters of the central cell, in fractions of each crop's side.

    Measured on up to ``limit`` RGB crops (a seeded random choice), resized to ``size``.
    """
    from napari_nucleus_ai.models.crops import square_resize
    from napari_nucleus_ai.models.nets.morphology import cell_mask, nucleus_mask, optical_density

    idx = np.arange(len(samples))
    if len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(idx, limit, replace=False))
    out = []
    for i in idx:
        rgb = np.clip(square_resize(np.asarray(samples[i]), size)[..., :3], 0, 1)
        od = optical_density(rgb)
        cell = cell_mask(od, nucleus_mask(od))
        out.append(2.0 * np.sqrt(cell.sum() / np.pi) / size)
    return np.asarray(out, float)


def auto_field(samples) -> float:
    """A field for RGB crops ``samples`` in which the 90th-percentile cell fills :data:`FILL`.

    Returns a value in [:data:`MIN_FIELD`, 1], rounded to 0.01 (1 when the cells
    already fill the crops, or there are no crops).
    """
    if len(samples) == 0:
        return 1.0
    d = cell_diameters(samples)
    if not np.isfinite(d).any():
        return 1.0
    field = float(np.percentile(d[np.isfinite(d)], 90)) / FILL
    return float(np.clip(round(field, 2), MIN_FIELD, 1.0))


def window_side(card: dict, unit: str) -> float | None:
    """Side of the window cut around a cell, in ``unit`` (``None`` if either side is in px).

    It is the extent of the model's training crops: the network's own field of view
    (``crop_size x pixel_size``) divided by the card's ``field``, whose centre part the
    network sees.
    """
    spec = card["input"]
    side_model = spec["crop_size"] * spec["pixel_size"] / field_of(card)
    return convert(side_model, spec["unit"], unit)


def window_source_px(card: dict, scale: float, unit: str) -> float:
    """Side of the window cut around a cell, in source-image pixels of size ``scale`` ``unit``."""
    spec = card["input"]
    if "px" in (spec["unit"], unit):
        # unknown physical size on one side: assume the model's source crops were at this scale
        side_model = spec["crop_size"] * spec["pixel_size"] / field_of(card)
        return float(spec.get("source_crop_px", side_model) if spec["unit"] != "px" else side_model)
    return window_side(card, unit) / float(scale)


def window_size_px(card: dict) -> int:
    """Pixels to resample a :func:`window_source_px` window to: its centre ``field`` is
    then exactly the network's ``crop_size`` (or, when the model has a proposer that
    looks at finer detail, the proposer's)."""
    size = card["input"]["crop_size"] / field_of(card)
    prop = (card.get("diffusion") or {}).get("proposer")
    if prop:
        size = max(size, float(prop["crop_size"]) / float(prop.get("field", 1.0)))
    return int(round(size))


def input_placement(
    card: dict, window_px: float, centre_px, scale=(1.0, 1.0), translate=(0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Where a map over the network's input (e.g. a saliency map) lies on the source image.

    The network sees the centre ``field`` of the ``window_px`` window cut around
    ``centre_px``, resampled to ``crop_size`` pixels; each input pixel covers ``step``
    source pixels.

    Parameters
    ----------
    card : dict
        The model card.
    window_px : float
        Side of the window cut around the cell, in source pixels (:func:`window_source_px`).
    centre_px : (y, x)
        The window's centre, in source pixels.
    scale, translate : (y, x)
        The source layer's pixel size and offset.

    Returns
    -------
    scale, translate : ndarray
        The map's layer ``scale`` and ``translate`` (pixel centres at the input pixels').
    """
    seen = window_px * field_of(card)  # what the network saw, in source pixels
    step = seen / card["input"]["crop_size"]
    sc = np.asarray(scale, float)[-2:]
    origin = np.asarray(centre_px, float) - seen / 2 + step / 2
    return sc * step, np.asarray(translate, float)[-2:] + sc * origin


#: The window when a table has no cell sizes: a white cell and its surroundings.
FALLBACK_WINDOW = {"um": 25.6, "nm": 25600.0, "px": 64.0}


def default_window(table: pd.DataFrame, unit: str | None = None) -> float:
    """A crop side (the table's units) that holds nearly every cell: 1.5 x the 90th percentile size.

    Without bounding boxes in ``table``, :data:`FALLBACK_WINDOW` of ``unit`` (else of the
    table's ``unit`` column, else pixels).
    """
    if {"bbox_y0", "bbox_y1", "bbox_x0", "bbox_x1"} <= set(table.columns):
        h = (table["bbox_y1"] - table["bbox_y0"]).to_numpy(float)
        w = (table["bbox_x1"] - table["bbox_x0"]).to_numpy(float)
        side = np.maximum(h, w)
        side = side[np.isfinite(side) & (side > 0)]
        if side.size:
            return float(1.5 * np.percentile(side, 90))
    if unit is None:
        unit = str(table["unit"].iloc[0]) if "unit" in table.columns and len(table) else "px"
    return FALLBACK_WINDOW.get(unit, FALLBACK_WINDOW["px"])
