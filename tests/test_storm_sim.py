"""Simulated STORM nuclei: determinism, exact counts, presets that differ as documented."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nucleus_ai.samples.storm import (
    PRESETS,
    USE_CASES,
    labels_from_outlines,
    make_params,
    simulate_field,
    simulate_nucleus,
)

N = 30_000


def _clutch_spread(df):
    """Mean distance of a clutch's localizations to the clutch mean (precision included)."""
    d = df[df.clutch >= 0]
    g = d.groupby("clutch")[["x_nm", "y_nm"]]
    centred = d[["x_nm", "y_nm"]].to_numpy() - g.transform("mean").to_numpy()
    sizes = g.size().reindex(d.clutch).to_numpy()
    ok = sizes >= 5
    return float(np.hypot(*centred[ok].T).mean())


def test_deterministic_exact_count_and_columns():
    a = simulate_nucleus("somatic", seed=4, n_localizations=N)
    b = simulate_nucleus("somatic", seed=4, n_localizations=N)
    assert len(a) == N and a.equals(b)
    assert list(a.columns[:6]) == ["x_nm", "y_nm", "frame", "photons", "precision_nm", "channel"]
    assert a.precision_nm.between(5, 25).all() and a.frame.min() >= 1
    assert not simulate_nucleus("somatic", seed=5, n_localizations=N).equals(a)
    # blinking: emitters give repeated localizations
    per = a[a.emitter >= 0].groupby("emitter").size()
    assert 2.0 < per.mean() < 4.5 and per.max() > 5


def test_clutch_size_is_the_only_difference():
    small = simulate_nucleus("somatic", seed=7, n_localizations=N, clutch_size_nm=15)
    large = simulate_nucleus("somatic", seed=7, n_localizations=N, clutch_size_nm=45)
    assert len(small) == len(large) == N
    for col in ("frame", "photons", "precision_nm", "clutch", "emitter", "channel"):
        assert (small[col].to_numpy() == large[col].to_numpy()).all(), col
    assert small.attrs["outline_nm"] == large.attrs["outline_nm"]
    # same clutch centres: per-clutch means agree to within the clutch spread
    ms = small[small.clutch >= 0].groupby("clutch")[["x_nm", "y_nm"]].mean()
    ml = large[large.clutch >= 0].groupby("clutch")[["x_nm", "y_nm"]].mean()
    assert np.median(np.hypot(*(ms - ml).to_numpy().T)) < 20
    # ...but localizations spread more around larger clutches
    assert _clutch_spread(large) > _clutch_spread(small) + 3


def test_presets_differ_as_documented():
    assert set(PRESETS) >= {"somatic", "pluripotent", "hsv1_infected", "mock", "cancer", "normal"}
    assert all(a in PRESETS and b in PRESETS for a, b in USE_CASES.values())
    som = simulate_nucleus("somatic", seed=1, n_localizations=N)
    plu = simulate_nucleus("pluripotent", seed=1, n_localizations=N)
    assert _clutch_spread(som) > _clutch_spread(plu)
    assert (
        som[som.clutch >= 0].groupby("clutch").size().mean()
        > plu[plu.clutch >= 0].groupby("clutch").size().mean()
    )

    def rim_share(df):
        c = np.asarray(df.attrs["center_nm"])
        out = np.asarray(df.attrs["outline_nm"])[:, ::-1]
        r_out = np.hypot(*(out - c).T).mean()
        r = np.hypot(df.x_nm - c[0], df.y_nm - c[1])
        return float((r > 0.8 * r_out).mean()), float((r < 0.4 * r_out).mean())

    hsv_rim, hsv_core = rim_share(simulate_nucleus("hsv1_infected", seed=2, n_localizations=N))
    mock_rim, mock_core = rim_share(simulate_nucleus("mock", seed=2, n_localizations=N))
    assert hsv_rim > mock_rim + 0.15 and hsv_core < mock_core / 3

    def area(df):
        y, x = np.asarray(df.attrs["outline_nm"]).T
        return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))

    cancer = simulate_nucleus("cancer", seed=3, n_localizations=N)
    normal = simulate_nucleus("normal", seed=3, n_localizations=N)
    assert area(cancer) > 1.4 * area(normal)
    with pytest.raises(ValueError):
        make_params("nope")


def test_second_colour_and_drift():
    df = simulate_nucleus("somatic", seed=1, n_localizations=N, second_channel_localizations=3000)
    assert (df.channel == "1").sum() == 3000 and (df.channel == "0").sum() == N


def test_field_of_nuclei_and_ground_truth_labels():
    from napari_nucleus_ai.localizations.render import render_localizations

    f = simulate_field(
        n_nuclei=3,
        presets=("somatic", "pluripotent", "hsv1_infected"),
        seed=1,
        n_localizations=8000,
    )
    assert sorted(f.nucleus.unique()) == [0, 1, 2, 3]
    assert f[f.nucleus > 0].groupby("nucleus").size().eq(8000).all()
    nuclei = f.attrs["nuclei"]
    assert [n["preset"] for n in nuclei] == ["somatic", "pluripotent", "hsv1_infected"]
    r = render_localizations(f, pixel_size_nm=100, method="histogram")
    labels = labels_from_outlines(nuclei, r.image.shape, r.scale, r.translate)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    # most of a nucleus's localizations fall inside its own label
    iy = ((f.y_nm - r.translate[0]) / 100 + 0.5).astype(int).clip(0, labels.shape[0] - 1)
    ix = ((f.x_nm - r.translate[1]) / 100 + 0.5).astype(int).clip(0, labels.shape[1] - 1)
    hit = labels[iy, ix] == f.nucleus
    assert hit[f.nucleus > 0].mean() > 0.95
