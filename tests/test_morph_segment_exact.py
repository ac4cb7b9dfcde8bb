"""The descriptor's per-crop segmentation helpers give exactly scipy's results."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_nucleus_ai.models.nets import morphology as M


def _masks():
    rng = np.random.default_rng(0)
    out = [rng.random((40, 37)) < p for p in (0.1, 0.3, 0.5, 0.6, 0.8, 0.95)]
    ring = np.zeros((30, 30), bool)
    ring[5:25, 5:25] = True
    ring[10:20, 10:20] = False  # one hole
    ring[12, 12] = True  # an island inside it
    edge = ring.copy()
    edge[0:3, 8:12] = True  # touching the border, no hole added
    diag = np.eye(12, dtype=bool) | np.eye(12, dtype=bool)[::-1]  # 8- but not 4-connected
    return out + [ring, edge, diag, np.zeros((9, 9), bool), np.ones((9, 9), bool)]


@pytest.mark.parametrize("i", range(len(_masks())))
def test_fill_holes_is_scipys(i):
    mask = _masks()[i]
    np.testing.assert_array_equal(M._fill_holes(mask), ndi.binary_fill_holes(mask))


def test_fill_holes_fills_a_hole():
    mask = _masks()[6]
    assert M._fill_holes(mask)[15, 15] and not mask[15, 15]


@pytest.mark.parametrize("p", (0.2, 0.5, 0.7))
def test_label_min_is_scipys(p):
    rng = np.random.default_rng(1)
    lab, n = ndi.label(rng.random((50, 43)) < p)
    v = rng.normal(size=lab.shape)
    want = np.asarray(ndi.minimum(v, lab, np.arange(1, n + 1)))
    np.testing.assert_array_equal(M._label_min(v, lab, n), want)


def _crops(n: int = 6, size: int = 72) -> np.ndarray:
    """Synthetic stained cells: a pale disc, dark lobes, vacuoles, noise; ``(n, size, size, 3)``."""
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.ones((n, size, size, 3), np.float32)
    for k in range(n):
        out[k][np.hypot(yy, xx) < size * 0.35] = (0.8, 0.65, 0.85)
        for _ in range(1 + k % 4):
            cy, cx = rng.normal(0, size * 0.08, 2)
            out[k][np.hypot(yy - cy, xx - cx) < size * 0.1] = (0.35, 0.15, 0.5)
        for a in np.linspace(0, 2 * np.pi, 5)[: 1 + k % 3]:  # vacuoles: holes in the cell
            vy, vx = size * 0.26 * np.sin(a), size * 0.26 * np.cos(a)
            out[k][np.hypot(yy - vy, xx - vx) < size * 0.05] = 1.0
    return np.clip(out + rng.normal(0, 0.03, out.shape), 0, 1).astype(np.float32)


def test_descriptor_is_the_same_with_scipys_calls(monkeypatch):
    """describe_cells with the helpers equals describe_cells with scipy's calls, bit for bit."""
    crops = _crops()
    fast = M.describe_cells(crops)
    monkeypatch.setattr(M, "_fill_holes", ndi.binary_fill_holes)
    monkeypatch.setattr(
        M, "_label_min", lambda v, lab, n: np.asarray(ndi.minimum(v, lab, np.arange(1, n + 1)))
    )
    slow = M.describe_cells(crops)
    assert np.isfinite(fast).all() and fast.std(0).max() > 0  # the crops differ
    np.testing.assert_array_equal(fast, slow)
