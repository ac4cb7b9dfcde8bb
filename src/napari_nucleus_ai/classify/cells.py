"""Classify every cell of a segmented image: cell table + class image + uncertainty map.

:func:`classify_cells_gen` is the core generator behind the Classifier dock and
``napari-nucleus-ai classify``. For each labelled cell it cuts a window of the
model's *physical* field of view (``crop_size x pixel_size``) around the cell's
centroid, so a model trained at 0.1 um/px sees cells at the same scale in a
0.25 um/px slide; STORM models get each nucleus' own localizations rendered at
the card's nanoscale pixel (or, given only an image, the nucleus region of an
image rendered at <= 20 nm). For a model with a canonical cell frame
(:mod:`napari_nucleus_ai.models.framing`) the window holds a few cell diameters and
its pixel size (when the image's is known) goes with it, so the frame can scale the
cell physically.

A whole-slide region is classified without loading it: with a lazy label image (a
:class:`~napari_nucleus_ai.images.tiff.TiledPage` or dask array, as ``classify`` reads a
TIFF over 256 MiB) the cells are found band by band (:func:`label_boxes_gen`), measured a
group of nearby cells at a time (:func:`measure_lazy_gen`), their windows cut from the lazy
image chunk by chunk as they are classified (:class:`~napari_nucleus_ai.models.crops.CellWindows`
reads only the tiles under each cell), and the class and uncertainty images are computed box by box when written
(:class:`LutImage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.units import NM_PER
from napari_nucleus_ai.models.framing import pixel_size_um, window_size_px, window_source_px


@dataclass
class ClassifyResult:
    """Output of :func:`classify_cells_gen`.

    Attributes
    ----------
    table : pandas.DataFrame
        The cell table with ``class`` (or ``unidentified``), ``predicted``,
        ``p_<class>``, ``uncertainty``, ``entropy``, ``disagreement``, ``model``.
    classes, colours : lists of str (model classes; ``unidentified`` is grey)
    notes : list of str (device fallbacks etc.)
    labels : (Y, X) int array (numpy, or a lazy array for a region read lazily)
    class_lut, uncertainty_lut : arrays indexed by label id
        What :attr:`class_image` and :attr:`uncertainty_image` paint each cell with.
    boxes : (N, 4) int array or None
        For lazy labels, ``y0, y1, x0, x1`` pixel boxes (end-exclusive) holding every label
        pixel the look-up tables paint: the images are computed inside them only.
    """

    table: object
    classes: list
    colours: list
    notes: list
    labels: object
    class_lut: np.ndarray
    uncertainty_lut: np.ndarray
    boxes: np.ndarray | None = None

    _images: dict = field(default_factory=dict, repr=False)

    @property
    def class_image(self):
        """(Y, X) uint8/uint16: 0 background, ``k + 1`` for class ``k``, ``len(classes) + 1``
        for unidentified (computed once, on access; a :class:`LutImage` for lazy labels)."""
        if "class" not in self._images:
            self._images["class"] = lut_image(self.labels, self.class_lut, self.boxes)
        return self._images["class"]

    @property
    def uncertainty_image(self):
        """(Y, X) float32: each cell filled with its uncertainty, 0 background (computed
        once, on access; a :class:`LutImage` for lazy labels)."""
        if "uncertainty" not in self._images:
            self._images["uncertainty"] = lut_image(self.labels, self.uncertainty_lut, self.boxes)
        return self._images["uncertainty"]

    @property
    def class_names(self) -> list[str]:
        """Names indexed by class-image value (0 = background)."""
        from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED

        return ["background", *self.classes, CLASS_UNIDENTIFIED]

    def counts(self) -> dict[str, int]:
        return class_counts(self.table, self.classes)


def class_counts(table, classes) -> dict[str, int]:
    """Cells per class in a cell table's ``class`` column: every class of ``classes`` (0 when
    absent), then ``unidentified``."""
    from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED

    vc = table["class"].value_counts()
    return {c: int(vc.get(c, 0)) for c in [*classes, CLASS_UNIDENTIFIED]}


def centroids_px(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(y, x) pixel centroids of label ``ids`` (NaN for absent ids).

    Each cell is measured inside its own bounding box (``ndimage.find_objects``), so a
    whole-slide region costs no full-size coordinate grids.
    """
    from scipy import ndimage

    ids = np.asarray(ids).astype(np.int64, copy=False)
    out = np.full((len(ids), 2), np.nan)
    top = int(ids.max(initial=0))
    if top < 1:
        return out
    boxes = ndimage.find_objects(labels, max_label=top)
    for k, i in enumerate(ids):
        box = boxes[i - 1] if 1 <= i <= len(boxes) else None
        if box is None:
            continue
        yy, xx = np.nonzero(labels[box] == i)
        out[k] = (yy.mean() + box[0].start, xx.mean() + box[1].start)
    return out


