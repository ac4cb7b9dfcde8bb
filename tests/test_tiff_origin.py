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
