"""Single fields of view from a camera: JPEG, PNG, BMP, JPEG 2000 (TIFF fields go through tiff.py).

Read whole into memory with Pillow (imagecodecs for JPEG 2000). RGB(A) stays RGB(A) for
display (``as_rgb`` drops alpha for analysis), grey stays 8- or 16-bit. A truncated or
corrupt file raises a one-line :class:`~napari_nucleus_ai.core.errors.InputError`.
"""

from __future__ import annotations

import os

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.images.base import ImageData


def _dpi_to_um(dpi) -> tuple[float, float] | None:
    """Pixel size from a JPEG/PNG/BMP resolution in dots per inch, when it is a real one."""
    try:
        dx, dy = (float(v) for v in dpi)
    except (TypeError, ValueError):
        return None
    # 72/96/300 dpi etc. are screen/printer defaults, not microscope calibrations
    if dx < 2000 or dy < 2000:
        return None
    return (25400.0 / dy, 25400.0 / dx)


def read_field(path: str | os.PathLike, kind: str) -> ImageData:
    """Read a JPEG, PNG, BMP or JPEG 2000 field of view into memory.

    Parameters
    ----------
    path : path-like
        The file.
    kind : str
        ``"jpeg"``, ``"png"``, ``"bmp"`` or ``"jp2"`` (from :func:`base.kind_of`).
    """
    if kind == "jp2":
        return _read_jp2(path)
    from PIL import Image, ImageFile, UnidentifiedImageError

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(path) as im:
            im.load()
            meta = {
                k: v
                for k, v in im.info.items()
                if isinstance(v, str | int | float) and k != "icc_profile"
            }
            dpi = im.info.get("dpi")
            mode = im.mode
            if mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                im = im.convert(
                    "RGBA"
                    if ("transparency" in im.info or mode == "PA")
                    else ("L" if mode == "1" else "RGB")
                )
            elif mode == "LA":
                im = im.convert("L")
            arr = np.asarray(im)
    except UnidentifiedImageError as e:
        raise InputError(path, f"not a readable {kind.upper()} image") from e
    except (OSError, SyntaxError, ValueError) as e:
        problem = " ".join(str(e).split())
        what = "truncated" if "truncated" in problem.lower() else "corrupt"
        raise InputError(path, f"{what} {kind.upper()}: {problem}") from e
    except Image.DecompressionBombError as e:
        raise InputError(path, "image is too large to read as a field of view") from e
    if arr.dtype == np.int32:  # Pillow's mode "I" for 16-bit PNGs
        arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() < 65536 else arr
    if arr.ndim == 0 or arr.size == 0:
        raise InputError(path, "image has no pixels")
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    meta["mode"] = mode
    meta["alpha"] = bool(rgb and arr.shape[-1] == 4)
    px = _dpi_to_um(dpi)
    if px is not None:
        meta["mpp"] = px[1]
    return ImageData(
        levels=[arr],
        axes="YXS" if rgb else "YX",
        pixel_size_um=px,
        rgb=rgb,
        channels=[],
        format=kind,
        metadata=meta,
        path=os.fspath(path),
    )


def _read_jp2(path) -> ImageData:
    import imagecodecs

    try:
        with open(path, "rb") as fh:
            arr = imagecodecs.jpeg2k_decode(fh.read())
    except Exception as e:  # noqa: BLE001 - codec errors have many types
        raise InputError(path, f"corrupt JPEG 2000: {' '.join(str(e).split())}") from e
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    return ImageData([arr], "YXS" if rgb else "YX", None, rgb, [], "jp2", {}, os.fspath(path))
