"""Crop framing (``input.field``): auto-sizing to the cells, and the same framing for a crop
file given to ``predict`` and for a window cut around a segmented cell by ``classify``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_nucleus_ai.classify.predict import predict_items  # noqa: E402
from napari_nucleus_ai.classify.trainset import TrainingSet  # noqa: E402
from napari_nucleus_ai.models.framing import auto_field, centre_field, field_of  # noqa: E402
from test_morph import cell  # noqa: E402

BACKGROUND = (245, 225, 205)


def _padded(img: np.ndarray, factor: int) -> np.ndarray:
    """``img`` in the middle of a canvas ``factor`` times larger (pale background)."""
    s = img.shape[0]
    out = np.empty((s * factor, s * factor, 3), np.uint8)
    out[:] = BACKGROUND
    o = (s * factor - s) // 2
    out[o : o + s, o : o + s] = img
    return out


def _set(factor: int = 1, n: int = 6) -> TrainingSet:
    samples = [_padded(cell(k, 10 * k + i), factor) for k in (1, 3) for i in range(n)]
    labels = [0] * n + [1] * n
    return TrainingSet(
        samples, labels, ["mono", "poly"], "brightfield_rgb", pixel_size=0.5, unit="um"
    )


def test_centre_field_keeps_the_centre():
    img = np.arange(100 * 80).reshape(100, 80)
    out = centre_field(img, 0.5)
    assert out.shape == (40, 40)
    assert out[0, 0] == img[30, 20]  # centre square 80 px (rows 10..90), its middle 40
    assert centre_field(img, 1.0) is img


def test_auto_field_follows_the_cells():
    # the synthetic cell is a disc of 0.4 of the crop side: the field holds it with margin
    tight = auto_field(_set(1).samples)
    loose = auto_field(_set(2).samples)  # the same cells in crops twice as large
    assert 0.5 <= tight <= 0.7
    assert loose == pytest.approx(tight / 2, abs=0.04)
    assert auto_field([]) == 1.0


def test_field_is_recorded_and_used_the_same_way_by_predict_and_classify(tmp_path):
    from napari_nucleus_ai.classify.cells import classify_cells
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.models.framing import window_size_px, window_source_px
    from napari_nucleus_ai.models.package import load_model

    train(
        _set(2),
        tmp_path / "m.zip",
        arch="morph",
        crop_size=48,
        epochs=1,
        threads=1,
        tta=1,
        params={"cnn": False},
        val_fraction=0.0,
        frame=False,  # the field, not the canonical frame (tests/test_cellframe.py)
    )
    pkg = load_model(tmp_path / "m.zip")
    field = field_of(pkg.card)
    assert 0.2 <= field <= 0.4  # the cells fill ~0.2 of the 192 px crops
    spec = pkg.card["input"]
    assert spec["pixel_size"] == pytest.approx(0.5 * 192 * field / 48)
    assert window_source_px(pkg.card, 0.5, "um") == pytest.approx(192, rel=1e-6)
    assert window_size_px(pkg.card) == round(48 / field)

    # two cells on a large pale image, labelled, classified at the training pixel size
    crops = [_padded(cell(1, 123), 2), _padded(cell(3, 456), 2)]
    image = np.empty((192, 400, 3), np.uint8)
    image[:] = BACKGROUND
    image[:, :192], image[:, 208:400] = crops
    labels = np.zeros(image.shape[:2], np.int32)
    labels[76:116, 76:116], labels[76:116, 284:324] = 1, 2
    got = classify_cells(pkg, image, labels, scale=0.5, unit="um", tta=1)
    ref = predict_items(pkg, crops, tta=1)
    probs = got.table[[f"p_{c}" for c in pkg.classes]].to_numpy()
    assert list(got.table["class"]) == ["mono", "poly"] == list(ref.labels)
    assert np.abs(probs - ref.probs).max() < 0.05

    with pytest.raises(InputError, match="field"):
        train(_set(1), None, arch="morph", field=1.5, epochs=1)
    with pytest.raises(InputError, match="field"):
        train(_set(1), None, arch="morph", field="wide", epochs=1)


def test_other_architectures_see_the_whole_crop_unless_asked(tmp_path):
    from napari_nucleus_ai.classify.train import train

    opts = dict(arch="smallcnn", crop_size=32, epochs=1, threads=1, val_fraction=0.0)
    assert "field" not in train(_set(1, 3), None, **opts).card["input"]
    assert train(_set(1, 3), None, field=0.8, **opts).card["input"]["field"] == 0.8


def test_retrain_cuts_cells_as_classify_does_for_a_framed_model(tmp_path, monkeypatch):
    """The corrections retrain learns from are the windows classify gives the network."""
    import pandas as pd

    from napari_nucleus_ai.models import package as package_mod
    from napari_nucleus_ai.models.crops import cell_windows, read_crop
    from napari_nucleus_ai.models.framing import window_side, window_size_px, window_source_px
    from napari_nucleus_ai.models.inputs import raw_inputs
    from napari_nucleus_ai.review import retrain
    from napari_nucleus_ai.review.export import ExportItem

    field = 0.3
    card = {
        "modality": "brightfield_rgb",
        "input": {
            "crop_size": 48,
            "channels": 3,
            "pixel_size": 0.5 * 192 * field / 48,
            "unit": "um",
            "field": field,
        },
    }
    crops = [_padded(cell(1, 123), 2), _padded(cell(3, 456), 2)]
    image = np.empty((192, 400, 3), np.uint8)
    image[:] = BACKGROUND
    image[:, :192], image[:, 208:400] = crops
    labels = np.zeros(image.shape[:2], np.int32)
    labels[76:116, 76:116], labels[76:116, 284:324] = 1, 2
    scale = 0.5
    cents = np.array([[95.5, 95.5], [95.5, 303.5]])
    table = pd.DataFrame(
        {
            "label": [1, 2],
            "centroid_y": cents[:, 0] * scale,
            "centroid_x": cents[:, 1] * scale,
            "class": ["mono", "poly"],
            "unit": "um",
        }
    )
    item = ExportItem("field.png", table, {1: "mono", 2: "poly"}, image, labels, None, (scale,) * 2)

    seen = {}

    def fake_retrain(base, folder, out, **options):
        seen["crops"] = [read_crop(p) for p in sorted(Path(folder).rglob("*.png"))]
        return None
        yield

    monkeypatch.setattr(package_mod, "as_package", lambda m: m)
    monkeypatch.setattr(retrain, "retrain_gen", fake_retrain)
    base = type("Package", (), {"card": card})()
    from napari_nucleus_ai.core.progress import run_sync

    run_sync(retrain.retrain_from_items(base, [item]))
    assert len(seen["crops"]) == 2
    assert window_side(card, "um") == pytest.approx(window_source_px(card, scale, "um") * scale)

    def net_inputs(windows):
        return raw_inputs(list(windows), card)[0]

    from_classify = net_inputs(
        cell_windows(image, cents, window_source_px(card, scale, "um"), window_size_px(card))
    )
    from_retrain = net_inputs(seen["crops"])
    unframed = net_inputs(  # what retrain cut before: the network's field, not the crop's
        cell_windows(image, cents, window_source_px(card, scale, "um") * field, 48)
    )
    same = np.abs(from_retrain - from_classify).mean()
    assert same < 0.02
    assert np.abs(unframed - from_classify).mean() > 5 * same
