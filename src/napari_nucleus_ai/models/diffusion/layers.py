"""Qt-free helpers that turn diffusion results into napari layer data.

Used by the Generative dock and tests: cutting the window of one cell out of an
image for the model, placing a counterfactual map back over the cell, and
painting a per-cell column (``anomaly``) as a heatmap.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError


def window_side_px(card: dict | None, bbox_side_px: float, image_scale: float = 1.0) -> float:
    """Side of the square window (image pixels) the model sees around a cell.

    The model card says how large its training crops were: in source pixels when
    its unit is ``px`` (``source_crop_px``), else physically (``crop_size *
    pixel_size``), converted with the image layer's pixel size. Without that,
    1.6 times the cell's bounding box.
    """
    if card:
        spec = card.get("input", {})
        if spec.get("unit") == "px" and spec.get("source_crop_px"):
            return float(spec["source_crop_px"])
        if spec.get("unit") in ("um", "nm") and spec.get("pixel_size") and image_scale > 0:
            return float(spec["crop_size"]) * float(spec["pixel_size"]) / float(image_scale)
    return max(8.0, 1.6 * float(bbox_side_px))


def cell_window(
    image: np.ndarray,
    labels: np.ndarray,
    label: int,
    side_px: float | None = None,
    card: dict | None = None,
    image_scale: float = 1.0,
):
    """Square window of ``image`` centred on ``label`` (padded by edge values).

    Returns
    -------
    crop : (side, side[, C]) array
    origin : (y0, x0) of the window in image pixels (may be negative)
    side : int
    """
    labels = np.asarray(labels)
    if image.shape[:2] != labels.shape[:2]:
        raise InputError(
            None, f"image {image.shape[:2]} and labels {labels.shape[:2]} differ in size"
        )
    ys, xs = np.nonzero(labels == label)
    if len(ys) == 0:
        raise InputError(None, f"label {label} is not in the labels layer")
    bbox_side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    side = int(round(side_px or window_side_px(card, bbox_side, image_scale)))
    cy, cx = (ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2
    y0, x0 = int(round(cy - side / 2)), int(round(cx - side / 2))
    ya, yb = max(0, y0), min(image.shape[0], y0 + side)
    xa, xb = max(0, x0), min(image.shape[1], x0 + side)
    part = np.asarray(image[ya:yb, xa:xb])  # only the window is read (dask/zarr friendly)
    pad = [(ya - y0, y0 + side - yb), (xa - x0, x0 + side - xb)] + [(0, 0)] * (part.ndim - 2)
    return np.pad(part, pad, mode="edge"), (y0, x0), side


def placed_over_window(
    arr: np.ndarray, origin, side: int, scale=(1.0, 1.0), translate=(0.0, 0.0)
) -> dict:
    """``scale``/``translate`` kwargs that lay a (S, S[, C]) array over the window it came from."""
    s = arr.shape[0]
    f = side / s
    sy, sx = float(scale[-2]), float(scale[-1])
    ty, tx = float(translate[-2]), float(translate[-1])
    # pixel centres: window pixel j spans [origin + j*f, origin + (j+1)*f)
    return {
        "scale": (sy * f, sx * f),
        "translate": (ty + sy * (origin[0] + (f - 1) / 2), tx + sx * (origin[1] + (f - 1) / 2)),
    }


def per_cell_image(labels: np.ndarray, features: pd.DataFrame, column: str) -> np.ndarray:
    """Float image where every object is filled with its ``column`` value (NaN elsewhere)."""
    if column not in features.columns:
        raise InputError(
            None,
            f"the labels layer has no {column!r} column; classify with a diffusion model first",
        )
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    lut = np.full(top + 1, np.nan, np.float32)
    lab = features["label"].to_numpy(np.int64)
    ok = (lab > 0) & (lab <= top)
    lut[lab[ok]] = features[column].to_numpy(np.float32)[ok]
    return lut[labels]
