"""Cell crops as model input: loading a class-per-folder set and normalising crops.

Crops are resized (anti-aliased) to the model's square size and scaled to
``[-1, 1]``, the range the diffusion model is trained in.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def to_model_input(img: np.ndarray, size: int, channels: int = 3, source=None) -> np.ndarray:
    """One crop (H, W[, C]) of any dtype -> float32 (channels, size, size) in [-1, 1]."""
    from skimage.transform import resize

    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim not in (2, 3) or min(a.shape[:2]) < 2:
        raise InputError(source, f"not a 2D crop (shape {a.shape})")
    if a.dtype == np.uint8:
        f = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535.0
    else:
        f = a.astype(np.float32)
        if not np.all(np.isfinite(f)):
            raise InputError(source, "crop holds NaN or infinite values")
        hi = float(f.max()) if f.size else 1.0
        lo = float(f.min()) if f.size else 0.0
        if lo < 0 or hi > 1:
            f = (f - lo) / (hi - lo if hi > lo else 1.0)
    if f.ndim == 2:
        f = f[..., None]
    if channels == 3 and f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    elif channels == 1 and f.shape[-1] == 3:
        f = f.mean(axis=-1, keepdims=True)
    elif f.shape[-1] != channels:
        raise InputError(source, f"crop has {f.shape[-1]} channels, the model needs {channels}")
    f = resize(f, (size, size, channels), anti_aliasing=True, preserve_range=True)
    return (np.moveaxis(f, -1, 0) * 2.0 - 1.0).astype(np.float32)


def read_crop(path: str | os.PathLike) -> np.ndarray:
    """Read one crop file; unreadable files raise a one-line InputError."""
    import imageio.v3 as iio

    try:
        return np.asarray(iio.imread(path))
    except Exception as exc:  # noqa: BLE001 - any decoder error means a bad file
        raise InputError(path, f"cannot read image ({type(exc).__name__}: {exc})") from None


def list_class_folders(root: str | os.PathLike) -> tuple[list[str], list[tuple[Path, int]]]:
    """Class names (sorted sub-folder names) and (file, class index) pairs under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "training data must be a folder with one sub-folder per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    items = []
    for i, c in enumerate(classes):
        files = sorted(p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items += [(p, i) for p in files]
    classes = [c for i, c in enumerate(classes) if any(j == i for _, j in items)]
    if len(classes) < 2:
        raise InputError(root, "need at least two class sub-folders holding image crops")
    # re-index in case empty folders were dropped
    names = sorted({p.parent.name for p, _ in items})
    items = [(p, names.index(p.parent.name)) for p, _ in items]
    return names, items


def load_crop_folder(root, size: int, channels: int = 3):
    """Load a class-per-folder crop set.

    Returns
    -------
    x : float32 (N, channels, size, size) in [-1, 1]
    y : int64 (N,)
    class_names : list of str
    paths : list of str
    """
    names, items = list_class_folders(root)
    x = np.stack([to_model_input(read_crop(p), size, channels, source=p) for p, _ in items])
    y = np.array([i for _, i in items], dtype=np.int64)
    return x, y, names, [str(p) for p, _ in items]
