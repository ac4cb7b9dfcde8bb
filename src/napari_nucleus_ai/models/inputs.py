"""Turn raw samples into the normalised tensors a package's network expects.

Everything is driven by the card's ``input`` section, so a package is
self-describing::

    "modality": "brightfield_rgb" | "fluorescence" | "storm",
    "input": {
        "crop_size": 96,            # network input side, pixels
        "channels": 3,
        "pixel_size": 0.35,         # physical size of one network pixel ...
        "unit": "um",               # ... in this unit ("px" = source pixels, unknown scale)
        "field": 0.65,              # optional: centre fraction of a crop the network sees
        "frame": {"kind": "cell", "fill": 0.5, ...},   # optional: the canonical cell frame
        "normalisation": {"mean": [..], "std": [..]},   # per channel, after scaling to [0, 1]
        "storm": {"render_pixel_nm": 10, "patches": 16, "blur_px": 1.0}   # STORM only
    }

Image crops are brought to the card's canonical cell frame when it has one (the cell
found, centred and scaled, the stain normalised), else centre-squared, cut to their
central ``field`` (1 when absent) and resized to ``crop_size``; both in
:mod:`napari_nucleus_ai.models.framing`. A STORM nucleus
(``(N, 2)`` x/y positions in nm, or an image already rendered at
``render_pixel_nm``) is rendered and cut into ``patches`` windows of
``crop_size`` pixels; the network classifies every patch and the nucleus gets the
mean of its patches' probabilities.
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.models.crops import nucleus_patches, render_nucleus, square_resize
from napari_nucleus_ai.models.framing import centre_field, field_of, frame_crops, frame_of


def is_localizations(item) -> bool:
    a = np.asarray(item)
    return a.ndim == 2 and a.shape[1] in (2, 3) and a.shape[0] > 3 and a.dtype.kind == "f"


def _fit_channels(img: np.ndarray, channels: int) -> np.ndarray:
    if img.shape[-1] == channels:
        return img
    if channels == 1:
        return img.mean(-1, keepdims=True)
    if img.shape[-1] == 1:
        return np.repeat(img, channels, -1)
    return img[..., :channels]


def raw_inputs(
    items,
    card: dict,
    rng: np.random.Generator | None = None,
    n_patches=None,
    pixel_size_um=None,
):
    """Un-normalised network inputs ``(M, C, S, S)`` float32 and the item index of each row.

    ``rng`` (training) draws random STORM patch centres; without it they are fixed.
    ``pixel_size_um`` (one for all items or one per item; ``None`` = unknown) is the
    crops' pixel size, which a card's canonical frame uses for its scale.
    """
    spec = card["input"]
    size, channels = int(spec["crop_size"]), int(spec["channels"])
    out, groups = [], []
    if card["modality"] == "storm":
        st = spec["storm"]
        pix = float(st["render_pixel_nm"])
        n = int(n_patches or st["patches"])
        for i, item in enumerate(items):
            a = np.asarray(item)
            img = render_nucleus(a[:, :2], pix, float(st["blur_px"])) if is_localizations(a) else a
            out.append(nucleus_patches(np.asarray(img, np.float32), size, n, pix, rng)[:, None])
            groups += [i] * n
    elif frame_of(card) is not None and channels == 3:
        for i, img in enumerate(frame_crops(list(items), card, pixel_size_um)):
            out.append(img.transpose(2, 0, 1)[None])
            groups.append(i)
    else:
        field = field_of(card)
        for i, item in enumerate(items):
            img = square_resize(centre_field(np.asarray(item), field), size)
            out.append(_fit_channels(img, channels).transpose(2, 0, 1)[None])
            groups.append(i)
    if not out:
        return np.zeros((0, channels, size, size), np.float32), np.zeros(0, int)
    return np.concatenate(out).astype(np.float32), np.asarray(groups)


def normalise(x: np.ndarray, card: dict) -> np.ndarray:
    norm = card["input"]["normalisation"]
    mean = np.asarray(norm["mean"], np.float32)[None, :, None, None]
    std = np.asarray(norm["std"], np.float32)[None, :, None, None]
    return (x - mean) / std


def prepare(items, card: dict, rng=None, n_patches=None, pixel_size_um=None):
    """Normalised network inputs and item groups (see :func:`raw_inputs`)."""
    x, groups = raw_inputs(items, card, rng, n_patches, pixel_size_um)
    return normalise(x, card), groups


def fit_normalisation(x: np.ndarray) -> dict:
    """Per-channel mean and std of raw inputs ``(M, C, H, W)``."""
    mean = x.mean(axis=(0, 2, 3))
    std = np.maximum(x.std(axis=(0, 2, 3)), 1e-3)
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}