def is_lazy(array) -> bool:
    """Whether ``array`` is lazy (a :class:`~napari_nucleus_ai.images.tiff.TiledPage`, dask or
    zarr array) rather than a numpy array in memory."""
    return not isinstance(array, np.ndarray) and hasattr(array, "shape") and hasattr(array, "dtype")


def _read(array, box) -> np.ndarray:
    part = array[box]
    return np.asarray(part.compute(scheduler="synchronous") if hasattr(part, "compute") else part)


def label_boxes_gen(labels, band: int | None = None):
    """Generator: the bounding box of every label of a lazy label image, one band of rows at a time.

    Yields :class:`~napari_nucleus_ai.core.progress.Progress` per band; returns
    ``(ids, boxes)``: the sorted label ids and an ``(N, 4)`` int array of
    ``y0, y1, x0, x1`` (end-exclusive). Memory: one band of rows. A tiled image that knows
    its empty tiles (:meth:`~napari_nucleus_ai.images.tiff.TiledPage.tile_blank`) is read a
    tile at a time, its empty tiles skipped.
    """
    from napari_nucleus_ai.core.progress import Progress

    h, w = labels.shape
    blank = getattr(labels, "tile_blank", None)
    tile = getattr(labels, "tile_shape", None)
    if band is None:
        chunks = getattr(labels, "chunks", None)
        band = int(chunks[0][0] if chunks and isinstance(chunks[0], tuple) else 512)
        band = max(band, 256)
    if blank is not None and tile is not None:
        band = int(tile[0])
    found: dict[int, list[int]] = {}
    starts = range(0, h, band)
    for k, y in enumerate(starts):
        if blank is None or tile is None:
            _add_boxes(found, _read(labels, np.s_[y : y + band, :]), y, 0)
        else:
            for tx, x in enumerate(range(0, w, int(tile[1]))):
                if not blank(k, tx):
                    _add_boxes(found, _read(labels, np.s_[y : y + band, x : x + tile[1]]), y, x)
        yield Progress(k + 1, len(starts), "finding cells")
    ids = np.array(sorted(found), np.int64)
    boxes = np.array([found[i] for i in ids.tolist()], np.int64).reshape(-1, 4)
    return ids, boxes


def _add_boxes(found: dict, part: np.ndarray, y: int, x: int) -> None:
    """Grow ``found`` (label id -> ``[y0, y1, x0, x1]``) by the labels of ``part``, a block of
    the label image whose top-left pixel is ``(y, x)``."""
    flat = np.flatnonzero(part)
    if not flat.size:
        return
    vals = part.ravel()[flat]
    order = np.argsort(vals, kind="stable")
    vals, flat = vals[order], flat[order]
    ys, xs = np.divmod(flat, part.shape[1])
    first = np.r_[0, np.flatnonzero(np.diff(vals)) + 1]
    y0, y1 = np.minimum.reduceat(ys, first) + y, np.maximum.reduceat(ys, first) + y + 1
    x0, x1 = np.minimum.reduceat(xs, first) + x, np.maximum.reduceat(xs, first) + x + 1
    for i, a, b, c, d in zip(
        vals[first].tolist(), y0.tolist(), y1.tolist(), x0.tolist(), x1.tolist(), strict=True
    ):
        box = found.get(i)
        if box is None:
            found[i] = [a, b, c, d]
        else:
            box[0], box[1] = min(box[0], a), max(box[1], b)
            box[2], box[3] = min(box[2], c), max(box[3], d)


