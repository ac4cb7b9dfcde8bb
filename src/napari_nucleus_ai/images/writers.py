"""npe2 writer: an image layer as a tiled, pyramidal OME-TIFF that keeps its pixel size.

Regions loaded from a slide, fields and stacks can be saved and re-opened with the same
physical scale (micrometres). 2D grey/RGB images are written tile by tile (zlib, lossless)
with SubIFD pyramid levels: the layer's own levels when it is multiscale (read tile by tile
from dask, so a lazy slide level is never held in memory whole), else block means down to
~1024 px. Stacks are written whole with their OME axes.
"""

from __future__ import annotations

import os

import numpy as np

TILE = 256


def _axes(data_shape, attributes: dict) -> str:
    meta = attributes.get("metadata") or {}
    rgb = bool(attributes.get("rgb"))
    axes = str(meta.get("axes", "")).replace("S", "")
    if meta.get("channels") and "C" in axes and not rgb:
        axes = axes.replace("C", "")  # this layer is one channel of a split stack
    axes += "S" if rgb else ""
    if len(axes) == len(data_shape) and "Y" in axes and "X" in axes:
        return axes.replace("I", "Q")
    nd = len(data_shape) - (1 if rgb else 0)
    return "TZYX"[-nd:] + ("S" if rgb else "") if nd <= 4 else "Q" * (nd - 2) + "YX"


def _pixel_size(attributes: dict, axes: str) -> tuple[float, float] | None:
    meta = attributes.get("metadata") or {}
    units = attributes.get("units")
    scale = attributes.get("scale")
    if scale is None:
        return None
    dims = [a for a in axes if a != "S"]
    sy, sx = float(scale[dims.index("Y")]), float(scale[dims.index("X")])
    in_um = meta.get("pixel_size_um") or (
        units is not None and str(units[-1]) in ("um", "micrometer", "µm")
    )
    return (sy, sx) if in_um and sy > 0 and sx > 0 else None


def _tiles(arr, tile: int):
    h, w = arr.shape[:2]
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            t = arr[y : y + tile, x : x + tile]
            t = np.asarray(t.compute(scheduler="synchronous") if hasattr(t, "compute") else t)
            if t.shape[:2] != (tile, tile):
                pad = [(0, tile - t.shape[0]), (0, tile - t.shape[1])] + [(0, 0)] * (t.ndim - 2)
                t = np.pad(t, pad)
            yield t


def write_ome_tiff(path: str, data, attributes: dict) -> list[str]:
    """npe2 single-layer writer for image layers (``.ome.tif``)."""
    import tifffile

    from napari_nucleus_ai.core.files import atomic_path
    from napari_nucleus_ai.images.regions import block_mean

    levels = list(data) if isinstance(data, list | tuple) else [data]
    if attributes.get("multiscale") is False and isinstance(data, list | tuple):
        levels = [data[0]]
    axes = _axes(levels[0].shape, attributes)
    px = _pixel_size(attributes, axes)
    meta: dict = {"axes": axes, "Name": attributes.get("name") or "image"}
    if px is not None:
        meta.update(
            PhysicalSizeY=px[0], PhysicalSizeX=px[1], PhysicalSizeYUnit="µm", PhysicalSizeXUnit="µm"
        )
        zstep = (attributes.get("metadata") or {}).get("z_step_um")
        if "Z" in axes and zstep:
            meta["PhysicalSizeZ"] = float(zstep)
    plain = axes in ("YX", "YXS")
    if plain and len(levels) == 1:
        base = np.asarray(levels[0])
        levels = [base]
        while max(levels[-1].shape[:2]) > 1024:
            levels.append(block_mean(levels[-1], 2))
    rgb = axes.endswith("S")
    opts = {"compression": "zlib", "photometric": "rgb" if rgb else "minisblack"}
    with (
        atomic_path(path) as tmp,
        tifffile.TiffWriter(tmp, ome=True, bigtiff=_big(levels[0])) as tw,
    ):
        if plain:
            for i, lev in enumerate(levels):
                kw = (
                    {"subifds": len(levels) - 1, "metadata": meta}
                    if i == 0
                    else {"subfiletype": 1, "metadata": None}
                )
                tw.write(
                    _tiles(lev, TILE),
                    shape=lev.shape,
                    dtype=lev.dtype,
                    tile=(TILE, TILE),
                    **opts,
                    **kw,
                )
        else:
            arr = levels[0]
            tw.write(
                np.asarray(arr.compute(scheduler="threads") if hasattr(arr, "compute") else arr),
                metadata=meta,
                **opts,
            )
    return [os.fspath(path)]


def _big(arr) -> bool:
    return float(np.prod(arr.shape, dtype=float)) * np.dtype(arr.dtype).itemsize > 2**31
