"""The Measure section's density floor (HDBSCAN / OPTICS noise rule) in the Localizations dock."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
PLUGIN = "napari-nucleus-ai"


def test_measure_section_hdbscan_density_floor(make_napari_viewer, tmp_path):
    from sklearn.metrics import adjusted_rand_score

    from napari_nucleus_ai.localizations import write_thunderstorm_csv
    from napari_nucleus_ai.samples.storm import simulate_blinking

    truth = simulate_blinking(
        n_emitters=1500, field_nm=(6000, 6000), precision_nm=8, seed=3, clustered_fraction=0.6,
        cluster_sd_nm=25, emitters_per_cluster=40, bursts_mean=1.5, on_frames_mean=1.5,
    )  # fmt: skip
    path = write_thunderstorm_csv(truth, str(tmp_path / "clustered.csv"))
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Localizations")
    w.sync = True
    w.open_file(path=str(path))
    layer = viewer.layers[w.layer.value]
    w.m_nena.value = False
    assert not w.m_floor.enabled  # DBSCAN has no density floor to set
    w.m_cluster.value = "hdbscan"
    assert w.m_floor.enabled
    w.m_min.value = 15
    assert w.m_floor.value == 5.0  # the core's default
    w.m_floor.value = 0.0  # scikit-learn's labels: the background forms clusters too
    w.measure()
    raw = w.last_measure.cluster
    assert raw.params["density_factor"] == 0.0
    w.m_floor.value = 5.0
    w.measure()
    floored = w.last_measure.cluster
    labels = viewer.layers[f"{layer.name} clusters"].features["cluster"].to_numpy()
    assert floored.n_clusters < raw.n_clusters
    assert adjusted_rand_score(truth["cluster"], labels) >= 0.9
    assert adjusted_rand_score(truth["cluster"], raw.labels) < 0.9
