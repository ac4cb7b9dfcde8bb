"""Single-cell crops and STORM nucleus patches: the inputs every classifier sees.

Image crops
    :func:`read_crop` reads a PNG/JPEG/TIFF crop; :func:`square_resize` brings a
    crop to the model's ``crop_size`` (centre square, bilinear);
    :func:`cell_windows` cuts a fixed *physical* window around every cell of a
    label image, so a model trained at one pixel size sees cells at the same scale
    in images of another.

STORM nuclei
    A nucleus is a table of localizations (nm). :func:`render_nucleus` renders it at
    nanoscale pixels (10 nm by default, never coarser than 20 nm) and
    :func:`nucleus_patches` samples ``patch`` x ``patch`` windows inside the
    nucleus. Classifying patches and averaging over them keeps the chromatin
    texture that a whole-nucleus thumbnail would blur away.
"""

from __future__ import annotations

import os

import numpy as np

from napari_nucleus_ai.core.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MAX_RENDER_PX = 4096  # per side: a nucleus bigger than 40 um at 10 nm is not a nucleus


def is_image_file(path) -> bool:
    return os.fspath(path).lower().endswith(IMAGE_SUFFIXES)


def read_crop(path, keep_channels: bool = False) -> np.ndarray:
    """Read an image crop as ``(H, W)`` or ``(H, W, 3)`` array; one-line errors.

    A fourth channel is dropped (PNG alpha) unless ``keep_channels`` and the file is a
    TIFF, whose fourth channel is data (a multi-channel fluorescence image).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    if os.path.getsize(path) == 0:
        raise InputError(path, "file is empty")
    try:
        if path.lower().endswith((".tif", ".tiff")):
            import tifffile

            img = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                img = np.asarray(im.convert("RGB") if im.mode not in ("L", "I;16", "I") else im)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
        raise InputError(path, f"not a readable image ({' '.join(str(e).split())[:100]})") from None
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[0] in (1, 3, 4) and img.shape[-1] not in (1, 3, 4):
        img = np.moveaxis(img, 0, -1)  # channels first (TIFF)
    tiff = path.lower().endswith((".tif", ".tiff"))
    if img.ndim == 3 and img.shape[-1] == 4 and not (keep_channels and tiff):
        img = img[..., :3]
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or min(img.shape[:2]) < 4:
        raise InputError(path, f"expected a 2D grey or RGB crop, got shape {img.shape}")
    return img


def to_float(img: np.ndarray) -> np.ndarray:
    """Scale integer images to [0, 1] by their dtype range (floats are kept)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float32) / max(float(img.max(initial=1)), 1.0)
    return img.astype(np.float32)


def square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size`` x ``size`` (float32, channels last)."""
    import torch
    import torch.nn.functional as F

    img = to_float(img)
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    img = img[y0 : y0 + s, x0 : x0 + s]
    if s == size:
        return np.ascontiguousarray(img)
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
    out = F.interpolate(
        t, size=(size, size), mode="bilinear", align_corners=False, antialias=s > size
    )
    return out[0].numpy().transpose(1, 2, 0)


def _value_scale(image) -> float:
    """What :func:`to_float` divides by, from the whole image (1.0 for floats)."""
    dt = np.dtype(image.dtype)
    if dt == np.uint8:
        return 255.0
    if dt == np.uint16:
        return 65535.0
    if np.issubdtype(dt, np.integer):
        top = image.max()  # one pass over a lazy image's chunks, no full copy
        top = top.compute(scheduler="threads") if hasattr(top, "compute") else top
        return max(float(top), 1.0)
    return 1.0


def _read_box(image, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` as numpy (a dask or zarr array decodes only the tiles under it)."""
    part = image[y0:y1, x0:x1]
    if hasattr(part, "compute"):
        part = part.compute(scheduler="synchronous")
    return np.asarray(part)