def _groups(boxes: np.ndarray, block: int) -> list[np.ndarray]:
    """Indices of cells grouped by the ``block`` x ``block`` square holding their box's corner."""
    if not len(boxes):
        return []
    key = (boxes[:, 0] // block) * (int(boxes[:, 3].max()) // block + 1) + boxes[:, 2] // block
    order = np.argsort(key, kind="stable")
    cuts = np.flatnonzero(np.diff(key[order])) + 1
    return np.split(order, cuts)


def measure_lazy_gen(
    labels, ids, boxes, *, scale, translate, unit, measure: bool = True, block: int = 2048
):
    """Generator: cell measurements of a lazy label image, read one group of nearby cells at a time.

    Cells are grouped by the ``block`` x ``block`` square holding their box's top-left
    corner; each group reads the union of its cells' boxes (plus a 1-pixel border), keeps
    only its own cells and is measured by :func:`napari_nucleus_ai.cells.measure_cells`,
    so the table is what measuring the whole image gives, for a memory of one group.

    Returns ``(table, centroids)``: the cell table of ``ids`` in label order (``None`` when
    ``measure`` is false) and the ``(N, 2)`` pixel centroids in the order of ``ids``.
    """
    import pandas as pd
    from scipy import ndimage

    from napari_nucleus_ai.cells import measure_cells
    from napari_nucleus_ai.core.progress import Progress

    h, w = labels.shape
    cents = np.full((len(ids), 2), np.nan)
    rows = []
    tr = np.asarray(translate, float)
    groups = _groups(boxes, block)
    for k, idx in enumerate(groups):
        gb = boxes[idx]
        y0, x0 = max(0, int(gb[:, 0].min()) - 1), max(0, int(gb[:, 2].min()) - 1)
        y1, x1 = min(h, int(gb[:, 1].max()) + 1), min(w, int(gb[:, 3].max()) + 1)
        crop = _read(labels, np.s_[y0:y1, x0:x1])
        gids = ids[idx]
        crop = np.where(np.isin(crop, gids), crop, 0)
        crop = np.pad(crop, 1)  # cells on the region's edge: measured as in the whole image
        y0, x0 = y0 - 1, x0 - 1
        com = ndimage.center_of_mass(np.ones(crop.shape, np.float32), crop, gids)
        cents[idx] = np.asarray(com, float).reshape(-1, 2) + (y0, x0)
        if measure:
            rows.append(
                measure_cells(
                    crop, None, scale=scale, translate=tr + np.array([y0, x0]) * scale, unit=unit
                )
            )
        yield Progress(k + 1, len(groups), "measuring cells")
    if not measure:
        return None, cents
    if not rows:
        return measure_cells(np.zeros((1, 1), np.uint8), unit=unit), cents
    return pd.concat(rows, ignore_index=True).sort_values("label", ignore_index=True), cents


class LutImage:
    """``lut[labels]`` of a lazy label image, computed for the box asked for (read-only array).

    Given the cells' ``boxes`` (``(N, 4)`` ``y0, y1, x0, x1``, end-exclusive, holding every
    label pixel whose ``lut`` value differs from ``lut[0]``), only the labels inside them are
    read: the rest of a slide region is ``lut[0]`` without a read. :meth:`blank` tells a
    writer which parts hold no cell.
    """

    def __init__(self, labels, lut: np.ndarray, boxes=None):
        self.labels, self.lut = labels, lut
        self.shape, self.dtype, self.ndim = tuple(labels.shape), lut.dtype, len(labels.shape)
        self.boxes = None if boxes is None else np.asarray(boxes, np.int64).reshape(-1, 4)

    def _span(self, key) -> tuple[int, int, int, int]:
        from napari_nucleus_ai.images.tiff import box_of

        box, rest = box_of(key, self.shape, "a LutImage")
        if rest:
            raise IndexError("a LutImage takes [y0:y1, x0:x1] boxes")
        return box

    def _inside(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        b = self.boxes
        return b[(b[:, 0] < y1) & (b[:, 1] > y0) & (b[:, 2] < x1) & (b[:, 3] > x0)]

    def blank(self, key) -> bool:
        """Whether the box ``key`` (``[y0:y1, x0:x1]``) holds no cell and ``lut[0]`` is 0, so it
        is all zero (known from the boxes; False without them)."""
        if self.boxes is None or self.lut[0] != 0:
            return False
        return not len(self._inside(*self._span(key)))

    def __getitem__(self, key) -> np.ndarray:
        if self.boxes is None:
            return self.lut[_read(self.labels, key)]
        y0, y1, x0, x1 = self._span(key)
        out = np.full((y1 - y0, x1 - x0), self.lut[0], self.lut.dtype)
        for a, b, c, d in self._inside(y0, y1, x0, x1).tolist():
            a, b, c, d = max(a, y0), min(b, y1), max(c, x0), min(d, x1)
            part = _read(self.labels, np.s_[a:b, c:d])
            cell = (part != 0) & (part < len(self.lut))
            out[a - y0 : b - y0, c - x0 : d - x0][cell] = self.lut[part[cell]]
        return out

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)


def _boxes_from_table(table, ids, scale, translate, shape) -> np.ndarray | None:
    """Pixel boxes of ``ids`` from a cell table's ``bbox_*`` columns (None when it has none)."""
    cols = ["bbox_y0", "bbox_y1", "bbox_x0", "bbox_x1"]
    if not set(cols) <= set(table.columns):
        return None
    t = table.set_index("label").loc[ids, cols].to_numpy(float)
    tr = np.asarray(translate, float)
    px = np.rint((t - tr[[0, 0, 1, 1]]) / scale).astype(np.int64)
    px[:, :2] = np.clip(px[:, :2], 0, shape[0])
    px[:, 2:] = np.clip(px[:, 2:], 0, shape[1])
    return px


def lut_image(labels, lut: np.ndarray, boxes=None):
    """``lut[labels]``; for a lazy label image a :class:`LutImage`, computed box by box
    (inside the cells' ``boxes`` only, when given)."""
    return LutImage(labels, lut, boxes) if is_lazy(labels) else lut[labels]


def storm_items(
    labels,
    ids,
    *,
    localizations=None,
    image=None,
    scale_nm=1.0,
    translate_nm=(0.0, 0.0),
    render_pixel_nm=10.0,
):
    """Per-nucleus inputs for a STORM model: localizations (preferred) or image regions."""
    from scipy import ndimage

    if localizations is not None:
        df = getattr(localizations, "data", localizations)
        xy = df[["x_nm", "y_nm"]].to_numpy(float)
        # napari geometry: pixel i is centred on translate + i * scale
        row = np.floor((xy[:, 1] - translate_nm[0]) / scale_nm + 0.5).astype(int)
        col = np.floor((xy[:, 0] - translate_nm[1]) / scale_nm + 0.5).astype(int)
        ok = (row >= 0) & (row < labels.shape[0]) & (col >= 0) & (col < labels.shape[1])
        lab = np.zeros(len(xy), labels.dtype)
        lab[ok] = labels[row[ok], col[ok]]
        order = np.argsort(lab, kind="stable")
        bounds = np.searchsorted(lab[order], [ids, ids + 1])
        return [xy[order[a:b]] for a, b in zip(*bounds, strict=True)]
    if image is None:
        raise InputError(
            None, "a STORM model needs the nuclei's localizations or an image rendered at <= 20 nm"
        )
    if scale_nm > 20.0 + 1e-6:
        raise InputError(
            None,
            f"the image has {scale_nm:g} nm pixels: too coarse for a STORM model (its chromatin detail "
            f"needs <= 20 nm); classify the localizations, or render them at {render_pixel_nm:g} nm",
        )
    img = np.asarray(image, np.float32)
    if img.ndim == 3:
        img = img.mean(-1)
    items = []
    objects = ndimage.find_objects(labels)
    for i in ids:
        sl = objects[i - 1] if i - 1 < len(objects) else None
        if sl is None:
            items.append(np.zeros((0, 2)))
            continue
        region = np.where(labels[sl] == i, img[sl], 0.0)
        if abs(scale_nm - render_pixel_nm) > 1e-3:
            region = ndimage.zoom(region, scale_nm / render_pixel_nm, order=1)
        inside = region[region > 0]
        top = float(np.percentile(inside, 99.5)) if inside.size else 1.0
        items.append(np.clip(region / max(top, 1e-6), 0, 2).astype(np.float32))
    return items


def classify_cells_gen(
    model,
    image=None,
    labels=None,
    table=None,
    *,
    scale=1.0,
    unit: str = "px",
    translate=(0.0, 0.0),
    localizations=None,
    device: str | None = None,
    batch_size: int = 64,
    tta: int | None = None,
    mc_dropout: int | None = None,
    threshold: float | None = None,
    proposer: bool = True,
    images: bool = True,
    adapt: str = "auto",
    routed_features: list | None = None,
):
    """Classify the cells of ``labels``; yields progress, returns :class:`ClassifyResult`.

    Parameters
    ----------
    model : ModelPackage or path
    image : (Y, X[, C]) array, optional
        The image the labels were drawn on (required for crop models).
    labels : (Y, X) int array
    table : cell table, optional
        Measured from ``labels`` when omitted; predictions are joined into it.
    scale, unit, translate : pixel size, its unit and the layer offset (napari geometry).
    localizations : DataFrame / LocalizationTable, optional
        For STORM models: ``x_nm, y_nm`` of the field (preferred over ``image``).
    device, batch_size, tta, mc_dropout, threshold, proposer, adapt, routed_features : see
        :func:`napari_nucleus_ai.classify.predict.predict_items_gen` (``adapt="auto"``: the
        cells a package routes to its fallback model are adapted to as one batch of one
        microscope; ``"off"``: never; several calls' cells, e.g. chunks of one input, are
        adapted as one batch by :func:`~napari_nucleus_ai.classify.predict.adapt_table`).
    images : bool
        Paint the class and uncertainty images of labels in memory before returning
        (``False``: only on access, for callers that need the table alone). A lazy
        (dask / zarr) label image gets lazy images, computed chunk by chunk when written.
    """
    from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED, join_predictions, measure_cells
    from napari_nucleus_ai.classify.predict import as_package, predict_items_gen
    from napari_nucleus_ai.models.crops import CellWindows

    package = as_package(model)
    if labels is None:
        raise InputError(None, "classify needs a label image of the cells")
    lazy = is_lazy(labels)
    if not lazy:
        labels = np.asarray(labels)
    if len(labels.shape) != 2:
        raise InputError(None, f"labels must be 2D, got shape {labels.shape}")
    sc = float(np.atleast_1d(scale)[-1])
    tr = np.broadcast_to(np.asarray(translate, float), (2,))
    m_unit = unit if unit in ("nm", "um", "px") else "px"
    cents = None
    if lazy:  # a whole-slide region: every cell measured and cut in its own box
        if package.modality == "storm":
            raise InputError(None, "a STORM model needs labels in memory (not a lazy region)")
        boxes = (
            None
            if table is None
            else _boxes_from_table(table, table["label"], sc, tr, labels.shape)
        )
        if boxes is None:
            ids, boxes = yield from label_boxes_gen(labels)
            if table is not None:
                keep = np.isin(ids, table["label"].to_numpy(np.int64))
                ids, boxes = ids[keep], boxes[keep]
        else:
            ids = table["label"].to_numpy(np.int64)
        measured_ids = ids
        measured, cents = yield from measure_lazy_gen(
            labels, ids, boxes, scale=sc, translate=tr, unit=m_unit, measure=table is None
        )
        if table is None:
            table = measured
        top = int(ids.max(initial=0))
        # the class and uncertainty images are painted inside the cells' boxes only (one
        # pixel wider: a table's boxes went through physical units)
        cell_boxes = np.clip(boxes + [-1, 1, -1, 1], 0, np.repeat(labels.shape, 2))
    else:
        cell_boxes = None
        if table is None:
            table = measure_cells(labels, None, scale=sc, translate=tr, unit=m_unit)
        top = int(labels.max(initial=0))
    ids = table["label"].to_numpy(np.int64)
    ids = ids[(ids > 0) & (ids <= top)]
    if lazy:
        ids = ids[np.isin(ids, measured_ids)]
    notes: list[str] = []
    px_um = None  # the crop windows' pixel size in um, when the image's is known
    if package.modality == "storm":
        if unit not in ("nm", "um"):
            raise InputError(None, "STORM classification needs the labels' pixel size in nm or um")
        scale_nm = sc * NM_PER[unit]
        st = package.card["input"]["storm"]
        items = storm_items(
            labels,
            ids,
            localizations=localizations,
            image=image,
            scale_nm=scale_nm,
            translate_nm=tuple(tr * NM_PER[unit]),
            render_pixel_nm=st["render_pixel_nm"],
        )
        keep = [i for i, it in enumerate(items) if len(it) >= 10 and np.asarray(it).size > 20]
        items, ids = [items[i] for i in keep], ids[keep]
    else:
        if image is None:
            raise InputError(
                None, "this model classifies image crops: give the image the labels were drawn on"
            )
        if not is_lazy(image):
            image = np.asarray(image)
        if tuple(image.shape[:2]) != tuple(labels.shape):
            raise InputError(
                None, f"image shape {tuple(image.shape[:2])} does not match labels {labels.shape}"
            )
        win = window_source_px(package.card, sc, unit)
        if cents is None:
            cents = centroids_px(labels, ids)
        else:  # measured in the cells' boxes, in table order
            order = np.argsort(measured_ids, kind="stable")
            cents = cents[order[np.searchsorted(measured_ids[order], ids)]]
        size = window_size_px(package.card)
        items = CellWindows(image, cents, win, size)  # cut chunk by chunk as classified
        um = pixel_size_um(sc, unit)
        px_um = None if um is None else um * win / size  # the windows' pixel size
    pred = yield from predict_items_gen(
        package,
        items,
        device=device,
        batch_size=batch_size,
        tta=tta,
        mc_dropout=mc_dropout,
        threshold=threshold,
        notes=notes,
        proposer=proposer,
        pixel_size_um=px_um,
        adapt=adapt,
        routed_features=routed_features,
    )
    preds = pred.to_frame(label=ids)
    preds["model"] = package.name
    if "source" not in table.columns:
        preds["source"] = f"model:{package.name}"
    out = join_predictions(table, preds)
    lut_cls = np.zeros(top + 1, np.uint16)
    lut_unc = np.zeros(len(lut_cls), np.float32)
    names = [*package.classes, CLASS_UNIDENTIFIED]
    index = {c: i + 1 for i, c in enumerate(names)}
    lut_cls[ids] = [index[c] for c in pred.labels]
    lut_unc[ids] = pred.uncertainty
    if "out_of_domain" in pred.extra:  # the heatmap shows cells the model should not judge
        lut_unc[ids] = np.where(pred.extra["out_of_domain"], 1.0, lut_unc[ids])
    dtype = np.uint8 if len(names) < 255 else np.uint16
    result = ClassifyResult(
        table=out,
        classes=list(package.classes),
        colours=list(package.colours),
        notes=notes,
        labels=labels,
        class_lut=lut_cls.astype(dtype),
        uncertainty_lut=lut_unc,
        boxes=cell_boxes,
    )
    if images and not lazy:  # painted here (a dock's worker thread), not on first access
        result.class_image, result.uncertainty_image  # noqa: B018
    return result


def classify_cells(model, image=None, labels=None, table=None, **options) -> ClassifyResult:
    """Plain-function form of :func:`classify_cells_gen`."""
    from napari_nucleus_ai.core.progress import run_sync

    return run_sync(classify_cells_gen(model, image, labels, table, **options))
