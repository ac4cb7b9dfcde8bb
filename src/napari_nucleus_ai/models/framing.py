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
:func:`frame_of`, :func:`fit_frame`, :func:`frame_crops`, :func:`frame_cell_px`, :func:`validate_frame`
    The card's ``input.frame``: the canonical cell frame, below.

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

The canonical cell frame: the card's ``input.frame``.

A card with ``input.frame`` sees every crop - a file, a window cut around a segmented
cell, a training crop - through :func:`.cellframe.canonical_frame`: the central white
cell found, the crop centred on it and resampled so that the cell diameter is ``fill``
of ``crop_size`` (whatever the crop's framing and magnification), then, with a
``stain`` reference, stain-normalised (:func:`.stain.normalise_stain`). ``input.field`` is
not used with it. Its numbers, all plain and checked when a card is loaded::

    "frame": {
        "kind": "cell",
        "fill": 0.5,                 # cell diameter / frame side
        "stain": {"kind": "two_point", "nucleus_od": [3 floats], "plasma": [3 floats]},
        "pixel_size_um": 0.36,       # optional: the training crops' pixel size, um
        "cell_um": 11.2,             # optional: their median cell diameter, um
        "cell_rbc": 2.1              # optional: their median cell diameter in red cells
    }

The cell's scale is measured on the crop (the nucleus hull) unless both the card's
``cell_um`` and the crop's pixel size are known: then the cell is ``cell_um`` across
(a physical scale; ``cell_um`` is the training cells' median measured diameter, so the
two scales agree on average). Otherwise, with the card's ``cell_rbc`` and red cells in
the crop, the red cells are the ruler (a red cell is about 7.5 um on every microscope):
the cell is ``cell_rbc`` red-cell diameters across, within :data:`RBC_RANGE` of its own
measured size, so a lymphocyte is drawn smaller than a monocyte whatever the crop's
magnification (:func:`frame_cell_px`). Cards without ``cell_rbc`` scale every cell to one
size. A window cut around a segmented cell for a frame card is
:data:`WINDOW_CELLS` cell diameters wide (:func:`window_source_px`; the training crops'
side when the pixel size is unknown), so the frame has the cell and its neighbours to
find and measure. Cards without ``input.frame`` are framed by ``field``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

from napari_nucleus_ai.core.units import convert

if TYPE_CHECKING:
    import pandas as pd

FILL = 1.0 / 1.4  # the 90th-percentile cell diameter is this fraction of the field
MIN_FIELD = 0.2

FRAME_FILL = 0.5  # the canonical frame's cell diameter / frame side (train's default)
FRAME_KINDS = ("cell",)
STAIN_KINDS = ("two_point", "nucleus_od")  # the first is what new models get
WINDOW_CELLS = 3.0  # a frame card's window around a segmented cell, in cell diameters
CELL_UM = 12.0  # a white cell's diameter, um: the window of a frame card without ``cell_um``
RBC_RANGE = (0.5, 2.0)  # the red-cell ruler's cell size / the cell's own measured size
MIN_RBC_SHARE = 0.5  # ``cell_rbc`` is recorded when this share of training crops shows red cells


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


def frame_of(card: dict) -> dict | None:
    """The card's canonical frame (``input.frame``), or ``None`` (framed by ``field``)."""
    return card.get("input", {}).get("frame") or None


def validate_frame(frame, need) -> None:
    """Check an ``input.frame`` section; ``need(condition, problem)`` raises when false."""

    def num(v, lo, hi):
        return isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi

    need(isinstance(frame, dict), "'input.frame' must be an object")
    need(frame.get("kind") in FRAME_KINDS, f"'input.frame.kind' must be one of {FRAME_KINDS}")
    need(num(frame.get("fill"), 0.05, 1.0), "'input.frame.fill' must be 0.05..1")
    for key, hi in (("pixel_size_um", 1000.0), ("cell_um", 1000.0), ("cell_rbc", 100.0)):
        if key in frame:
            unit = "red-cell diameters" if key == "cell_rbc" else "um"
            need(num(frame[key], 1e-6, hi), f"'input.frame.{key}' must be a number > 0 ({unit})")
    st = frame.get("stain")
    if st is not None:
        need(isinstance(st, dict), "'input.frame.stain' must be an object")
        need(
            st.get("kind") in STAIN_KINDS, f"'input.frame.stain.kind' must be one of {STAIN_KINDS}"
        )
        for key in ("nucleus_od", "plasma"):
            v = st.get(key)
            need(
                isinstance(v, list) and len(v) == 3 and all(num(x, 0.0, 10.0) for x in v),
                f"'input.frame.stain.{key}' must list 3 numbers in [0, 10]",
            )


def _per_item(value, n: int) -> list:
    """``value`` (``None``, a number, or one per item) as a list of ``n``."""
    if value is None or np.ndim(value) == 0:
        return [None if value is None else float(value)] * n
    out = [None if v is None else float(v) for v in value]
    if len(out) != n:
        raise ValueError(f"{len(out)} pixel sizes for {n} crops")
    return out


def frame_crops(items, card: dict, pixel_size_um=None) -> list[np.ndarray]:
    """Every RGB crop of ``items`` in the card's canonical frame (``crop_size`` pixels).

    Parameters
    ----------
    items : sequence of (H, W, 3) arrays
        Crops, any framing and magnification.
    card : dict
        A card with ``input.frame``.
    pixel_size_um : float or sequence, optional
        The crops' pixel size in um (one for all, or one per crop; ``None`` = unknown).
    """
    from napari_nucleus_ai.models.cellframe import canonical_frame, trim_padding
    from napari_nucleus_ai.models.stain import normalise_stain

    frame = frame_of(card)
    size = int(card["input"]["crop_size"])
    out = []
    for item, px in zip(items, _per_item(pixel_size_um, len(items)), strict=True):
        item = np.asarray(item)
        if item.ndim == 2:
            item = np.repeat(item[..., None], 3, -1)
        item = trim_padding(item)  # black padding of a box cut past the image edge
        found = _found_cell(item, red_cells=uses_red_cells(frame, px))
        cell_px = frame_cell_px(frame, found, px)
        img, info = canonical_frame(item, size, float(frame["fill"]), cell_px, found)
        if frame.get("stain"):
            img = normalise_stain(img, info["plasma"], frame["stain"])
        out.append(img)
    return out


def uses_red_cells(frame: dict, pixel_size_um: float | None = None) -> bool:
    """Whether :func:`frame_cell_px` reads the red cells (``found["red_cell"]``) for a crop of
    ``pixel_size_um``: a frame with ``cell_rbc``, unless its ``cell_um`` and the pixel size
    give the physical scale."""
    if frame.get("cell_um") and pixel_size_um:
        return False
    return bool(frame.get("cell_rbc"))


def frame_cell_px(frame: dict, found: dict, pixel_size_um: float | None = None) -> float | None:
    """The cell diameter, in crop pixels, the frame scales to ``fill`` (``None``: the cell's
    own measured size, ``found["diameter"]``).

    With the frame's ``cell_um`` and the crop's pixel size (um), the physical scale; else,
    with the frame's ``cell_rbc`` and red cells in the crop (``found["red_cell"]``,
    :func:`.cellframe.find_cell`), ``cell_rbc`` red-cell diameters, kept within
    :data:`RBC_RANGE` of the measured size (a misread ruler cannot shrink or blow up the
    cell). A crop without a whole red cell (a tight box) keeps its measured size: the
    neutral choice, the scale of a card without ``cell_rbc``.
    """
    if frame.get("cell_um") and pixel_size_um:
        return float(frame["cell_um"]) / float(pixel_size_um)
    rbc = found.get("red_cell")
    if not frame.get("cell_rbc") or not rbc:
        return None
    lo, hi = RBC_RANGE
    d = float(found["diameter"])
    return float(np.clip(float(frame["cell_rbc"]) * float(rbc), lo * d, hi * d))


_FOUND: dict = {}  # find_cell of recently framed crops, by a digest of their pixels
_FOUND_SIZE = 4096
_FOUND_LOCK = threading.Lock()


def _found_cell(item: np.ndarray, red_cells: bool = True) -> dict:
    """:func:`.cellframe.find_cell` of a crop, memoised by its pixels: training frames the
    same crops several times (the stain reference, the fit, the domain score). Without
    ``red_cells`` the red cells are not measured (``found`` has no ``red_cell``), unless
    they were before."""
    import hashlib

    from napari_nucleus_ai.models.cellframe import find_cell
    from napari_nucleus_ai.models.crops import to_float

    a = np.ascontiguousarray(item)
    key = hashlib.blake2b(
        a.tobytes() + str((a.shape, a.dtype.str)).encode(), digest_size=16
    ).hexdigest()
    with _FOUND_LOCK:
        hit = _FOUND.get(key)
    if hit is not None and (not red_cells or "red_cell" in hit):
        return hit
    found = find_cell(np.asarray(to_float(a)[..., :3], np.float32), red_cells=red_cells)
    with _FOUND_LOCK:
        _FOUND[key] = found
        while len(_FOUND) > _FOUND_SIZE:
            _FOUND.pop(next(iter(_FOUND)))
    return found


def fit_frame(
    samples,
    size: int,
    fill: float = FRAME_FILL,
    pixel_size_um=None,
    stain: str = STAIN_KINDS[0],
    red_cells: bool = False,
) -> tuple[dict, float]:
    """The ``input.frame`` of a new model from its training crops, and their median cell
    diameter in pixels.

    The stain reference is :func:`.stain.od_fit` of the training frames, normalised by
    ``stain`` (a kind of :data:`STAIN_KINDS`); with the crops' pixel size (um) known, it is
    recorded with the training cells' median diameter in um. With ``red_cells``, the
    training cells' median diameter in red-cell diameters is recorded as ``cell_rbc`` (the
    red cells become the ruler, :func:`frame_cell_px`) when at least :data:`MIN_RBC_SHARE`
    of the crops show red cells.
    """
    from napari_nucleus_ai.models.cellframe import canonical_frame, trim_padding
    from napari_nucleus_ai.models.stain import od_fit

    crops = [trim_padding(np.asarray(s)) for s in samples]
    found = [_found_cell(s) for s in crops]
    out = {"kind": "cell", "fill": float(fill)}
    ratios = [f["diameter"] / f["red_cell"] for f in found if f.get("red_cell")]
    if red_cells and ratios and len(ratios) >= MIN_RBC_SHARE * len(found):
        out["cell_rbc"] = round(float(np.median(ratios)), 4)
    frames, plasmas, cells = [], [], []
    for s, f in zip(crops, found, strict=True):
        img, info = canonical_frame(s, int(size), float(fill), frame_cell_px(out, f), f)
        frames.append(img)
        plasmas.append(info["plasma"])
        cells.append(info["diameter"])
    if frames:
        out["stain"] = {"kind": stain, **od_fit(frames, plasmas)}
    if pixel_size_um:
        out["pixel_size_um"] = float(pixel_size_um)
        if cells:
            out["cell_um"] = round(float(np.median(cells)) * float(pixel_size_um), 4)
    return out, float(np.median(cells)) if cells else 0.0


def pixel_size_um(value, unit: str) -> float | None:
    """A pixel size in ``unit`` as um, or ``None`` when the unit is pixels (unknown)."""
    if value is None or unit not in ("nm", "um"):
        return None
    return float(convert(float(value), unit, "um"))


def window_side(card: dict, unit: str) -> float | None:
    """Side of the window cut around a cell, in ``unit`` (``None`` if either side is in px).

    It is the extent of the model's training crops: the network's own field of view
    (``crop_size x pixel_size``) divided by the card's ``field``, whose centre part the
    network sees. With a canonical frame: :data:`WINDOW_CELLS` cell diameters (the card's
    ``cell_um``, else :data:`CELL_UM`), or in ``px`` the training crops' side.
    """
    spec = card["input"]
    frame = frame_of(card)
    if frame is not None:  # WINDOW_CELLS cells of the training size (else a typical cell)
        if unit == "px":  # unknown pixel size: the training crops' side
            return float(spec.get("source_crop_px", spec["crop_size"]))
        return convert(WINDOW_CELLS * float(frame.get("cell_um", CELL_UM)), "um", unit)
    side_model = spec["crop_size"] * spec["pixel_size"] / field_of(card)
    return convert(side_model, spec["unit"], unit)


def window_source_px(card: dict, scale: float, unit: str) -> float:
    """Side of the window cut around a cell, in source-image pixels of size ``scale`` ``unit``."""
    if frame_of(card) is not None:
        side = window_side(card, unit)
        return side if unit == "px" else side / float(scale)
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
    if frame_of(card) is not None:  # the frame's cell then keeps about crop_size * fill pixels
        size = card["input"]["crop_size"] * WINDOW_CELLS * float(frame_of(card)["fill"])
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
    if frame_of(card) is not None:  # nominally: the frame is centred on the found cell
        seen = window_px / (WINDOW_CELLS * float(frame_of(card)["fill"]))
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
