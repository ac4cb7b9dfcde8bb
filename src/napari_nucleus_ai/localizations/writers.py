"""Writers: rendered images as TIFF with physical pixel size; localizations as CSV.

Also the npe2 writer entry points (``write_rendered_tiff_layer``,
``write_localizations_layer``) used by the manifest.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.files import atomic_path
from napari_nucleus_ai.localizations.thunderstorm import write_thunderstorm_csv


def write_rendered_tiff(
    path,
    image: np.ndarray,
    scale_nm,
    translate_nm=None,
    rgb: bool = False,
    extra: dict | None = None,
) -> str:
    """Write a rendered image as an ImageJ TIFF whose pixel size is in µm.

    ``scale_nm``/``translate_nm`` follow napari (``(z,) y, x``). The resolution tags
    hold pixels per µm (ImageJ unit ``micron``), a z stack records ``spacing``, the
    ImageJ ``xorigin``/``yorigin`` (``zorigin``) hold the physical origin as Fiji reads it
    (pixels: ``-translate / scale``), and the ImageJ ``Info`` property holds the nm
    geometry as JSON (origin included) so the file can be placed back exactly.
    """
    import tifffile

    scale = [float(s) for s in scale_nm]
    translate = [float(t) for t in translate_nm] if translate_nm is not None else [0.0] * len(scale)
    img = np.asarray(image)
    if rgb:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8) if img.dtype != np.uint8 else img
    elif img.dtype not in (np.float32, np.uint8, np.uint16):
        img = img.astype(np.float32)
    info = {"scale_nm": scale, "translate_nm": translate, **(extra or {})}
    metadata = {"unit": "micron", "Info": json.dumps(info, default=str)}
    # ImageJ's Calibration origin (in pixels: the pixel at the physical origin), which Fiji
    # applies to its coordinates, so renders of different regions keep their positions
    metadata["xorigin"] = -translate[-1] / scale[-1]
    metadata["yorigin"] = -translate[-2] / scale[-2]
    if len(scale) == 3:
        metadata["zorigin"] = -translate[0] / scale[0]
    axes = "YXS" if rgb else ("ZYX" if img.ndim == 3 else "YX")
    metadata["axes"] = axes
    if img.ndim == 3 and not rgb:
        metadata["spacing"] = scale[0] / 1000.0
    res = (1000.0 / scale[-1], 1000.0 / scale[-2])
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            img,
            imagej=True,
            resolution=res,
            metadata=metadata,
            photometric="rgb" if rgb else "minisblack",
        )
    return os.fspath(path)


def _table_from_attributes(attributes: dict, data=None) -> pd.DataFrame:
    meta = attributes.get("metadata") or {}
    df = meta.get("localizations")
    if isinstance(df, pd.DataFrame):
        return df
    feats = attributes.get("features")
    if isinstance(feats, pd.DataFrame) and {"x_nm", "y_nm"} <= set(feats.columns):
        return feats
    if data is not None and np.asarray(data).ndim == 2 and np.asarray(data).shape[1] in (2, 3):
        arr = np.asarray(data, float)  # Points coordinates in nm, napari order
        cols = ["z_nm", "y_nm", "x_nm"][-arr.shape[1] :]
        return pd.DataFrame(arr, columns=cols)
    raise InputError(attributes.get("name"), "layer holds no localization table to write")


# ------------------------------------------------------------------ npe2 writers
def write_localizations_layer(path: str, data, attributes: dict) -> list[str]:
    """npe2 writer: a localization layer (image from this plugin, or Points in nm) -> CSV."""
    df = _table_from_attributes(attributes, data)
    return [write_thunderstorm_csv(df, path)]


def write_rendered_tiff_layer(path: str, data, attributes: dict) -> list[str]:
    """npe2 writer: a rendered image layer -> TIFF with physical pixel size (largest level)."""
    image = data[0] if isinstance(data, list) else data
    meta = attributes.get("metadata") or {}
    extra = {k: meta[k] for k in ("source", "format", "channel") if k in meta}
    if "render" in meta:
        extra["render"] = meta["render"]
    return [
        write_rendered_tiff(
            path,
            np.asarray(image),
            attributes.get("scale") or (1.0,) * np.ndim(image),
            attributes.get("translate"),
            rgb=bool(attributes.get("rgb")),
            extra=extra,
        )
    ]