def cell_windows(
    image,
    centroids_px: np.ndarray,
    window_px: float,
    size: int,
) -> np.ndarray:
    """Windows of ``window_px`` source pixels centred on each centroid, resampled to ``size``.

    Each window reads only its own neighbourhood of ``image``, so a lazy (dask / zarr)
    whole-slide region is never converted or loaded whole: only the tiles under cells are
    decoded. The result equals resampling the whole image at once: bilinear sampling with
    the image's edge value outside it, after an area (block-mean) pre-blur on blocks of
    ``int(window_px / size)`` pixels aligned to the image origin when shrinking by more than
    1.5x.

    Parameters
    ----------
    image : (Y, X) or (Y, X, C) array (numpy, dask or zarr)
    centroids_px : (N, 2) array of (y, x) in pixel coordinates
    window_px : float
        Side of the window in source pixels (model crop size x model pixel size /
        image pixel size).
    size : int
        Output side in pixels.

    Returns
    -------
    (N, size, size, C) float32 array; outside the image is filled with the edge value.
    """
    import torch
    import torch.nn.functional as F

    h, w = int(image.shape[0]), int(image.shape[1])
    c = int(image.shape[2]) if len(image.shape) == 3 else 1
    cents = np.asarray(centroids_px, float).reshape(-1, 2)
    n = len(cents)
    out = np.zeros((n, size, size, c), np.float32)
    if n == 0:
        return out
    div = _value_scale(image)
    factor = window_px / size
    k = int(factor) if factor > 1.5 else 1  # pre-blur block (antialiasing when shrinking)
    ph, pw = -(-h // k), -(-w // k)  # the block-mean image's shape
    win = window_px / k
    lin = (np.arange(size, dtype=np.float64) + 0.5) / size - 0.5
    for i, (cy, cx) in enumerate(cents / k):
        if not (np.isfinite(cy) and np.isfinite(cx)):
            continue  # an absent cell: an empty window
        py, px = cy + lin * win, cx + lin * win  # sample positions in block pixels
        # the blocks bilinear sampling touches (+1 spare), clamped like the border padding
        by0 = int(np.clip(np.floor(py[0]) - 1, 0, ph - 1))
        by1 = int(np.clip(np.floor(py[-1]) + 2, 0, ph - 1))
        bx0 = int(np.clip(np.floor(px[0]) - 1, 0, pw - 1))
        bx1 = int(np.clip(np.floor(px[-1]) + 2, 0, pw - 1))
        part = _read_box(image, by0 * k, min(h, (by1 + 1) * k), bx0 * k, min(w, (bx1 + 1) * k))
        part = part.astype(np.float32) / np.float32(div) if div != 1.0 else part.astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(part.reshape(part.shape[0], part.shape[1], c)))
        t = t.permute(2, 0, 1)[None]
        if k > 1:
            t = F.avg_pool2d(t, k, stride=k, ceil_mode=True)
        lh, lw = t.shape[-2], t.shape[-1]
        gy = np.broadcast_to(((py - by0 + 0.5) / lh * 2 - 1)[:, None], (size, size))
        gx = np.broadcast_to(((px - bx0 + 0.5) / lw * 2 - 1)[None, :], (size, size))
        grid = torch.from_numpy(np.stack([gx, gy], -1).astype(np.float32))[None]
        res = F.grid_sample(t, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out[i] = res[0].permute(1, 2, 0).numpy()
    return out


class CellWindows:
    """The windows of :func:`cell_windows`, cut when asked for: ``windows[i:j]`` is the list
    of windows ``i`` to ``j`` and ``windows[i]`` one window, each cut and resampled only then.

    A whole slide's thousands of cells are then read and held a chunk at a time (a 2,000-cell
    slide for a 192-px model with a 0.6 field: 2.4 GB of float32 windows at once otherwise).
    Each window reads its own neighbourhood, so any chunking gives the same windows.
    """

    def __init__(self, image, centroids_px, window_px: float, size: int):
        self.image = image
        self.centroids = np.asarray(centroids_px, float).reshape(-1, 2)
        self.window_px, self.size = float(window_px), int(size)

    def __len__(self) -> int:
        return len(self.centroids)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return list(cell_windows(self.image, self.centroids[key], self.window_px, self.size))
        cents = self.centroids[[int(key)]]  # an index out of range raises IndexError
        return cell_windows(self.image, cents, self.window_px, self.size)[0]


def render_nucleus(xy_nm: np.ndarray, pixel_nm: float = 10.0, blur_px: float = 1.0) -> np.ndarray:
    """Render one nucleus' localizations as a density image at ``pixel_nm``.

    The image is normalised by its 99.5th percentile inside the nucleus so counts
    per nucleus do not matter, only how localizations cluster.
    """
    from scipy import ndimage

    xy = np.asarray(xy_nm, float)
    xy = xy[np.all(np.isfinite(xy), axis=1)]
    if len(xy) < 10:
        raise InputError(None, f"a nucleus needs at least 10 localizations, got {len(xy)}")
    lo = xy.min(0) - 4 * pixel_nm
    extent = np.ceil((xy.max(0) + 4 * pixel_nm - lo) / pixel_nm).astype(int)
    if extent.max() > MAX_RENDER_PX:
        raise InputError(
            None,
            f"nucleus spans {extent.max() * pixel_nm / 1000:.1f} um: too large for one "
            f"nucleus at {pixel_nm:g} nm pixels (is this a whole field?)",
        )
    ix = ((xy - lo) / pixel_nm).astype(int)
    img = np.zeros((extent[1] + 1, extent[0] + 1), np.float32)
    np.add.at(img, (ix[:, 1], ix[:, 0]), 1.0)
    if blur_px > 0:
        img = ndimage.gaussian_filter(img, blur_px)
    inside = img[img > 0]
    top = float(np.percentile(inside, 99.5)) if inside.size else 1.0
    return np.clip(img / max(top, 1e-6), 0, 2).astype(np.float32)


def nucleus_mask(img: np.ndarray, pixel_nm: float) -> np.ndarray:
    """Where the nucleus is: smoothed density above a small fraction of its mean."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(img, max(1.0, 150.0 / pixel_nm))
    return smooth > 0.25 * smooth[smooth > 0].mean()


def nucleus_patches(
    img: np.ndarray,
    patch: int,
    n: int,
    pixel_nm: float,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``n`` patches (``(n, patch, patch)``) centred inside the nucleus.

    With ``rng`` the centres are random (training); without, they are spread
    evenly over the nucleus in a fixed order (inference is deterministic).
    """
    half = patch // 2
    padded = np.pad(img, half, mode="constant")
    mask = nucleus_mask(img, pixel_nm)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        ys, xs = np.array([img.shape[0] // 2]), np.array([img.shape[1] // 2])
    if rng is not None:
        pick = rng.integers(0, ys.size, n)
    else:
        order = np.lexsort((xs, ys))
        pick = order[np.linspace(0, ys.size - 1, n).round().astype(int)]
    out = np.empty((n, patch, patch), np.float32)
    for i, k in enumerate(pick):
        y, x = ys[k], xs[k]
        out[i] = padded[y : y + patch, x : x + patch]
    return out


def read_item(path, package):
    """One input file as the package expects it (crop image or nucleus localizations)."""
    from napari_nucleus_ai.models.crops import is_image_file, read_crop

    if package.modality == "storm":
        if is_image_file(path):
            raise InputError(path, "this STORM model classifies localization files, not images")
        return read_nucleus_xy(path)
    if not is_image_file(path):
        raise InputError(path, "this model classifies image crops (PNG/JPEG/TIFF)")
    from napari_nucleus_ai.models.trust import check_modality

    crop = read_crop(path, keep_channels=True)
    check_modality(crop, package.card, path)  # an RGB model on grey, 4-channel...
    return crop[..., :3] if crop.ndim == 3 and crop.shape[-1] == 4 else crop


def read_nucleus_xy(path) -> np.ndarray:
    """Localization positions ``(N, 2)`` (x, y in nm) of one nucleus file, any supported format."""
    from napari_nucleus_ai.localizations import read_localizations

    table = read_localizations(path)
    df = getattr(table, "data", table)
    if "x_nm" not in df.columns or "y_nm" not in df.columns:
        raise InputError(path, "no x/y positions in nm")
    xy = df[["x_nm", "y_nm"]].to_numpy(float)
    if len(xy) < 10:
        raise InputError(path, f"a nucleus needs at least 10 localizations, got {len(xy)}")
    return xy
