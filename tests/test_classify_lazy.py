"""``classify`` of a region read lazily: per-cell windows cut from tiles, same results as in memory.

A whole-slide region is never loaded: labels are scanned band by band, each cell is
measured and cut in its own box, and the class / uncertainty TIFFs are written tile by
tile. These tests hold the lazy path to the in-memory one on a small region.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_nucleus_ai.images.tiff import read_tiff

DEMO_MODEL = os.path.normpath(
    os.path.join(
        os.path.dirname(__file__), "..", "src", "napari_nucleus_ai", "demo", "models",
        "smear-wbc.zip",
    )
)  # fmt: skip
PX_UM = 0.25


def _whole_image_windows(image, cents, window_px, size):
    """Reference: resample the whole image at once (block-mean pre-blur, bilinear, edge value)."""
    import torch
    import torch.nn.functional as F

    img = image.astype(np.float64) / 255.0
    t = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
    factor = window_px / size
    if factor > 1.5:
        k = int(factor)
        t = F.avg_pool2d(t, k, stride=k, ceil_mode=True)
        cents, window_px = np.asarray(cents, float) / k, window_px / k
    h, w = t.shape[-2:]
    lin = (np.arange(size) + 0.5) / size - 0.5
    out = []
    for cy, cx in cents:
        gy = np.broadcast_to((cy + lin * window_px)[:, None], (size, size))
        gx = np.broadcast_to((cx + lin * window_px)[None, :], (size, size))
        grid = np.stack([(gx + 0.5) / w * 2 - 1, (gy + 0.5) / h * 2 - 1], -1)[None]
        g = torch.from_numpy(np.ascontiguousarray(grid))
        s = F.grid_sample(t, g, mode="bilinear", padding_mode="border", align_corners=False)
        out.append(s[0].numpy().transpose(1, 2, 0))
    return np.stack(out)


@pytest.mark.parametrize(("window_px", "size"), [(40.0, 48), (150.5, 32)])
def test_windows_from_a_lazy_image_equal_whole_image_resampling(tmp_path, window_px, size):
    from napari_nucleus_ai.models.crops import cell_windows

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (700, 900, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "img.tif", image, tile=(128, 128), compression="zlib")
    lazy = read_tiff(tmp_path / "img.tif", lazy=True).levels[0]
    assert not isinstance(lazy, np.ndarray)
    # inside, across tile borders, and hanging over every edge of the image
    cents = np.array([[350.2, 450.7], [127.5, 128.4], [3.0, 5.0], [698.0, 20.0], [10.0, 897.5]])
    want = _whole_image_windows(image, cents, window_px, size)
    got_lazy = cell_windows(lazy, cents, window_px, size)
    got_eager = cell_windows(image, cents, window_px, size)
    np.testing.assert_allclose(got_lazy, want, atol=1e-4)
    np.testing.assert_allclose(got_eager, want, atol=1e-4)


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    """A 1400 x 1500 region: two simulated smear fields on the slide background, tiled TIFFs."""
    from napari_nucleus_ai.samples.smear import simulate_smear

    d = tmp_path_factory.mktemp("region")
    image = np.empty((1400, 1500, 3), np.uint8)
    labels = np.zeros((1400, 1500), np.uint32)
    nxt = 1
    for k, (y, x) in enumerate([(30, 40), (700, 820)]):
        sim = simulate_smear(seed=11 + k, shape=(480, 640), pixel_size_um=PX_UM, n_wbc=6)
        if k == 0:
            image[:] = np.median(sim.image.reshape(-1, 3), 0).astype(np.uint8)
        image[y : y + 480, x : x + 640] = sim.image
        cells = sim.cells.astype(np.uint32)
        labels[y : y + 480, x : x + 640] = np.where(cells > 0, cells + nxt - 1, 0)
        nxt += int(cells.max())
    res = {"resolution": (1e4 / PX_UM, 1e4 / PX_UM), "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(d / "r.tif", image, photometric="rgb", tile=(256, 256), **res)
    tifffile.imwrite(d / "r_labels.tif", labels, tile=(256, 256), compression="zlib", **res)
    return d / "r.tif", d / "r_labels.tif", image, labels


def test_lazy_classify_gives_the_in_memory_table_and_images(region):
    from napari_nucleus_ai.classify.cells import classify_cells

    img_p, lab_p, image, labels = region
    assert labels.max() >= 8
    opts = {"scale": PX_UM, "unit": "um", "device": "cpu"}
    eager = classify_cells(DEMO_MODEL, image, labels, **opts)
    lazy_img = read_tiff(img_p, lazy=True).levels[0]
    lazy_lab = read_tiff(lab_p, lazy=True).levels[0]
    lazy = classify_cells(DEMO_MODEL, lazy_img, lazy_lab, **opts)
    a, b = eager.table, lazy.table
    assert list(a["label"]) == list(b["label"]) == list(range(1, int(labels.max()) + 1))
    assert list(a["class"]) == list(b["class"])
    for col in a.columns:
        if pd.api.types.is_numeric_dtype(a[col]):
            np.testing.assert_allclose(b[col], a[col], rtol=1e-4, atol=1e-4, err_msg=col)
    np.testing.assert_array_equal(np.asarray(lazy.class_image), eager.class_image)
    np.testing.assert_allclose(
        np.asarray(lazy.uncertainty_image), eager.uncertainty_image, atol=1e-4
    )


def test_lazy_cell_chunk_uses_the_table_boxes(region):
    """A slice of the cell table (a batch chunk) is classified from its rows' boxes alone."""
    from napari_nucleus_ai.cells import measure_cells
    from napari_nucleus_ai.classify.cells import classify_cells

    img_p, lab_p, image, labels = region
    table = measure_cells(labels, scale=PX_UM, unit="um").iloc[3:7]
    opts = {"scale": PX_UM, "unit": "um", "device": "cpu"}
    eager = classify_cells(DEMO_MODEL, image, labels, table, **opts)
    lazy = classify_cells(
        DEMO_MODEL,
        read_tiff(img_p, lazy=True).levels[0],
        read_tiff(lab_p, lazy=True).levels[0],
        table,
        **opts,
    )
    assert list(lazy.table["label"]) == [4, 5, 6, 7]
    assert list(lazy.table["class"]) == list(eager.table["class"])
    np.testing.assert_allclose(lazy.table["uncertainty"], eager.table["uncertainty"], atol=1e-4)


