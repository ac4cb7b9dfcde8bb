"""Nanoscale quantification: merging, NeNA, FRC, clustering, fiducial drift, nucleus features.

Truth comes from the blinking simulator (known precision, bursts, clusters, drift) and
the FRC test pattern (closed-form resolution). Real-file tests skip without the data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.analysis import (
    add_nanostructure,
    cluster_localizations,
    fiducial_drift,
    frc,
    merge_blinks,
    nena,
    nucleus_feature_table,
    nucleus_features,
)
from napari_nucleus_ai.samples.storm import (
    blinking_drift,
    frc_test_pattern,
    simulate_blinking,
    simulate_nucleus,
)

DATA = Path("/work/shared/data/smlm")


@pytest.fixture(scope="module")
def blinks():
    return simulate_blinking(
        n_emitters=3000, precision_nm=10.0, seed=1, clustered_fraction=0.5, flicker=0.1,
        on_frames_mean=3,
    )  # fmt: skip


def test_simulator_defaults_unchanged():
    a = simulate_nucleus(seed=0, n_localizations=2000)
    assert len(a) == 2000 and list(a.columns[:6]) == [
        "x_nm", "y_nm", "frame", "photons", "precision_nm", "channel",
    ]  # fmt: skip


def test_simulate_blinking_truth(blinks):
    assert blinks["frame"].is_monotonic_increasing
    assert np.allclose(blinks["precision_nm"], 10.0)
    assert blinks.attrs["n_bursts"] == blinks["burst"].nunique()
    assert (blinks.groupby("emitter")["cluster"].nunique() == 1).all()


def test_nena_within_10_percent_of_simulated_precision(blinks):
    r = nena(blinks)
    assert abs(r.precision_nm - 10.0) / 10.0 < 0.10
    assert r.fit.shape == r.histogram.shape == r.d_nm.shape and r.n_pairs > 1000
    # the same-molecule term holds most pairs here, and never more than the whole fit
    single = r.same_molecule()
    assert 0.5 * r.fit.sum() < single.sum() <= r.fit.sum() + 1e-9


def test_nena_region_and_errors(blinks):
    r = nena(blinks, region={"x": [0, 6000], "y": [0, 10_000]})
    assert abs(r.precision_nm - 10.0) < 1.5
    with pytest.raises(InputError, match="consecutive frames"):
        nena(blinks.iloc[:20])
    with pytest.raises(InputError, match="frame"):
        nena(blinks[["x_nm", "y_nm"]])


def test_nena_picasso_model_and_all_pairs(blinks):
    from napari_nucleus_ai.localizations.analysis import next_frame_distances

    r = nena(blinks, model="picasso")
    assert abs(r.precision_nm - 10.0) / 10.0 < 0.10 and r.model == "picasso"
    assert r.params["a3"] == 0.0 and r.params["a1"] >= r.params["a2"]
    assert np.allclose(np.diff(r.d_nm), 0.15)  # d_max / 1000 bins, as Picasso
    with pytest.raises(InputError, match="unknown NeNA model"):
        nena(blinks, model="gauss")
    # every pair of consecutive frames within d_max counts (not only the nearest)
    df = pd.DataFrame({"x_nm": [0.0, 30.0, 5.0, 20.0, 0.0, 500.0],
                       "y_nm": [0.0] * 6, "frame": [1, 1, 2, 2, 3, 3]})  # fmt: skip
    d = np.sort(next_frame_distances(df, d_max_nm=40))
    # frame 1 -> 2: 5, 20, 25, 10; frame 2 -> 3: 5, 20 (500 nm is beyond reach)
    assert np.allclose(d, [5, 5, 10, 20, 20, 25])


def _locan_reference(df, radius):
    """Locan's ``LocalizationPrecision`` as its source reads, row by row (small tables):
    frames ``min .. max - 2``, each row's nearest row of the next frame within the radius,
    scipy's maximum-likelihood fit of the 2D pair-distance pdf with ``loc = 0, scale = 1``,
    precision = sigma / sqrt(2)."""
    from scipy import stats

    class Pair(stats.rv_continuous):
        def _pdf(self, x, sigma):
            return x / sigma**2 * np.exp(-(x**2) / (2 * sigma**2))

    f = df["frame"].to_numpy()
    xy = df[["x_nm", "y_nm"]].to_numpy()
    dist = []
    for i in range(f.min(), f.max() - 1):
        a, b = xy[f == i], xy[f == i + 1]
        for p in a:
            d = np.hypot(*(b - p).T) if len(b) else np.empty(0)
            if (d <= radius).any():
                dist.append(d[d <= radius].min())
    sigma = Pair(name="pair", a=0.0).fit(np.array(dist), floc=0, fscale=1)[0]
    return sigma / np.sqrt(2), len(dist)


def test_nena_locan_model_is_locans_estimate(blinks):
    small = blinks[blinks["frame"] < 4000]
    for radius in (50.0, 150.0):
        expected, n = _locan_reference(small, radius)
        r = nena(small, model="locan", d_max_nm=radius)
        assert r.model == "locan" and r.n_pairs == n
        assert abs(r.precision_nm - expected) / expected < 1e-3
        assert r.fit.shape == r.histogram.shape == r.d_nm.shape
    assert abs(nena(blinks, model="locan", d_max_nm=50).precision_nm - 10) < 1.0


def test_nena_dense_frames_three_term_model():
    """Many localizations per frame: pairs of other molecules outnumber the same-molecule
    pairs; the three-term model stays within 10 % of the simulated precision."""
    df = simulate_blinking(
        n_emitters=5000, field_nm=(2500, 2500), precision_nm=20.0, n_frames=200, flicker=0.1,
        on_frames_mean=3, seed=1,
    )  # fmt: skip
    assert len(df) / df["frame"].nunique() / 6.25 > 15  # localizations per um2 per frame
    r = nena(df)
    assert abs(r.precision_nm - 20.0) / 20.0 < 0.10
    assert r.same_molecule().sum() < 0.5 * r.fit.sum()  # other molecules dominate


def _merge_reference(x, y, frame, r, dark):
    """The linking rule row by row (slow, for small tables): each row continues to the
    nearest row within r in the first later frame (<= dark + 1 frames on) that has one;
    a row taken by several keeps the earliest; chains are molecules."""
    n = len(x)
    nxt = {}
    for a in range(n):
        for g in range(1, dark + 2):
            cand = np.flatnonzero(frame == frame[a] + g)
            d = np.hypot(x[cand] - x[a], y[cand] - y[a])
            if (d <= r).any():
                nxt[a] = int(cand[np.argmin(d)])
                break
    prev = {}
    for a in sorted(nxt):
        prev.setdefault(nxt[a], a)
    lab = np.full(n, -1)
    m = 0
    for i in range(n):  # rows are frame-sorted: chain heads come first
        if i in prev:
            lab[i] = lab[prev[i]]
        else:
            lab[i], m = m, m + 1
    return lab


def test_merge_matches_the_rule_row_by_row():
    rng = np.random.default_rng(5)
    n = 600
    frame = np.sort(rng.integers(1, 60, n))
    x, y = rng.uniform(0, 400, n), rng.uniform(0, 400, n)  # dense: many competing candidates
    df = pd.DataFrame({"x_nm": x, "y_nm": y, "frame": frame})
    for dark in (0, 2):
        m = merge_blinks(df, radius_nm=40, max_dark_frames=dark)
        ref = _merge_reference(x, y, frame, 40, dark)
        assert np.array_equal(m.labels, ref) and m.n_after == ref.max() + 1


def test_merge_recovers_molecule_count(blinks):
    m = merge_blinks(blinks, radius_nm=50, max_dark_frames=2)
    true = blinks.attrs["n_bursts"]
    assert m.n_before == len(blinks)
    assert abs(m.n_after - true) / true < 0.02
    assert len(m.data) == m.n_after and m.labels.shape == (len(blinks),)
    assert m.data["n_merged"].sum() == len(blinks)
    assert np.isclose(m.data["photons"].sum(), blinks["photons"].astype(float).sum(), rtol=1e-5)
    # merged positions are more precise: a 2-localization molecule has precision 10/sqrt(2)
    two = m.data["n_merged"] == 2
    assert np.allclose(m.data.loc[two, "precision_nm"], 10 / np.sqrt(2), rtol=1e-4)
    # every molecule comes from one burst (purity)
    purity = pd.Series(blinks["burst"].to_numpy()).groupby(m.labels).nunique()
    assert (purity == 1).mean() > 0.99


def test_merge_dark_frames_and_precision_factor(blinks):
    strict = merge_blinks(blinks, radius_nm=50, max_dark_frames=0).n_after
    loose = merge_blinks(blinks, radius_nm=50, max_dark_frames=2).n_after
    assert strict > loose  # flicker gaps need dark frames
    k = merge_blinks(blinks, precision_factor=5, max_dark_frames=2)
    assert k.n_after == loose  # 5 x 10 nm = 50 nm
    with pytest.raises(InputError):
        merge_blinks(blinks, radius_nm=0)


def test_merge_keeps_channels_apart():
    df = pd.DataFrame(
        {"x_nm": [0.0, 1.0, 2.0], "y_nm": [0.0, 0.0, 0.0], "frame": [1, 2, 3],
         "channel": ["0", "1", "0"]}
    )  # fmt: skip
    m = merge_blinks(df, radius_nm=10, max_dark_frames=1)
    assert m.n_after == 2 and list(m.labels) == [0, 1, 0]


def test_frc_within_15_percent_of_analytic():
    p = frc_test_pattern(n_emitters=20_000, localizations_per_emitter=10, precision_nm=10.0)
    analytic = p.attrs["frc_analytic_nm"]
    assert abs(analytic - 34.61) < 0.05
    r = frc(p, pixel_size_nm=5.0, n_splits=3)
    assert abs(r.resolution_nm - analytic) / analytic < 0.15
    assert r.curve.shape == r.frequency.shape and r.curves.shape[0] == 3
    assert r.curve[1] > 0.9  # low frequencies correlate


def test_clusters_recovered_ari():
    from sklearn.metrics import adjusted_rand_score

    df = simulate_blinking(
        n_emitters=3000, field_nm=(8000, 8000), precision_nm=8, seed=2, clustered_fraction=0.6,
        cluster_sd_nm=25, emitters_per_cluster=40, bursts_mean=1.5, on_frames_mean=1.5,
    )  # fmt: skip
    c = cluster_localizations(df, "dbscan", eps_nm=50, min_samples=15)
    assert adjusted_rand_score(df["cluster"], c.labels) >= 0.9
    st = c.clusters
    assert len(st) == c.n_clusters and (st["n_localizations"] >= 15).all()
    assert ((st["radius_of_gyration_nm"] > 15) & (st["radius_of_gyration_nm"] < 60)).all()
    assert (st["area_nm2"] > 0).all() and np.isfinite(st["density_per_um2"]).all()


def _clustered_sim(n_emitters=3000, field=8000, seed=2):
    return simulate_blinking(
        n_emitters=n_emitters, field_nm=(field, field), precision_nm=8, seed=seed,
        clustered_fraction=0.6, cluster_sd_nm=25, emitters_per_cluster=40, bursts_mean=1.5,
        on_frames_mean=1.5,
    )  # fmt: skip


def test_hdbscan_recovers_the_simulated_clusters():
    """scikit-learn's HDBSCAN alone groups the uniform background too (ARI over all
    localizations about 0.5); the density floor (default) turns it into noise."""
    from sklearn.metrics import adjusted_rand_score

    df = _clustered_sim()
    truth = df["cluster"].to_numpy()
    inside = truth >= 0
    raw = cluster_localizations(df, "hdbscan", min_samples=15, density_factor=0)
    assert adjusted_rand_score(truth[inside], raw.labels[inside]) >= 0.9  # the true clusters
    assert adjusted_rand_score(truth, raw.labels) < 0.7  # ... and the background as clusters
    c = cluster_localizations(df, "hdbscan", min_samples=15)
    assert c.params["density_factor"] == 5.0
    assert adjusted_rand_score(truth, c.labels) >= 0.9
    assert c.n_clusters == df.attrs["n_clusters"]
    assert np.array_equal(np.unique(c.labels[c.labels >= 0]), np.arange(c.n_clusters))
    # the floor only turns localizations into noise, it never moves one between clusters
    moved = (c.labels >= 0) & (raw.labels < 0)
    assert not moved.any()
    kept = c.labels >= 0
    pairs = pd.crosstab(c.labels[kept], raw.labels[kept])
    assert ((pairs > 0).sum(axis=1) == 1).all()


def test_optics_with_density_floor_recovers_clusters():
    from sklearn.metrics import adjusted_rand_score

    df = _clustered_sim(n_emitters=1200, field=5000, seed=3)  # smaller: OPTICS is slow
    c = cluster_localizations(df, "optics", eps_nm=50, min_samples=15, hull=False)
    assert adjusted_rand_score(df["cluster"], c.labels) >= 0.9


def test_density_floor_rule():
    from napari_nucleus_ai.localizations.analysis.cluster import density_floor

    rng = np.random.default_rng(0)
    background = rng.uniform(0, 10_000, (2000, 2))  # 20 per um2
    blob = rng.normal(5000, 30, (100, 2))
    xy = np.concatenate([background, blob])
    labels = np.r_[np.zeros(2000, int), np.ones(100, int)]  # background as a "cluster"
    out = density_floor(xy, labels, k=10, factor=5, min_size=10)
    assert (out[:2000] == -1).all()  # the background is noise (its few survivors too)
    assert (out[2000:] == 0).mean() > 0.95  # the blob survives, renumbered 0
    assert np.array_equal(density_floor(xy, labels, k=10, factor=1e9), np.full(2100, -1))
    # a cluster left with fewer than min_size localizations is noise too
    assert (density_floor(xy, labels, k=10, factor=5, min_size=200) == -1).all()
    # DBSCAN keeps scikit-learn's labels unless a factor is asked for
    df = pd.DataFrame({"x_nm": xy[:, 0], "y_nm": xy[:, 1]})
    plain = cluster_localizations(df, "dbscan", eps_nm=500, min_samples=5, hull=False)
    assert (plain.labels[:2000] >= 0).mean() > 0.9  # the background percolates
    floored = cluster_localizations(
        df, "dbscan", eps_nm=500, min_samples=5, hull=False, density_factor=5
    )
    assert (floored.labels[:2000] == -1).mean() > 0.99


def test_measure_gen_steps_and_cancel(blinks):
    from napari_nucleus_ai.core.errors import Cancelled
    from napari_nucleus_ai.core.progress import Progress, run_sync
    from napari_nucleus_ai.localizations.analysis.measure import (
        cluster_points_layer,
        measure_gen,
    )

    seen = []
    r = run_sync(
        measure_gen(blinks, merge=True, radius_nm=50, max_dark_frames=2, cluster="dbscan",
                    eps_nm=50, min_samples=10),
        seen.append,
    )  # fmt: skip
    assert [p.message for p in seen if isinstance(p, Progress)] == [
        "nena", "merge", "cluster", "done",
    ]  # fmt: skip
    assert r.summary["n_merged"] == len(r.data) == r.merge.n_after  # clusters of molecules
    assert r.cluster.labels.shape == (len(r.data),) and "frc_nm" not in r.summary
    data, kwargs, kind = cluster_points_layer(r.data, r.cluster, "c")
    assert kind == "points" and data.shape == (len(r.data), 2)
    noise = kwargs["features"]["cluster"].to_numpy() < 0
    assert np.isnan(kwargs["features"].loc[noise, "cluster_n_localizations"]).all()
    with pytest.raises(Cancelled):
        run_sync(measure_gen(blinks, cancel=lambda: True))
    with pytest.raises(InputError, match="nothing to measure"):
        run_sync(measure_gen(blinks, nena=False))


def test_dbscan_labels_are_sklearns():
    from sklearn.cluster import DBSCAN

    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(0, 20, (200, 2)), rng.uniform(-500, 500, (200, 2))])
    df = pd.DataFrame({"x_nm": xy[:, 0], "y_nm": xy[:, 1]})
    ours = cluster_localizations(df, "dbscan", eps_nm=25, min_samples=5).labels
    assert np.array_equal(ours, DBSCAN(eps=25, min_samples=5).fit_predict(xy))


@pytest.mark.parametrize("method", ["hdbscan", "optics"])
def test_other_methods_and_3d(method):
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0, 0], [1000, 0, 0], [0, 1000, 200]])
    xyz = np.concatenate([c + rng.normal(0, 15, (60, 3)) for c in centres])
    df = pd.DataFrame(xyz, columns=["x_nm", "y_nm", "z_nm"])
    c = cluster_localizations(df, method, eps_nm=60, min_samples=5)
    assert c.n_clusters == 3 and "volume_nm3" in c.clusters and "z_nm" in c.clusters
    with pytest.raises(InputError, match="unknown clustering"):
        cluster_localizations(df, "kmeans")


def test_fiducial_drift_tracks_truth():
    d = simulate_blinking(
        n_emitters=3000, precision_nm=10, seed=3, n_fiducials=3, drift_nm=(300, -150),
        n_frames=5000,
    )  # fmt: skip
    r = fiducial_drift(d)
    assert len(r.fiducials_nm) == 3
    truth = blinking_drift(r.segment_frames, 5000, (300, -150))
    err = r.drift_nm - truth
    err -= err.mean(0)
    assert np.sqrt(np.mean(err**2)) < 3.0  # beads: 2 nm precision, median of 3
    assert len(r.data) == (~d["fiducial"]).sum()
    # user-picked beads give the same drift
    r2 = fiducial_drift(d, positions_nm=r.fiducials_nm)
    assert np.allclose(r2.drift_nm, r.drift_nm)
    with pytest.raises(InputError, match="no fiducials"):
        fiducial_drift(d[~d["fiducial"]])


def test_nucleus_features_separate_presets():
    som = simulate_nucleus("somatic", seed=1, n_localizations=30_000)
    plu = simulate_nucleus("pluripotent", seed=1, n_localizations=30_000)
    fs = nucleus_features(som[["x_nm", "y_nm"]].to_numpy(), som["frame"].to_numpy())
    fp = nucleus_features(plu[["x_nm", "y_nm"]].to_numpy(), plu["frame"].to_numpy())
    assert set(fs) == set(fp) and all(np.isfinite(v) for v in fs.values())
    assert fs["cluster_mean_size"] > fp["cluster_mean_size"]  # larger, denser clutches
    assert fs["ripley_l_50nm"] > 0 and fp["ripley_l_50nm"] > 0  # clustered, not random
    assert 5 < fs["nena_nm"] < 25
    empty = nucleus_features(np.empty((0, 2)))
    assert np.isnan(empty["area_um2"])


def test_nucleus_feature_table_and_cell_table():
    from napari_nucleus_ai.samples.storm import simulate_field
    from napari_nucleus_ai.segment.storm import segment_storm_nuclei

    df = simulate_field(n_nuclei=2, seed=1, n_localizations=8000, field_nm=(30_000, 30_000))
    table = nucleus_feature_table(df)
    assert list(table["label"]) == [1, 2] and "ripley_l_100nm" in table
    seg = segment_storm_nuclei(df)
    cells = seg.table(nanostructure=True)
    assert "nano_density_per_um2" in cells and len(cells) == seg.n
    assert "nano_density_per_um2" not in seg.table()
    joined = add_nanostructure(seg.table(), seg.localizations)
    assert np.allclose(joined["nano_n_localizations"], joined["n_localizations"])


def test_cli_measure(tmp_path, capsys, blinks):
    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.localizations import write_thunderstorm_csv

    src = tmp_path / "blinks.csv"
    write_thunderstorm_csv(blinks.drop(columns=["fiducial"]), src)
    out = tmp_path / "summary.csv"
    rc = main(["measure", str(src), "--merge", "--radius", "50", "--dark", "2", "--nena",
               "--frc", "--out", str(out), "--json"])  # fmt: skip
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert abs(summary["nena_nm"] - 10) < 1.0
    assert abs(summary["n_merged"] - blinks.attrs["n_bursts"]) / blinks.attrs["n_bursts"] < 0.02
    assert pd.read_csv(out).shape[0] == 1
    cl = tmp_path / "clusters.csv"
    assert main(["measure", str(src), "--cluster", "dbscan", "--eps", "40", "--min", "10",
                 "--out", str(cl)]) == 0  # fmt: skip
    assert "radius_of_gyration_nm" in pd.read_csv(cl).columns
    capsys.readouterr()
    assert main(["measure", str(src), "--nena", "--nena-model", "picasso", "--out", str(out),
                 "--json"]) == 0  # fmt: skip
    assert abs(json.loads(capsys.readouterr().out)["nena_nm"] - 10) < 1.0
    assert main(["measure", str(src), "--nena", "--nena-model", "locan", "--nena-range", "50",
                 "--out", str(out), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert abs(summary["nena_nm"] - 10) < 1.0 and summary["nena_pairs"] > 100
    assert main(["measure", str(src), "--out", str(cl)]) == 1
    assert "nothing to measure" in capsys.readouterr().err
    assert main(["measure", str(src), "--cluster", "hdbscan", "--density-factor", "-1",
                 "--out", str(cl)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--density-factor" in err and len(err.strip().splitlines()) == 1
    assert main(["measure", str(src), "--cluster", "hdbscan", "--min", "15",
                 "--density-factor", "0", "--out", str(cl)]) == 0  # fmt: skip
    raw = len(pd.read_csv(cl))
    assert main(["measure", str(src), "--cluster", "hdbscan", "--min", "15",
                 "--out", str(cl)]) == 0  # fmt: skip
    assert len(pd.read_csv(cl)) < raw  # the floor drops the background's clusters


# ------------------------------------------------------------------ real files
needs_data = pytest.mark.skipif(not DATA.exists(), reason="shared SMLM data not present")


@needs_data
def test_real_picasso_nena_and_merge():
    from napari_nucleus_ai.localizations import read_localizations

    path = DATA / "picasso" / "testdata_locs.hdf5"
    if not path.exists():
        pytest.skip(f"{path} absent")
    df = read_localizations(path).data
    r = nena(df)
    assert 1 < r.precision_nm < 50
    m = merge_blinks(df, radius_nm=50, max_dark_frames=1)
    assert 0 < m.n_after <= len(df)


@needs_data
def test_real_colicoords_dbscan_matches_sklearn():
    from sklearn.cluster import DBSCAN

    from napari_nucleus_ai.localizations import read_localizations

    path = DATA / "colicoords" / "01_storm.csv"
    if not path.exists():
        pytest.skip(f"{path} absent")
    df = read_localizations(path).data
    xy = df[["x_nm", "y_nm"]].to_numpy(np.float64)
    ours = cluster_localizations(df, "dbscan", eps_nm=20, min_samples=5, hull=False).labels
    assert np.array_equal(ours, DBSCAN(eps=20, min_samples=5).fit_predict(xy))
    assert 1 < nena(df).precision_nm < 60
