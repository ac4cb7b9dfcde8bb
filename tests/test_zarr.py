"""OME-Zarr (issue 19): image -> segment -> classify -> .zarr -> read back; validation; CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.io import ngff


@pytest.fixture(scope="module")
def classified():
    """A simulated smear field, segmented and classified by the shipped demo model."""
    from napari_nucleus_ai.classify.cells import classify_cells_gen
    from napari_nucleus_ai.classify.demo_models import demo_model
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.samples.smear import simulate_smear_field
    from napari_nucleus_ai.segment.run import segment

    img, _, _ = simulate_smear_field(seed=5, n_wbc=4, shape=(600, 700))
    seg = run_sync(segment(img, "wbc", pixel_size_um=0.1))
    package = demo_model("smear-wbc")
    res = run_sync(classify_cells_gen(package, img, seg.labels, scale=0.1, unit="um", device="cpu"))
    return img, seg.labels, res.table, package


def test_round_trip_through_the_npe2_reader(tmp_path, classified):
    from napari_nucleus_ai.cells import from_features
    from napari_nucleus_ai.io.napari_io import get_reader

    img, labels, table, package = classified
    colours = {c["name"]: c["colour"] for c in package.card["classes"]}
    path = ngff.write_ngff(
        tmp_path / "field.zarr", img, {"cells": (labels, table)}, pixel_size=0.1, unit="um",
        origin=(5.0, 7.0), class_colours=colours,
    )  # fmt: skip
    reader = get_reader(path)
    assert reader is not None and get_reader(str(tmp_path)) is None  # other folders: not ours
    layers = reader(path)
    (img_data, img_kw, _), (lab_data, lab_kw, kind) = layers
    assert kind == "labels" and img_kw["rgb"] and img_kw["multiscale"]
    assert hasattr(img_data[0], "dask")  # lazy
    assert np.array_equal(np.asarray(img_data[0]), img)
    assert img_kw["scale"] == (0.1, 0.1) and img_kw["translate"] == (5.0, 7.0)
    assert lab_kw["scale"] == (0.1, 0.1) and lab_kw["translate"] == (5.0, 7.0)
    back = np.asarray(lab_data[0] if isinstance(lab_data, list) else lab_data)
    assert np.array_equal(back, labels)
    t2 = from_features(pd.DataFrame(lab_kw["features"]))
    assert list(t2.columns) == list(table.columns)
    pd.testing.assert_frame_equal(
        t2.reset_index(drop=True), table.reset_index(drop=True), check_dtype=False
    )
    assert lab_kw["metadata"]["class_colors"]["lymphocyte"] == colours["lymphocyte"]


def test_store_opens_with_ome_zarr_and_validates(tmp_path):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    models = pytest.importorskip("ome_zarr_models.v04")
    from ome_zarr_models.v04.image_label import ImageLabel

    img = (np.arange(600 * 520) % 251).astype(np.uint16).reshape(600, 520)
    lab = np.zeros(img.shape, np.int32)
    lab[10:60, 20:90] = 1
    lab[300:380, 100:150] = 2
    table = pd.DataFrame({"label": [1, 2], "class": ["a", "b"], "area": [3500.0, 4000.0]})
    path = ngff.write_ngff(tmp_path / "x.zarr", img, {"cells": (lab, table)}, pixel_size=0.5)
    nodes = list(Reader(parse_url(path))())
    image = nodes[0]
    assert any(isinstance(s, Multiscales) for s in image.specs)
    assert [d.shape for d in image.data] == [(600, 520), (300, 260), (150, 130)]
    label_nodes = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert len(label_nodes) == 1 and label_nodes[0].data[0].shape == (600, 520)
    group = zarr.open_group(path, mode="r")
    models.Image.from_zarr(group)  # raises on any NGFF 0.4 violation
    il = ImageLabel.from_zarr(group["labels/cells"])
    props = il.attributes.image_label.properties
    assert [p.label_value for p in props] == [1, 2]
    info = ngff.describe(path)
    assert info["format"] == "ome-zarr 0.4" and info["unit"] == "um"
    assert info["reader"] == "napari_nucleus_ai.io.ngff"
    assert (
        info["levels"] == [[600, 520], [300, 260], [150, 130]]
        and info["labels"]["cells"]["cells"] == 2
    )


def test_reads_a_pyramid_lazily_with_physical_scale(tmp_path):
    """A 2-channel pyramid written by ome-zarr-py itself (NGFF 0.4, units nanometer)."""
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    data = np.random.default_rng(0).integers(0, 1000, (2, 1100, 900), dtype=np.uint16)
    root = zarr.open_group(tmp_path / "stack.zarr", mode="w", zarr_format=2)
    write_image(
        data, root, scale_factors=(2, 4), fmt=FormatV04(),
        axes=[{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "nanometer"},
              {"name": "x", "type": "space", "unit": "nanometer"}],
        scale={"c": 1.0, "y": 65.0, "x": 65.0},
        storage_options={"chunks": (1, 256, 256)},
    )  # fmt: skip
    from napari_nucleus_ai.io import read_layers

    ((levels, kw, kind),) = read_layers(tmp_path / "stack.zarr")
    assert kind == "image" and kw["channel_axis"] == 0 and len(levels) == 3
    assert all(hasattr(v, "dask") for v in levels)
    assert levels[0].chunksize == (1, 256, 256)
    assert kw["scale"] == (65.0, 65.0) and kw.get("units", ("nm", "nm")) == ("nm", "nm")


def test_cli_export_zarr_and_npe2_writer(tmp_path, capsys):
    import tifffile

    from napari_nucleus_ai.cells import measure_cells, to_features, write_cell_table
    from napari_nucleus_ai.cli import main

    img = np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    lab = np.zeros((300, 400), np.uint32)
    lab[50:100, 50:120] = 1
    lab[150:250, 200:260] = 2
    table = measure_cells(lab, scale=0.2, unit="um")
    table["class"] = ["x", "y"]
    tifffile.imwrite(tmp_path / "img.tif", img, resolution=(5e4, 5e4), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "labels.tif", lab)
    write_cell_table(table, tmp_path / "cells.csv")
    out = tmp_path / "out.zarr"
    rc = main(
        ["export-zarr", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "labels.tif"),
         "--table", str(tmp_path / "cells.csv"), "--out", str(out)]
    )  # fmt: skip
    assert rc == 0 and "2 cells" in capsys.readouterr().out
    s = ngff.read_ngff(out)
    assert s["image"]["scale"].tolist() == pytest.approx([1.0, 0.2, 0.2])
    assert s["labels"]["cells"]["table"]["class"].tolist() == ["x", "y"]
    assert main(["export-zarr", str(tmp_path / "img.tif"), "--out", str(tmp_path / "o.tif")]) == 2

    layer_data = [
        (img, {"name": "img", "rgb": True, "scale": (0.2, 0.2), "translate": (1.0, 2.0)}, "image"),
        (lab, {"name": "img cells", "features": to_features(table), "scale": (0.2, 0.2)}, "labels"),
    ]
    (written,) = ngff.write_ngff_layers(str(tmp_path / "layers"), layer_data)
    assert written.endswith(".zarr")
    s = ngff.read_ngff(written)
    assert s["image"]["translate"].tolist()[-2:] == [1.0, 2.0]
    (lab_back,) = s["labels"].values()
    assert np.array_equal(np.asarray(lab_back["levels"][0]), lab)
    assert lab_back["table"]["class"].tolist() == ["x", "y"]
