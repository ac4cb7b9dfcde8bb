"""Uncertainty arithmetic, crop windows in physical units, STORM patches."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nucleus_ai.models.uncertainty import auroc, balanced_accuracy, summarise


def test_entropy_and_disagreement():
    agree = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])  # unsure but consistent
    split = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # confident members that disagree
    sure = np.array([[[0.99, 0.01]], [[0.98, 0.02]]])
    a, s, c = (summarise(v, ["x", "y"], 0.5) for v in (agree, split, sure))
    assert a.entropy[0] == pytest.approx(1.0) and a.disagreement[0] == pytest.approx(0.0, abs=1e-9)
    assert s.entropy[0] == pytest.approx(1.0) and s.disagreement[0] == pytest.approx(1.0, abs=1e-6)
    assert c.uncertainty[0] < 0.2 and c.labels == ["x"]
    assert a.labels == ["unidentified"] and a.predicted == ["x"]


def test_auroc_and_balanced_accuracy():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert np.isnan(auroc([0.1], [True]))
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == 0.5


def test_cell_windows_follow_physical_size():
    from napari_nucleus_ai.models.crops import cell_windows
    from napari_nucleus_ai.models.framing import window_source_px

    card = {"input": {"crop_size": 32, "pixel_size": 0.4, "unit": "um"}}
    assert window_source_px(card, 0.1, "um") == pytest.approx(128)
    assert window_source_px(card, 200, "nm") == pytest.approx(64)
    img = np.zeros((200, 200), np.float32)
    img[90:110, 90:110] = 1.0  # a 20 px square = 2 um at 0.1 um/px
    w = cell_windows(img, np.array([[99.5, 99.5]]), 128, 32)[0, ..., 0]
    assert w.shape == (32, 32)
    # 2 um of a 12.8 um window -> 5 of 32 pixels across, centred
    assert 4 <= (w[16] > 0.5).sum() <= 6 and w[16, 16] > 0.9 and w[0, 0] == 0


def test_storm_patches_keep_nanoscale_pixels():
    from napari_nucleus_ai.models.crops import nucleus_patches, render_nucleus

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 3000, (20000, 2))
    img = render_nucleus(xy, 10.0)
    assert img.shape[0] >= 300  # 3 um at 10 nm, not a thumbnail
    p1 = nucleus_patches(img, 64, 8, 10.0)
    p2 = nucleus_patches(img, 64, 8, 10.0)
    assert p1.shape == (8, 64, 64) and np.array_equal(p1, p2)  # inference patches are fixed
    p3 = nucleus_patches(img, 64, 8, 10.0, rng=np.random.default_rng(1))
    assert not np.array_equal(p1, p3)
