"""Session save/restore and training-set export from corrections."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.cells import measure_cells
from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import run_sync
from napari_nucleus_ai.review.export import ExportItem, crop, export_training_set
from napari_nucleus_ai.review.session import (
    find_session_for_source,
    has_session,
    load_session,
    save_session,
)
from napari_nucleus_ai.review.store import AnnotationStore


def field_with_cells(n=6, size=120, scale=0.5):
    rng = np.random.default_rng(1)
    labels = np.zeros((size, size), np.int32)
    img = np.full((size, size, 3), 220, np.uint8)
    for i in range(n):
        cy, cx = 15 + 18 * i, 20 + (i % 3) * 35
        yy, xx = np.ogrid[:size, :size]
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < 36
        labels[m] = i + 1
        img[m] = rng.integers(0, 120, 3)
    table = measure_cells(labels, img, scale=scale, unit="um")
    table["class"] = ["a", "b"] * (n // 2)
    table["p_a"] = np.linspace(0.2, 0.9, n)
    table["p_b"] = 1 - table["p_a"]
    table["uncertainty"] = 1 - np.maximum(table["p_a"], table["p_b"])
    return img, labels, table


def test_save_and_restore_session(tmp_path):
    img, labels, table = field_with_cells()
    src = tmp_path / "field.png"
    src.write_bytes(b"fake")
    store = AnnotationStore(tmp_path, author="ana")
    assert load_session(store, "field.png") is None
    folder = save_session(
        store,
        "field.png",
        labels,
        table,
        scale=(0.5, 0.5),
        unit="um",
        classes=["a", "b"],
        model="m 1",
        source=str(src),
    )
    assert (folder / "labels.tif").exists() and has_session(store, "field.png")
    store.set_label("field.png", 2, "artefact")
    store.set_label("field.png", 2, "a")
    # a new process opens the store and finds everything again
    again = AnnotationStore(tmp_path)
    s = load_session(again, "field.png")
    np.testing.assert_array_equal(s.labels, labels)
    pd.testing.assert_frame_equal(s.table[table.columns], table, check_dtype=False)
    assert s.corrections == {2: "a"}
    assert s.scale == (0.5, 0.5) and s.info["classes"] == ["a", "b"] and s.info["model"] == "m 1"
    assert find_session_for_source(again, src) == "field.png"
    assert find_session_for_source(again, tmp_path / "other.png") is None
    (folder / "labels.tif").unlink()
    with pytest.raises(InputError, match="labels.tif"):
        load_session(again, "field.png")


def test_export_crops_from_corrections(tmp_path):
    img, labels, table = field_with_cells()
    item = ExportItem(
        "f1.png",
        table,
        {1: "b", 2: "b", 3: "artefact", 4: "unidentified"},
        image=img,
        scale=(0.5, 0.5),
    )
    res = run_sync(export_training_set(tmp_path / "ts", [item]))
    assert res["counts"] == {"b": 2, "artefact": 1} and res["kind"] == "crops"
    files = sorted(
        p.relative_to(tmp_path / "ts").as_posix() for p in (tmp_path / "ts").rglob("*.png")
    )
    assert len(files) == 3 and all(f.split("/")[0] in ("b", "artefact") for f in files)
    man = pd.read_csv(tmp_path / "ts" / "_manifest.csv")
    assert set(man["cell"]) == {1, 2, 3} and man["reviewed"].all()
    # the crop is centred on its cell: the centre pixel has the cell's colour
    from PIL import Image

    c1 = np.asarray(Image.open(tmp_path / "ts" / man.loc[man["cell"] == 1, "file"].item()))
    assert (c1[c1.shape[0] // 2, c1.shape[1] // 2] == img[labels == 1][0]).all()
    # the trainer reads this layout
    from napari_nucleus_ai.classify.trainset import load_class_folders

    ts = load_class_folders(tmp_path / "ts")
    assert sorted(ts.classes) == ["artefact", "b"] and len(ts) == 3
    # with predictions: all cells but the unidentified one
    res = run_sync(export_training_set(tmp_path / "ts2", [item], include_predicted=True))
    assert sum(res["counts"].values()) == 5


def test_export_nothing_reviewed_is_an_error(tmp_path):
    _, _, table = field_with_cells()
    with pytest.raises(InputError, match="no reviewed cells"):
        run_sync(export_training_set(tmp_path / "x", [ExportItem("f", table, {})]))


def test_export_localization_subsets(tmp_path):
    # two STORM nuclei in a 10 nm-pixel label image
    labels = np.zeros((100, 200), np.int32)
    labels[10:90, 10:90] = 1
    labels[10:90, 110:190] = 2
    rng = np.random.default_rng(0)
    xy = np.concatenate(
        [rng.uniform(100, 900, (300, 2)), rng.uniform([1100, 100], [1900, 900], (200, 2))]
    )
    locs = pd.DataFrame({"x_nm": xy[:, 0], "y_nm": xy[:, 1], "frame": np.arange(500)})
    table = measure_cells(labels, scale=10.0, unit="nm")
    table["class"] = ["somatic", "hiPSC"]
    item = ExportItem(
        "nuclei.csv",
        table,
        {1: "hiPSC", 2: "hiPSC"},
        labels=labels,
        localizations=locs,
        scale=(10.0, 10.0),
    )
    res = run_sync(export_training_set(tmp_path / "ts", [item]))
    assert res["kind"] == "localizations" and res["counts"] == {"hiPSC": 2}
    from napari_nucleus_ai.localizations import read_localizations

    files = sorted((tmp_path / "ts" / "hiPSC").glob("*.csv"))
    sizes = sorted(len(read_localizations(f).data) for f in files)
    assert sizes == [200, 300]


def test_crop_pads_at_border():
    img = np.arange(100, dtype=np.uint8).reshape(10, 10)
    c = crop(img, (0, 0), 4)
    assert c.shape == (4, 4) and c[0, 0] == 0 and c[3, 3] == 11
