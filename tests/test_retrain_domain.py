"""Retraining on a new microscope's corrections refits the domain-shift score with them."""

from __future__ import annotations

import numpy as np
import pytest


def _write(root, cells_by_class) -> None:
    from PIL import Image

    for name, cells in cells_by_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i, c in enumerate(cells):
            Image.fromarray(c).save(root / name / f"{i:03d}.png")


def test_retrained_model_accepts_cells_like_its_corrections(tmp_path):
    pytest.importorskip("torch")
    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.review.retrain import retrain_gen
    from test_morph import cell
    from test_trust import _other_stain

    base_dir, corr_dir = tmp_path / "base", tmp_path / "corrections"
    _write(
        base_dir,
        {n: [cell(k, 100 * k + i) for i in range(24)] for n, k in (("mono", 1), ("poly", 3))},
    )
    _write(
        corr_dir,
        {n: [_other_stain(k, 300 + i) for i in range(8)] for n, k in (("mono", 1), ("poly", 3))},
    )
    opts = dict(arch="morph", crop_size=48, epochs=1, threads=1, tta=1, val_fraction=0.4)
    base = train(base_dir, tmp_path / "base.zip", params={"cnn": False, "imagenet": None}, **opts)
    fresh = [_other_stain(k, 800 + i) for k in (1, 3) for i in range(8)]
    before = predict_items(base.package, fresh)
    assert np.mean(before.extra["out_of_domain"]) >= 0.8  # the new look is flagged

    res = run_sync(retrain_gen(base.path, corr_dir, tmp_path / "new.zip", threads=1))
    from napari_nucleus_ai.models.package import load_model

    new = load_model(res["out"])
    dom = new.card["trust"]["domain"]
    assert dom["refit"]["n_calibration"] >= 10
    after = predict_items(new, fresh)
    assert np.mean(after.extra["out_of_domain"]) <= 0.5
    # cells of the base model's own look are still in the reference, not flagged en masse
    seen = predict_items(new, [cell(k, 900 + i) for k in (1, 3) for i in range(8)])
    assert np.mean(seen.extra["out_of_domain"]) <= 0.5
