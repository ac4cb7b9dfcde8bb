"""Tracking nuclei over time: laptrack linking, divisions, drift, lysis and leaving the field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.core.errors import Cancelled, InputError
from napari_nucleus_ai.core.progress import Progress, run_sync
from napari_nucleus_ai.infection.track import (
    TRACK_COLUMNS,
    estimate_drift,
    link,
    link_accuracy,
    track_ends,
    track_stack,
    tracks_layer_data,
    write_tracks,
)
from napari_nucleus_ai.samples.timelapse import simulate_timelapse


@pytest.fixture(scope="module")
def tracked():
    tl = simulate_timelapse(36, (224, 224), seed=5, division_rate=0.04)
    seen = []
    res = run_sync(track_stack(tl.image, tl.pixel_size_um), seen.append)
    return tl, res, seen


def test_links_match_ground_truth(tracked):
    tl, res, seen = tracked
    acc = link_accuracy(res.tracks, res.labels, tl)
    assert acc["true_links"] > 400
    assert acc["accuracy"] >= 0.93, acc
    assert acc["precision"] >= 0.9, acc
    assert acc["true_divisions"] >= 2 and acc["divisions_found"] >= 0.5 * acc["true_divisions"], acc
    assert all(isinstance(p, Progress) for p in seen) and seen[-1].done == seen[-1].total


def test_tracks_table_and_labels_agree(tracked):
    tl, res, _ = tracked
    tr = res.tracks
    assert list(tr.columns[:5]) == TRACK_COLUMNS
    assert tr.groupby(["track_id", "t"]).size().max() == 1
    assert (tr["track_id"] >= 1).all() and set(tr["parent_id"]) - {0} <= set(tr["track_id"])
    for t in (0, 17, 35):
        rows = tr[tr.t == t]
        assert set(np.unique(res.labels[t])) - {0} == set(rows.track_id)
        r = rows.iloc[0]
        assert res.labels[t, int(round(r.y)), int(round(r.x))] == r.track_id
    data, graph = tracks_layer_data(tr)
    assert data.shape == (len(tr), 4)
    assert all(len(v) == 1 and v[0] in set(tr.track_id) for v in graph.values())
    assert graph == res.graph


def test_track_ends_lysis_division_border(tracked):
    tl, res, _ = tracked
    ends = track_ends(res.tracks, tl.image.shape[1:], tl.image.shape[0])
    assert set(ends["end"]) <= {"division", "end", "left", "vanished"}
    assert (ends["end"] == "division").sum() >= 2
    # every true lysis in the field ends a track there: the track is 'vanished', not linked on
    lysed = tl.cells[tl.cells.fate == "lysis"]
    from napari_nucleus_ai.infection.evaluate import track_truth

    tt = track_truth(tl, res.tracks, res.labels).merge(ends, on="track_id")
    n_vanished = 0
    for c in lysed.itertuples():
        rows = tt[tt.cell_id == c.cell_id]
        if len(rows):
            last = rows.sort_values("t_end").iloc[-1]
            assert last.t_end <= c.t_lysis - 1
            # a bursting nucleus that falls into pieces is not a division
            assert last.end in ("vanished", "left"), last
            n_vanished += last.end == "vanished"
    assert n_vanished >= 1


def test_drift_is_estimated():
    rng = np.random.default_rng(0)
    a = rng.random((128, 128)).astype(np.float32)
    from scipy.ndimage import gaussian_filter, shift

    a = gaussian_filter(a, 2)
    b = shift(a, (3, -5), order=1, mode="wrap")
    np.testing.assert_allclose(estimate_drift(a, b), [3, -5], atol=0.5)


def test_link_division_and_gap():
    # one nucleus divides at t=2; another is missed at t=2 (gap) and continues
    det = pd.DataFrame(
        {
            "t": [0, 1, 2, 3, 3, 0, 1, 3],
            "label": [1, 1, 1, 1, 2, 2, 2, 3],
            "y": [20, 21, 22, 16, 28, 80, 81, 83],
            "x": [20, 20, 20, 20, 20, 80, 80, 81],
        }
    )
    tr = link(det, max_step_px=6, split_distance_px=10, max_gap=2)
    first = tr.drop_duplicates("track_id").set_index("track_id")
    parents = first[first.parent_id > 0]
    assert len(parents) == 2 and parents.parent_id.nunique() == 1
    gap = tr[tr.y > 70]
    assert gap.track_id.nunique() == 1 and list(gap.t) == [0, 1, 3]


def test_write_tracks_and_errors(tracked, tmp_path):
    import tifffile

    tl, res, _ = tracked
    paths = write_tracks(res, tmp_path / "out", pixel_size_um=0.65)
    back = pd.read_csv(paths["tracks"])
    # tracks.csv is the format, exactly: track_id, t, y, x (pixels), parent_id
    assert list(back.columns) == TRACK_COLUMNS and len(back) == len(res.tracks)
    np.testing.assert_allclose(back[["y", "x"]], res.tracks[["y", "x"]], atol=1e-3)
    np.testing.assert_array_equal(back["parent_id"], res.tracks["parent_id"])
    nuc = pd.read_csv(paths["nuclei"])  # the measurements, keyed by track_id and t
    assert list(nuc.columns[:2]) == ["track_id", "t"] and {"area_px", "label"} <= set(nuc.columns)
    np.testing.assert_array_equal(nuc[["track_id", "t"]], back[["track_id", "t"]])
    lab = tifffile.imread(paths["labels"])
    np.testing.assert_array_equal(lab, res.labels)
    with pytest.raises(InputError):
        run_sync(track_stack(np.zeros((64, 64)), 0.65))
    with pytest.raises(InputError):
        run_sync(track_stack(np.zeros((0, 64, 64)), 0.65))
    with pytest.raises(Cancelled):
        run_sync(track_stack(tl.image[:3], 0.65, cancel=lambda: True))
    empty = run_sync(track_stack(np.full((3, 64, 64), 100, np.uint16), 0.65))
    assert empty.tracks.empty and not empty.labels.any()


def test_split_from_a_dropped_fragment_starts_new_lineages(monkeypatch):
    """A short daughter (dropped as a fragment) that itself splits: its long daughters keep
    their tracks with no parent instead of crashing on the missing parent (seen on a
    100-frame 1024 x 1024 movie)."""
    import laptrack

    # segments: 0 mother (t 0-4), 1 short daughter (t 5-6) and 2 long daughter (t 5-19);
    # 1 splits into 3 and 4 (t 7-19)
    spans = {0: (0, 4), 1: (5, 6), 2: (5, 19), 3: (7, 19), 4: (7, 19)}
    rows = [(t, 10.0 * s, 0.0, s) for s, (a, b) in spans.items() for t in range(a, b + 1)]
    det = pd.DataFrame(rows, columns=["t", "y", "x", "seg"])
    det["label"] = det.groupby("t").cumcount() + 1

    def fake_predict(self, df, *a, **k):
        out = df.copy()
        out["track_id"] = det["seg"].to_numpy()[df["_row"].to_numpy()]
        splits = pd.DataFrame({"parent_track_id": [0, 0, 1, 1], "child_track_id": [1, 2, 3, 4]})
        return out, splits, pd.DataFrame()

    monkeypatch.setattr(laptrack.LapTrack, "predict_dataframe", fake_predict)
    tr = link(det.drop(columns="seg"), min_daughter_frames=3, n_frames=20)
    per = tr.groupby("track_id").agg(t0=("t", "min"), n=("t", "size"), p=("parent_id", "first"))
    assert len(per) == 4  # the 2-frame fragment is gone
    assert (per["p"] == 0).all()  # 0-2 split undone; 3 and 4 lost their (dropped) parent
    assert sorted(per["n"]) == [5, 13, 13, 15]


def test_nuclei_leaving_and_entering_the_field():
    """A strong stage drift carries nuclei out of one side of the field and brings new ones in
    on the other: each nucleus that leaves ends its track there ('left', never linked on to
    another nucleus), and each that enters starts a new track with no parent."""
    n = 40
    tl = simulate_timelapse(n, (192, 192), seed=4, drift_px=2.0)
    res = run_sync(track_stack(tl.image, tl.pixel_size_um))
    ends = track_ends(res.tracks, tl.image.shape[1:], n).set_index("track_id")
    from napari_nucleus_ai.infection.track import match_to_truth

    m = match_to_truth(res.labels, tl.labels)
    seen = tl.truth.sort_values("t").groupby("cell_id")["t"]
    first, last = seen.min(), seen.max()
    once = seen.apply(lambda s: bool((s.diff().dropna() == 1).all()))  # never re-enters
    cells = tl.cells.set_index("cell_id")
    leaving = [c for c in last.index if once[c] and last[c] < min(n - 1, cells.t_end[c])]
    entering = [c for c in first.index if once[c] and first[c] > max(0, cells.t_start[c])]
    n_left = n_entered = 0
    for c in leaving:
        mc = m[m.cell_id == c]
        if mc.empty:
            continue
        t_last = int(mc.t.max())
        k = int(mc.loc[mc.t == t_last, "track_id"].iloc[0])
        assert ends.loc[k, "end"] == "left" and ends.loc[k, "t_end"] <= last[c], (c, ends.loc[k])
        assert set(m[(m.track_id == k) & (m.t > t_last)].cell_id) == set()  # not linked on
        n_left += 1
    for c in entering:
        mc = m[m.cell_id == c]
        if mc.empty:
            continue
        t_first = int(mc.t.min())
        k = int(mc.loc[mc.t == t_first, "track_id"].iloc[0])
        assert ends.loc[k, "parent_id"] == 0 and ends.loc[k, "t_start"] >= first[c], c
        assert set(m[(m.track_id == k) & (m.t < t_first)].cell_id) == set()  # a new track
        n_entered += 1
    assert n_left >= 5 and n_entered >= 5, (n_left, n_entered)


def test_linking_runs_without_cyclic_gc(monkeypatch):
    """laptrack's graph building runs with automatic GC off (full passes over a napari
    process's heap froze the viewer), and the previous GC state comes back, also on error."""
    import gc

    import laptrack

    seen = []
    real = laptrack.LapTrack.predict_dataframe

    def spy(self, *a, **k):
        seen.append(gc.isenabled())
        if k.pop("_fail", False):
            raise RuntimeError("boom")
        return real(self, *a, **k)

    monkeypatch.setattr(laptrack.LapTrack, "predict_dataframe", spy)
    det = pd.DataFrame({"t": [0, 1, 2], "label": [1, 1, 1], "y": [5.0, 6, 7], "x": [5.0, 5, 5]})
    assert gc.isenabled()
    tr = link(det)
    assert seen == [False] and gc.isenabled() and tr.track_id.nunique() == 1
    gc.disable()
    try:
        link(det)
        assert not gc.isenabled()  # left as it was
    finally:
        gc.enable()

    def failing(self, *a, **k):
        return spy(self, *a, _fail=True, **k)

    monkeypatch.setattr(laptrack.LapTrack, "predict_dataframe", failing)
    with pytest.raises(RuntimeError):
        link(det)
    assert gc.isenabled()
