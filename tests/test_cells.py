"""The cell-table contract (cells.py)."""

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai import cells
from napari_nucleus_ai.core.errors import InputError


@pytest.fixture
def labels():
    lab = np.zeros((40, 60), np.int32)
    lab[10:20, 5:15] = 3  # 10 x 10 square
    lab[25:35, 40:58] = 7  # 10 x 18 rectangle
    return lab


def test_measure_physical_units(labels):
    df = cells.measure_cells(labels, scale=(0.5, 0.25), translate=(100.0, 10.0), unit="um")
    assert list(df["label"]) == [3, 7]
    assert df.columns[: len(cells.base_columns())].tolist() == cells.base_columns()
    sq = df.set_index("label").loc[3]
    assert sq["centroid_y"] == pytest.approx(100 + 14.5 * 0.5)
    assert sq["centroid_x"] == pytest.approx(10 + 9.5 * 0.25)
    assert sq["bbox_y0"] == pytest.approx(100 + 10 * 0.5)
    assert sq["bbox_x1"] == pytest.approx(10 + 15 * 0.25)
    assert sq["area"] == pytest.approx(100 * 0.5 * 0.25)
    assert sq["unit"] == "um"
    assert 0 < sq["solidity"] <= 1


def test_mean_intensity_grey_and_rgb(labels):
    grey = np.zeros(labels.shape, float)
    grey[labels == 3] = 5.0
    df = cells.measure_cells(labels, grey)
    assert df.set_index("label")["mean_intensity"].to_dict() == {3: 5.0, 7: 0.0}
    rgb = np.zeros((*labels.shape, 3), np.uint8)
    rgb[labels == 7] = (10, 20, 30)
    df = cells.measure_cells(labels, rgb)
    row = df.set_index("label").loc[7]
    assert (row["mean_r"], row["mean_g"], row["mean_b"]) == (10, 20, 30)


def test_3d_and_empty():
    lab = np.zeros((4, 10, 10), np.uint16)
    lab[1:3, 2:5, 2:5] = 1
    df = cells.measure_cells(lab, scale=(2.0, 1.0, 1.0), unit="um")
    assert df["centroid_z"].iloc[0] == pytest.approx(3.0)
    assert df["area"].iloc[0] == pytest.approx(2 * 9 * 2.0)
    empty = cells.measure_cells(np.zeros((5, 5), int), unit="nm")
    assert len(empty) == 0 and "centroid_x" in empty.columns


@pytest.mark.parametrize(
    "bad",
    [np.zeros((2, 2, 2, 2), int), np.zeros((5, 5), float) + 0.5],
)
def test_bad_labels(bad):
    with pytest.raises(InputError):
        cells.measure_cells(bad)


def test_features_roundtrip_and_predictions(labels, tmp_path):
    df = cells.measure_cells(labels, unit="px", source="a.png")
    feats = cells.to_features(df)
    assert (feats["index"] == feats["label"]).all()
    back = cells.from_features(feats)
    assert "index" not in back.columns
    preds = pd.DataFrame(
        {"label": [7], "class": ["lymphocyte"], "p_lymphocyte": [0.9], "uncertainty": [0.1]}
    )
    joined = cells.join_predictions(df, preds)
    assert joined.set_index("label").loc[7, "class"] == "lymphocyte"
    assert pd.isna(joined.set_index("label").loc[3, "class"])
    assert cells.class_columns(joined) == ["p_lymphocyte"]
    path = tmp_path / "cells.csv"
    cells.write_cell_table(joined, path)
    again = cells.read_cell_table(path)
    pd.testing.assert_frame_equal(again, joined, check_dtype=False)


def test_validate_rejects_bad_tables(tmp_path):
    with pytest.raises(InputError, match="no 'label'"):
        cells.validate_cell_table(pd.DataFrame({"x": [1]}))
    with pytest.raises(InputError, match="more than once"):
        cells.validate_cell_table(pd.DataFrame({"label": [1, 1]}))
    with pytest.raises(InputError, match="> 0"):
        cells.validate_cell_table(pd.DataFrame({"label": [0, 1]}))
    bad = tmp_path / "bad.csv"
    bad.write_text("")
    with pytest.raises(InputError, match="bad.csv: file is empty"):
        cells.read_cell_table(bad)


def test_atomic_write_keeps_old_content_on_error(tmp_path):
    from napari_nucleus_ai.core.files import atomic_write

    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_atomic_write_gives_usual_permissions(tmp_path):
    import os

    from napari_nucleus_ai.core.files import atomic_path, atomic_write

    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.csv", "w") as fh:
            fh.write("x")
        with atomic_path(tmp_path / "b.tif") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(umask)
    for name in ("a.csv", "b.tif"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644


def test_classify_centroids_match_the_pixel_means_and_nan_for_absent_ids():
    """``classify.cells.centroids_px`` (per-cell boxes, no full-size grids) gives each
    label's mean pixel position, NaN for ids not in the image."""
    import numpy as np
    from skimage.measure import label

    from napari_nucleus_ai.classify.cells import centroids_px

    lab = label(np.random.default_rng(0).random((120, 160)) > 0.7).astype(np.uint32)
    ids = np.array([1, 5, int(lab.max()), int(lab.max()) + 3])
    got = centroids_px(lab, ids)
    for k, i in enumerate(ids[:3]):
        yy, xx = np.nonzero(lab == i)
        np.testing.assert_allclose(got[k], [yy.mean(), xx.mean()])
    assert np.isnan(got[3]).all()
