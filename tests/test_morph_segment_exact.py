"""The descriptor's per-crop segmentation helpers give exactly scipy's results."""

from __future__ import annotations

import os
from pathlib import Path

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


def _grey8(crops: np.ndarray) -> np.ndarray:
    """The descriptor's 8-bit stretch of each crop's grey optical density ``(N, H, W)``."""
    grey = -np.log(np.clip(crops, 1e-3, 1.0)).mean(-1)
    lo, hi = np.percentile(grey.reshape(len(grey), -1), [1.0, 99.5], axis=1)
    g = (grey - lo[:, None, None]) / np.maximum(hi - lo, 1e-6)[:, None, None] * 255
    return np.clip(g, 0, 255).astype(np.uint8)


def _lbp_images():
    rng = np.random.default_rng(3)
    return [
        rng.integers(0, 256, (64, 64), dtype=np.uint8),
        rng.integers(0, 256, (23, 41), dtype=np.uint8),
        rng.integers(100, 103, (30, 30), dtype=np.uint8),  # many ties with the neighbours
        np.full((9, 9), 7, np.uint8),
        *_grey8(_crops(3, 96)),
    ]


@pytest.mark.parametrize("radius", (1.0, 2.0, 1.5))
def test_lbp_is_skimages(radius):
    """The numpy uniform LBP gives scikit-image's codes, on the whole image and in a box."""
    from skimage.feature import local_binary_pattern

    for img in _lbp_images():
        want = local_binary_pattern(img, M._LBP_P, radius, method="uniform")
        np.testing.assert_array_equal(M._lbp_uniform(img, radius), want)
        h, w = img.shape
        box = (h // 4, h - 2, 1, w // 2 + 1)
        np.testing.assert_array_equal(
            M._lbp_uniform(img, radius, box), want[box[0] : box[1], box[2] : box[3]]
        )


def test_lbp_is_skimages_on_real_crops():
    from skimage.feature import local_binary_pattern

    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    pbc = Path(os.environ.get("NAPARI_NUCLEUS_AI_SHARED_DATA", shared)) / "smear" / "pbc"
    files = sorted(f for f in pbc.glob("*/*") if f.suffix.lower() in (".png", ".jpg"))[::12]
    if not files:
        pytest.skip(f"real PBC crops not at {pbc}")
    import imageio.v3 as iio

    crops = np.stack([iio.imread(f)[..., :3] for f in files]).astype(np.float32) / 255
    for img in _grey8(crops):
        for radius in (1.0, 2.0):
            want = local_binary_pattern(img, M._LBP_P, radius, method="uniform")
            np.testing.assert_array_equal(M._lbp_uniform(img, radius), want)


def test_lbp_batch_is_the_per_crop_histogram():
    """Batched histograms (masks' bounding box only) equal :func:`_lbp_hist` per crop, also
    for a mask of fewer than 4 pixels (counted over the whole crop)."""
    crops = _crops(4, 80)
    grey = -np.log(np.clip(crops, 1e-3, 1.0)).mean(-1)
    yy, xx = np.mgrid[:80, :80]
    nuc = np.stack([np.hypot(yy - 40, xx - 38 - k) < 10 + 2 * k for k in range(4)])
    cyto = np.stack([(np.hypot(yy - 41, xx - 40) < 25) & ~m for m in nuc])
    nuc[2] = False
    nuc[2, 5, 5:8] = True  # 3 pixels
    got = M._lbp_batch(grey, (nuc, cyto))
    for i in range(4):
        want = []
        for radius in (1.0, 2.0):
            want += M._lbp_hist(grey[i], nuc[i], radius) + M._lbp_hist(grey[i], cyto[i], radius)
        np.testing.assert_array_equal(got[i], want)


def test_dog_energy_in_a_box_is_the_whole_crop_filter():
    """The difference of Gaussians on the masks' grown bounding box is the whole crop's."""
    rng = np.random.default_rng(4)
    h = 96
    grey = rng.random((h, h)).astype(np.float32)
    yy, xx = np.mgrid[:h, :h]
    for cy, cx in ((48, 48), (10, 85), (70, 5)):  # boxes inside and at the crop's edges
        nuc = np.hypot(yy - cy, xx - cx) < 6
        cyto = (np.hypot(yy - cy, xx - cx) < 14) & ~nuc
        got = M._dog_energy(grey, (nuc, cyto), h)
        want = []
        for s in (0.005, 0.01, 0.02):
            s1, s2 = s * h + 0.3, 2 * s * h + 0.6
            dog = np.abs(ndi.gaussian_filter(grey, s1) - ndi.gaussian_filter(grey, s2))
            want += [float(np.mean(dog[m], dtype=np.float64)) for m in (nuc, cyto)]
        assert got == want


def test_nucleus_distance_is_the_masks():
    """The distance handed from the nucleus to the cell mask is the nucleus' distance
    transform (within the cell's reach), and gives the same cell."""
    for crop in _crops(6, 96):
        od = M.optical_density(crop)
        nuc, far = M._nucleus(od)
        np.testing.assert_array_equal(nuc, M.nucleus_mask(od))
        if far is not None:  # the whole crop's distances up to the cell's reach, beyond: inf
            want = ndi.distance_transform_edt(~nuc)
            near = want <= M._FAR * 96
            np.testing.assert_array_equal(far[near], want[near])
            assert ((far == want) | np.isinf(far))[~near].all()
        np.testing.assert_array_equal(M._cell(od.sum(-1), nuc, far), M.cell_mask(od, nuc))


def test_batched_descriptor_is_the_per_cell_one_at_192px():
    """describe_cells on 192-px crops: describe_cell's features, some bit for bit, the others
    within float rounding (the Gabor energies, single against double precision FFTs, within
    1e-4 relative)."""
    crops = _crops(6, 192)
    new = M.describe_cells(crops).astype(np.float64)
    ref = np.stack([M.describe_cell(c) for c in crops]).astype(np.float64)
    gabor = np.zeros(M.N_FEATURES, bool)
    gabor[64:80] = True
    tol = np.where(gabor, 1e-4, 1e-5) * (np.abs(ref) + 1e-3)
    assert (np.abs(new - ref) <= tol).all()
    # exact: shapes and lobes, nucleus detail, local binary patterns, profiles, histograms
    for a, b in ((0, 18), (54, 64), (83, M.N_FEATURES)):
        np.testing.assert_array_equal(new[:, a:b], ref[:, a:b])


def _shape_masks():
    rng = np.random.default_rng(5)
    out = [m for m in _masks() if m.any()]
    out += [
        rng.random((int(a), int(b))) < p
        for p in (0.01, 0.2)
        for a, b in rng.integers(2, 50, (8, 2))
    ]
    yy, xx = np.mgrid[:70, :70]
    for _ in range(30):  # unions of rotated ellipses: nuclei, lobes, cells
        m = np.zeros((70, 70), bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx, ry, rx, a = *rng.uniform(8, 62, 2), *rng.uniform(1, 14, 2), rng.uniform(0, 3)
            u = (yy - cy) * np.cos(a) + (xx - cx) * np.sin(a)
            v = (xx - cx) * np.cos(a) - (yy - cy) * np.sin(a)
            m |= (u / ry) ** 2 + (v / rx) ** 2 <= 1
        out.append(m)
    return out + [np.ones((1, 1), bool), np.ones((1, 6), bool), np.ones((6, 1), bool)]


def test_convex_area_is_skimages():
    """The hull's pixel count equals regionprops' area_convex (convex_hull_image's sum)."""
    from skimage.measure import regionprops

    for m in _shape_masks():
        if m.any():
            want = regionprops(m.view(np.uint8))[0].area_convex
            assert M._convex_area(m) == want


def test_region_shape_is_regionprops():
    """Shape features: regionprops' values (solidity from the counted hull)."""
    from skimage.measure import label, regionprops

    for m in _shape_masks():
        if m.any():
            p = regionprops(m.astype(np.uint8))[0]
            perim = max(float(p.perimeter), 1.0)
            area = float(m.sum())
            want = [area / 70**2, perim / 70, 4 * np.pi * area / perim**2]
            want += [float(p.solidity), float(p.eccentricity), float(label(m).max())]
            assert M._region_shape(m, 70) == want


@pytest.mark.parametrize("i", range(len(_masks())))
def test_cross_morphology_is_scipys(i):
    mask = _masks()[i]
    for k in (1, 2, 11):
        np.testing.assert_array_equal(M._erode(mask, k), ndi.binary_erosion(mask, iterations=k))
        np.testing.assert_array_equal(M._dilate(mask, k), ndi.binary_dilation(mask, iterations=k))
        np.testing.assert_array_equal(M._open(mask, k), ndi.binary_opening(mask, iterations=k))


def test_perimeter_and_eccentricity_are_skimages():
    from skimage.measure import perimeter, regionprops

    for m in _shape_masks():
        if m.any():
            img = m[M._box(m)]
            assert M._perimeter(img) == perimeter(m, 4)
            assert M._eccentricity(img) == regionprops(m.view(np.uint8))[0].eccentricity


def test_peaks_are_skimages():
    """_peaks equals peak_local_max(..., labels=fg): distance maps and noisy plateaus, with
    regions touching the border, tiny regions and several spacings."""
    from skimage.feature import peak_local_max

    rng = np.random.default_rng(6)
    for k in range(120):
        s = int(rng.integers(5, 70))
        fg = rng.random((s, s)) < rng.uniform(0.05, 1.0)
        if k % 3:
            fg = ndi.binary_opening(fg)
        image = ndi.distance_transform_edt(fg) if k % 2 else np.round(rng.random((s, s)) * 4)
        for md in (1, 2, 7):
            want = peak_local_max(image, min_distance=md, labels=fg.astype(int))
            np.testing.assert_array_equal(M._peaks(image, fg, md), want)
