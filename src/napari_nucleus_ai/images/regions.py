"""Reading a region or a whole level of a (lazy) pyramid into memory, with progress.

This is what the Slide dock runs in a worker: only the tiles the region touches are
decoded, band by band, so a cancel takes effect between bands and memory stays at the
size of the result.
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress

# refuse to load more than this into memory (a whole level 0 of a 40k slide is 4.8 GB)
MAX_REGION_BYTES = 2 * 2**30
# a lazy level larger than this on a side is too big to decode for an overview
THUMBNAIL_MAX_LAZY = 4096


def downsample_factors(levels, axes: str) -> list[tuple[float, float]]:
    """(fy, fx) of each level relative to level 0."""
    iy, ix = axes.index("Y"), axes.index("X")
    h0, w0 = levels[0].shape[iy], levels[0].shape[ix]
    return [(h0 / lev.shape[iy], w0 / lev.shape[ix]) for lev in levels]


def clip_region(shape, axes: str, y0, x0, height, width) -> tuple[int, int, int, int]:
    """Clip a region to a level: returns (y0, x0, y1, x1) or raises when nothing is left."""
    iy, ix = axes.index("Y"), axes.index("X")
    h, w = shape[iy], shape[ix]
    y0, x0 = max(0, int(np.floor(y0))), max(0, int(np.floor(x0)))
    y1, x1 = min(h, int(np.ceil(y0 + height))), min(w, int(np.ceil(x0 + width)))
    if y1 <= y0 or x1 <= x0:
        raise InputError(None, f"the region is outside the image ({h} x {w} pixels)")
    return y0, x0, y1, x1


def read_region_gen(
    levels, axes: str, level: int, y0, x0, height, width, band: int = 1024, name=None
):
    """Generator: read ``[y0:y0+height, x0:x0+width]`` of ``levels[level]`` (other axes whole).

    Yields :class:`Progress` per band of rows; returns ``(array, (y0, x0))`` -- the numpy
    region and its clipped origin in that level's pixels.
    """
    if not 0 <= level < len(levels):
        raise InputError(name, f"level {level} does not exist (there are {len(levels)})")
    arr = levels[level]
    iy, ix = axes.index("Y"), axes.index("X")
    y0, x0, y1, x1 = clip_region(arr.shape, axes, y0, x0, height, width)
    out_shape = list(arr.shape)
    out_shape[iy], out_shape[ix] = y1 - y0, x1 - x0
    nbytes = float(np.prod(out_shape, dtype=float)) * np.dtype(arr.dtype).itemsize
    if nbytes > MAX_REGION_BYTES:
        raise InputError(
            name,
            f"region of {nbytes / 2**30:.1f} GiB is too large to load; choose a smaller region or a lower level",
        )
    out = np.empty(out_shape, dtype=arr.dtype)
    bands = list(range(y0, y1, band))
    for i, ys in enumerate(bands):
        ye = min(y1, ys + band)
        src = [slice(None)] * arr.ndim
        dst = [slice(None)] * arr.ndim
        src[iy], src[ix] = slice(ys, ye), slice(x0, x1)
        dst[iy] = slice(ys - y0, ye - y0)
        part = arr[tuple(src)]
        out[tuple(dst)] = (
            part if isinstance(part, np.ndarray) else np.asarray(part.compute(scheduler="threads"))
        )
        yield Progress(i + 1, len(bands), f"rows {ye - y0} of {y1 - y0}")
    return out, (y0, x0)


def block_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Downsample the first two axes by an integer factor (block mean; edges padded by replication)."""
    if f == 1:
        return img
    h, w = img.shape[:2]
    ph, pw = (-h) % f, (-w) % f
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw)) + ((0, 0),) * (img.ndim - 2), mode="edge")
    sh = (img.shape[0] // f, f, img.shape[1] // f, f) + img.shape[2:]
    out = img.reshape(sh).mean(axis=(1, 3))
    return (
        out.round().astype(img.dtype)
        if np.issubdtype(img.dtype, np.integer)
        else out.astype(img.dtype)
    )


def thumbnail(levels, axes: str, rgb: bool, max_size: int = 512) -> np.ndarray:
    """An RGB uint8 overview (smallest level, first plane of other axes), at most ``max_size``."""
    from napari_nucleus_ai.images.base import as_rgb

    arr = levels[-1]
    iy, ix = axes.index("Y"), axes.index("X")
    if hasattr(arr, "dask") and max(arr.shape[iy], arr.shape[ix]) > THUMBNAIL_MAX_LAZY:
        # no pyramid: an overview would decode every tile of the image
        raise InputError(None, "no thumbnail: the file has no small pyramid level")
    step = max(1, int(np.ceil(max(arr.shape[iy], arr.shape[ix]) / max_size)))
    sl = []
    for i, a in enumerate(axes):
        if i in (iy, ix):
            sl.append(slice(None, None, step))
        elif a == "S" and rgb:
            sl.append(slice(None))
        else:
            sl.append(arr.shape[i] // 2 if a in "ZT" else 0)
    small = arr[tuple(sl)]
    small = np.asarray(small.compute(scheduler="threads") if hasattr(small, "compute") else small)
    return as_rgb(small)
