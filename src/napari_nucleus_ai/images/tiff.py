"""Every TIFF flavour through one door: tifffile series -> levels (numpy or lazy dask via zarr).

The main series is the largest one that is not an associated image (thumbnail, label,
macro, map, overview); its pyramid levels (SVS/NDPI/SCN/BIF pages, OME or generic SubIFDs,
or reduced-resolution pages of a generic TIFF) become :attr:`ImageData.levels`, largest
first. Small images are read into memory; large ones become dask arrays chunked like
the file's tiles, so napari reads only the tiles it shows.

Before anything is returned the file is checked: every level's compression must have a
decoder, its tile/strip data must lie inside the file (truncation), and one tile of the
smallest and largest levels is decoded — so a broken file fails here, with a one-line
:class:`InputError`, rather than later inside napari's renderer.
"""

from __future__ import annotations

import os

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.params import check_allocation
from napari_nucleus_ai.images.base import EAGER_BYTES, ImageData

ASSOCIATED = ("thumbnail", "label", "macro", "map", "overview")


def _is_associated(series) -> bool:
    return (series.name or "").strip().lower() in ASSOCIATED


def main_series(tf):
    """The image series to show: the largest one that is not an associated image."""
    series = [s for s in tf.series if s.shape and not _is_associated(s)] or [
        s for s in tf.series if s.shape
    ]
    if not series:
        return None
    return max(series, key=lambda s: float(np.prod(s.shape, dtype=float)))


def level_series(tf, series) -> list:
    """Pyramid levels of ``series``, largest first (TiffPageSeries objects)."""
    levels = list(series.levels)
    if len(levels) > 1:
        return levels
    # generic TIFFs sometimes store reduced-resolution levels as further pages (libvips, GDAL)
    base = series.shape
    axes = series.axes
    more = []
    for s in tf.series:
        if s is series or _is_associated(s) or s.axes != axes or s.dtype != series.dtype:
            continue
        if len(s.levels) != 1 or not s.keyframe.is_reduced:
            continue
        fy = base[axes.index("Y")] / s.shape[axes.index("Y")]
        fx = base[axes.index("X")] / s.shape[axes.index("X")]
        if fy >= 1.5 and abs(fy - fx) / fy < 0.1:
            more.append(s)
    more.sort(key=lambda s: -float(np.prod(s.shape, dtype=float)))
    return levels + more


def normalise_axes(axes: str, shape) -> tuple[str, bool]:
    """tifffile axes -> our axes and whether the image is RGB(A)."""
    out = axes.replace("Q", "I")
    rgb = out.endswith("S") and shape[-1] in (3, 4)
    if "S" in out and not rgb:
        out = out.replace("S", "C") if "C" not in out else out
    return out, rgb


def check_pages(path, tf, levels) -> None:
    """Raise :class:`InputError` for undecodable compression or data beyond the end of the file."""
    import tifffile

    size = tf.filehandle.size
    for lev in levels:
        pages = [
            p for p in (lev.keyframe, lev.pages[-1] if len(lev.pages) else None) if p is not None
        ]
        for page in pages:
            comp = int(getattr(page, "compression", 1))
            if comp not in tifffile.TIFF.DECOMPRESSORS:
                known = getattr(tifffile.COMPRESSION, "_value2member_map_", {}).get(comp)
                name = f"{known.name} ({comp})" if known is not None else str(comp)
                raise InputError(
                    path,
                    f"unsupported TIFF compression {name}: no decoder is installed for it",
                )
            offsets = np.asarray(page.dataoffsets, dtype=np.int64)
            counts = np.asarray(page.databytecounts, dtype=np.int64)
            if offsets.size and counts.size and int((offsets + counts).max()) > size:
                raise InputError(
                    path,
                    f"truncated TIFF: image data ends beyond the end of the file ({size} bytes)",
                )
            if counts.size and not counts.any() and lev is levels[0]:
                raise InputError(path, "TIFF image has no data (all tile byte counts are zero)")


def _check_memory(path, levels, series, lazy: bool) -> None:
    """Refuse a header promising more than memory holds: the whole image (eager) or one strip/tile."""
    itemsize = np.dtype(series.dtype).itemsize
    if not lazy:
        check_allocation(path, series.shape, itemsize, "the image")
    for lev in levels:
        page = lev.keyframe
        chunk = getattr(page, "chunks", None) or page.shape
        check_allocation(path, chunk, itemsize, "one TIFF strip or tile (read in one piece)")


