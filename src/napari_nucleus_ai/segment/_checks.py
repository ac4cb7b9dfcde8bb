"""Input checks shared by the segmentation methods: one-line errors for bad arrays."""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.core.errors import InputError

# Above this, a float image is not an intensity image but garbage (overflowed, uninitialised).
HUGE = 1e12
MIN_SIDE = 8


def _finite_float(arr: np.ndarray, name, what: str) -> np.ndarray:
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    if not (np.issubdtype(arr.dtype, np.number)):
        raise InputError(name, f"{what} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputError(name, f"{what} must be real-valued, got complex")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise InputError(name, f"{what} contains NaN or infinite values")
        if arr.size and float(np.abs(arr).max()) > HUGE:
            raise InputError(
                name,
                f"{what} has values up to {float(np.abs(arr).max()):.3g}; not an intensity image",
            )
    return arr


def _check_shape(shape, name, what: str) -> None:
    if 0 in shape:
        raise InputError(name, f"{what} is empty (shape {tuple(shape)})")
    if min(shape[:2]) < MIN_SIDE:
        raise InputError(
            name,
            f"{what} is too small to segment (shape {tuple(shape)}; need at least {MIN_SIDE}x{MIN_SIDE})",
        )


def check_gray(image, name=None, what: str = "image") -> np.ndarray:
    """A 2D single-channel image as float32, or a one-line :class:`InputError`.

    A trailing singleton channel axis (Y, X, 1) is accepted.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise InputError(name, f"{what} must be 2D (Y, X), got shape {arr.shape}")
    _check_shape(arr.shape, name, what)
    arr = _finite_float(arr, name, what)
    return arr.astype(np.float32, copy=False)


def check_rgb(image, name=None, what: str = "smear image") -> np.ndarray:
    """An RGB(A) or grey image as float32 RGB in [0, 1], or a one-line :class:`InputError`.

    Accepts (Y, X, 3), (Y, X, 4) (alpha dropped; fully transparent pixels become
    white background) and (Y, X) grey (replicated). Integer images are scaled
    by their dtype range; float images in [0, 1] or [0, 255].
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise InputError(
            name, f"{what} must be (Y, X, 3) RGB or (Y, X, 4) RGBA, got shape {arr.shape}"
        )
    _check_shape(arr.shape, name, what)
    arr = _finite_float(arr, name, what)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.dtype.itemsize == 1:
            top = 255.0
        else:
            hi = int(arr.max())
            if int(arr.min()) < 0:
                raise InputError(name, f"{what} has negative values; expected colours")
            top = 255.0 if hi <= 255 else 4095.0 if hi <= 4095 else float(np.iinfo(arr.dtype).max)
            if top > 65535:
                top = float(hi)
        rgb = arr.astype(np.float32) * np.float32(1.0 / top)
        if rgb.shape[-1] == 4:
            alpha = rgb[..., 3:4]
            rgb = rgb[..., :3] * alpha + (1.0 - alpha)
        return rgb
    else:
        hi = float(arr.max())
        if float(arr.min()) < -1e-6:
            raise InputError(
                name, f"{what} has negative values; expected colours in [0, 1] or [0, 255]"
            )
        top = 1.0 if hi <= 1.0 + 1e-6 else (255.0 if hi <= 255.0 + 1e-3 else 65535.0)
        if hi > 65535.0:
            raise InputError(
                name, f"{what} has values up to {hi:.3g}; expected colours in [0, 1] or [0, 255]"
            )
        rgb = arr.astype(np.float32) / np.float32(top)
    if rgb.shape[-1] == 4:
        alpha = rgb[..., 3:4]
        rgb = rgb[..., :3] * alpha + (1.0 - alpha)  # composite over white (a bright background)
    return np.clip(rgb, 0.0, 1.0)


def um_to_px(value_um: float, pixel_size_um: float | None, default_px_per_um: float) -> float:
    """A length in micrometres as pixels (``default_px_per_um`` when the pixel size is unknown)."""
    if pixel_size_um is None:
        return float(value_um) * default_px_per_um
    return float(value_um) / float(pixel_size_um)


def check_pixel_size(pixel_size_um, name=None) -> float | None:
    """``None`` or a positive finite pixel size; otherwise a one-line error."""
    if pixel_size_um is None:
        return None
    try:
        value = float(np.mean(np.asarray(pixel_size_um, dtype=float)))
    except (TypeError, ValueError):
        raise InputError(name, f"pixel size must be a number, got {pixel_size_um!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(name, f"pixel size must be a positive number, got {pixel_size_um!r}")
    return value
