"""QuPath GeoJSON (issue 19): classified cells -> GeoJSON -> labels + table, CLI, npe2 writer/reader."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk, ellipse

from napari_nucleus_ai.cells import measure_cells
from napari_nucleus_ai.io import geojson as gj


def _cells():
    """Labels with a disc, a tilted ellipse, a cell with a hole, a thin cell, one pixel, two parts."""
    lab = np.zeros((200, 300), np.uint32)
    lab[disk((50, 50), 20)] = 1
    lab[ellipse(120, 200, 30, 15, rotation=0.5)] = 2
    lab[10:40, 150:190] = 3
    lab[20:30, 160:170] = 0
    lab[150:153, 20:80] = 4
    lab[180, 5] = 5
    lab[170:180, 250:260] = 6
    lab[185:195, 270:280] = 6
    table = measure_cells(lab, scale=0.25, unit="um")
    table["class"] = [
        "neutrophil",
        "lymphocyte",
        "neutrophil",
        "monocyte",
        "lymphocyte",
        "monocyte",
    ]
    table["p_neutrophil"] = [0.9, 0.1, 0.8, 0.2, 0.1, 0.3]
    table["p_lymphocyte"] = [0.05, 0.8, 0.1, 0.1, 0.7, 0.2]
    table["p_monocyte"] = [0.05, 0.1, 0.1, 0.7, 0.2, 0.5]
    return lab, table


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_round_trip_iou_and_classes(tmp_path):
    lab, table = _cells()
    path = gj.write_geojson(tmp_path / "cells.geojson", lab, table)
    with open(path) as fh:
        doc = json.load(fh)
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 6
    f = doc["features"][0]
    props = f["properties"]
    assert props["objectType"] == "detection"
    assert props["classification"] == {"name": "neutrophil", "color": [31, 119, 180]}  # palette 0
    assert props["measurements"]["label"] == 1
    assert props["measurements"]["area"] == pytest.approx(table["area"].iloc[0])
    assert "unit" not in props["measurements"]  # text columns are not measurements
    # polygons are in image pixels (QuPath), whatever the physical scale
    xs = np.asarray(f["geometry"]["coordinates"][0])[:, 0]
    assert xs.min() >= 29 and xs.max() <= 71
    kinds = {f["properties"]["name"]: f["geometry"]["type"] for f in doc["features"]}
    assert (
        kinds["cell 6"] == "MultiPolygon"
        and len(doc["features"][2]["geometry"]["coordinates"]) == 2
    )

    back, t2, colours = gj.read_geojson(path, shape=lab.shape)
    for label in table["label"]:
        assert _iou(lab == label, back == label) >= 0.95, label
    merged = table.merge(t2, on="label", suffixes=("", "_back"))
    assert len(merged) == 6 and (merged["class"] == merged["class_back"]).all()
    assert np.allclose(merged["area"], merged["area_back"])
    assert colours["lymphocyte"] == "#ff7f0e"


def test_segmented_classified_cells_round_trip(tmp_path):
    """Cells of a simulated smear, segmented and classified by the shipped demo model."""
    from napari_nucleus_ai.classify.cells import classify_cells_gen
    from napari_nucleus_ai.classify.demo_models import demo_model
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.samples.smear import simulate_smear_field
    from napari_nucleus_ai.segment.run import segment

    img, _, _ = simulate_smear_field(seed=3, n_wbc=4)
    seg = run_sync(segment(img, "wbc", pixel_size_um=0.1))
    assert seg.n >= 2
    package = demo_model("smear-wbc")
    res = run_sync(classify_cells_gen(package, img, seg.labels, scale=0.1, unit="um", device="cpu"))
    meta = {"model_card": package.card}
    doc = gj.labels_to_geojson(seg.labels, res.table, metadata=meta)
    card_colours = {c["name"]: c["colour"] for c in package.card["classes"]}
    for f in doc["features"]:
        c = f["properties"]["classification"]
        if c["name"] in card_colours:
            assert gj._hex(c["color"]) == card_colours[c["name"]].lower()
    back, t2, _ = gj.geojson_to_labels(doc, seg.labels.shape)
    for label in res.table["label"]:
        assert _iou(seg.labels == label, back == label) >= 0.95, label
    merged = res.table.merge(t2, on="label", suffixes=("", "_back"))
    assert len(merged) == len(res.table)
    assert (merged["class"] == merged["class_back"]).all()


def test_qupath_older_forms_and_annotations():
    """QuPath 0.2 measurement lists, colorRGB ints, a bare list, no label measurement."""
    square = [[[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]]]
    feats = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": square},
            "properties": {
                "objectType": "annotation",
                "classification": {"name": "Tumor", "colorRGB": -3670016},
                "measurements": [{"name": "Nucleus: Area", "value": 100.0}],
            },
        },
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [1, 1]},
            "properties": {},
        },
    ]
    labels, table, colours = gj.geojson_to_labels(feats)
    assert labels.shape == (20, 20) and (labels[10:20, 10:20] == 1).all() and labels.sum() == 100
    assert table["class"].tolist() == ["Tumor"] and table["object_type"].tolist() == ["annotation"]
    assert table["Nucleus: Area"].tolist() == [100.0]
    assert colours == {"Tumor": "#c80000"}


def test_annotation_option_and_unclassified():
    lab, table = _cells()
    doc = gj.labels_to_geojson(lab, table.drop(columns=["class"]), object_type="annotation")
    assert {f["properties"]["objectType"] for f in doc["features"]} == {"annotation"}
    assert not any("classification" in f["properties"] for f in doc["features"])
    with pytest.raises(Exception, match="object type"):
        gj.labels_to_geojson(lab, table, object_type="cell")


def test_cli_export_geojson(tmp_path, capsys):
    import tifffile

    from napari_nucleus_ai.cells import write_cell_table
    from napari_nucleus_ai.cli import main

    lab, table = _cells()
    tifffile.imwrite(tmp_path / "labels.tif", lab)
    write_cell_table(table, tmp_path / "cells.csv")
    (tmp_path / "classes.json").write_text(json.dumps({"colours": {"neutrophil": "#00ff00"}}))
    out = tmp_path / "cells.geojson"
    rc = main(
        ["export-geojson", str(tmp_path / "labels.tif"), "--table", str(tmp_path / "cells.csv"),
         "--out", str(out), "--object-type", "annotation"]
    )  # fmt: skip
    assert rc == 0 and "6 cells" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    first = doc["features"][0]["properties"]
    assert first["objectType"] == "annotation"
    assert first["classification"] == {"name": "neutrophil", "color": [0, 255, 0]}
    assert (
        main(["export-geojson", str(tmp_path / "labels.tif"), "--out", str(tmp_path / "x.txt")])
        == 2
    )


def test_npe2_writer_and_reader(tmp_path):
    from napari_nucleus_ai.cells import to_features
    from napari_nucleus_ai.io import describe
    from napari_nucleus_ai.io.napari_io import get_reader

    lab, table = _cells()
    meta = {"features": to_features(table), "metadata": {"class_colors": {"monocyte": "#ff00ff"}}}
    (path,) = gj.write_geojson_layer(str(tmp_path / "layer"), lab, meta)
    assert path.endswith(".geojson")
    info = describe(path)
    assert info["format"] == "geojson" and info["cells"] == 6
    assert info["class_colours"]["monocyte"] == "#ff00ff"
    reader = get_reader(path)
    assert reader is not None
    ((data, kwargs, kind),) = reader(path)
    assert kind == "labels" and data.shape == (200, 300)  # the size recorded in the file
    assert (data == lab).all()
    feats = pd.DataFrame(kwargs["features"])
    assert (feats["index"] == feats["label"]).all() and set(feats["class"]) == set(table["class"])
    assert kwargs["metadata"]["class_colors"]["monocyte"] == "#ff00ff"
