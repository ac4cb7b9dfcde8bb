"""The synthetic Hoechst infection time-lapse: phenotypes and ground truth are what the docs say."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nucleus_ai.samples.timelapse import simulate_timelapse


@pytest.fixture(scope="module")
def tl():
    return simulate_timelapse(40, (192, 192), seed=3, infected_fraction=0.6, lytic_fraction=0.6)


def test_shapes_types_and_reproducible(tl):
    assert tl.image.shape == tl.labels.shape == (40, 192, 192)
    assert tl.image.dtype == np.uint16
    again = simulate_timelapse(40, (192, 192), seed=3, infected_fraction=0.6, lytic_fraction=0.6)
    np.testing.assert_array_equal(tl.image, again.image)
    other = simulate_timelapse(40, (192, 192), seed=4)
    assert not np.array_equal(tl.image[0], other.image[0])
    assert tl.scale == (1.0, 0.65, 0.65)


def test_truth_matches_labels(tl):
    for t in (0, 20, 39):
        ids = set(np.unique(tl.labels[t])) - {0}
        assert ids == set(tl.truth.loc[tl.truth.t == t, "cell_id"])
    row = tl.truth.iloc[len(tl.truth) // 2]
    assert tl.labels[int(row.t), int(round(row.y)), int(round(row.x))] == row.cell_id


def test_events_present(tl):
    fates = set(tl.cells.fate)
    assert {"division", "lysis", "end"} <= fates
    daughters = tl.cells[tl.cells.parent_id > 0]
    assert len(daughters) >= 2 and (daughters.groupby("parent_id").size() == 2).all()
    # infected cells never divide; lytic ones burst at t_lysis and are gone afterwards
    assert not tl.cells[tl.cells.infected & (tl.cells.fate == "division")].size
    lysed = tl.cells[tl.cells.fate == "lysis"]
    for c in lysed.itertuples():
        assert c.lytic and c.t_end == c.t_lysis - 1
        assert not (tl.labels[c.t_lysis] == c.cell_id).any()
    # nuclei leave and enter the field: some cells alive to the end are not visible throughout
    seen = tl.truth.groupby("cell_id")["t"].agg(["min", "max"])
    alive = tl.cells.set_index("cell_id")
    partial = [
        (seen.loc[c, "max"] < alive.loc[c, "t_end"])
        or (seen.loc[c, "min"] > alive.loc[c, "t_start"])
        for c in seen.index
    ]
    assert any(partial)


def test_phenotypes(tl):
    tr = tl.truth
    # infected nuclei enlarge (area at full phenotype vs uninfected at the same time)
    full = tr[(tr.phenotype >= 1) & (tr.swelling == 0) & (tr.area_px > 100)]
    clean = tr[(~tr.infected) & (tr.area_px > 100) & tr.t.isin(full.t.unique())]
    assert full.area_px.median() > 1.25 * clean.area_px.median()

    # margination: rim brighter than the interior in infected nuclei, not in uninfected
    def rim_ratio(rows):
        from napari_nucleus_ai.infection.score import nucleus_features

        vals = []
        for t, g in rows.groupby("t"):
            f = nucleus_features(tl.image[t], tl.labels[t].astype(np.int64), g.cell_id.to_numpy())
            vals += list(f.rim_ratio)
        return np.nanmedian(vals)

    assert rim_ratio(full.head(40)) > 1.15 * rim_ratio(clean.head(40))
    # lytic nuclei swell before bursting
    sw = tr[tr.swelling > 0.9]
    assert len(sw)
    for r in sw.head(3).itertuples():
        before = tr[(tr.cell_id == r.cell_id) & (tr.t == r.t - 3)]
        if len(before) and r.area_px > 50:
            assert r.area_px > before.area_px.iloc[0]


def test_bleaching_and_noise(tl):
    first = tl.image[0][tl.labels[0] > 0].mean() - 100
    last = tl.image[-1][tl.labels[-1] > 0].mean() - 100
    assert last < first  # bleaching (infected nuclei also dim inside; still net loss)
    bg = tl.image[0][tl.labels[0] == 0]
    assert 2 < bg.std() < 20


def test_true_links_include_divisions(tl):
    links = tl.true_links()
    assert (links.cell_a != links.cell_b).sum() >= 2
    assert len(links) > 10 * 39


def test_sample_layers_for_napari():
    from napari_nucleus_ai.samples.timelapse import sample_layers

    layers = sample_layers(n_frames=4, shape=(96, 96))
    (img, meta, kind), (lab, lmeta, lkind) = layers
    assert kind == "image" and lkind == "labels"
    assert img.ndim == 3 and meta["scale"] == (1.0, 0.65, 0.65)
    assert meta["metadata"]["frame_interval_h"] == 0.5
    assert lab.shape == img.shape


def test_replication_compartments(tl):
    """Dim replication compartments make the interior of infected nuclei uneven."""
    from napari_nucleus_ai.infection.score import nucleus_features

    tr = tl.truth

    def interior_cv(rows):
        vals = []
        for t, g in rows.groupby("t"):
            f = nucleus_features(tl.image[t], tl.labels[t].astype(np.int64), g.cell_id.to_numpy())
            vals += list(f.interior_cv)
        return np.nanmedian(vals)

    full = tr[(tr.phenotype >= 1) & (tr.swelling == 0) & (tr.area_px > 100)]
    clean = tr[(~tr.infected) & (tr.area_px > 100) & tr.t.isin(full.t.unique())]
    assert interior_cv(full.head(40)) > 1.5 * interior_cv(clean.head(40))


def test_stage_drift_is_simulated_and_recovered(tl):
    """The stage drifts (every nucleus moves with it), and the tracker's phase-correlation
    estimate follows the simulated drift. (On a small field with a few dozen crawling nuclei,
    like ``tl``, the estimate is much rougher: their own motion dominates.)"""
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.infection.track import track_stack

    assert tl.drift.shape == (40, 2) and np.abs(tl.drift - tl.drift[0]).max() > 5
    movie = simulate_timelapse(30, (320, 320), seed=3, drift_px=1.0)
    moved = movie.drift - movie.drift[0]
    assert np.abs(moved).max() > 10  # pixels over the movie
    res = run_sync(track_stack(movie.image, movie.pixel_size_um))
    rms = np.sqrt(((res.drift - moved) ** 2).sum(1).mean())
    assert rms < min(2.0, 0.15 * np.abs(moved).max()), rms
