"""One door into every segmentation method, shared by the dock and the CLI.

:func:`segment` is a core generator: it yields
:class:`~napari_nucleus_ai.core.progress.Progress` and returns a :class:`Segmentation`
(labels, the cell table, and the geometry to show them on top of the source).
Big images (or a region / polygon) go tile by tile (:mod:`.tiles`); small ones in
one pass; (T, Y, X) nuclear-stain stacks per time point.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress

METHODS = ("wbc", "nuclei", "storm-nuclei")
DEEP_METHODS = ("cellpose", "stardist", "instanseg")
ALL_METHODS = METHODS + DEEP_METHODS
TILE_ABOVE_PIXELS = 12_000_000  # bigger 2D images go tile by tile
INTENSITY_MAX_PIXELS = 200_000_000  # mean colour columns only below this size


@dataclass
class Segmentation:
    """What a segmentation returns.

    ``labels`` is int32, 0 = background, ids unique (also over time points);
    ``scale``/``translate`` (per label axis) place it on the source in
    ``unit``; ``table`` is the cell table (:mod:`napari_nucleus_ai.cells`),
    with a ``t`` column for time-lapse stacks. ``extra`` holds method specifics
    (``storm``: the :class:`.storm.StormNuclei` with per-nucleus localizations;
    ``pixel_size_um``: measured pixel size for ``wbc``).
    """

    labels: np.ndarray
    table: pd.DataFrame
    scale: tuple
    translate: tuple
    unit: str
    method: str
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.table)


def method_schema(method: str) -> tuple:
    """The :class:`~napari_nucleus_ai.core.params.Param` schema of a classical method (() for deep ones)."""
    if method == "wbc":
        from napari_nucleus_ai.segment.wbc import SCHEMA
    elif method == "nuclei":
        from napari_nucleus_ai.segment.nuclei import SCHEMA
    elif method == "storm-nuclei":
        from napari_nucleus_ai.segment.storm import SCHEMA
    else:
        return ()
    return SCHEMA


def check_params(method: str, params: dict) -> dict:
    """``params`` checked against ``method``'s schema (converted), or one-line :class:`UsageError`.

    Called before any work by :func:`segment`, the ``segment`` and ``batch`` commands.
    Deep backends take their own keyword arguments and are not checked here.
    """
    from napari_nucleus_ai.core.errors import UsageError
    from napari_nucleus_ai.core.params import validate

    if method not in ALL_METHODS:
        raise UsageError(f"unknown method {method!r}; use one of {', '.join(ALL_METHODS)}")
    schema = method_schema(method)
    if not schema:
        return dict(params)
    extra = {"channel", "pixel_size_nm"} if method == "storm-nuclei" else set()
    checked = validate(
        schema,
        {k: v for k, v in params.items() if k not in extra},
        method,
        unknown="parameter",
        shown="{name}={value}",
    )
    return {**params, **checked}


def _level0(image):
    if isinstance(image, list | tuple) and image and hasattr(image[0], "shape"):
        return image[0]  # multiscale: work on full resolution
    return image


def segment(
    image,
    method: str = "wbc",
    *,
    pixel_size_um: float | None = None,
    scale: tuple | None = None,
    translate: tuple | None = None,
    unit: str | None = None,
    region: tuple | None = None,
    polygon: np.ndarray | None = None,
    tile: int | None = None,
    rgb: bool | None = None,
    source: str | None = None,
    cancel: Callable[[], bool] | None = None,
    **params,
) -> Generator[Progress, None, Segmentation]:
    """Segment ``image`` with ``method``; a core generator returning a :class:`Segmentation`.

    Parameters
    ----------
    image : array, list of arrays (multiscale), DataFrame / LocalizationTable (storm-nuclei)
    method : {"wbc", "nuclei", "storm-nuclei", "cellpose", "stardist", "instanseg"}
    pixel_size_um : float, optional
        Physical pixel size (for scale-aware parameters); ``storm-nuclei`` takes
        ``pixel_size_nm`` in ``params`` instead.
    scale, translate, unit : optional
        The source layer's geometry, copied to the labels (default: pixel size in um, 0).
    region : (y0, y1, x0, x1), optional
        Pixel region of the image to segment (e.g. what is visible).
    polygon : (N, 2) array, optional
        Keep only objects whose centroid is inside (pixel coordinates (y, x)).
    tile : int, optional
        Force tile-wise processing with this tile size.
    rgb : bool, optional
        Whether the last axis is colour (default: guessed from the shape).
    source : str, optional
        Recorded in the table's ``source`` column.
    cancel : callable, optional
        Returns True to stop (raises ``Cancelled``).
    **params
        The method's parameters (see each module's ``DEFAULTS``).
    """
    if method not in ALL_METHODS:
        raise InputError(None, f"unknown method {method!r}; use one of {', '.join(ALL_METHODS)}")
    params = check_params(method, params)  # before any work
    if method == "storm-nuclei":
        return (yield from _storm(image, source, **params))
    image = _level0(image)
    if image is None or not hasattr(image, "shape") or not hasattr(image, "ndim"):
        image = np.asarray(image)
    if rgb is None:
        rgb = image.ndim == 3 and image.shape[-1] in (3, 4) and method != "nuclei"
    colour_image = image
    if rgb and method == "nuclei":
        # a nuclear stain saved as colour (e.g. blue DAPI in an RGB PNG): its brightest channel
        image = image[..., :3].max(axis=-1)
        rgb = False
    spatial_nd = image.ndim - (1 if rgb else 0)
    if spatial_nd not in (2, 3):
        raise InputError(source, f"cannot segment an image of shape {tuple(image.shape)}")
    if method == "wbc" and not rgb:
        raise InputError(
            source, f"wbc needs a colour (RGB) smear image, got shape {tuple(image.shape)}"
        )
    px = pixel_size_um
    if scale is None:
        s = float(px) if px else 1.0
        scale = (s,) * spatial_nd
    if translate is None:
        translate = (0.0,) * spatial_nd
    if unit is None:
        unit = "um" if px else "px"
    scale, translate = tuple(float(v) for v in scale), tuple(float(v) for v in translate)
    extra: dict = {}
    yield Progress(0, None, f"{method}: starting")

    if method in DEEP_METHODS:
        from napari_nucleus_ai.segment.deep import segment_deep

        labels = segment_deep(np.asarray(image), method, pixel_size_um=px, **params)
        offset = (0, 0)
    elif spatial_nd == 3 and method == "nuclei":
        from napari_nucleus_ai.segment.nuclei import segment_nuclei_stack

        labels = yield from segment_nuclei_stack(image, px, cancel=cancel, **params)
        labels = _unique_over_time(labels)
        offset = (0, 0)
    elif spatial_nd == 3:
        raise InputError(source, f"{method} segments 2D images, got shape {tuple(image.shape)}")
    else:
        H, W = image.shape[:2]
        big = H * W > TILE_ABOVE_PIXELS
        if tile or big or region is not None or polygon is not None:
            from napari_nucleus_ai.segment.tiles import segment_tiled

            labels = yield from segment_tiled(
                image,
                method,
                tile=int(tile or 2048),
                region=region,
                polygon=polygon,
                pixel_size_um=px,
                cancel=cancel,
                **params,
            )
            offset = (region[0], region[2]) if region is not None else (0, 0)
            offset = (max(0, int(round(offset[0]))), max(0, int(round(offset[1]))))
        else:
            arr = np.asarray(image.compute() if hasattr(image, "compute") else image)
            if method == "wbc":
                from napari_nucleus_ai.segment.wbc import segment_wbc

                labels, info = segment_wbc(arr, px, return_info=True, **params)
                extra["pixel_size_um"] = info["pixel_size_um"]
                extra["scale_from"] = info["scale_from"]
            else:
                from napari_nucleus_ai.segment.nuclei import segment_nuclei

                labels = segment_nuclei(arr, px, **params)
            offset = (0, 0)
    yield Progress(1, 2, "measuring cells")
    if any(offset):
        translate = tuple(
            t + o * s for t, o, s in zip(translate[-2:], offset, scale[-2:], strict=True)
        )
        translate = tuple(translate)
    table = _measure(labels, colour_image, rgb, scale, translate, unit, source, offset)
    yield Progress(2, 2, f"{len(table)} objects")
    return Segmentation(
        labels, table, scale[-labels.ndim :], translate[-labels.ndim :], unit, method, extra
    )


def _unique_over_time(labels: np.ndarray) -> np.ndarray:
    out = labels.astype(np.int32, copy=True)
    offset = 0
    for t in range(out.shape[0]):
        m = out[t] > 0
        out[t][m] += offset
        offset = max(offset, int(out[t].max(initial=0)))
    return out


def _measure(labels, image, rgb, scale, translate, unit, source, offset) -> pd.DataFrame:
    from napari_nucleus_ai.cells import measure_cells

    if labels.ndim == 3:  # time-lapse: a 2D table per time point, with a t column
        parts = []
        for t in range(labels.shape[0]):
            inten = np.asarray(image[t]) if labels.size <= INTENSITY_MAX_PIXELS else None
            df = measure_cells(
                labels[t],
                inten,
                scale=scale[-2:],
                translate=translate[-2:],
                unit=unit,
                source=source,
            )
            df.insert(1, "t", t)
            parts.append(df)
        return pd.concat(parts, ignore_index=True) if parts else measure_cells(labels[0])
    intensity = None
    if labels.size <= INTENSITY_MAX_PIXELS:
        y0, x0 = offset
        y1, x1 = y0 + labels.shape[0], x0 + labels.shape[1]
        block = image[y0:y1, x0:x1]
        intensity = np.asarray(block.compute() if hasattr(block, "compute") else block)
        if rgb and intensity.shape[-1] == 4:
            intensity = intensity[..., :3]
    return measure_cells(
        labels, intensity, scale=scale[-2:], translate=translate[-2:], unit=unit, source=source
    )


def _storm(df, source, pixel_size_nm: float = 100.0, channel=None, **params):
    from napari_nucleus_ai.segment.storm import segment_storm_nuclei

    yield Progress(0, 2, "rendering density")
    res = segment_storm_nuclei(df, pixel_size_nm=pixel_size_nm, channel=channel, **params)
    yield Progress(1, 2, "measuring nuclei")
    table = res.table()
    if source is not None:
        table["source"] = source
    yield Progress(2, 2, f"{res.n} nuclei")
    return Segmentation(
        res.labels, table, res.scale, res.translate, "nm", "storm-nuclei", {"storm": res}
    )
