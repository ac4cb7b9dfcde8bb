"""Whole-slide metadata (Aperio SVS, Hamamatsu NDPI, Leica SCN, Ventana BIF, generic TIFF)
and the optional openslide door for MIRAX and DICOM-WSI.

Pixel reading of TIFF slides is in :mod:`.tiff` (tifffile + zarr + dask); this module
turns each vendor's metadata into micrometres per pixel, magnification and acquisition
date, and reads the formats tifffile cannot through openslide when it is installed
(``pip install napari-nucleus-ai[openslide]``).
"""

from __future__ import annotations

import os
import re

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.images.base import ImageData

_UNIT_UM = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}  # TIFF ResolutionUnit -> micrometres


def resolution_um(page) -> tuple[float, float] | None:
    """Pixel size (y, x) in micrometres from TIFF X/YResolution + ResolutionUnit, if plausible."""
    tags = page.tags
    try:
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
        xr, yr = tags["XResolution"].value, tags["YResolution"].value
    except (KeyError, TypeError, ValueError):
        return None
    if unit not in _UNIT_UM:
        return None
    try:
        xppu = xr[0] / xr[1] if isinstance(xr, tuple) else float(xr)
        yppu = yr[0] / yr[1] if isinstance(yr, tuple) else float(yr)
    except (ZeroDivisionError, TypeError):
        return None
    if xppu <= 0 or yppu <= 0:
        return None
    px, py = _UNIT_UM[unit] / xppu, _UNIT_UM[unit] / yppu
    # 72/96/300 dpi defaults are not calibrations: a microscope pixel is below ~50 um
    if px > 50 or py > 50:
        return None
    return (py, px)