def _dask_levels(tf, levels, series) -> list:
    import dask.array as da
    import zarr

    tf.filehandle.set_lock(True)  # napari may read tiles from several threads
    if len(series.levels) > 1 and len(levels) == len(series.levels):
        group = zarr.open(series.aszarr(), mode="r")
        arrays = [group[str(i)] for i in range(len(levels))]
    else:
        arrays = [zarr.open(s.aszarr(), mode="r") for s in levels]
    out = []
    for z in arrays:
        chunks = _chunks(z.shape, z.chunks)
        out.append(da.from_zarr(z, chunks=chunks, inline_array=True))
    return out


def _chunks(shape, zchunks) -> tuple[int, ...]:
    """Dask chunks: the file's tiles, grown to >= 256 px in Y/X when the file has thin strips."""
    chunks = list(zchunks)
    for ax in (-3, -2) if len(shape) >= 3 and shape[-1] in (3, 4) else (-2, -1):
        if len(shape) >= -ax and chunks[ax] < 256:
            chunks[ax] = min(shape[ax], int(np.ceil(256 / chunks[ax])) * chunks[ax])
    return tuple(chunks)


def _decode_first_tile(tf, level) -> None:
    """Decode the first stored tile/strip of a level with tifffile alone (no zarr, no dask)."""
    page = level.keyframe
    offsets, counts = page.dataoffsets, page.databytecounts
    index = next((i for i, c in enumerate(counts) if c), None)
    if index is None:
        return
    fh = tf.filehandle
    fh.seek(offsets[index])
    data = fh.read(counts[index])
    kwargs = {"jpegtables": page.jpegtables, "_fullsize": True}
    if getattr(page, "jpegheader", None) is not None:
        kwargs["jpegheader"] = page.jpegheader
    decoded = page.decode(data, index, **kwargs)[0]
    if decoded is None:
        raise ValueError("tile did not decode")


def _first_chunk(arr):
    if isinstance(arr, np.ndarray):
        return arr
    sl = tuple(slice(0, c[0]) for c in arr.chunks)
    return arr[sl].compute(scheduler="synchronous")  # one chunk; no distributed import


def read_tiff(
    path: str | os.PathLike, lazy: bool | None = None, header_only: bool = False
) -> ImageData:
    """Open any TIFF (field, slide or stack) as :class:`ImageData`.

    Parameters
    ----------
    path : path-like
        The file.
    lazy : bool, optional
        Force dask (True) or memory (False); default: dask when level 0 is larger than
        :data:`~.base.EAGER_BYTES`.
    header_only : bool
        For ``info``: levels are tifffile series (shape and dtype only, no pixels, no
        dask/zarr import); the first tile of the smallest and largest level is still decoded.
    """
    import tifffile

    try:
        tf = tifffile.TiffFile(path)
    except Exception as e:  # noqa: BLE001 - tifffile raises many types for broken headers
        raise InputError(path, f"corrupt TIFF: {' '.join(str(e).split())}") from e
    keep_open = False
    try:
        series = main_series(tf)
        if series is None:
            raise InputError(path, "TIFF has no image data")
        levels = level_series(tf, series)
        check_pages(path, tf, levels)
        axes, rgb = normalise_axes(series.axes, series.shape)
        fmt, px, channels, meta = _metadata(tf, series, axes, rgb)
        if levels[0].size == 0:
            raise InputError(path, "TIFF image has no pixels")
        nbytes = float(np.prod(series.shape, dtype=float)) * np.dtype(series.dtype).itemsize
        if lazy is None:
            lazy = nbytes > EAGER_BYTES
        _check_memory(path, levels, series, lazy or header_only)
        try:
            if header_only:
                _decode_first_tile(tf, levels[-1])
                if len(levels) > 1:
                    _decode_first_tile(tf, levels[0])
                meta["associated"] = [s.name for s in tf.series if _is_associated(s)]
                return ImageData(list(levels), axes, px, rgb, channels, fmt, meta, os.fspath(path))
            if lazy:
                arrays = _dask_levels(tf, levels, series)
                keep_open = True
            else:
                arrays = [np.asarray(s.asarray()) for s in levels]
            _first_chunk(arrays[-1])
            if len(arrays) > 1:
                _first_chunk(arrays[0])
        except Exception as e:  # noqa: BLE001 - codec errors have many types
            raise InputError(path, f"corrupt TIFF image data: {' '.join(str(e).split())}") from e
        meta["associated"] = [s.name for s in tf.series if _is_associated(s)]
        return ImageData(arrays, axes, px, rgb, channels, fmt, meta, os.fspath(path))
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - anything else in a broken file
        raise InputError(path, f"cannot read TIFF: {' '.join(str(e).split())}") from e
    finally:
        if not keep_open:
            tf.close()


