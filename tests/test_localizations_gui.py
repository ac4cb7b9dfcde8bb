"""Localizations dock and reader inside napari (run under xvfb-run)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Points

pytestmark = pytest.mark.gui

PLUGIN = "napari-nucleus-ai"


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Localizations")
    widget.sync = True
    return viewer, widget


def test_reader_gives_nm_true_density_layer(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    path = shared_data / "smlm/colicoords/ds3_storm_table.csv"
    layers = viewer.open(str(path), plugin=PLUGIN)
    image = next(ly for ly in layers if isinstance(ly, Image))
    pts = next(ly for ly in layers if isinstance(ly, Points))  # small table: points too
    assert tuple(image.scale) == (10.0, 10.0)
    df = image.metadata["localizations"]
    assert image.metadata["format"] == "thunderstorm" and len(df) == 48
    assert image.metadata["source"] == str(path)
    # a localization lands in the pixel napari draws at its nm position
    x, y = df["x_nm"].iloc[0], df["y_nm"].iloc[0]
    idx = np.floor(image.world_to_data((y, x)) + 0.5).astype(int)
    assert image.data[tuple(idx)] > 0
    np.testing.assert_allclose(pts.data[0], [y, x])


def test_dock_open_filter_render_zoom_save(dock, shared_data, tmp_path):
    from napari_nucleus_ai.localizations import read_localizations

    viewer, w = dock
    w.open_file(path=str(shared_data / "smlm/colicoords/03_storm.csv"))
    layer = viewer.layers[w.layer.value]
    assert len(layer.metadata["localizations"]) == 17361
    assert "thunderstorm" in w.info.value
    w.max_precision.value = 10.0
    w.pixel.value = 20.0
    w.render()
    kept = layer.metadata["localizations"]
    assert 0 < len(kept) < 17361 and (kept["precision_nm"] <= 10).all()
    assert tuple(layer.scale) == (20.0, 20.0)
    assert layer.data.sum() == pytest.approx(len(kept), rel=1e-2)
    # ROI from a Shapes layer
    cy, cx = float(kept["y_nm"].median()), float(kept["x_nm"].median())
    viewer.add_shapes(
        [[[cy - 4000, cx - 4000], [cy + 4000, cx + 4000]]], shape_type="rectangle", name="roi"
    )
    w.roi.value = "roi"
    w.render()
    roi_df = layer.metadata["localizations"]
    assert 0 < len(roi_df) < len(kept) and roi_df["x_nm"].between(cx - 4000, cx + 4000).all()
    pts = w.show_points()
    assert len(pts.data) == len(roi_df)
    # nanoscale zoom: the visible region re-rendered at finer pixels
    viewer.scene.camera.center = (cy, cx)
    viewer.scene.camera.zoom = 2.0  # 2 screen px per nm
    w.update_zoom()
    zoom = viewer.layers[f"{layer.name} [zoom]"]
    assert zoom.visible and zoom.scale[-1] < 20.0
    viewer.scene.camera.zoom = 0.01
    w.update_zoom()
    assert not zoom.visible
    w.roi.value = "-"
    w.drift.value, w.segments.value = True, 4
    w.render()
    assert "drift corrected" in w.status.value and "drift_nm" in layer.metadata
    out = w.save_csv(str(tmp_path / "filtered.csv"))
    assert len(read_localizations(out)) == len(layer.metadata["localizations"])


def test_dock_bad_file_notifies_no_layer(dock, tmp_path, monkeypatch):
    import napari.utils.notifications as notes

    viewer, w = dock
    shown = []
    monkeypatch.setattr(notes, "show_error", shown.append)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    w.open_file(path=str(bad))
    assert len(viewer.layers) == 0 and len(shown) == 1 and "unknown columns" in shown[0]
    assert w.mapping_wanted  # the column mapping is offered
    w.map_x.value, w.map_y.value, w.map_unit.value = "a", "b", "µm"
    w.open_file(path=str(bad))
    layer = viewer.layers[w.layer.value]
    assert layer.metadata["localizations"]["x_nm"].iloc[0] == 1000.0


def test_reader_bad_file_no_layer(make_napari_viewer, tmp_path, monkeypatch):
    from napari_nucleus_ai.io import napari_io

    viewer = make_napari_viewer()
    shown = []
    monkeypatch.setattr(napari_io, "_notify", shown.append)
    bad = tmp_path / "trunc.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 200)
    viewer.open(str(bad), plugin=PLUGIN)
    assert len(viewer.layers) == 0 and len(shown) == 1 and "HDF5" in shown[0]


def test_viewer_open_every_bad_file_notifies_and_adds_no_layer(
    make_napari_viewer, tmp_path, monkeypatch, shared_data
):
    from napari_nucleus_ai.io import napari_io
    from test_localizations import PROBLEMS, _all_bad_files

    viewer = make_napari_viewer()
    shown = []
    monkeypatch.setattr(napari_io, "_notify", shown.append)
    for what, path in _all_bad_files(tmp_path, shared_data).items():
        shown.clear()
        viewer.open(str(path), plugin=PLUGIN)  # napari must not raise "refused the file"
        assert len(viewer.layers) == 0, what
        assert len(shown) == 1 and str(path) in shown[0] and PROBLEMS[what] in shown[0], shown


def test_two_colour_sample_and_channel_colours(dock):
    viewer, w = dock
    viewer.open_sample(PLUGIN, "storm_nucleus_two_colour")
    images = [ly for ly in viewer.layers if isinstance(ly, Image)]
    assert [ly.metadata["channel"] for ly in images] == ["0", "1"]
    assert images[0].colormap.name != images[1].colormap.name  # one colour per channel
    assert all(tuple(ly.scale) == (10.0, 10.0) for ly in images)
    assert [len(ly.metadata["localizations"]) for ly in images] == [150_000, 30_000]
    w.layer.value = images[1].name
    w.colormap.value = "yellow"
    assert images[1].colormap.name == "yellow" and images[0].colormap.name != "yellow"


def test_dock_render_keeps_large_fields_a_pyramid_and_their_colour(dock, tmp_path):
    import pandas as pd

    from napari_nucleus_ai.localizations import write_thunderstorm_csv

    viewer, w = dock
    rng = np.random.default_rng(0)
    n = 20_000
    df = pd.DataFrame(
        {
            "x_nm": rng.uniform(0, 60_000, n),  # 6000 px at 10 nm: a pyramid
            "y_nm": rng.uniform(0, 3_000, n),
            "frame": rng.integers(1, 500, n),
            "precision_nm": rng.uniform(5, 25, n),
        }
    )
    w.open_file(path=write_thunderstorm_csv(df, tmp_path / "wide.csv"))
    layer = viewer.layers[w.layer.value]
    assert layer.multiscale and tuple(layer.scale) == (10.0, 10.0)
    w.colormap.value = "cyan"
    w.max_precision.value = 15.0
    w.render()
    layer = viewer.layers[w.layer.value]
    kept = layer.metadata["localizations"]
    assert 0 < len(kept) < n and (kept["precision_nm"] <= 15).all()
    assert layer.multiscale and layer.data[0].shape[-1] > 4096
    assert layer.colormap.name == "cyan" and tuple(layer.scale) == (10.0, 10.0)
    assert float(np.asarray(layer.data[0]).sum()) == pytest.approx(len(kept), rel=1e-2)
    w.pixel.value = 40.0  # 1500 px: a single image again
    w.render()
    layer = viewer.layers[w.layer.value]
    assert not layer.multiscale and tuple(layer.scale) == (40.0, 40.0)


def test_sample_and_demo_step(make_napari_viewer, monkeypatch):
    from napari_nucleus_ai.widgets.localizations import demo_storm

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_SYNC", "1")
    viewer = make_napari_viewer()
    dock = demo_storm(viewer, zoom=True)
    layer = viewer.layers["STORM nuclei (simulated)"]
    assert tuple(layer.scale) == (20.0, 20.0)
    df = layer.metadata["localizations"]
    assert sorted(df["nucleus"].unique()) == [0, 1, 2, 3, 4]
    assert viewer.layers[f"{layer.name} [zoom]"].scale[-1] < 20.0
    assert dock.layer.value == layer.name


def test_dock_format_override(dock, tmp_path, monkeypatch):
    """Detection is by content; the format box forces a reader (and a wrong one says so)."""
    import napari.utils.notifications as notes

    from napari_nucleus_ai.localizations.thunderstorm import write_thunderstorm_csv
    from napari_nucleus_ai.samples.storm import simulate_nucleus

    viewer, w = dock
    shown = []
    monkeypatch.setattr(notes, "show_error", shown.append)
    path = tmp_path / "locs.csv"
    write_thunderstorm_csv(simulate_nucleus("default", seed=1, n_localizations=500), path)
    assert w.file_format.value == "auto (by content)" and "hdf5-bad" not in w.file_format.choices
    w.file_format.value = "picasso"  # an HDF5 format for a text file
    w.open_file(path=str(path))
    assert len(viewer.layers) == 0 and len(shown) == 1 and "locs.csv" in shown[0]
    w.file_format.value = "csv"  # the generic table reader instead of ThunderSTORM's
    w.open_file(path=str(path))
    assert "(csv)" in w.status.value and len(viewer.layers) >= 1
    w.file_format.value = "auto (by content)"
    w.open_file(path=str(path))
    assert "(thunderstorm)" in w.status.value


# ---------------------------------------------------------------- Measure section
def _clustered_csv(tmp_path):
    from napari_nucleus_ai.localizations import write_thunderstorm_csv
    from napari_nucleus_ai.samples.storm import simulate_blinking

    df = simulate_blinking(
        n_emitters=1500, field_nm=(6000, 6000), precision_nm=8, seed=3, clustered_fraction=0.6,
        cluster_sd_nm=25, emitters_per_cluster=40, bursts_mean=1.5, on_frames_mean=1.5,
    )  # fmt: skip
    return df, write_thunderstorm_csv(df, str(tmp_path / "clustered.csv"))


def test_measure_section_synthetic(dock, tmp_path):
    from sklearn.metrics import adjusted_rand_score

    viewer, w = dock
    truth, path = _clustered_csv(tmp_path)
    w.open_file(path=str(path))
    layer = viewer.layers[w.layer.value]
    assert w.m_eps.native.isHidden() and w.m_plot.canvas.isHidden()  # folded
    w.measure_section.native.click()
    assert not w.m_eps.native.isHidden() and not w.m_plot.canvas.isHidden()
    w.m_nena.value, w.m_frc.value = True, True
    w.m_frc_pixel.value = 5.0
    w.m_cluster.value = "dbscan"
    w.m_eps.value, w.m_min.value = 50.0, 15
    w.measure()
    s = w.last_measure.summary
    assert abs(s["nena_nm"] - 8.0) / 8.0 < 0.1  # the simulated precision
    assert "NeNA" in w.m_result.value and "FRC" in w.m_result.value
    assert "clusters" in w.m_result.value
    # the fit and the FRC curve are plotted
    assert len(w.m_plot.ax_nena.lines) >= 1 and len(w.m_plot.ax_frc.lines) >= 3
    pts = viewer.layers[f"{layer.name} clusters"]
    assert isinstance(pts, Points) and len(pts.data) == len(truth)
    feats = pts.features
    assert {"cluster", "cluster_n_localizations", "cluster_radius_of_gyration_nm"} <= set(feats)
    assert adjusted_rand_score(truth["cluster"], feats["cluster"]) > 0.9
    noise = feats["cluster"].to_numpy() < 0
    fc = np.asarray(pts.face_color)
    assert noise.any() and np.allclose(fc[noise, :3], fc[noise][0, :3])  # one grey
    assert np.ptp(fc[~noise, :3], axis=0).max() > 0.2  # clusters in colours
    assert len(pts.metadata["clusters"]) == s["n_clusters"]
    # the schema's ranges: eps must be positive
    assert w.m_eps.min > 0


def test_measure_section_real_file_threaded(make_napari_viewer, qtbot, shared_data):
    from sklearn.cluster import DBSCAN

    from napari_nucleus_ai.localizations.analysis import merge_blinks

    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Localizations")
    w.sync = True
    w.open_file(path=str(shared_data / "smlm/colicoords/03_storm.csv"))
    layer = viewer.layers[w.layer.value]
    df = layer.metadata["localizations"]
    w.sync = False  # the real worker thread, with progress and Cancel
    w.m_merge.value, w.m_radius.value, w.m_dark.value = True, 50.0, 1
    w.m_cluster.value = "dbscan"
    w.measure()
    assert w.measure_cancel.enabled  # Cancel is live while the worker runs
    qtbot.waitUntil(lambda: not w.busy, timeout=120_000)
    worker = w.worker
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    s = w.last_measure.summary
    merged = merge_blinks(df, radius_nm=50, max_dark_frames=1)
    assert s["n_merged"] == merged.n_after < len(df)
    xy = merged.data[["x_nm", "y_nm"]].to_numpy()
    pts = viewer.layers[f"{layer.name} clusters"]
    assert np.array_equal(pts.features["cluster"], DBSCAN(eps=20, min_samples=5).fit_predict(xy))
    assert 5 < s["nena_nm"] < 60


def test_measure_section_cancel_and_nothing_ticked(dock, tmp_path):
    viewer, w = dock
    _, path = _clustered_csv(tmp_path)
    w.open_file(path=str(path))
    w.m_nena.value = False
    w.measure()
    assert "nothing to measure" in w.m_result.value
    w.m_nena.value = True
    w.cancelled = True
    from napari_nucleus_ai.localizations.analysis.measure import measure_gen

    w.start_job(measure_gen, viewer.layers[w.layer.value].metadata["localizations"],
                cancel=lambda: True, on_error=w._measure_failed)  # fmt: skip
    assert w.m_result.value == "cancelled"
    w.m_result.value = ""
    w.cancel_measure()
    assert w.cancelled and w.m_result.value == "cancelled"


def test_roi_drawn_in_um_selects_the_same_localizations_as_in_nm(dock, shared_data):
    """An ROI layer with its own unit and scale (napari's *New shapes* over a render gives
    um at 0.02 per data unit) filters the localizations at its world position in nm."""
    viewer, w = dock
    w.open_file(path=str(shared_data / "smlm/colicoords/03_storm.csv"))
    layer = viewer.layers[w.layer.value]
    w.render()
    df = layer.metadata["localizations"]
    cy, cx = float(df["y_nm"].median()), float(df["x_nm"].median())
    box_nm = [[cy - 3000, cx - 3000], [cy + 3000, cx + 3000]]
    um = viewer.add_shapes(ndim=2, name="roi um", scale=(0.02, 0.02), units=("um", "um"))
    um.add_rectangles(np.asarray(box_nm) / 1000 / 0.02)  # data units of 20 nm
    w.roi.reset_choices()
    w.roi.value = "roi um"
    w.render()
    in_um = layer.metadata["localizations"]
    assert 0 < len(in_um) < len(df) and in_um["x_nm"].between(cx - 3000, cx + 3000).all()
    viewer.add_shapes([box_nm], shape_type="rectangle", name="roi nm")
    w.roi.reset_choices()
    w.roi.value = "roi nm"
    w.render()
    assert len(layer.metadata["localizations"]) == len(in_um)


def test_an_roi_shapes_layer_added_beside_a_render_keeps_one_unit(dock, shared_data, monkeypatch):
    """Issue 25 item 12, with the Localizations dock in a plain viewer (no demo): an empty
    Shapes layer for an ROI takes the render's nm before it joins, so napari's canvas
    finds no inconsistent units and the scale bar keeps its unit."""
    import warnings

    import napari._vispy.canvas as canvas

    said = []
    monkeypatch.setattr(canvas, "show_warning", said.append)
    viewer, w = dock
    w.open_file(path=str(shared_data / "smlm/colicoords/03_storm.csv"))
    w.render()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        roi = viewer.add_shapes(name="roi")
        viewer.window._qt_viewer.canvas._update_world_units()  # what the next draw does
    messages = [str(m) for m in said + [c.message for c in caught]]
    assert not [m for m in messages if "Inconsistent units" in m], messages
    assert [str(u) for u in roi.units] == ["nanometer"] * 2
    np.testing.assert_allclose(roi.scale, [1.0, 1.0])
    assert [str(u) for u in viewer.layers.units] == ["nanometer"] * 2


def _storm_csv(tmp_path, n=600):
    """A ThunderSTORM-like table: frames from 0, photons from 0 (both ends are real values)."""
    import pandas as pd

    rng = np.random.default_rng(3)
    df = pd.DataFrame({
        "frame": rng.integers(0, 100, n), "x [nm]": rng.uniform(0, 4000, n),
        "y [nm]": rng.uniform(0, 4000, n), "intensity [photon]": rng.uniform(0, 3000, n),
        "uncertainty [nm]": rng.uniform(5, 20, n),
    })  # fmt: skip
    df.loc[:9, "intensity [photon]"] = -5.0  # background-subtracted: below 0 photons
    df.loc[:19, "frame"] = 0
    path = tmp_path / "locs.csv"
    df.to_csv(path, index=False)
    return path


def test_zoom_rerender_replaces_a_failed_render_status(dock, tmp_path):
    """After "no localization passes the filters", a zoom re-render says what is shown now."""
    viewer, w = dock
    w.open_file(path=str(_storm_csv(tmp_path)))
    layer = viewer.layers[w.layer.value]
    w.render()
    rendered = w.status.value
    assert rendered.startswith("600 of 600 localizations rendered")
    w.min_photons.value = 1e6
    w.render()
    assert "no localization passes the filters" in w.status.value
    assert len(layer.metadata["localizations"]) == 600  # the layer keeps its render
    viewer.camera.center = (2000.0, 2000.0)
    viewer.camera.zoom = 2.0  # 2 screen px per nm: finer than the 10 nm render
    w.update_zoom()
    assert viewer.layers[f"{layer.name} [zoom]"].visible
    assert "no localization passes" not in w.status.value
    assert w.status.value.startswith(rendered + "; zoom: ")
    # the status then follows the next successful render, not an older one
    w.min_photons.value = 1000.0
    w.render()
    kept = len(layer.metadata["localizations"])
    assert 0 < kept < 600 and w.status.value.startswith(f"{kept:,} of 600")


def test_photon_and_frame_filters_off_is_not_zero(dock, tmp_path):
    """0 photons and frame 0 are real filter values; the lowest value ("off") is no filter."""
    viewer, w = dock
    w.open_file(path=str(_storm_csv(tmp_path)))
    layer = viewer.layers[w.layer.value]
    for box in (w.min_photons, w.first_frame, w.last_frame):
        assert box.native.text() == "off" and box.value == box.min
    w.render()
    assert len(layer.metadata["localizations"]) == 600
    w.min_photons.value = 0
    w.render()
    assert len(layer.metadata["localizations"]) == 590  # the 10 below 0 photons dropped
    w.min_photons.value = w.min_photons.min
    w.last_frame.value = 0
    w.render()
    kept = layer.metadata["localizations"]
    assert len(kept) >= 20 and (kept["frame"] == 0).all()  # only frame 0, not "off"
    w.last_frame.value = w.last_frame.min
    w.first_frame.value = 1
    w.render()
    assert (layer.metadata["localizations"]["frame"] >= 1).all()


def test_drift_correction_needs_two_segments(dock, tmp_path):
    viewer, w = dock
    w.open_file(path=str(_storm_csv(tmp_path)))
    w.drift.value, w.segments.value = True, 1
    assert w.render() is None
    assert w.status.value == "drift correction needs 2 segments at least"