def _svs(desc: str) -> dict:
    """Aperio ImageDescription ``header|Key = value|...`` as a dict."""
    out = {}
    for part in desc.split("|")[1:]:
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def _scn(xml: str, width: int) -> tuple[tuple | None, dict]:
    """Pixel size, objective and date of the SCN image whose width matches the main series."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, {}
    for el in root.iter():
        el.tag = el.tag.split("}", 1)[-1]
    best, meta, px = None, {}, None
    for image in root.iter("image"):
        pixels = image.find("pixels")
        if pixels is not None and _num(pixels.get("sizeX")) == width:
            best = image
    if best is None:
        return None, {}
    view, pixels = best.find("view"), best.find("pixels")
    if view is not None and _num(view.get("sizeX")) and _num(pixels.get("sizeX")):
        mpp = float(view.get("sizeX")) / float(pixels.get("sizeX")) / 1000.0  # view in nm
        px = (mpp, mpp)
    objective = best.findtext("scanSettings/objectiveSettings/objective")
    meta["magnification"] = _num(objective)
    if best.findtext("creationDate"):
        meta["acquisition_date"] = best.findtext("creationDate").strip()
    return px, meta


def tiff_metadata(tf, series) -> tuple[str, tuple | None, list, dict]:
    """(format, pixel_size_um, channels, metadata) for a slide or plain TIFF."""
    page = tf.pages[0] if series.keyframe is None else series.keyframe
    meta: dict = {}
    px = None
    if tf.is_svs:
        fmt = "svs"
        d = _svs(tf.pages[0].description or "")
        meta["vendor"] = "aperio"
        meta["aperio"] = d
        mpp = _num(d.get("MPP"))
        if mpp:
            px = (mpp, mpp)
        meta["magnification"] = _num(d.get("AppMag"))
        if d.get("Date"):
            meta["acquisition_date"] = f"{d['Date']} {d.get('Time', '')}".strip()
    elif tf.is_ndpi:
        fmt = "ndpi"
        meta["vendor"] = "hamamatsu"
        tags = dict(page.ndpi_tags or {})
        meta["magnification"] = _num(tags.get("Magnification"))
        meta["ndpi"] = {k: v for k, v in tags.items() if isinstance(v, str | int | float)}
    elif tf.is_scn:
        fmt = "scn"
        meta["vendor"] = "leica"
        px, scn = _scn(tf.scn_metadata or "", series.shape[series.axes.index("X")])
        meta.update(scn)
    elif tf.is_bif:
        fmt = "bif"
        meta["vendor"] = "ventana"
        xmp = page.tags["XMP"].value if "XMP" in page.tags else b""
        xmp = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
        m = re.search(r'ScanRes="([\d.]+)"', xmp)
        if m and _num(m.group(1)):
            px = (float(m.group(1)),) * 2
        m = re.search(r'Magnification="([\d.]+)"', xmp) or re.search(
            r"mag=([\d.]+)", page.description or ""
        )
        meta["magnification"] = _num(m.group(1)) if m else None
        m = re.search(r'BuildDate="([^"]+)"', xmp)
        if m:
            meta["acquisition_date"] = m.group(1)
    elif tf.is_philips:
        fmt = "philips-tiff"
        meta["vendor"] = "philips"
    else:
        fmt = "pyramidal-tiff" if len(series.levels) > 1 else "tiff"
    if px is None:
        px = resolution_um(page)
    if "acquisition_date" not in meta and "DateTime" in page.tags:
        meta["acquisition_date"] = str(page.tags["DateTime"].value)
    if px is not None:
        meta["mpp"] = float(px[1])
    meta = {k: v for k, v in meta.items() if v is not None}
    return fmt, px, [], meta


# -- openslide (optional extra) ---------------------------------------------------------------


def openslide_available() -> bool:
    try:
        import openslide  # noqa: F401
    except Exception:  # noqa: BLE001 - missing library or missing binary
        return False
    return True


class OpenSlideLevel:
    """One openslide level as a read-only array-like ``(Y, X, 3) uint8`` for ``dask.array``.

    Indexing reads only the requested rectangle (``read_region``), alpha dropped; regions
    outside the scanned area come back white, as openslide renders them.
    """

    dtype = np.dtype(np.uint8)
    ndim = 3

    def __init__(self, slide, level: int):
        self.slide, self.level = slide, level
        w, h = slide.level_dimensions[level]
        self.shape = (h, w, 3)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        ys, xs = (key + (slice(None),) * 2)[:2]
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), 3), np.uint8)[
                (slice(None), slice(None)) + key[2:]
            ]
        ds = self.slide.level_downsamples[self.level]
        im = self.slide.read_region((int(x0 * ds), int(y0 * ds)), self.level, (x1 - x0, y1 - y0))
        rgba = np.asarray(im)
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 255  # transparent = not scanned: show white glass
        return rgb[(slice(None), slice(None)) + key[2:]]


def read_openslide(path: str | os.PathLike, kind: str) -> ImageData:
    """MIRAX, DICOM-WSI (and anything else openslide reads) as lazy dask levels.

    Raises :class:`InputError` with the install command when openslide is missing.
    """
    if not openslide_available():
        what = {"mirax": "MIRAX/VMS", "dicom": "DICOM"}.get(kind, kind.upper())
        raise InputError(
            path,
            f"{what} slides need openslide: pip install 'napari-nucleus-ai[openslide]'",
        )
    import dask.array as da
    import openslide

    try:
        slide = openslide.OpenSlide(os.fspath(path))
    except Exception as e:  # noqa: BLE001
        raise InputError(path, f"openslide cannot read it: {' '.join(str(e).split())}") from e
    levels = [
        da.from_array(OpenSlideLevel(slide, i), chunks=(512, 512, 3), asarray=True, fancy=False)
        for i in range(slide.level_count)
    ]
    props = dict(slide.properties)
    mppx, mppy = _num(props.get("openslide.mpp-x")), _num(props.get("openslide.mpp-y"))
    px = (mppy, mppx) if mppx and mppy else None
    meta = {
        "vendor": props.get("openslide.vendor", ""),
        "magnification": _num(props.get("openslide.objective-power")),
        "mpp": mppx,
        "associated": list(slide.associated_images),
    }
    meta = {k: v for k, v in meta.items() if v not in (None, "")}
    return ImageData(
        levels, "YXS", px, True, [], f"openslide:{meta.get('vendor', kind)}", meta, os.fspath(path)
    )
