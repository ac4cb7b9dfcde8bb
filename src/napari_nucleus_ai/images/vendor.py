"""Vendor microscope formats through bioio: Zeiss CZI, Nikon ND2, Leica LIF (the ``[formats]`` extra).

`bioio <https://bioio-devs.github.io/bioio/>`_ with its reader plugins (``bioio-czi``,
``bioio-nd2``, ``bioio-lif``) gives every file as lazy ``T, C, Z, Y, X`` (``S`` for RGB
brightfield) with channel names and physical pixel sizes in micrometres. The first scene
is read; the others are listed in the metadata. Size-one ``T``/``Z`` axes are dropped, and
so is a single channel (its name is kept as ``channel_name``), so a plain field is ``YX``.

Without the extra, reading such a file is one line naming the file and the install command.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.images.base import EAGER_BYTES, ImageData

#: kind -> (format name, bioio reader plugin module)
READERS = {
    "czi": ("Zeiss CZI", "bioio_czi"),
    "nd2": ("Nikon ND2", "bioio_nd2"),
    "lif": ("Leica LIF", "bioio_lif"),
}
EXTRA_HINT = "pip install napari-nucleus-ai[formats]"


def _reader_class(path, kind: str):
    """The bioio reader class for ``kind``, or a one-line error naming the missing extra."""
    import importlib

    name, module = READERS[kind]
    try:
        importlib.import_module("bioio")
        return importlib.import_module(module).Reader
    except ImportError:
        raise InputError(
            path, f"reading {name} files needs the [formats] extra: {EXTRA_HINT}"
        ) from None


@contextlib.contextmanager
def _quiet_bioio():
    """Silence bioio's own logging of a failed reader attempt (the error is raised anyway)."""
    import logging

    log = logging.getLogger("bioio")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _reason(e: Exception) -> str:
    """The reader's own reason, without bioio's "none of the readers..." preamble."""
    text = " ".join(str(e).split())
    if "Readers attempted" in text and "'. " in text:
        text = text.rsplit("'. ", 1)[-1] or text
    return text[:300]


def read_vendor(path: str | os.PathLike, kind: str, lazy: bool | None = None) -> ImageData:
    """Open a CZI, ND2 or LIF file (first scene) as :class:`ImageData`.

    Parameters
    ----------
    path : path-like
        The file.
    kind : {"czi", "nd2", "lif"}
        From :func:`.base.kind_of`.
    lazy : bool, optional
        Force dask levels (True) or read into memory (False); default: lazy when the
        scene is larger than :data:`~.base.EAGER_BYTES`.
    """
    reader = _reader_class(path, kind)
    from bioio import BioImage

    name = READERS[kind][0]
    try:
        with _quiet_bioio():  # its log line would repeat the one-line error below
            im = BioImage(os.fspath(path), reader=reader)
        dims = "".join(im.dims.order)
        data = im.dask_data
        channels = [str(c) for c in (im.channel_names or [])]
        sizes = im.physical_pixel_sizes
        scenes = [str(s) for s in im.scenes]
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - vendor readers raise many types for broken files
        raise InputError(path, f"cannot read as {name}: {_reason(e)}") from None
    if data.size == 0:
        raise InputError(path, f"{name} file has no pixels")
    rgb = dims.endswith("S") and data.shape[-1] in (3, 4)
    # drop size-one T/Z (and C: its name is kept), keep the order T C Z Y X (S)
    index, axes = [], ""
    for a, n in zip(dims, data.shape, strict=True):
        if a in "TZC" and n == 1:
            index.append(0)
        elif a in "TCZYXS":
            index.append(slice(None))
            axes += a
        else:  # e.g. mosaic or rotation axes: their first index
            index.append(0)
    data = data[tuple(index)]
    meta: dict = {
        "reader": READERS[kind][1].replace("_", "-"),  # the bioio plugin
        "scenes": scenes,
        "scene": scenes[0] if scenes else None,
    }
    if "C" not in axes:
        if channels:
            meta["channel_name"] = channels[0]
        channels = []
    elif len(channels) != data.shape[axes.index("C")]:
        channels = [f"channel {i}" for i in range(data.shape[axes.index("C")])]
    if channels:
        from napari_nucleus_ai.images.stacks import default_colors

        meta["channel_colors"] = default_colors(channels)
    px = None
    if sizes is not None and sizes.X and sizes.Y:
        px = (float(sizes.Y), float(sizes.X))
        meta["mpp"] = px[1]
    if sizes is not None and sizes.Z and "Z" in axes:
        meta["z_step_um"] = float(sizes.Z)
    with contextlib.suppress(Exception):  # not every reader knows the time step
        dt = im.time_interval
        if dt is not None and "T" in axes:
            meta["time_step_s"] = float(dt.to("s").magnitude if hasattr(dt, "to") else dt)
    nbytes = float(np.prod(data.shape, dtype=float)) * np.dtype(data.dtype).itemsize
    if lazy is None:
        lazy = nbytes > EAGER_BYTES
    try:
        if not lazy:
            from napari_nucleus_ai.core.params import check_allocation

            check_allocation(path, data.shape, np.dtype(data.dtype).itemsize, "the image")
            data = np.asarray(im.data)[tuple(index)]  # bioio's own in-memory read
        elif rgb:
            data = _rgb_planes(im, dims, index, data)
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - codec errors have many types
        raise InputError(path, f"corrupt {name} image data: {' '.join(str(e).split())}") from None
    return ImageData([data], axes, px, rgb, channels, kind, meta, os.fspath(path))


def _rgb_planes(im, dims: str, index: list, data):
    """Lazy RGB as one dask chunk per (T, C, Z) plane read whole by bioio.

    bioio-czi 3.0's ``dask_data`` splits the colour axis into one chunk per sample and
    returns the first sample for each, so colour planes are read whole instead.
    """
    import dask
    import dask.array as da

    lead = [a for a in dims[:-3] if a in "TCZ"]
    shape = {a: n for a, n in zip(dims, im.dask_data.shape, strict=True)}

    def plane(**where):
        return np.asarray(im.get_image_data("YXS", **where))

    def build(axes_left: list, where: dict):
        if not axes_left:
            d = dask.delayed(plane)(**where)
            return da.from_delayed(d, (shape["Y"], shape["X"], shape["S"]), data.dtype)
        a = axes_left[0]
        return da.stack([build(axes_left[1:], {**where, a: i}) for i in range(shape[a])])

    full = build(lead, {})  # (T, C, Z, Y, X, S) in dims order (mosaic axes excluded)
    keep = [ix for a, ix in zip(dims, index, strict=True) if a in "TCZYXS"]
    return full[tuple(keep)]
