"""What every image reader returns (:class:`ImageData`), content sniffing and RGB conversion.

No napari, Qt or heavy imports at module level: ``numpy`` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from napari_nucleus_ai.core.errors import InputError

# Levels whose total size is below this are read into memory; larger ones stay lazy (dask).
EAGER_BYTES = 64 * 2**20


@dataclass
class ImageData:
    """An image, slide or stack as the readers see it.

    Attributes
    ----------
    levels : list of array-like
        Resolution levels, largest first. ``numpy`` arrays for small images, ``dask``
        arrays (lazy, tile-chunked) for slides and big stacks. One level for plain images.
    axes : str
        One letter per dimension of each level, e.g. ``"YX"`` (grey), ``"YXS"`` (RGB),
        ``"TCZYX"`` (stack). ``S`` is the colour-sample axis, ``C`` a fluorescence channel,
        ``I`` an unnamed index (pages of a plain multi-page TIFF).
    pixel_size_um : tuple of float or None
        ``(y, x)`` size of a full-resolution pixel in micrometres; ``None`` when unknown.
    rgb : bool
        True when the last axis holds RGB(A) samples.
    channels : list of str
        Fluorescence channel names (one per index of the ``C`` axis), else empty.
    format : str
        ``"jpeg"``, ``"png"``, ``"bmp"``, ``"tiff"``, ``"svs"``, ``"ndpi"``, ``"scn"``, ``"bif"``,
        ``"ome-tiff"``, ``"imagej-tiff"``, ``"openslide:<vendor>"``...
    metadata : dict
        What users look for: ``magnification``, ``mpp``, ``acquisition_date``, ``z_step_um``,
        ``time_step_s``, ``channel_colors``, ``associated`` (thumbnail/label/macro names),
        ``origin_um`` (physical position of pixel (0, 0)'s centre, ``[(z,) y, x]``), ...
    path : str
        The file.
    """

    levels: list
    axes: str
    pixel_size_um: tuple[float, float] | None
    rgb: bool
    channels: list[str] = field(default_factory=list)
    format: str = ""
    metadata: dict = field(default_factory=dict)
    path: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.levels[0].shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.levels[0].dtype)

    @property
    def lazy(self) -> bool:
        """True when the levels are dask arrays (pixels read on demand)."""
        return hasattr(self.levels[0], "dask")

    def scale(self, drop_channel: bool = False) -> tuple[float, ...]:
        """napari ``scale`` for the non-sample axes: micrometres for Y, X (and Z), 1 elsewhere.

        With ``drop_channel`` the ``C`` axis is left out (napari's ``channel_axis`` removes it).
        """
        py, px = self.pixel_size_um or (1.0, 1.0)
        z = self.metadata.get("z_step_um") if self.pixel_size_um else None
        out = []
        for a in self.axes:
            if a == "S" or (drop_channel and a == "C"):
                continue
            out.append({"Y": py, "X": px, "Z": z or 1.0}.get(a, 1.0))
        return tuple(float(s) for s in out)

    def translate(self, drop_channel: bool = False) -> tuple[float, ...]:
        """napari ``translate`` for the axes of :meth:`scale`: the saved origin, else zeros.

        The origin (``metadata["origin_um"]``, ``(z,) y, x``) is in micrometres when the pixel
        size is known and in pixels otherwise, like :meth:`scale`.
        """
        origin = list(self.metadata.get("origin_um") or [])
        spatial = [a for a in self.axes if a in "ZYX"][-len(origin) :] if origin else []
        where = dict(zip(spatial, origin, strict=True))
        out = []
        for a in self.axes:
            if a == "S" or (drop_channel and a == "C"):
                continue
            out.append(float(where.get(a, 0.0)))
        return tuple(out)

    def describe(self) -> dict:
        """The ``napari-nucleus-ai info FILE --json`` dictionary for this image."""
        info = {
            "kind": "image",
            "format": self.format,
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "axes": self.axes,
            "levels": [[int(n) for n in lev.shape] for lev in self.levels],
            "pixel_size_um": None
            if self.pixel_size_um is None
            else [float(v) for v in self.pixel_size_um],
            "rgb": bool(self.rgb),
            "channels": list(self.channels),
        }
        for key in (
            "magnification",
            "mpp",
            "acquisition_date",
            "z_step_um",
            "time_step_s",
            "origin_um",
            "associated",
            "reader",
            "scenes",
        ):
            if self.metadata.get(key) not in (None, [], ""):
                info[key] = self.metadata[key]
        return info


# -- sniffing ---------------------------------------------------------------------------------

_MAGIC = (
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"),
    (b"\xffO\xffQ", "jp2"),  # raw JPEG 2000 codestream
)

# Formats only openslide reads (optional extra); recognised by name, then checked by content.
OPENSLIDE_SUFFIXES = {".mrxs": "MIRAX", ".vms": "Hamamatsu VMS", ".vmu": "Hamamatsu VMU"}


def _vendor_kind(head: bytes, suffix: str) -> str | None:
    """czi, nd2 or lif from the first bytes (read through bioio, the ``[formats]`` extra)."""
    if head.startswith(b"ZISRAWFILE"):  # Zeiss CZI: the file header segment's id
        return "czi"
    if head.startswith(b"\xda\xce\xbe\x0a"):  # Nikon ND2 (v3 and later) chunk magic
        return "nd2"
    if suffix == ".nd2" and head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"):
        return "nd2"  # legacy ND2: a JPEG 2000 container
    if head[:4] == b"\x70\x00\x00\x00" and len(head) > 8 and head[8] == 0x2A:
        return "lif"  # Leica LIF: 0x70 test value, block size, 0x2A, then the XML header
    return None


def kind_of(path: str | os.PathLike) -> str | None:
    """Content-based kind of ``path``: tiff, jpeg, png, bmp, jp2, dicom, mirax, czi, nd2,
    lif, or None.

    Looks at magic bytes, not at the extension -- except for the openslide-only slide
    formats (``.mrxs``, ``.vms``, ``.vmu``) whose index files say nothing by content; never raises.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return None
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix in OPENSLIDE_SUFFIXES and head:
        # a MIRAX index file is a JPEG preview of the slide whose tiles live in a folder beside
        # it (and a VMS file is INI text): only openslide reads the whole slide
        return "mirax"
    vendor = _vendor_kind(head, suffix)
    if vendor is not None:
        return vendor
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    if head.startswith(b"BM") and len(head) >= 18:
        # BITMAPFILEHEADER then a DIB header whose size is one of the known ones
        dib = int.from_bytes(head[14:18], "little")
        if dib in (12, 40, 52, 56, 64, 108, 124):
            return "bmp"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    return None


# -- arrays for analysis ----------------------------------------------------------------------


def as_rgb(array, axes: str | None = None) -> np.ndarray:
    """A plain ``numpy`` RGB ``uint8`` array ``(Y, X, 3)`` for analysis.

    Alpha is dropped; grey images are repeated into three channels; 16-bit and float
    images are scaled to 0-255 (16-bit by their own 0.1-99.9 % range, so a 12-bit camera
    image is not left nearly black). Lazy (dask) input is computed, so pass a region or a
    small level of a slide, not the whole level 0.

    Parameters
    ----------
    array : array-like
        ``(Y, X)``, ``(Y, X, 1)``, ``(Y, X, 3)`` or ``(Y, X, 4)``.
    axes : str, optional
        Only used to name the axes in the error message.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = arr[..., :3] if arr.shape[-1] != 1 else arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise InputError(
            None,
            f"expected a 2D grey or RGB(A) image, got shape {arr.shape}"
            + (f" ({axes})" if axes else ""),
        )
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    a = arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating) and np.nanmax(a) <= 1.0 and np.nanmin(a) >= 0.0:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = (float(v) for v in np.nanpercentile(a, (0.1, 99.9)))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
