"""Fluorescence stacks: OME-TIFF and ImageJ hyperstacks with T/C/Z/Y/X axes.

Pixels come from :mod:`.tiff`; this module keeps what the acquisition knew: channel
names and colours, physical pixel size and z step (micrometres), time step (seconds)
and acquisition date. OME-TIFF brightfield pyramids (RGB, SubIFD levels) pass through
here too, for their physical size.
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET

import numpy as np

from napari_nucleus_ai.core.units import NM_PER

# unit -> micrometres, for OME PhysicalSize*Unit and ImageJ "unit"
_LENGTH_UM = {unit: nm / 1000.0 for unit, nm in NM_PER.items()}
_TIME_S = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0, "µs": 1e-6, "us": 1e-6}

# default colours for fluorescence channels, by name first, then in order
_NAMED = (
    (r"dapi|hoechst|nuc|405|blue", "#0000ff"),
    (r"gfp|fitc|488|alexa ?488|green", "#00ff00"),
    (r"mcherry|rfp|tritc|561|568|594|cy3|red", "#ff0000"),
    (r"cy5|647|far.?red", "#ff00ff"),
)
_CYCLE = ("#00ff00", "#ff00ff", "#00ffff", "#ffff00", "#ff0000", "#0000ff")


def default_colors(names: list[str]) -> list[str]:
    """One hex colour per channel: by dye name where recognisable, else a fixed cycle."""
    if len(names) == 1:
        return ["#ffffff"]
    out = []
    for i, name in enumerate(names):
        colour = next((c for pat, c in _NAMED if re.search(pat, name.lower())), None)
        out.append(colour or _CYCLE[i % len(_CYCLE)])
    return out


def _ome_color(value: str | None) -> str | None:
    """OME Color (signed 32-bit RGBA integer) -> ``#rrggbb``; None for absent or black/white default."""
    if value is None or value.strip() == "-1":
        return None  # absent, or OME's default white, which says nothing about the dye
    try:
        v = int(value) & 0xFFFFFFFF
    except ValueError:
        return None
    r, g, b = (v >> 24) & 255, (v >> 16) & 255, (v >> 8) & 255
    return f"#{r:02x}{g:02x}{b:02x}"


def _strip_ns(xml: str) -> ET.Element:
    root = ET.fromstring(xml)
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def _ome(tf, series, axes) -> tuple[tuple | None, list, dict]:
    meta: dict = {}
    try:
        root = _strip_ns(tf.ome_metadata)
    except (ET.ParseError, TypeError):
        return None, [], meta
    images = root.findall("Image")
    try:
        index = list(tf.series).index(series)
    except ValueError:
        index = 0
    image = images[index] if index < len(images) else (images[0] if images else None)
    if image is None:
        return None, [], meta
    if image.get("Name"):
        meta["image_name"] = image.get("Name")
    date = image.findtext("AcquisitionDate")
    if date:
        meta["acquisition_date"] = date.strip()
    pixels = image.find("Pixels")
    if pixels is None:
        return None, [], meta

    def length(attr):
        v = pixels.get(f"PhysicalSize{attr}")
        if v is None:
            return None
        unit = pixels.get(f"PhysicalSize{attr}Unit", "µm")
        try:
            return float(v) * _LENGTH_UM.get(unit, 1.0)
        except ValueError:
            return None

    sx, sy, sz = length("X"), length("Y"), length("Z")
    px = (sy or sx, sx or sy) if (sx or sy) else None
    if sz:
        meta["z_step_um"] = sz
    if pixels.get("TimeIncrement"):
        with contextlib.suppress(ValueError):
            meta["time_step_s"] = float(pixels.get("TimeIncrement")) * _TIME_S.get(
                pixels.get("TimeIncrementUnit", "s"), 1.0
            )
    channels, colors = [], []
    for i, ch in enumerate(pixels.findall("Channel")):
        channels.append(ch.get("Name") or ch.get("Fluor") or f"channel {i}")
        colors.append(_ome_color(ch.get("Color")))
    n_c = series.shape[axes.index("C")] if "C" in axes else 0
    if n_c and len(channels) != n_c:
        channels, colors = [f"channel {i}" for i in range(n_c)], [None] * n_c
    if channels:
        defaults = default_colors(channels)
        meta["channel_colors"] = [c or d for c, d in zip(colors, defaults, strict=True)]
    return px, channels if n_c else [], meta


def _imagej(tf, series, axes) -> tuple[tuple | None, list, dict]:
    from napari_nucleus_ai.images.slides import _UNIT_UM

    ij = tf.imagej_metadata or {}
    page = series.keyframe
    meta: dict = {}
    unit = str(ij.get("unit", "")).strip().replace("\\u00B5", "µ")
    scale = _LENGTH_UM.get(unit)
    px = None
    tags = page.tags
    if scale and "XResolution" in tags:
        xr, yr = tags["XResolution"].value, tags["YResolution"].value
        try:
            px = (scale * yr[1] / yr[0], scale * xr[1] / xr[0])
        except (ZeroDivisionError, TypeError, IndexError):
            px = None
    elif "ResolutionUnit" in tags and int(tags["ResolutionUnit"].value) in _UNIT_UM:
        from napari_nucleus_ai.images.slides import resolution_um

        px = resolution_um(page)
    if scale and ij.get("spacing"):
        meta["z_step_um"] = float(ij["spacing"]) * scale
    if ij.get("finterval"):
        meta["time_step_s"] = float(ij["finterval"])
    n_c = series.shape[axes.index("C")] if "C" in axes else 0
    channels: list[str] = []
    if n_c:
        labels = ij.get("Labels")
        if (
            isinstance(labels, list | tuple)
            and len(labels) >= n_c
            and all(isinstance(s, str) and s for s in labels[:n_c])
        ):
            # slice labels run C fastest in an ImageJ TZC hyperstack: the first C name the channels
            channels = [str(s) for s in labels[:n_c]]
        else:
            channels = [f"channel {i}" for i in range(n_c)]
        colors = []
        luts = ij.get("LUTs")
        if isinstance(luts, list | tuple) and len(luts) == n_c:
            for lut in luts:
                rgb = np.asarray(lut)[:, -1] if np.ndim(lut) == 2 else None
                colors.append(
                    None
                    if rgb is None
                    else "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb[:3]))
                )
        else:
            colors = [None] * n_c
        meta["channel_colors"] = [
            c or d for c, d in zip(colors, default_colors(channels), strict=True)
        ]
    return px, channels, meta


def tiff_metadata(tf, series, axes: str, rgb: bool) -> tuple[str, tuple | None, list, dict]:
    """(format, pixel_size_um, channels, metadata) for an OME-TIFF or ImageJ TIFF."""
    if tf.is_ome:
        fmt = "ome-tiff"
        px, channels, meta = _ome(tf, series, axes)
    else:
        fmt = "imagej-tiff"
        px, channels, meta = _imagej(tf, series, axes)
    if rgb:
        channels = []
        meta.pop("channel_colors", None)
    if px is not None:
        meta["mpp"] = float(px[1])
    return fmt, px, channels, meta