def _metadata(tf, series, axes, rgb):
    """(format, pixel_size_um, channels, metadata) from whichever flavour the TIFF is."""
    from napari_nucleus_ai.images import slides, stacks

    if tf.is_ome or tf.is_imagej:
        fmt, px, channels, meta = stacks.tiff_metadata(tf, series, axes, rgb)
    else:
        fmt, px, channels, meta = slides.tiff_metadata(tf, series)
    origin = saved_origin(tf, px)
    if origin is not None:
        meta["origin_um"] = origin
    return fmt, px, channels, meta


def saved_origin(tf, px) -> list[float] | None:
    """The physical origin our writers save, ``[(z,) y, x]`` in um (in pixels when ``px`` is None).

    Renders (ImageJ TIFF) keep it as ``translate_nm`` in the ``Info`` JSON, else as ImageJ's
    ``xorigin``/``yorigin`` calibration (pixels, as Fiji reads it); labels (shaped TIFF) as
    ``translate`` in their ``unit``. ``None`` when the file says nothing or the origin is 0.
    """
    import json

    from napari_nucleus_ai.core.units import NM_PER

    origin = None
    try:
        if tf.is_imagej:
            ij = tf.imagej_metadata or {}
            info = ij.get("Info")
            info = json.loads(info) if isinstance(info, str) and info.startswith("{") else {}
            if isinstance(info, dict) and info.get("translate_nm") is not None:
                nm = [float(v) for v in info["translate_nm"]]
                origin = [v / 1000.0 for v in nm] if px else None
                if px is None and info.get("scale_nm"):
                    origin = [t / float(s) for t, s in zip(nm, info["scale_nm"], strict=True)]
            elif "xorigin" in ij or "yorigin" in ij:
                sy, sx = px or (1.0, 1.0)
                origin = [-float(ij.get("yorigin", 0.0)) * sy, -float(ij.get("xorigin", 0.0)) * sx]
        elif tf.is_shaped:
            shaped = (tf.shaped_metadata or [{}])[0]
            tr = shaped.get("translate")
            if tr is not None:
                unit, scale = shaped.get("unit", "px"), shaped.get("scale")
                tr = [float(v) for v in tr]
                if unit in NM_PER and px:
                    origin = [v * NM_PER[unit] / 1000.0 for v in tr]
                elif unit in NM_PER and scale is not None:  # no pixel size: in pixels
                    origin = [t / float(s) for t, s in zip(tr, scale, strict=True)]
                elif unit == "px":
                    origin = [
                        v * s
                        for v, s in zip(tr, [1.0] * (len(tr) - 2) + list(px or (1, 1)), strict=True)
                    ]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if origin is None or not all(np.isfinite(origin)) or not any(origin):
        return None
    return origin


