"""Tile-wise segmentation of images too big for one pass: whole slides, big mosaics.

The image (numpy, dask or zarr array; read lazily tile by tile) is cut into
tiles with an overlap at least as wide as the largest object. Each tile plus its
overlap is segmented on its own (two tiles at a time, in threads); stitching
keeps, from each tile, the objects that

- do not touch the tile's outer edge (unless that edge is the image's edge):
  those are cut and a neighbouring tile sees them whole, and
- have their centroid in the tile's core (the tile without its overlap):
  so an object seen whole by two tiles is kept once,

and pastes them with new, globally unique ids. With an overlap larger than
any object, every object is whole in the tile whose core holds its centroid,
so the result does not depend on where the tile borders fall.

Settings that must not change from tile to tile (the pixel size for ``wbc``;
the nucleus size and intensity threshold for ``nuclei``) are measured once on a
few sample regions first (:func:`calibrate`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from napari_nucleus_ai.core.errors import Cancelled, InputError
from napari_nucleus_ai.core.progress import Progress

# Largest object, in micrometres, for the overlap: white cells up to ~25 um, nuclei ~30 um.
MAX_OBJECT_UM = {"wbc": 30.0, "nuclei": 30.0}


def _region(shape, region) -> tuple[int, int, int, int]:
    H, W = shape[:2]
    if region is None:
        return 0, H, 0, W
    y0, y1, x0, x1 = (int(round(v)) for v in region)
    y0, x0 = max(0, y0), max(0, x0)
    y1, x1 = min(H, y1), min(W, x1)
    if y1 - y0 < 1 or x1 - x0 < 1:
        raise InputError(None, f"region {tuple(region)} lies outside the image {H}x{W}")
    return y0, y1, x0, x1


def _read(image, y0, y1, x0, x1) -> np.ndarray:
    block = image[y0:y1, x0:x1]
    if hasattr(block, "compute"):
        block = block.compute()
    return np.asarray(block)


def _sample_windows(y0, y1, x0, x1, size, n=5):
    """Up to ``n`` windows spread over the region (centre first)."""
    h, w = y1 - y0, x1 - x0
    sh, sw = min(size, h), min(size, w)
    spots = [(0.5, 0.5), (0.25, 0.25), (0.75, 0.75), (0.25, 0.75), (0.75, 0.25)][:n]
    out = []
    for fy, fx in spots:
        cy, cx = y0 + int(fy * h), x0 + int(fx * w)
        a, b = max(y0, cy - sh // 2), max(x0, cx - sw // 2)
        a, b = min(a, y1 - sh), min(b, x1 - sw)
        out.append((a, a + sh, b, b + sw))
    return list(dict.fromkeys(out))


def calibrate(image, method: str, region=None, pixel_size_um=None, params=None) -> dict:
    """Measure once, on sample windows, the settings that must stay fixed over all tiles.

    Returns extra keyword arguments for the method (and ``pixel_size_um``).
    """
    params = dict(params or {})
    y0, y1, x0, x1 = _region(image.shape, region)
    if method == "wbc":
        if pixel_size_um is not None:
            return {"pixel_size_um": pixel_size_um}
        from napari_nucleus_ai.segment.wbc import RBC_DIAMETER_UM, estimate_rbc_diameter_windows

        view = image[y0:y1, x0:x1]
        d = estimate_rbc_diameter_windows(view, n=5)
        return {"pixel_size_um": RBC_DIAMETER_UM / d if d else None}
    if method == "nuclei":
        from scipy import ndimage as ndi

        from napari_nucleus_ai.segment._checks import check_gray
        from napari_nucleus_ai.segment.nuclei import (
            _estimate_diameter,
            background_stats,
            foreground,
        )

        if params.get("threshold") is not None and params.get("diameter_um") is not None:
            return {"pixel_size_um": pixel_size_um}
        samples = [
            check_gray(_read(image, a, b, c, d))
            for a, b, c, d in _sample_windows(y0, y1, x0, x1, 1024)
        ]
        out: dict = {"pixel_size_um": pixel_size_um}
        sm = [ndi.gaussian_filter(s, 1.0) for s in samples]
        allpix = np.concatenate([s.ravel() for s in sm])
        if params.get("threshold") is None:
            from skimage.filters import threshold_otsu

            bg, noise = background_stats(allpix)
            floor = bg + float(params.get("min_snr", 5.0)) * noise
            t = max(float(threshold_otsu(allpix)), floor) if allpix.max() > floor else floor
            out["threshold"] = t
        if params.get("diameter_um") is None:
            masks = [foreground(s, 5.0, out.get("threshold", params.get("threshold"))) for s in sm]
            diam = [_estimate_diameter(m) for m in masks]
            diam = [d for d in diam if d]
            if diam:
                out["diameter_um"] = float(np.median(diam)) * (pixel_size_um or 1.0)
        return out
    raise InputError(None, f"tile-wise segmentation does not support method {method!r}")


def segment_tiled(
    image,
    method: str = "wbc",
    *,
    tile: int = 2048,
    overlap: int | None = None,
    region: Sequence[float] | None = None,
    polygon: np.ndarray | None = None,
    pixel_size_um: float | None = None,
    workers: int = 2,
    out=None,
    cancel: Callable[[], bool] | None = None,
    **params,
) -> Generator[Progress, None, np.ndarray]:
    """Segment a big 2D image tile by tile; a core generator returning the labels.

    Parameters
    ----------
    image : (Y, X[, C]) array-like
        numpy, dask or zarr; tiles are read one at a time.
    method : {"wbc", "nuclei"}
    tile : int
        Tile side in pixels (without overlap).
    overlap : int, optional
        Pixels added on every side; default: the largest object size
        (``MAX_OBJECT_UM``) at the pixel size.
    region : (y0, y1, x0, x1), optional
        Only this part of the image (e.g. the visible region); the labels
        returned cover just this region.
    polygon : (N, 2) array of (y, x), optional
        Keep only objects whose centroid lies inside this polygon (a shapes ROI),
        in image pixel coordinates.
    pixel_size_um : float, optional
        Pixel size; measured on sample windows when not given (``wbc``).
    workers : int
        Tiles segmented at once (threads).
    out : array-like, optional
        Where to write the labels (e.g. a zarr array of the region's shape).
    cancel : callable, optional
        Returns True to stop; raises :class:`~napari_nucleus_ai.core.errors.Cancelled`.
    **params
        Passed to the method.

    Returns
    -------
    (Y, X) int32 labels of the region (``out`` when given).
    """
    from scipy import ndimage as ndi

    if method not in MAX_OBJECT_UM:
        raise InputError(
            None, f"tile-wise segmentation supports {sorted(MAX_OBJECT_UM)}, not {method!r}"
        )
    ndim_ok = (image.ndim == 2) or (image.ndim == 3 and image.shape[-1] in (1, 3, 4))
    if not ndim_ok:
        raise InputError(None, f"tile-wise segmentation needs a 2D image, got shape {image.shape}")
    if int(tile) < 64:
        raise InputError(None, f"tile must be at least 64 pixels, got {tile}")
    y0, y1, x0, x1 = _region(image.shape, region)
    H, W = image.shape[:2]
    yield Progress(0, None, "measuring settings on sample regions")
    fixed = calibrate(image, method, (y0, y1, x0, x1), pixel_size_um, params)
    px = fixed.pop("pixel_size_um", pixel_size_um)
    kwargs = {**params, **{k: v for k, v in fixed.items() if params.get(k) is None}}
    if method == "wbc":
        from napari_nucleus_ai.segment.wbc import segment_wbc as fn
    else:
        from napari_nucleus_ai.segment.nuclei import segment_nuclei as fn
    if overlap is None:
        overlap = int(np.ceil(MAX_OBJECT_UM[method] / (px or 0.25)))
        if method == "nuclei" and kwargs.get("diameter_um"):
            overlap = int(np.ceil(1.5 * kwargs["diameter_um"] / (px or 1.0))) + 4
    overlap = max(0, int(overlap))
    tiles = [
        (ty, min(ty + tile, y1), tx, min(tx + tile, x1))
        for ty in range(y0, y1, tile)
        for tx in range(x0, x1, tile)
    ]
    labels = out if out is not None else np.zeros((y1 - y0, x1 - x0), np.int32)
    path = None
    if polygon is not None:
        from matplotlib.path import Path

        path = Path(np.asarray(polygon, float)[:, ::-1])  # (x, y) vertices

    def work(t):
        a, b, c, d = t
        ea, eb, ec, ed = (
            max(0, a - overlap),
            min(H, b + overlap),
            max(0, c - overlap),
            min(W, d + overlap),
        )
        block = _read(image, ea, eb, ec, ed)
        if block.size and block.min() == block.max():  # blank glass / padding: no objects
            return t, (ea, eb, ec, ed), np.zeros(block.shape[:2], np.int32)
        lab = fn(block, px, **kwargs)
        return t, (ea, eb, ec, ed), lab

    next_id = 1
    n = len(tiles)
    yield Progress(0, n, f"{n} tiles")
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        pending = {}
        it = iter(tiles)
        for t in list(tiles)[: max(1, int(workers))]:
            pending[t] = pool.submit(work, next(it))
        done = 0
        while pending:
            t0 = next(iter(pending))
            fut = pending.pop(t0)
            if cancel is not None and cancel():
                for f in pending.values():
                    f.cancel()
                raise Cancelled("segmentation cancelled")
            (a, b, c, d), (ea, eb, ec, ed), lab = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                pending[nxt] = pool.submit(work, nxt)
            next_id = _paste(
                labels, lab, (a, b, c, d), (ea, eb, ec, ed), (y0, x0), (H, W), next_id, path, ndi
            )
            done += 1
            yield Progress(done, n, f"tile {done}/{n}")
    return labels


def place(labels, new: np.ndarray, ext, origin=(0, 0), offset: int = 0) -> np.ndarray:
    """Write the objects of an extended tile into ``labels`` where no object is yet.

    ``new`` holds ids (0: none) on the extended tile ``ext`` = (y0, y1, x0, x1) of the
    image, which become ``offset + id`` in ``labels``; ``labels`` covers the image from
    ``origin``. A pixel an earlier tile's object already holds stays that object's.
    Returns the final ids (``offset`` added) of the objects that lost pixels so.
    """
    ea, eb, ec, ed = ext
    y0, x0 = origin
    # the part of the extended tile inside the output region
    oy0, ox0 = max(ea, y0), max(ec, x0)
    oy1 = min(eb, y0 + labels.shape[0])
    ox1 = min(ed, x0 + labels.shape[1])
    sub = new[oy0 - ea : oy1 - ea, ox0 - ec : ox1 - ec]
    window = (slice(oy0 - y0, oy1 - y0), slice(ox0 - x0, ox1 - x0))
    in_memory = isinstance(labels, np.ndarray)
    dst = labels[window] if in_memory else np.asarray(labels[window])  # a view: written in place
    mine = sub != 0
    put = mine & (dst == 0)
    np.add(sub, offset, out=dst, where=put, casting="unsafe")
    if not in_memory:
        labels[window] = dst
    return np.unique(sub[mine ^ put]).astype(np.int64) + offset


def _paste(labels, lab, core, ext, origin, shape, next_id, path, ndi) -> int:
    """Copy the objects of one tile that belong to it into ``labels``; return the next free id."""
    a, b, c, d = core
    ea, eb, ec, ed = ext
    H, W = shape
    if lab.max() == 0:
        return next_id
    ids = np.unique(lab)
    ids = ids[ids > 0]
    cy, cx = np.asarray(ndi.center_of_mass(lab > 0, lab, ids)).reshape(-1, 2).T
    cy, cx = cy + ea, cx + ec
    keep = (cy >= a) & (cy < b) & (cx >= c) & (cx < d)
    # objects cut by the tile's outer edge are someone else's (unless that edge is the image's)
    edge = set()
    if ea > 0:
        edge.update(np.unique(lab[0]))
    if eb < H:
        edge.update(np.unique(lab[-1]))
    if ec > 0:
        edge.update(np.unique(lab[:, 0]))
    if ed < W:
        edge.update(np.unique(lab[:, -1]))
    keep &= ~np.isin(ids, list(edge))
    if path is not None and keep.any():
        keep &= path.contains_points(np.column_stack([cx, cy]))
    if not keep.any():
        return next_id
    lut = np.zeros(int(lab.max()) + 1, np.int64)
    lut[ids[keep]] = np.arange(next_id, next_id + int(keep.sum()))
    place(labels, lut[lab], ext, origin)
    return next_id + int(keep.sum())
