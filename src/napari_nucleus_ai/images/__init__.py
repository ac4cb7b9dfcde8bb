"""Images family: fields of view, whole-slide pyramids and fluorescence stacks.

Public interface (Qt-free; numpy at import, the rest inside functions):

``read_image(path, lazy=None) -> ImageData``
    Levels (numpy or lazy dask, largest first), axes, pixel size in micrometres, RGB flag,
    channel names, format and metadata. See :class:`~.base.ImageData`.
``as_rgb(array) -> numpy uint8 (Y, X, 3)``
    Plain RGB for analysis (alpha dropped, grey repeated, 16-bit rescaled).
``sniff(path)`` / ``describe(path)`` / ``read_layers(path, **options)``
    The family protocol of :mod:`napari_nucleus_ai.io`.
``read_region(image, level, y0, x0, height, width) -> numpy``
    One region of one level into memory (what the Slide dock loads for analysis).

Modules: :mod:`.fields` (JPEG/PNG/BMP/JPEG 2000), :mod:`.tiff` (every TIFF, lazy levels and
integrity checks), :mod:`.slides` (SVS/NDPI/SCN/BIF metadata, openslide extra),
:mod:`.stacks` (OME/ImageJ channels and physical sizes), :mod:`.vendor` (CZI/ND2/LIF through
bioio, the ``[formats]`` extra).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.images.base import ImageData, as_rgb, kind_of

__all__ = ["ImageData", "as_rgb", "describe", "read_image", "read_layers", "read_region", "sniff"]


def sniff(path: str | os.PathLike) -> bool:
    """True when ``path``'s content is a TIFF, JPEG, PNG, BMP, JPEG 2000, DICOM, MIRAX, CZI, ND2
    or LIF file (the last three need the ``[formats]`` extra to be read)."""
    return kind_of(path) is not None


def read_image(
    path: str | os.PathLike, lazy: bool | None = None, header_only: bool = False
) -> ImageData:
    """Open an image, slide or stack; raise a one-line :class:`InputError` for bad files.

    Parameters
    ----------
    path : path-like
        The file.
    lazy : bool, optional
        TIFFs and CZI/ND2/LIF: force dask levels (True) or read into memory (False).
        Default: lazy when level 0 is larger than 64 MiB.
    header_only : bool
        TIFFs only: levels are tifffile series with ``shape``/``dtype`` but no pixel
        access (what ``info`` needs, without importing dask or zarr). Other formats are
        small and read as usual.
    """
    from napari_nucleus_ai.core.files import check_readable

    check_readable(path)
    kind = kind_of(path)
    if kind is None:
        raise InputError(
            path,
            "not an image format napari-nucleus-ai can read (TIFF, JPEG, PNG, BMP, JPEG 2000, CZI, ND2, LIF)",
        )
    if kind == "tiff":
        from napari_nucleus_ai.images.tiff import read_tiff

        return read_tiff(path, lazy=lazy, header_only=header_only)
    if kind in ("czi", "nd2", "lif"):
        from napari_nucleus_ai.images.vendor import read_vendor

        return read_vendor(path, kind, lazy=True if header_only else lazy)
    if kind in ("dicom", "mirax"):
        from napari_nucleus_ai.images.slides import read_openslide

        return read_openslide(path, kind)
    from napari_nucleus_ai.images.fields import read_field

    return read_field(path, kind)


def describe(path: str | os.PathLike) -> dict:
    """The ``info --json`` dictionary: kind, format, shape, dtype, axes, levels, pixel size..."""
    return read_image(path, header_only=True).describe()


def read_region(
    image: ImageData, level: int, y0: int, x0: int, height: int, width: int
) -> np.ndarray:
    """Read ``[y0:y0+height, x0:x0+width]`` of ``level`` (all other axes kept) into numpy.

    The region is clipped to the level; only the tiles it touches are decoded.
    See :func:`.regions.read_region_gen` for the version with progress.
    """
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.images.regions import read_region_gen

    arr, _ = run_sync(
        read_region_gen(image.levels, image.axes, level, y0, x0, height, width, name=image.path)
    )
    return arr


def layer_metadata(image: ImageData) -> dict:
    """What an image layer's ``metadata`` carries: the ``info`` dict, the path and vendor extras."""
    meta = image.describe()
    meta["path"] = image.path
    meta.update({k: v for k, v in image.metadata.items() if k not in meta})
    return meta


