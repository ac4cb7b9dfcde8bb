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
"""

from __future__ import annotations

from dataclasses import dataclass

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
    class_image : (Y, X) uint8/uint16
        0 background, ``k + 1`` for class ``k``, ``len(classes) + 1`` for unidentified.
    uncertainty_image : (Y, X) float32
        Each cell filled with its uncertainty (0 background).
    classes, colours : lists of str (model classes; ``unidentified`` is grey)
    notes : list of str (device fallbacks etc.)
    """

    table: object
    class_image: np.ndarray
    uncertainty_image: np.ndarray
    classes: list
    colours: list
    notes: list

    @property
    def class_names(self) -> list[str]:
        """Names indexed by class-image value (0 = background)."""
        from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED

        return ["background", *self.classes, CLASS_UNIDENTIFIED]

    def counts(self) -> dict[str, int]:
        vc = self.table["class"].value_counts()
        return {c: int(vc.get(c, 0)) for c in self.class_names[1:]}


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
    device, batch_size, tta, mc_dropout, threshold, proposer : see
        :func:`napari_nucleus_ai.classify.predict.predict_items_gen`.
    """
    from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED, join_predictions, measure_cells
    from napari_nucleus_ai.classify.predict import as_package, predict_items_gen
    from napari_nucleus_ai.models.crops import cell_windows

    package = as_package(model)
    if labels is None:
        raise InputError(None, "classify needs a label image of the cells")
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(None, f"labels must be 2D, got shape {labels.shape}")
    sc = float(np.atleast_1d(scale)[-1])
    tr = np.broadcast_to(np.asarray(translate, float), (2,))
    if table is None:
        table = measure_cells(
            labels, None, scale=sc, translate=tr, unit=unit if unit in ("nm", "um", "px") else "px"
        )
    ids = table["label"].to_numpy(np.int64)
    ids = ids[(ids > 0) & (ids <= labels.max(initial=0))]
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
        image = np.asarray(image)
        if image.shape[:2] != labels.shape:
            raise InputError(
                None, f"image shape {image.shape[:2]} does not match labels {labels.shape}"
            )
        win = window_source_px(package.card, sc, unit)
        cents = centroids_px(labels, ids)
        size = window_size_px(package.card)
        items = list(cell_windows(image, cents, win, size))
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
    )
    preds = pred.to_frame(label=ids)
    preds["model"] = package.name
    if "source" not in table.columns:
        preds["source"] = f"model:{package.name}"
    out = join_predictions(table, preds)
    lut_cls = np.zeros(int(labels.max(initial=0)) + 1, np.uint16)
    lut_unc = np.zeros(len(lut_cls), np.float32)
    names = [*package.classes, CLASS_UNIDENTIFIED]
    index = {c: i + 1 for i, c in enumerate(names)}
    lut_cls[ids] = [index[c] for c in pred.labels]
    lut_unc[ids] = pred.uncertainty
    if "out_of_domain" in pred.extra:  # the heatmap shows cells the model should not judge
        lut_unc[ids] = np.where(pred.extra["out_of_domain"], 1.0, lut_unc[ids])
    dtype = np.uint8 if len(names) < 255 else np.uint16
    return ClassifyResult(
        table=out,
        class_image=lut_cls[labels].astype(dtype),
        uncertainty_image=lut_unc[labels],
        classes=list(package.classes),
        colours=list(package.colours),
        notes=notes,
    )


def classify_cells(model, image=None, labels=None, table=None, **options) -> ClassifyResult:
    """Plain-function form of :func:`classify_cells_gen`."""
    from napari_nucleus_ai.core.progress import run_sync

    return run_sync(classify_cells_gen(model, image, labels, table, **options))