def test_cli_lazy_region_writes_the_same_files(region, tmp_path, monkeypatch):
    import napari_nucleus_ai.images.tiff as tiff
    from napari_nucleus_ai.cli import main

    img_p, lab_p, _, _ = region

    def run(out, lazy):
        monkeypatch.setattr(tiff, "LAZY_REGION_BYTES", 0 if lazy else 2**40)
        args = ["classify", DEMO_MODEL, str(img_p), "--labels", str(lab_p), "--out", str(out)]
        assert main([*args, "--device", "cpu", "--quiet"]) == 0

    run(tmp_path / "eager", lazy=False)
    run(tmp_path / "lazy", lazy=True)
    a = pd.read_csv(tmp_path / "eager" / "cells.csv")
    b = pd.read_csv(tmp_path / "lazy" / "cells.csv")
    assert list(a["class"]) == list(b["class"])
    np.testing.assert_allclose(b["centroid_y"], a["centroid_y"], atol=1e-6)
    np.testing.assert_allclose(b["uncertainty"], a["uncertainty"], atol=1e-4)
    ca = tifffile.imread(tmp_path / "eager" / "classes.tif")
    cb = tifffile.imread(tmp_path / "lazy" / "classes.tif")
    np.testing.assert_array_equal(cb, ca)
    ua = tifffile.imread(tmp_path / "eager" / "uncertainty.tif")
    ub = tifffile.imread(tmp_path / "lazy" / "uncertainty.tif")
    np.testing.assert_allclose(ub, ua, atol=1e-4)
    assert tifffile.TiffFile(tmp_path / "lazy" / "classes.tif").pages[0].is_tiled
    # nothing half-written: only the finished files
    assert sorted(os.listdir(tmp_path / "lazy")) == sorted(os.listdir(tmp_path / "eager"))


@pytest.mark.parametrize("layout", [{"tile": (64, 96)}, {"rowsperstrip": 37}])
@pytest.mark.parametrize("rgb", [True, False])
def test_tiled_page_boxes_equal_the_image(tmp_path, layout, rgb):
    from napari_nucleus_ai.images.tiff import TiledPage, read_region_lazy

    rng = np.random.default_rng(2)
    shape = (300, 410, 3) if rgb else (300, 410)
    image = rng.integers(0, 60000, shape).astype(np.uint8 if rgb else np.uint32)
    tifffile.imwrite(tmp_path / "a.tif", image, compression="zlib", **layout)
    region = read_region_lazy(tmp_path / "a.tif", min_bytes=0)
    assert isinstance(region, TiledPage)
    assert region.shape == image.shape and region.dtype == image.dtype
    for box in [np.s_[0:1, 0:1], np.s_[63:130, 95:300], np.s_[250:400, 400:500], np.s_[:, :]]:
        np.testing.assert_array_equal(region[box], image[box])
    assert read_region_lazy(tmp_path / "a.tif") is None  # small: read into memory as before