def read_associated(path: str | os.PathLike, name: str) -> np.ndarray:
    """An associated image of a slide (``"thumbnail"``, ``"label"``, ``"macro"``) as numpy."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        for s in tf.series:
            if (s.name or "").strip().lower() == name.lower():
                return np.asarray(s.asarray())
    raise InputError(path, f"slide has no {name} image")


#: a TIFF region bigger than this is read lazily by ``classify`` and batch chunk tasks
LAZY_REGION_BYTES = 256 * 2**20

#: :class:`TiledPage` decodes a compressed tile of at most this many bytes once per distinct
#: content (an empty tile of a slide region compresses to ~1 KB)
SAME_TILE_BYTES = 16384
#: at most this many distinct small tiles are kept decoded
SAME_TILES = 64


def box_of(key, shape, what: str = "this array") -> tuple[tuple[int, int, int, int], tuple]:
    """``((y0, y1, x0, x1), rest)`` of an index ``key`` of an array of ``shape`` that takes
    only ``[y0:y1, x0:x1]`` boxes (unit steps; ``rest``: the index's further axes), clipped
    to the image as numpy slices are; anything else raises :class:`IndexError` naming ``what``."""
    if not isinstance(key, tuple):
        key = (key,)
    key = key + (slice(None),) * (2 - len(key))
    ys, xs = key[0], key[1]
    if (
        not (isinstance(ys, slice) and isinstance(xs, slice))
        or ys.step not in (None, 1)
        or xs.step not in (None, 1)
    ):
        raise IndexError(f"{what} takes [y0:y1, x0:x1] boxes")
    y0, y1, _ = ys.indices(shape[0])
    x0, x1, _ = xs.indices(shape[1])
    return (y0, max(y0, y1), x0, max(x0, x1)), key[2:]


class TiledPage:
    """Level 0 of a tiled (or stripped) 2D TIFF as a read-only array; only the tiles asked for
    are decoded.

    ``page[y0:y1, x0:x1]`` returns a numpy array, like slicing the image in memory, and
    decodes only the tiles (or strips) under the box, keeping the last ``cache`` decoded tiles
    (neighbouring cells share them). Plain tifffile: no zarr or dask machinery per read, which
    matters when thousands of small per-cell boxes are read.

    A slide region is mostly empty glass, and its empty tiles are the same bytes on disk: a
    small compressed tile (at most :data:`SAME_TILE_BYTES`) is decoded once per distinct
    content and shared (read-only) by every tile with those bytes. :meth:`tile_blank` says,
    without reading pixels, whether a tile is one of those and all zero.

    Attributes
    ----------
    shape : (Y, X) or (Y, X, S) tuple
    dtype : numpy dtype
    ndim : int
    """

    def __init__(self, path: str | os.PathLike, cache: int = 128):
        import threading

        import tifffile

        self.path = os.fspath(path)
        self._tf = tifffile.TiffFile(self.path)
        page = self._tf.pages.first
        self._page = page
        self.shape = tuple(int(v) for v in page.shape)
        self.dtype = np.dtype(page.dtype)
        self.ndim = len(self.shape)
        self._tile = (int(page.chunks[0]), int(page.chunks[1]))
        self._grid = (int(page.chunked[0]), int(page.chunked[1]))
        self._samples = self.shape[2] if self.ndim == 3 else 1
        self._cache: dict = {}
        self._max = max(4, int(cache))
        self._lock = threading.Lock()
        self._same: dict = {}  # compressed bytes of a small tile -> (decoded tile, all zero)

    @classmethod
    def usable(cls, tf) -> bool:
        """Whether the first page of ``tf`` is a plain 2D (grey or RGB, interleaved) image."""
        page = tf.pages.first
        chunked = getattr(page, "chunked", ())
        return (
            len(tf.pages) == 1
            and page.planarconfig == 1
            and len(page.shape) in (2, 3)
            and (len(page.shape) == 2 or page.shape[2] in (3, 4))
            and len(page.chunks) >= 2
            and len(chunked) >= 2
            and int(np.prod(chunked[2:], dtype=int)) == 1
            and all(c > 0 for c in page.databytecounts)
        )

    def close(self) -> None:
        self._tf.close()

    def _tile_at(self, ty: int, tx: int) -> np.ndarray:
        index = ty * self._grid[1] + tx
        tile = self._cache.get(index)
        if tile is not None:
            return tile
        data = self._bytes(index)
        same = self._same.get(data) if data is not None else None
        if same is not None:
            return same[0]
        page = self._page
        if data is None:
            with self._lock:
                fh = self._tf.filehandle
                fh.seek(page.dataoffsets[index])
                data = fh.read(page.databytecounts[index])
        kwargs = {"jpegtables": page.jpegtables, "_fullsize": True}
        if getattr(page, "jpegheader", None) is not None:
            kwargs["jpegheader"] = page.jpegheader
        tile = page.decode(data, index, **kwargs)[0]
        tile = np.asarray(tile).reshape(self._tile[0], self._tile[1], self._samples)
        if len(data) <= SAME_TILE_BYTES and len(self._same) < SAME_TILES:
            tile.flags.writeable = False  # shared by every tile of these bytes
            self._same[data] = (tile, not tile.any())
            return tile
        with self._lock:  # several threads may read one page
            if len(self._cache) >= self._max:
                self._cache.pop(next(iter(self._cache)), None)  # oldest first
            self._cache[index] = tile
        return tile

    def _bytes(self, index: int) -> bytes | None:
        """The compressed bytes of tile ``index`` when they are few (:data:`SAME_TILE_BYTES`),
        else None (the caller reads them)."""
        page = self._page
        if page.databytecounts[index] > SAME_TILE_BYTES:
            return None
        with self._lock:
            fh = self._tf.filehandle
            fh.seek(page.dataoffsets[index])
            return fh.read(page.databytecounts[index])

    @property
    def tile_shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of one tile (a strip: its rows, the image width)."""
        return self._tile

    def tile_blank(self, ty: int, tx: int) -> bool:
        """Whether tile ``(ty, tx)`` (tile row, column) is all zero, known from its compressed
        bytes being those of an all-zero tile decoded before (False when not known)."""
        data = self._bytes(ty * self._grid[1] + tx)
        if data is None:
            return False
        if data not in self._same:
            self._tile_at(ty, tx)
        same = self._same.get(data)
        return bool(same is not None and same[1])

    def __getitem__(self, key) -> np.ndarray:
        (y0, y1, x0, x1), rest = box_of(key, self.shape, "a TiledPage")
        th, tw = self._tile
        out = np.empty((y1 - y0, x1 - x0, self._samples), self.dtype)
        for ty in range(y0 // th, -(-y1 // th)):
            for tx in range(x0 // tw, -(-x1 // tw)):
                tile = self._tile_at(ty, tx)
                a0, a1 = max(y0, ty * th), min(y1, (ty + 1) * th)
                b0, b1 = max(x0, tx * tw), min(x1, (tx + 1) * tw)
                out[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0] = tile[
                    a0 - ty * th : a1 - ty * th, b0 - tx * tw : b1 - tx * tw
                ]
        out = out if self.ndim == 3 else out[..., 0]
        return out[(slice(None), slice(None), *rest)] if rest else out

    def __array__(self, dtype=None, copy=None):
        out = self[:, :]
        return out if dtype is None else out.astype(dtype)


def read_region_lazy(path: str | os.PathLike, min_bytes: float | None = None):
    """Level 0 of a big 2D TIFF as a lazy array, or None for a small one.

    ``classify`` and batch chunk tasks cut per-cell windows from it, so only the tiles
    under cells are decoded. A plain tiled or stripped TIFF becomes a :class:`TiledPage`,
    other TIFFs (pyramids, OME, ...) a tile-chunked dask array of level 0. Returns None
    when ``path`` is not a TIFF or level 0 holds at most ``min_bytes`` (default
    :data:`LAZY_REGION_BYTES`): the caller reads it into memory.

    Raises
    ------
    InputError
        A broken TIFF, or a big one that is not one grey or RGB plane (``YX`` / ``YXS``).
    """
    import tifffile

    if not os.fspath(path).lower().endswith((".tif", ".tiff")):
        return None
    limit = LAZY_REGION_BYTES if min_bytes is None else min_bytes
    try:
        with tifffile.TiffFile(path) as tf:
            series = main_series(tf)
            if series is None:
                raise InputError(path, "TIFF has no image data")
            nbytes = float(np.prod(series.shape, dtype=float)) * np.dtype(series.dtype).itemsize
            plain = TiledPage.usable(tf)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - tifffile raises many types for broken headers
        raise InputError(path, f"corrupt TIFF: {' '.join(str(e).split())}") from e
    if nbytes <= limit:
        return None
    if plain:
        try:
            region = TiledPage(path)
            region[0:1, 0:1]  # one tile decodes, or the file is broken
            return region
        except Exception as e:  # noqa: BLE001 - codec errors have many types
            raise InputError(path, f"corrupt TIFF image data: {' '.join(str(e).split())}") from e
    data = read_tiff(path, lazy=True)
    if data.axes not in ("YX", "YXS"):
        raise InputError(
            path, f"a big region must be one 2D grey or RGB image, got axes {data.axes}"
        )
    return data.levels[0]
