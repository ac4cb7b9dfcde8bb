"""Infection from the nuclear stain: crops, features, model (the classifier trainer), table, lysis, CLI, dock."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import run_sync
from napari_nucleus_ai.infection.lytic import LyticModel, default_model_path, predict_lytic
from napari_nucleus_ai.infection.score import (
    crop_size_px,
    infection_onset,
    infection_table,
    infection_trainingset,
    nucleus_crops,
    nucleus_features,
    predict_infection,
)
from napari_nucleus_ai.samples.timelapse import simulate_timelapse


@pytest.fixture(scope="module")
def movie():
    return simulate_timelapse(40, (256, 256), seed=11, infected_fraction=0.6, lytic_fraction=0.6)


@pytest.fixture(scope="module")
def tracked(movie):
    from napari_nucleus_ai.infection.track import track_stack

    return run_sync(track_stack(movie.image, movie.pixel_size_um))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real infection model package from the classifier trainer, kept tiny for speed."""
    from napari_nucleus_ai.infection.score import train_infection_model

    out = tmp_path_factory.mktemp("models") / "infection"
    opts = dict(
        seeds=(5,), n_frames=12, shape=(192, 192), epochs=1, max_per_class=80, threads=1, tta=1
    )
    result = run_sync(train_infection_model(out, **opts))
    return result.path


def test_crops_centred_padded_normalised():
    frame = np.zeros((50, 60), np.float32)
    frame[20:25, 30:35] = 10.0
    c = nucleus_crops(frame, np.array([[22, 32], [0, 0]]), 16)
    assert c.shape == (2, 16, 16)
    assert c[0, 8, 8] == pytest.approx(1.0) and c[0].min() == pytest.approx(0.0)
    raw = nucleus_crops(frame, np.array([[22, 32]]), 16, normalise=False)
    assert raw[0, 8, 8] == 10.0 and raw[0, 0, 0] == 0.0
    assert crop_size_px(0.65) == 50 and crop_size_px(0.325) % 2 == 0


def test_rim_ratio_sees_margination():
    yy, xx = np.mgrid[:40, :80]
    lab = np.zeros((40, 80), np.int64)
    img = np.zeros((40, 80), np.float32)
    for k, cx in ((1, 20), (2, 60)):
        r = np.hypot(yy - 20, xx - cx)
        lab[r < 12] = k
        img[r < 12] = 100.0
    ring = (lab == 2) & (np.hypot(yy - 20, xx - 60) > 9)
    img[lab == 2] = 40.0
    img[ring] = 150.0
    f = nucleus_features(img, lab, np.array([1, 2]))
    assert f.rim_ratio[1] > 2 * f.rim_ratio[0]


def test_onset():
    assert infection_onset([0.1, 0.9, 0.2, 0.8, 0.9, 0.95, 0.9]) == 3
    assert infection_onset([0.1, 0.2]) == -1
    assert infection_onset([0.1] * 10) == -1


def test_trainingset_from_simulator(movie):
    ts = infection_trainingset([movie], max_per_class=50)
    assert ts.classes == ["uninfected", "infected"] and ts.modality == "fluorescence"
    assert ts.counts() == {"uninfected": 50, "infected": 50}
    assert ts.samples[0].shape == (50, 50) and ts.pixel_size == 0.65
    # no crop comes from the invisible start of infection
    import re

    for src in ts.sources[:20]:
        t, cell = map(int, re.findall(r"t(\d+):cell(\d+)", src)[0])
        row = movie.truth[(movie.truth.t == t) & (movie.truth.cell_id == cell)].iloc[0]
        assert not (0 < row.phenotype < 0.25)