def _contrast_limits(image: ImageData):
    """Contrast limits napari would otherwise compute by reading a whole lazy level."""
    if image.rgb or not image.lazy:
        return None
    small = image.levels[-1]
    if float(np.prod(small.shape, dtype=float)) <= 4096 * 4096:
        vals = np.asarray(
            small.compute(scheduler="threads") if hasattr(small, "compute") else small
        )
        lo, hi = (float(v) for v in np.percentile(vals, (0.05, 99.95)))
        return [lo, hi if hi > lo else lo + 1]
    info = np.iinfo(image.dtype) if np.issubdtype(image.dtype, np.integer) else None
    return [float(info.min), float(info.max)] if info else None


def display_name(path: str | os.PathLike) -> str:
    """Layer name for a file: its name without the image suffix (``.ome.tif`` counts as one)."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.btf"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _colormap(channel: str, color: str | None):
    """A black-to-``color`` linear colormap (napari dict form), or grey."""
    if color is None:
        return "gray"
    if color.lower() in ("#ffffff", "#fff"):
        return "gray"
    return {"colors": ["#000000", color], "name": f"{channel} {color}"}


def napari_units(ndim: int, image: ImageData | None = None) -> dict:
    """``{"units": (...)}`` in micrometres for napari >= 0.6 (scale bar in um), else ``{}``.

    Only when the pixel size is known; non-spatial axes get ``"pixel"``.
    """
    if image is not None and image.pixel_size_um is None:
        return {}
    try:
        from importlib.metadata import version

        major, minor = (int(v) for v in version("napari").split(".")[:2])
    except Exception:  # noqa: BLE001 - napari absent or odd version string
        return {}
    if (major, minor) < (0, 6):
        return {}
    axes = "YX" if image is None else image.axes.replace("S", "")
    if image is not None and "C" in axes and image.channels and not image.rgb:
        axes = axes.replace("C", "")  # napari splits the channels into layers
    units = tuple("um" if a in "YXZ" else "pixel" for a in axes)
    return {"units": units[-ndim:]} if len(units) >= ndim else {}


def image_layers(image: ImageData, name: str | None = None) -> list:
    """Layer data tuples for one :class:`ImageData` (channels split by ``channel_axis``)."""
    name = name or display_name(image.path)
    multiscale = len(image.levels) > 1
    data = image.levels if multiscale else image.levels[0]
    kwargs: dict = {"name": name, "rgb": image.rgb, "metadata": layer_metadata(image)}
    if multiscale:
        kwargs["multiscale"] = True
    limits = _contrast_limits(image)
    if limits is not None:
        kwargs["contrast_limits"] = limits
    axes = image.axes.replace("S", "")
    if "C" in image.axes and image.channels and not image.rgb:
        c = image.axes.index("C")
        colors = image.metadata.get("channel_colors") or [None] * len(image.channels)
        kwargs.update(
            channel_axis=c,
            name=[f"{name} {ch}" if ch.startswith("channel ") else ch for ch in image.channels],
            colormap=[_colormap(ch, col) for ch, col in zip(image.channels, colors, strict=True)],
            scale=image.scale(drop_channel=True),
            translate=image.translate(drop_channel=True),
            axis_labels=tuple(a for a in axes if a != "C"),
            blending="additive",
        )
        if limits is not None:
            kwargs.pop("contrast_limits")
    else:
        kwargs.update(scale=image.scale(), translate=image.translate(), axis_labels=tuple(axes))
    kwargs.update(napari_units(len(kwargs["scale"]), image))
    return [(data, kwargs, "image")]


def read_layers(path: str | os.PathLike, **options) -> list:
    """Layer data tuples for napari: one image layer (or one per channel for stacks).

    Options: ``lazy`` (see :func:`read_image`), ``name``.
    """
    image = read_image(path, lazy=options.get("lazy"))
    return image_layers(image, name=options.get("name"))
