"""Renders and labels written as TIFF carry their physical origin (issue 19, item 7)."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_two_renders_keep_their_positions(tmp_path):
    import tifffile

    from napari_nucleus_ai.localizations.writers import write_rendered_tiff

    img = np.ones((20, 30), np.float32)
    for name, origin in (("a", (0.0, 0.0)), ("b", (2000.0, 1500.0))):
        write_rendered_tiff(tmp_path / f"{name}.tif", img, (10.0, 10.0), origin)
    with tifffile.TiffFile(tmp_path / "a.tif") as a, tifffile.TiffFile(tmp_path / "b.tif") as b:
        ia, ib = a.imagej_metadata, b.imagej_metadata
    # ImageJ Calibration origin (pixels), as Fiji applies it
    assert (ia["xorigin"], ia["yorigin"]) == (0.0, 0.0)
    assert (ib["xorigin"], ib["yorigin"]) == (-150.0, -200.0)
    # the nm geometry, exact, for napari (the plugin's reader and Info JSON)
    assert json.loads(ib["Info"])["translate_nm"] == [2000.0, 1500.0]
    # the offset between the two renders, in um, is where b lies relative to a
    dx_um = (ia["xorigin"] - ib["xorigin"]) * 10.0 / 1000.0
    assert dx_um == pytest.approx(1.5)


def test_labels_tif_records_scale_and_translate(tmp_path):
    import tifffile

    from napari_nucleus_ai.segment.writers import write_labels_layer

    lab = np.zeros((10, 12), np.uint32)
    lab[2:5, 3:7] = 1
    meta = {"scale": (0.5, 0.5), "translate": (100.0, 50.0), "metadata": {"unit": "um"}}
    path, _csv = write_labels_layer(str(tmp_path / "x_labels.tif"), lab, meta)
    with tifffile.TiffFile(path) as tf:
        shaped = tf.shaped_metadata[0]
        assert np.array_equal(tf.asarray(), lab)
    assert shaped["scale"] == [0.5, 0.5] and shaped["translate"] == [100.0, 50.0]
    assert shaped["unit"] == "um"


def _pixel_at(layer, world_yx):
    """Value of the layer's pixel under a world point (napari's data = (world - t) / s)."""
    data, kw, _ = layer
    idx = np.round((np.asarray(world_yx) - kw["translate"][-2:]) / kw["scale"][-2:]).astype(int)
    return data[tuple(idx)]


def test_two_renders_overlay_in_place_when_read(tmp_path):
    """Renders of two regions of one field read back with their origin in ``translate``."""
    from napari_nucleus_ai.io import read_layers
    from napari_nucleus_ai.localizations.writers import write_rendered_tiff

    rng = np.random.default_rng(0)
    full = rng.random((40, 60)).astype(np.float32)
    px = 10.0  # nm
    a = write_rendered_tiff(tmp_path / "a.tif", full[0:20, 0:30], (px, px), (0.0, 0.0))
    # region b starts 10 rows and 15 columns further: origin (100 nm, 150 nm)
    b = write_rendered_tiff(tmp_path / "b.tif", full[10:30, 15:45], (px, px), (100.0, 150.0))
    (la,) = read_layers(a)
    (lb,) = read_layers(b)
    assert lb[1]["scale"] == pytest.approx((0.01, 0.01))
    assert lb[1]["translate"] == pytest.approx((0.1, 0.15))
    assert la[1]["translate"] == pytest.approx((0.0, 0.0))
    # every world point of the overlap shows the same pixel of the field in both layers
    for y in range(10, 20):
        for x in range(15, 30):
            world = (y * px / 1000.0, x * px / 1000.0)
            assert _pixel_at(la, world) == _pixel_at(lb, world) == full[y, x]


def test_imagej_origin_without_info_is_read(tmp_path):
    """A TIFF with only ImageJ's xorigin/yorigin (as Fiji saves it) is placed from them."""
    import tifffile

    from napari_nucleus_ai.io import read_layers

    img = np.zeros((8, 9), np.uint8)
    tifffile.imwrite(
        tmp_path / "fiji.tif",
        img,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),  # 0.5 um pixels
        metadata={"unit": "micron", "xorigin": -4.0, "yorigin": -2.0},
    )
    ((_, kw, _),) = read_layers(tmp_path / "fiji.tif")
    assert kw["translate"] == pytest.approx((1.0, 2.0))


@pytest.mark.parametrize("unit", ["um", "nm", "px"])
def test_labels_tif_read_back_in_place(tmp_path, unit):
    from napari_nucleus_ai.images import read_image
    from napari_nucleus_ai.io import read_layers
    from napari_nucleus_ai.segment.writers import write_labels_tif

    lab = np.zeros((10, 12), np.uint32)
    lab[2:5, 3:7] = 1
    scale = {"um": (0.5, 0.5), "nm": (500.0, 500.0), "px": None}[unit]
    translate = {"um": (100.0, 50.0), "nm": (100000.0, 50000.0), "px": (200.0, 100.0)}[unit]
    path = write_labels_tif(tmp_path / "x_labels.tif", lab, scale, unit, translate)
    ((data, kw, _),) = read_layers(path)
    assert np.array_equal(np.asarray(data), lab)
    if unit == "px":  # no pixel size: scale and origin in pixels
        assert kw["translate"] == pytest.approx((200.0, 100.0))
    else:
        assert kw["scale"] == pytest.approx((0.5, 0.5))
        assert kw["translate"] == pytest.approx((100.0, 50.0))
    assert read_image(path).describe()["origin_um"] == pytest.approx(list(kw["translate"]))


def test_tiff_without_origin_has_zero_translate(tmp_path):
    import tifffile

    from napari_nucleus_ai.io import read_layers

    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((5, 6), np.uint16))
    ((_, kw, _),) = read_layers(tmp_path / "plain.tif")
    assert kw["translate"] == (0.0, 0.0)