def test_predict_infection_aligns_rows(movie, tracked):
    def centre(crops):  # a stand-in model: normalised centre brightness
        return crops[:, 25, 25].clip(0, 1)

    tr = run_sync(
        predict_infection(
            movie.image, tracked.tracks, tracked.labels, pixel_size_um=0.65, probability=centre
        )
    )
    assert {"p_infected", "rim_ratio", "interior_cv"} <= set(tr.columns) and len(tr) == len(
        tracked.tracks
    )
    r = tr.iloc[len(tr) // 3]
    expect = centre(nucleus_crops(movie.image[int(r.t)], np.array([[r.y, r.x]]), 50))[0]
    assert r.p_infected == pytest.approx(expect)
    feats_only = run_sync(predict_infection(movie.image, tracked.tracks, tracked.labels))
    assert "p_infected" not in feats_only and feats_only["rim_ratio"].notna().mean() > 0.9


def _oracle_tracks(movie, tracked):
    """Tracks with p_infected from the truth (isolates the lytic step from the model)."""
    from napari_nucleus_ai.infection.evaluate import truth_for_tracks

    tr = run_sync(
        predict_infection(movie.image, tracked.tracks, tracked.labels, pixel_size_um=0.65)
    )
    j = truth_for_tracks(movie, tr, tracked.labels)[["t", "track_id", "phenotype"]]
    tr = tr.merge(j, on=["t", "track_id"], how="left")
    tr["p_infected"] = (tr["phenotype"].fillna(0) >= 0.25).astype(float)
    return tr


def test_table_and_lytic_prediction(movie, tracked):
    from napari_nucleus_ai.infection.evaluate import lytic_accuracy

    tr = _oracle_tracks(movie, tracked)
    table = infection_table(tr, movie.image.shape[1:], 40, frame_interval_h=0.5)
    assert table["track_id"].is_unique and set(table["end"]) <= {
        "division",
        "end",
        "left",
        "vanished",
    }
    assert table["infected"].sum() >= 5 and (table.loc[table.infected, "t_infected"] >= 0).all()
    lytic = LyticModel.load(default_model_path())
    out = predict_lytic(tr, table, lytic, frame_interval_h=0.5)
    called = out[out["p_lytic"].notna()]
    assert len(called) >= 4 and called["infected"].all()
    assert ((called["t_predict"] - called["t_infected"]) == lytic.window_frames - 1).all()
    acc = lytic_accuracy(movie, tr, tracked.labels, out)
    assert acc["accuracy"] >= 0.7, acc
    lead = out["lead_time_h"].dropna()
    assert (lead > 0).all()
    # the reported lead time is against the simulated burst: the track ends at most the
    # swelling frames before it (the swelling nucleus is lost), never after it
    from napari_nucleus_ai.infection.evaluate import track_truth
    from napari_nucleus_ai.samples.timelapse import SWELL_FRAMES

    j = out[out["lead_time_h"].notna()].merge(track_truth(movie, tr, tracked.labels), on="track_id")
    j = j[j["fate"] == "lysis"]
    assert len(j) >= 3
    true_lead = (j["t_lysis"] - j["t_predict"]) * 0.5
    assert ((true_lead - j["lead_time_h"]).between(0, SWELL_FRAMES * 0.5)).all()
    # hours are the movie's: at 1 h per frame the same calls are twice as far ahead
    hourly = predict_lytic(tr, table, lytic, frame_interval_h=1.0)
    np.testing.assert_allclose(hourly["lead_time_h"], 2 * out["lead_time_h"])


def test_lytic_model_file_roundtrip_and_errors(tmp_path):
    X = pd.DataFrame(
        np.random.default_rng(0).normal(size=(20, 7)),
        columns=LyticModel.__dataclass_fields__["features"].default_factory(),
    )
    y = (X["area_growth"] > 0).astype(int)
    m = LyticModel.fit(X, y, 6, 0.5)
    m.save(tmp_path / "l.json")
    back = LyticModel.load(tmp_path / "l.json")
    np.testing.assert_allclose(back.predict_proba(X), m.predict_proba(X))
    assert ((m.predict_proba(X) > 0.5) == y).mean() > 0.8
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something"}))
    d = json.loads((tmp_path / "l.json").read_text())
    d["coef"] = d["coef"][:3]
    (tmp_path / "short.json").write_text(json.dumps(d))
    for name in ("bad.json", "other.json", "short.json", "missing.json"):
        with pytest.raises(InputError, match=name):
            LyticModel.load(tmp_path / name)
    with pytest.raises(InputError):
        LyticModel.fit(X, np.zeros(20), 6, 0.5)


def test_cli_track_with_model(movie, tiny_model, tmp_path, capsys):
    import tifffile

    from napari_nucleus_ai.cli import main

    stack = tmp_path / "movie.tif"
    tifffile.imwrite(stack, movie.image[:10], imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                     metadata={"axes": "TYX", "unit": "um", "finterval": 1800})  # fmt: skip
    out = tmp_path / "out"
    assert main(["track", str(stack), "--out", str(out)]) == 0
    tracks = pd.read_csv(out / "tracks.csv")
    assert list(tracks.columns) == ["track_id", "t", "y", "x", "parent_id"]  # exactly
    assert tracks["y"].between(0, 255).all() and tracks["x"].between(0, 255).all()  # pixels
    assert tifffile.imread(out / "labels.tif").shape == (10, 256, 256)
    assert not (out / "infection.csv").exists()
    assert main(["track", str(stack), "--out", str(out), "--model", str(tiny_model)]) == 0
    table = pd.read_csv(out / "infection.csv")
    assert {"track_id", "infected", "t_infected", "end", "p_lytic", "lead_time_h"} <= set(
        table.columns
    )
    # with a model, tracks.csv is unchanged (same columns, same precision); the per-nucleus
    # probabilities are in nuclei.csv
    again = pd.read_csv(out / "tracks.csv")
    pd.testing.assert_frame_equal(again, tracks)
    nuclei = pd.read_csv(out / "nuclei.csv")
    np.testing.assert_array_equal(nuclei[["track_id", "t"]], tracks[["track_id", "t"]])
    assert nuclei["p_infected"].between(0, 1).all()
    assert set(table["track_id"]) == set(tracks["track_id"])
    # bad inputs: one line naming the file, exit 1
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    capsys.readouterr()
    assert main(["track", str(bad), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "bad.tif" in err and len(err.splitlines()) == 1
    flat = tmp_path / "one.tif"
    tifffile.imwrite(flat, movie.image[0])
    assert main(["track", str(flat), "--out", str(out)]) == 1


@pytest.mark.gui
def test_infection_dock(make_napari_viewer, qtbot, movie, tiny_model):
    from napari.layers import Labels, Tracks

    from napari_nucleus_ai.widgets.infection import InfectionWidget

    viewer = make_napari_viewer()
    layer = viewer.add_image(
        movie.image[:12], scale=movie.scale, metadata={"frame_interval_h": 0.5}
    )
    dock = InfectionWidget(viewer)
    dock.layer.value = layer
    dock.demo_model.value = False
    dock.model.value = tiny_model
    import os

    os.environ["NAPARI_NUCLEUS_AI_SYNC"] = "1"
    try:
        dock.run()
    finally:
        del os.environ["NAPARI_NUCLEUS_AI_SYNC"]
    labels = [ly for ly in viewer.layers if isinstance(ly, Labels)]
    tracks = [ly for ly in viewer.layers if isinstance(ly, Tracks)]
    assert len(labels) == 1 and len(tracks) == 1
    assert tracks[0].color_by == "p_infected"
    assert tuple(labels[0].scale) == tuple(layer.scale)
    assert "p_infected_mean" in labels[0].features.columns
    assert dock.track.choices and "tracks" in dock.status.value
    # picking a track plots it and jumps the viewer to it
    tid = dock.track.choices[-1]
    dock.track.value = tid
    rows = dock.result.tracks[dock.result.tracks.track_id == tid]
    assert rows.t.min() <= viewer.dims.current_step[0] <= rows.t.max()
    assert f"track {tid}" in dock._plot.ax.get_title()
    from napari_nucleus_ai.widgets._compat import camera, world_factor

    here = rows[rows.t == viewer.dims.current_step[0]].iloc[0]  # centred on the nucleus
    f = world_factor(viewer, layer)
    centre = (here.y * layer.scale[1] * f, here.x * layer.scale[2] * f)
    np.testing.assert_allclose(camera(viewer).center[-2:], centre, atol=1e-6)
    assert dock.run_btn.enabled and not dock.cancel_btn.enabled
    # clicking a nucleus in the viewer selects its track, although the Tracks layer (added
    # last) is the active layer: napari calls only the active layer's mouse callbacks
    from napari.utils._test_utils import read_only_mouse_event
    from napari.utils.interactions import (
        mouse_move_callbacks,
        mouse_press_callbacks,
        mouse_release_callbacks,
    )

    assert viewer.layers.selection.active is tracks[0]
    t = int(viewer.dims.current_step[0])
    frame = dock.result.tracks[dock.result.tracks.t == t]
    other = frame[frame.track_id != tid].iloc[0]
    world = (t, other.y * layer.scale[1], other.x * layer.scale[2])

    def click(pos, drag_to=None):
        mouse_press_callbacks(viewer, read_only_mouse_event(type="mouse_press", position=pos))
        if drag_to is not None:
            ev = read_only_mouse_event(type="mouse_move", is_dragging=True, position=drag_to)
            mouse_move_callbacks(viewer, ev)
        end = drag_to if drag_to is not None else pos
        mouse_release_callbacks(viewer, read_only_mouse_event(type="mouse_release", position=end))

    click(world, drag_to=(t, world[1] + 20, world[2]))  # a pan is not a click
    assert dock.track.value == tid
    viewer.layers.selection.active = labels[0]
    labels[0].mode = "paint"  # nor is painting a label
    click(world)
    assert dock.track.value == tid
    labels[0].mode = "pan_zoom"
    viewer.layers.selection.active = tracks[0]
    click(world)
    assert dock.track.value == int(other.track_id)
    assert f"track {int(other.track_id)}" in dock._plot.ax.get_title()
    # next to a track's nucleus (on its line), not on any nucleus: the nearest track
    assert dock.track_at((t, -100.0, world[2])) is None  # far from every nucleus
    assert dock.track_at((-5, world[1], world[2])) is None  # before the movie
    # on a track's line where no nucleus is drawn (here: its mask erased), the nearest track
    saved = dock.result.tracking.labels
    dock.result.tracking.labels = np.where(saved == other.track_id, 0, saved)
    try:
        assert dock.track_at(world) == int(other.track_id)
    finally:
        dock.result.tracking.labels = saved


@pytest.mark.gui
def test_infection_dock_threaded_builds_layers_in_the_worker(
    make_napari_viewer, qtbot, movie, tiny_model
):
    """The real path: a thread_worker runs the analysis and builds the layer models; the
    UI thread only adds them, one per event-loop turn, and no thread is left running."""
    from napari.layers import Labels, Tracks

    from napari_nucleus_ai.widgets.infection import InfectionWidget

    viewer = make_napari_viewer()
    layer = viewer.add_image(movie.image[:8], scale=movie.scale, name="movie")
    dock = InfectionWidget(viewer)
    dock.layer.value = layer
    dock.demo_model.value = False
    dock.model.value = tiny_model
    dock.run()
    assert not dock.run_btn.enabled

    def done():
        kinds = [type(ly) for ly in viewer.layers]
        filled = "tracks" in dock.status.value  # the last step: track choices and status
        return bool(dock.run_btn.enabled and Tracks in kinds and Labels in kinds and filled)

    qtbot.waitUntil(done, timeout=120_000)
    qtbot.waitUntil(lambda: not dock.worker.is_running, timeout=10_000)
    assert [ly.name for ly in viewer.layers] == ["movie", "movie nuclei", "movie tracks"]
    assert viewer.layers["movie tracks"].color_by == "p_infected"
    assert len([c for c in dock.track.choices if c is not None]) >= 3


@pytest.mark.gui
def test_infection_dock_progress_and_cancel(make_napari_viewer, qtbot, movie, tiny_model):
    """The threaded run reports progress per frame, and Cancel stops it: no layers, no result,
    the buttons come back and the garbage collector is no longer frozen."""
    import gc

    from napari_nucleus_ai.core.progress import Progress
    from napari_nucleus_ai.widgets.infection import InfectionWidget

    viewer = make_napari_viewer()
    layer = viewer.add_image(movie.image, scale=movie.scale, name="movie")
    dock = InfectionWidget(viewer)
    dock.layer.value = layer
    dock.demo_model.value = False
    dock.model.value = tiny_model
    dock.run()
    seen = []
    dock.worker.yielded.connect(seen.append)
    qtbot.waitUntil(lambda: len(seen) >= 2, timeout=60_000)
    assert all(isinstance(p, Progress) for p in seen) and seen[-1].total >= 40
    dock.cancel_btn.native.click()  # the Cancel button
    qtbot.waitUntil(lambda: dock.run_btn.enabled, timeout=60_000)
    assert dock.status.value == "cancelled" and not dock.cancel_btn.enabled
    assert [ly.name for ly in viewer.layers] == ["movie"] and dock.result is None
    assert gc.get_freeze_count() == 0
    assert seen[-1].done < seen[-1].total  # stopped before the end
