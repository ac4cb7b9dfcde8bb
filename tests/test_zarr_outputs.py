"""``classify --out x.zarr`` and ``batch --format zarr``: image + labels + cell table, read back.

The round trip of issue 19: image -> segment -> classify -> .zarr -> napari reader -> the same
labels and the same cell table (classes included) as the TIFF/CSV outputs of the same run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_nucleus_ai.cli import main


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """A simulated smear field (TIFF with a 0.1 um pixel) and its `segment` outputs."""
    from napari_nucleus_ai.samples.smear import simulate_smear_field

    d = tmp_path_factory.mktemp("field")
    img, _, _ = simulate_smear_field(seed=5, n_wbc=4, shape=(600, 700))
    src = d / "field.tif"
    tifffile.imwrite(src, img, resolution=(1e4 / 0.1, 1e4 / 0.1), resolutionunit="CENTIMETER")
    assert main(["segment", str(src), "--method", "wbc", "--out", str(d / "seg")]) == 0
    return src, d / "seg" / "field_labels.tif"


def _read_store(path):
    """The layers napari gets from the plugin's reader for ``path``."""
    from napari_nucleus_ai.io.napari_io import get_reader

    reader = get_reader(str(path))
    assert reader is not None
    layers = reader(str(path))
    kinds = [k for _, _, k in layers]
    return layers, kinds


def _labels_and_table(layers):
    from napari_nucleus_ai.cells import from_features

    ((data, kw, _),) = [la for la in layers if la[2] == "labels"]
    arr = np.asarray(data[0] if isinstance(data, list) else data)
    return arr, from_features(pd.DataFrame(kw["features"])), kw


def test_classify_out_zarr_round_trip(field, tmp_path, capsys):
    from napari_nucleus_ai.cells import read_cell_table
    from napari_nucleus_ai.classify.demo_models import model_path

    src, labels_tif = field
    model = str(model_path("smear-wbc"))
    common = [model, str(src), "--labels", str(labels_tif), "--device", "cpu", "--quiet"]
    assert main(["classify", *common, "--out", str(tmp_path / "cls")]) == 0
    assert main(["classify", *common, "--out", str(tmp_path / "cells.zarr")]) == 0
    assert "cells.zarr:" in capsys.readouterr().out

    layers, kinds = _read_store(tmp_path / "cells.zarr")
    assert kinds == ["image", "labels"]
    image_kw = layers[0][1]
    assert image_kw["rgb"] and image_kw["scale"] == pytest.approx((0.1, 0.1))
    np.testing.assert_array_equal(
        np.asarray(layers[0][0][0] if image_kw.get("multiscale") else layers[0][0]),
        tifffile.imread(src),
    )
    labels, table, kw = _labels_and_table(layers)
    np.testing.assert_array_equal(labels, tifffile.imread(labels_tif))
    ref = read_cell_table(tmp_path / "cls" / "cells.csv")
    assert len(ref) > 0 and "class" in ref.columns
    pd.testing.assert_frame_equal(
        table[list(ref.columns)].reset_index(drop=True), ref, check_dtype=False
    )
    assert kw["scale"] == pytest.approx((0.1, 0.1))
    # the classes keep the model's colours
    from napari_nucleus_ai.classify.predict import as_package

    colours = {c["name"]: c["colour"] for c in as_package(model).card["classes"]}
    for cls in set(ref["class"]) & set(colours):
        assert kw["metadata"]["class_colors"][cls] == colours[cls]


def test_classify_bad_zarr_out_fails_before_work(field, tmp_path, capsys):
    from napari_nucleus_ai.classify.demo_models import model_path

    src, labels_tif = field
    taken = tmp_path / "taken.zarr"
    taken.write_text("a file, not a store")
    rc = main(
        ["classify", str(model_path("smear-wbc")), str(src), "--labels", str(labels_tif),
         "--out", str(taken)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "taken.zarr" in err and "not an OME-Zarr store" in err
    assert len(err.strip().splitlines()) == 1 and taken.read_text() == "a file, not a store"


def test_failed_store_write_leaves_nothing(tmp_path):
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.io.ngff import write_ngff

    img = np.zeros((64, 64), np.uint8)
    bad = np.zeros((32, 32), np.uint16)  # not on the image grid
    with pytest.raises(InputError, match="not on the image grid"):
        write_ngff(tmp_path / "x.zarr", img, {"cells": (bad, None)})
    assert list(tmp_path.iterdir()) == []  # no store, no hidden half-store


distributed = pytest.importorskip("distributed")


def test_batch_format_zarr_round_trip(field, client, tmp_path):
    from napari_nucleus_ai.batch import run_batch
    from napari_nucleus_ai.cells import read_cell_table
    from napari_nucleus_ai.classify.demo_models import model_path

    src, _ = field
    model = str(model_path("smear-wbc"))
    tiff = run_batch([src], tmp_path / "tiff", client=client, model=model, device="cpu")
    zarr = run_batch(
        [src], tmp_path / "zarr", client=client, model=model, device="cpu", output="zarr"
    )
    assert tiff.n_failed == 0 and zarr.n_failed == 0
    out = tmp_path / "zarr"
    assert (out / "field.zarr").is_dir() and not (out / "field_labels.tif").exists()
    assert zarr.summary.iloc[0]["labels_file"] == "field.zarr"
    layers, kinds = _read_store(out / "field.zarr")
    assert kinds == ["image", "labels"]
    labels, table, _ = _labels_and_table(layers)
    np.testing.assert_array_equal(labels, tifffile.imread(tmp_path / "tiff" / "field_labels.tif"))
    ref = read_cell_table(tmp_path / "tiff" / "field_cells.csv")
    assert "class" in ref.columns
    pd.testing.assert_frame_equal(
        table[list(ref.columns)].reset_index(drop=True), ref, check_dtype=False
    )
    pd.testing.assert_frame_equal(read_cell_table(out / "field_cells.csv"), ref)
    # resumable like the TIFF output: a second run skips the finished input
    again = run_batch([src], out, client=client, model=model, device="cpu", output="zarr")
    assert bool(again.summary.iloc[0]["resumed"])
    # the TIFF run's record does not count as a zarr run (other outputs)
    other = run_batch([src], tmp_path / "tiff", client=client, model=model, output="zarr")
    assert not bool(other.summary.iloc[0].get("resumed", False))
    assert (tmp_path / "tiff" / "field.zarr").is_dir()


def test_cli_batch_format_zarr(field, cluster, tmp_path, capsys):
    src, _ = field
    out = tmp_path / "o"
    rc = main(["batch", str(src), "--out", str(out), "--format", "zarr",
               "--scheduler", cluster.scheduler_address, "--quiet"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    layers, kinds = _read_store(out / "field.zarr")
    assert kinds == ["image", "labels"]
    labels, table, _ = _labels_and_table(layers)
    assert labels.max() > 0 and len(table) == len(np.unique(labels)) - 1
