"""Localization tables -> napari layer data tuples (density images, optional Points)."""

from __future__ import annotations

import os

import numpy as np

from napari_nucleus_ai.localizations.table import LocalizationTable, bounds_nm

CHANNEL_COLORMAPS = ("magma", "green", "magenta", "cyan", "yellow", "red", "blue")
POINTS_AUTO_MAX = 10_000  # tables this small also get a Points layer by default
MULTISCALE_SIDE = 4096  # images wider than this become a pyramid
MAX_LAYER_SIDE = 8192  # display pixels per side at most (256 MB float32 + pyramid)


def contrast_limits(image: np.ndarray) -> list[float]:
    nz = image[image > 0]
    if nz.size == 0:
        return [0.0, 1.0]
    hi = float(np.percentile(nz, 99.5))
    return [0.0, hi if hi > 0 else float(nz.max())]


def image_layer(
    df,
    name: str,
    meta: dict,
    pixel_size_nm=10.0,
    method="gaussian",
    sigma_nm=None,
    z_mode="project",
    colormap="magma",
    **render_kw,
):
    """One density-image layer tuple for ``df`` (already one channel).

    Fields wider than :data:`MAX_LAYER_SIDE` display pixels at ``pixel_size_nm`` are
    rendered with coarser pixels (recorded in ``metadata["render"]``); the dock's
    nanoscale zoom re-renders what is on screen at fine pixels.
    """
    from napari_nucleus_ai.localizations.render import pyramid, render_localizations

    requested = float(pixel_size_nm)
    extent = max(
        (float(df[c].max() - df[c].min()) for c in ("x_nm", "y_nm") if len(df)), default=0.0
    )
    if extent / requested > MAX_LAYER_SIDE:
        pixel_size_nm = float(np.ceil(extent / MAX_LAYER_SIDE))

    r = render_localizations(
        df,
        pixel_size_nm=pixel_size_nm,
        method=method,
        sigma_nm=sigma_nm,
        z_mode=z_mode,
        **render_kw,
    )
    data = r.image
    spatial = r.image.shape[:2] if r.rgb else r.image.shape[-2:]
    multiscale = max(spatial) > MULTISCALE_SIDE
    if multiscale:
        data = pyramid(r.image, min_size=1024)
    kwargs = {
        "name": name,
        "scale": r.scale,
        "translate": r.translate,
        "units": "nm",
        "metadata": {
            **meta,
            "localizations": df,
            "render": {
                "pixel_size_nm": r.pixel_size_nm,
                "requested_pixel_size_nm": requested,
                "method": r.method,
                "sigma_nm": r.sigma_nm,
                "z_mode": z_mode,
                "bounds_nm": r.bounds_nm,
            },
        },
        "blending": "additive",
    }
    if r.rgb:
        kwargs["rgb"] = True
    else:
        kwargs["colormap"] = colormap
        kwargs["contrast_limits"] = contrast_limits(r.image if not multiscale else data[-1])
    if multiscale:
        kwargs["multiscale"] = True
    return (data, kwargs, "image")


def points_layer(df, name: str, meta: dict, size_nm: float | None = None):
    """A Points layer in nm (napari order ``(z,) y, x``) with the table as ``features``."""
    cols = (["z_nm"] if "z_nm" in df else []) + ["y_nm", "x_nm"]
    coords = df[cols].to_numpy(dtype=np.float64)
    prec = df["precision_nm"].to_numpy(dtype=float) if "precision_nm" in df else np.array([])
    size = size_nm or (
        float(np.nanmedian(prec)) * 2 if prec.size and np.isfinite(prec).any() else 20.0
    )
    kwargs = {
        "name": name,
        "size": size,
        "features": df.reset_index(drop=True),
        "face_color": "cyan",
        "border_width": 0,
        "units": "nm",
        "metadata": dict(meta),
    }
    return (coords, kwargs, "points")


def table_layers(
    table: LocalizationTable,
    points="auto",
    pixel_size_nm=10.0,
    method="gaussian",
    sigma_nm=None,
    z_mode="project",
    name: str | None = None,
    **render_kw,
) -> list:
    """Layer data tuples for a table: one density image per channel (+ Points on request).

    Parameters
    ----------
    points : bool or "auto"
        Add a Points layer per channel; ``"auto"`` only for tables of at most
        :data:`POINTS_AUTO_MAX` localizations (millions of points make napari crawl).
    """
    base = name or (
        os.path.splitext(os.path.basename(table.path))[0] if table.path else "localizations"
    )
    meta = {
        "source": table.path,
        "format": table.format,
        "n_dropped": table.n_dropped,
        "bounds_nm": bounds_nm(table.data),
        "file_metadata": {
            k: v for k, v in table.metadata.items() if isinstance(v, str | int | float)
        },
    }
    channels = table.channels
    with_points = (len(table) <= POINTS_AUTO_MAX) if points == "auto" else bool(points)
    layers = []
    for i, ch in enumerate(channels):
        df = (
            table.data
            if len(channels) == 1
            else table.data[table.data["channel"].astype(str) == ch]
        )
        df = df.reset_index(drop=True)
        lname = base if len(channels) == 1 else f"{base} [{ch}]"
        cmap = CHANNEL_COLORMAPS[0] if len(channels) == 1 else CHANNEL_COLORMAPS[1 + i % 6]
        m = {**meta, "channel": ch}
        layers.append(
            image_layer(df, lname, m, pixel_size_nm, method, sigma_nm, z_mode, cmap, **render_kw)
        )
        if with_points:
            layers.append(points_layer(df, f"{lname} points", m))
    return layers
