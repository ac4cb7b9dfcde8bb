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


def _sparse_labels(tmp_path):
    """A 1030 x 1300 label TIFF (tiles of 128) with a few cells, one across four tiles."""
    labels = np.zeros((1030, 1300), np.uint32)
    labels[10:40, 20:60] = 3
    labels[120:140, 120:140] = 7  # across the tiles (0, 0), (0, 1), (1, 0), (1, 1)
    labels[1000:1030, 1280:1300] = 9  # at the far corner
    labels[500:520, 600:610] = 12
    labels[505:510, 605:608] = 13  # inside another cell's box
    tifffile.imwrite(tmp_path / "l.tif", labels, tile=(128, 128), compression="zlib")
    return labels, tmp_path / "l.tif"


def test_tiled_page_decodes_an_empty_tile_once_and_knows_it_blank(tmp_path):
    from napari_nucleus_ai.images.tiff import TiledPage

    labels, path = _sparse_labels(tmp_path)
    region = TiledPage(path)
    calls = []
    decode = region._page.decode
    region._page.decode = lambda *a, **k: calls.append(1) or decode(*a, **k)
    np.testing.assert_array_equal(region[:, :], labels)
    grid = (-(-1030 // 128), -(-1300 // 128))
    occupied = {(y // 128, x // 128) for y, x in zip(*np.nonzero(labels), strict=True)}
    assert len(calls) == len(occupied) + 1  # the cells' tiles and one empty tile
    for ty in range(grid[0]):
        for tx in range(grid[1]):
            assert region.tile_blank(ty, tx) == ((ty, tx) not in occupied)
    assert len(calls) == len(occupied) + 1  # known from their bytes: nothing decoded again
    with pytest.raises(ValueError):  # the shared empty tile is read-only
        region._tile_at(grid[0] - 1, 0)[0, 0] = 1


def test_label_boxes_of_a_tiled_page_skip_its_empty_tiles(tmp_path):
    from scipy import ndimage

    from napari_nucleus_ai.classify.cells import label_boxes_gen
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.images.tiff import TiledPage

    labels, path = _sparse_labels(tmp_path)
    region = TiledPage(path)
    reads = []
    getitem = TiledPage.__getitem__

    class Counted(TiledPage):
        def __getitem__(self, key):
            reads.append(key)
            return getitem(self, key)

    region.__class__ = Counted
    ids, boxes = run_sync(label_boxes_gen(region))
    objects = ndimage.find_objects(labels)
    want = [i + 1 for i, o in enumerate(objects) if o is not None]
    assert ids.tolist() == want
    for i, box in zip(ids, boxes, strict=True):
        o = objects[i - 1]
        assert box.tolist() == [o[0].start, o[0].stop, o[1].start, o[1].stop]
    occupied = {(y // 128, x // 128) for y, x in zip(*np.nonzero(labels), strict=True)}
    assert len(reads) == len(occupied) == 8  # the tiles under cells only (of 99)
    in_memory = run_sync(label_boxes_gen(labels, band=256))  # band by band, no tiles
    assert in_memory[0].tolist() == ids.tolist() and (in_memory[1] == boxes).all()


def test_lut_image_painted_in_the_cells_boxes_is_lut_of_labels(tmp_path):
    from napari_nucleus_ai.classify.cells import LutImage, label_boxes_gen
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.images.tiff import TiledPage

    labels, path = _sparse_labels(tmp_path)
    region = TiledPage(path)
    lut = np.zeros(14, np.float32)
    lut[[3, 7, 9, 12, 13]] = [0.1, 0.2, 0.3, 0.4, 0.5]
    _, boxes = run_sync(label_boxes_gen(region))
    image = LutImage(region, lut, boxes)
    for box in [np.s_[:, :], np.s_[100:200, 100:300], np.s_[1000:, 1200:], np.s_[600:900, :]]:
        np.testing.assert_array_equal(image[box], lut[labels[box]])
    assert image.blank(np.s_[600:900, :]) and not image.blank(np.s_[0:130, 0:130])
    assert not LutImage(region, lut).blank(np.s_[600:900, :])  # without boxes: not known
    np.testing.assert_array_equal(np.asarray(LutImage(region, lut)), lut[labels])


def test_class_tiff_of_a_lut_image_skips_nothing_but_empty_tiles(tmp_path):
    from napari_nucleus_ai.classify.cells import LutImage, label_boxes_gen
    from napari_nucleus_ai.cli.classify import _write_tiff
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.images.tiff import TiledPage

    labels, path = _sparse_labels(tmp_path)
    region = TiledPage(path)
    lut = (np.arange(14) % 5 + 1).astype(np.uint8)
    lut[0] = 0
    _, boxes = run_sync(label_boxes_gen(region))
    _write_tiff(tmp_path / "c.tif", LutImage(region, lut, boxes))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c.tif"), lut[labels])
