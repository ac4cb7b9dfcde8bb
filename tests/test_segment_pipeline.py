"""Tiles + stitching, STORM nuclei, the shared core generator, CLI, writers, deep backends."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_nucleus_ai.core.errors import Cancelled, InputError
from napari_nucleus_ai.core.progress import run_sync
from napari_nucleus_ai.segment.evaluate import centroids_of


@pytest.fixture(scope="module")
def mosaic():
    """A 720 x 960 smear (synthetic, 0.1 um/px) with white cells and the truth."""
    from napari_nucleus_ai.samples.smear import simulate_smear

    sim = simulate_smear(seed=11, shape=(720, 960), n_wbc=8)
    return sim


def _sorted(c):
    return c[np.lexsort(c.T[::-1])] if len(c) else c


def test_tiles_match_one_pass_whatever_the_tile_size(mosaic):
    from napari_nucleus_ai.segment.tiles import segment_tiled
    from napari_nucleus_ai.segment.wbc import segment_wbc

    px = mosaic.pixel_size_um
    whole = segment_wbc(mosaic.image, px)
    ref = _sorted(centroids_of(whole))
    for tile in (256, 400):
        tiled = run_sync(segment_tiled(mosaic.image, "wbc", tile=tile, pixel_size_um=px))
        got = _sorted(centroids_of(tiled))
        assert len(got) == len(ref) == int(mosaic.cells.max())
        # same objects, not cut at tile borders (outlines may move a little: each tile
        # measures its own background colour)
        assert np.abs(got - ref).max() < 6.0
        assert len(np.unique(tiled)) - 1 == tiled.max()  # ids unique and consecutive


def test_tiles_region_polygon_dask_and_cancel(mosaic):
    import dask.array as da

    from napari_nucleus_ai.segment.tiles import segment_tiled

    px = mosaic.pixel_size_um
    lazy = da.from_array(mosaic.image, chunks=(256, 256, 3))
    full = run_sync(segment_tiled(lazy, "wbc", tile=300, pixel_size_um=px))
    cents = centroids_of(full)
    region = (0, 360, 0, 960)
    part = run_sync(segment_tiled(lazy, "wbc", tile=300, pixel_size_um=px, region=region))
    assert part.shape == (360, 960)
    assert part.max() == sum(1 for y, _ in cents if y < 360)
    poly = np.array([[0, 0], [0, 480], [720, 480], [720, 0]], float)  # left half, (y, x)
    left = run_sync(segment_tiled(lazy, "wbc", tile=300, pixel_size_um=px, polygon=poly))
    assert left.max() == sum(1 for _, x in cents if x < 480)
    with pytest.raises(Cancelled):
        run_sync(segment_tiled(lazy, "wbc", tile=300, pixel_size_um=px, cancel=lambda: True))
    with pytest.raises(InputError):
        run_sync(segment_tiled(lazy, "wbc", region=(2000, 3000, 0, 10)))


def test_tiled_nuclei_keep_one_threshold():
    from _segment_data import nuclei_image
    from napari_nucleus_ai.segment.nuclei import segment_nuclei
    from napari_nucleus_ai.segment.tiles import segment_tiled

    img, centres = nuclei_image(7, shape=(400, 400), touching_pairs=4, singles=14)
    tiled = run_sync(segment_tiled(img, "nuclei", tile=128))
    assert tiled.max() == segment_nuclei(img).max() == len(centres)
    hits = {int(tiled[int(y), int(x)]) for y, x in centres}
    assert 0 not in hits and len(hits) == len(centres)


def test_storm_nuclei_labels_in_nm_and_subsets():
    from napari_nucleus_ai.samples.storm import labels_from_outlines, simulate_field
    from napari_nucleus_ai.segment.storm import segment_storm_nuclei

    df = simulate_field(
        n_nuclei=3, presets=("somatic", "hsv1_infected"), seed=1, n_localizations=20_000,
        field_nm=(30_000.0, 30_000.0),
    )  # fmt: skip
    res = segment_storm_nuclei(df, pixel_size_nm=100)
    assert res.n == 3 and res.scale == (100.0, 100.0)
    truth = labels_from_outlines(df.attrs["nuclei"], res.labels.shape, res.scale, res.translate)
    inter = np.logical_and(truth > 0, res.labels > 0).sum()
    assert inter / np.logical_or(truth > 0, res.labels > 0).sum() > 0.8
    # per nucleus, its localizations: >= 95 % of each true nucleus's, from that nucleus only
    subsets = res.subsets()
    assert sorted(subsets) == [1, 2, 3]
    truth_id = df["nucleus"].to_numpy()
    pred = res.localizations["nucleus"].to_numpy()
    for k in (1, 2, 3):
        mine = pred[truth_id == k]
        assert np.mean(mine > 0) > 0.95 and len(np.unique(mine[mine > 0])) == 1
    for sub in subsets.values():
        true_ids = df.loc[sub.index, "nucleus"]
        assert true_ids[true_ids > 0].nunique() == 1
    table = res.table()
    assert (table["unit"] == "nm").all() and table["n_localizations"].sum() == (pred > 0).sum()
    # centroids in nm land on the true centres
    for n in df.attrs["nuclei"]:
        cx, cy = n["center_nm"]
        d = np.hypot(table["centroid_x"] - cx, table["centroid_y"] - cy).min()
        assert d < 1000


def test_storm_bad_input():
    from napari_nucleus_ai.segment.storm import segment_storm_nuclei

    with pytest.raises(InputError):
        segment_storm_nuclei(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(InputError):
        segment_storm_nuclei(pd.DataFrame({"x_nm": [], "y_nm": []}))
    with pytest.raises(InputError):
        segment_storm_nuclei(pd.DataFrame({"x_nm": [1.0, np.nan], "y_nm": [0.0, 1.0]}))
    empty = segment_storm_nuclei(
        pd.DataFrame({"x_nm": np.random.default_rng(0).uniform(0, 20000, 2000),
                      "y_nm": np.random.default_rng(1).uniform(0, 20000, 2000)})
    )  # fmt: skip
    assert empty.n == 0  # uniform background: no nucleus


def test_core_generator_time_lapse_unique_ids_and_table():
    from _segment_data import nuclei_image
    from napari_nucleus_ai.segment.run import segment

    stack = np.stack([nuclei_image(s)[0] for s in range(2)])
    res = run_sync(segment(stack, "nuclei", pixel_size_um=0.5))
    assert res.labels.shape == stack.shape
    assert res.labels.max() == len(res.table) == len(np.unique(res.labels)) - 1
    assert set(res.table["t"]) == {0, 1} and (res.table["unit"] == "um").all()
    assert res.scale == (0.5, 0.5, 0.5)[-3:]


def test_cli_segment_writes_labels_and_table(tmp_path, capsys):
    from skimage.io import imsave

    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.samples.smear import simulate_smear

    sim = simulate_smear(seed=4, shape=(300, 400), n_wbc=2)
    src = tmp_path / "field one.png"
    imsave(src, sim.image)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    rc = main(["segment", str(src), str(bad), "--method", "wbc", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "broken.png" in err and "Traceback" not in err
    labels = tifffile.imread(out / "field one_labels.tif")
    assert labels.dtype == np.uint32 and labels.shape == (300, 400) and labels.max() == 2
    cells = pd.read_csv(out / "field one_cells.csv")
    assert list(cells["label"]) == [1, 2] and {"centroid_x", "area", "mean_r"} <= set(cells.columns)
    # nuclei on a grey TIFF, with a parameter; storm-nuclei on a localization CSV
    from _segment_data import nuclei_image

    img, centres = nuclei_image(2)
    tifffile.imwrite(tmp_path / "dapi.tif", img)
    rc = main(["segment", str(tmp_path / "dapi.tif"), "--method", "nuclei", "--out", str(out),
               "--param", "min_snr=6"])  # fmt: skip
    assert rc == 0 and tifffile.imread(out / "dapi_labels.tif").max() == len(centres)
    assert main(["segment", str(src), "--method", "wbc", "--out", str(out), "--param", "nope"]) == 1


def test_cli_storm_nuclei(tmp_path):
    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.samples.storm import simulate_field

    df = simulate_field(n_nuclei=2, seed=2, n_localizations=10_000, field_nm=(25_000.0, 25_000.0))
    path = tmp_path / "locs.csv"
    df[["x_nm", "y_nm", "frame"]].rename(columns={"x_nm": "x [nm]", "y_nm": "y [nm]"}).to_csv(
        path, index=False
    )
    assert (
        main(["segment", str(path), "--method", "storm-nuclei", "--out", str(tmp_path / "o")]) == 0
    )
    lab = tifffile.imread(tmp_path / "o" / "locs_labels.tif")
    assert lab.max() == 2
    locs = pd.read_csv(tmp_path / "o" / "locs_localizations.csv")
    assert set(locs["nucleus"]) == {0, 1, 2}


def test_writer_labels_layer_and_table(tmp_path):
    from napari_nucleus_ai.cells import measure_cells, to_features
    from napari_nucleus_ai.segment.writers import write_labels_layer

    lab = np.zeros((40, 50), np.int32)
    lab[5:15, 5:15] = 1
    lab[20:30, 30:45] = 7
    feats = to_features(measure_cells(lab, scale=(0.5, 0.5), unit="um"))
    feats["class"] = ["a", "b"]
    meta = {"features": feats, "scale": (0.5, 0.5), "translate": (0, 0), "metadata": {"unit": "um"}}
    written = write_labels_layer(str(tmp_path / "x.tif"), lab, meta)
    assert [p.rsplit("/", 1)[-1] for p in written] == ["x.tif", "x_cells.csv"]
    back = tifffile.imread(written[0])
    assert back.dtype == np.uint32 and (back == lab).all()
    table = pd.read_csv(written[1])
    assert list(table["class"]) == ["a", "b"] and "index" not in table.columns
    only = write_labels_layer(str(tmp_path / "t.csv"), lab, {"scale": (1, 1)})
    assert list(pd.read_csv(only[0])["label"]) == [1, 7]


def test_table_follows_edits_keeps_predictions():
    from napari_nucleus_ai.cells import measure_cells
    from napari_nucleus_ai.segment.table_sync import refresh_table

    lab = np.zeros((30, 30), np.int32)
    lab[2:10, 2:10] = 1
    lab[15:25, 15:25] = 2
    old = measure_cells(lab)
    old["class"] = ["x", "y"]
    old["p_x"] = [0.9, 0.2]
    lab[2:10, 2:10] = 0  # erase 1
    lab[15:25, 15:28] = 2  # grow 2
    lab[0:3, 25:30] = 3  # paint 3
    new = refresh_table(lab, old)
    assert list(new["label"]) == [2, 3]
    assert new.loc[0, "area"] == 130 and new.loc[0, "class"] == "y" and new.loc[0, "p_x"] == 0.2
    assert pd.isna(new.loc[1, "class"])


def test_deep_backends_clear_messages_and_local_weights_only(tmp_path, monkeypatch):
    from napari_nucleus_ai.segment import deep

    img = np.zeros((32, 32), np.uint8)
    monkeypatch.delitem(sys.modules, "cellpose", raising=False)
    monkeypatch.setattr(deep, "available", lambda b: False)
    with pytest.raises(deep.BackendUnavailable, match="pip install cellpose"):
        deep.segment_deep(img, "cellpose")
    assert "not installed" in deep.status()["stardist"]
    # installed, but no weights: never downloads, says where to put them
    monkeypatch.setattr(deep, "available", lambda b: True)
    monkeypatch.delenv("INSTANSEG_MODEL_PATH", raising=False)
    fake = types.ModuleType("instanseg")
    monkeypatch.setitem(sys.modules, "instanseg", fake)
    with pytest.raises(deep.BackendUnavailable, match="INSTANSEG_MODEL_PATH"):
        deep.segment_deep(img, "instanseg")
    with pytest.raises(deep.BackendUnavailable, match="not found"):
        deep.segment_deep(img, "instanseg", model=tmp_path / "missing.pt")
    # a Cellpose stand-in with local weights: called with the local path, labels come back
    weights = tmp_path / "cpsam"
    weights.write_bytes(b"w")
    calls = {}

    class Model:
        def __init__(self, pretrained_model, device, gpu):
            calls["path"] = pretrained_model

        def eval(self, x, diameter=None):
            calls["diameter"] = diameter
            return (np.ones(x.shape[:2], np.int64), None, None)

    cp = types.ModuleType("cellpose")
    cp.models = types.SimpleNamespace(CellposeModel=Model)
    monkeypatch.setitem(sys.modules, "cellpose", cp)
    monkeypatch.setitem(sys.modules, "cellpose.models", cp.models)
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    import napari_nucleus_ai.core.device as device

    monkeypatch.setattr(
        device, "select_device", lambda choice=None: types.SimpleNamespace(type="cpu")
    )
    out = deep.segment_deep(img, "cellpose", pixel_size_um=0.5, diameter_um=10)
    assert out.dtype == np.int32 and out.max() == 1
    assert calls == {"path": str(weights), "diameter": 20.0}


def test_cli_whole_slide_tilewise(tmp_path):
    """A pyramidal SVS (lazy dask level 0) segmented tile by tile: every white cell once."""
    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.samples.slide import write_slide
    from napari_nucleus_ai.samples.smear import simulate_smear

    sim = simulate_smear(seed=6, shape=(640, 896), pixel_size_um=0.25, n_wbc=10)
    path = tmp_path / "slide.svs"
    write_slide(path, sim.image, mpp=0.25, magnification=40, flavour="svs", factor=4)
    assert (
        main(["segment", str(path), "--method", "wbc", "--out", str(tmp_path), "--tile", "256"])
        == 0
    )
    labels = tifffile.imread(tmp_path / "slide_labels.tif")
    assert labels.shape == sim.image.shape[:2]
    hits = sorted(int(sim.cells[int(y), int(x)]) for y, x in centroids_of(labels))
    assert hits == list(range(1, int(sim.cells.max()) + 1))
    cells = pd.read_csv(tmp_path / "slide_cells.csv")
    assert (cells["unit"] == "um").all() and len(cells) == labels.max()
