"""Small mask helpers that behave the same on every scikit-image version."""

from __future__ import annotations

import numpy as np


def drop_small(mask: np.ndarray, min_px: float) -> np.ndarray:
    """``mask`` without connected parts (8-connected) smaller than ``min_px`` pixels."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask.astype(bool)
    counts = np.bincount(lab.ravel())
    keep = counts >= min_px
    keep[0] = False
    return keep[lab]


def fill_small_holes(mask: np.ndarray, max_px: float) -> np.ndarray:
    """``mask`` with enclosed holes of at most ``max_px`` pixels filled."""
    from scipy import ndimage as ndi

    holes = ~mask.astype(bool)
    lab, n = ndi.label(holes)  # 4-connected background
    if n == 0:
        return mask.astype(bool)
    counts = np.bincount(lab.ravel())
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    fill = counts <= max_px
    fill[0] = False
    fill[border] = False
    return mask.astype(bool) | fill[lab]


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..N in order of first appearance of their ids, as int32."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[labels]
