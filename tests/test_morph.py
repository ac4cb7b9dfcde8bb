"""The ``morph`` architecture: morphology descriptor, logistic head, package round trip."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_nucleus_ai.classify.predict import predict_items  # noqa: E402
from napari_nucleus_ai.classify.train import train  # noqa: E402
from napari_nucleus_ai.classify.trainset import TrainingSet  # noqa: E402
from napari_nucleus_ai.models.nets import morphology as M  # noqa: E402

PBC = (
    Path(
        os.environ.get(
            "NAPARI_NUCLEUS_AI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    / "smear"
    / "pbc"
)


def cell(lobes: int, seed: int, size: int = 96, cyto=(200, 170, 220)) -> np.ndarray:
    """A synthetic stained white cell: pale cytoplasm disc, ``lobes`` dark purple lobes,
    two pink red cells, pale background; RGB uint8."""
    rng = np.random.default_rng(seed)
    img = np.empty((size, size, 3))
    img[:] = (245, 225, 205)
    yy, xx = np.mgrid[:size, :size].astype(float)
    c = size / 2 - 0.5
    for ang in rng.uniform(0, 2 * np.pi, 2):  # red cells at the border
        ry, rx = c + 0.38 * size * np.sin(ang), c + 0.38 * size * np.cos(ang)
        img[(yy - ry) ** 2 + (xx - rx) ** 2 < (0.09 * size) ** 2] = (225, 170, 170)
    img[(yy - c) ** 2 + (xx - c) ** 2 < (0.2 * size) ** 2] = cyto
    phase = rng.uniform(0, 2 * np.pi)
    for k in range(lobes):
        a = phase + 2 * np.pi * k / lobes
        off = 0.0 if lobes == 1 else 0.08 * size
        ly, lx = c + off * np.sin(a), c + off * np.cos(a)
        r = (0.12 if lobes == 1 else 0.055) * size
        img[(yy - ly) ** 2 + (xx - lx) ** 2 < r * r] = (90, 40, 130)
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _f(img):
    return M.describe_cell(img.astype(np.float32) / 255)


def test_descriptor_is_rotation_and_flip_robust():
    imgs = [cell(k, s) for k in (1, 3) for s in range(4)]
    feats = np.stack([_f(i) for i in imgs])
    spread = feats.std(0) + 1e-3
    base = feats[0]
    for t in (np.rot90(imgs[0], 1), np.rot90(imgs[0], 2), imgs[0][:, ::-1]):
        d = np.abs(_f(np.ascontiguousarray(t)) - base) / spread
        assert np.median(d) < 0.05 and np.percentile(d, 95) < 0.5
    assert feats.shape[1] == M.N_FEATURES and np.isfinite(feats).all()


def test_nucleus_segmentation_sees_lobes():
    for lobes in (1, 3):
        od = M.optical_density(cell(lobes, 7).astype(np.float32) / 255)
        nuc = M.nucleus_mask(od)
        from scipy import ndimage as ndi

        assert ndi.label(nuc)[1] == lobes
        cellm = M.cell_mask(od, nuc)
        assert cellm.sum() > 1.5 * nuc.sum()  # the cytoplasm is part of the cell
        assert not cellm[0, 0]  # the background is not


def test_logistic_head_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    from napari_nucleus_ai.models.nets.morph import fit_logistic

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = (x[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int) + (x[:, 1] > 1)
    w, b = fit_logistic(x, y, 3, c=0.3)
    ref = LogisticRegression(C=0.3, max_iter=5000, tol=1e-8).fit(x, y)
    p = torch.softmax(torch.as_tensor(x, dtype=torch.float32) @ w.T + b, 1).numpy()
    assert np.abs(p - ref.predict_proba(x)).max() < 2e-3


def _tiny_set(n=8):
    samples = [cell(k, 10 * k + i) for k in (1, 3) for i in range(n)]
    return TrainingSet(samples, [0] * n + [1] * n, ["mono", "poly"], "brightfield_rgb")


@pytest.mark.parametrize("cnn", [False, True])
def test_morph_package_round_trip(tmp_path, cnn):
    from napari_nucleus_ai.classify.predict import saliency
    from napari_nucleus_ai.models.package import load_model

    res = train(
        _tiny_set(),
        tmp_path / "m.zip",
        arch="morph",
        crop_size=64,
        epochs=2,
        threads=1,
        tta=2,
        params={"cnn": cnn, "widths": [8, 16], "cnn_size": 32},
    )
    assert res.card["architecture"]["name"] == "morph"
    assert res.card["provenance"]["fitted"][0]["c"] in (0.03, 0.1, 0.3, 1.0)
    pkg = load_model(tmp_path / "m.zip")
    test = [cell(1, 99), cell(3, 98)]
    a, b = predict_items(res.package, test), predict_items(pkg, test)
    assert np.allclose(a.probs, b.probs, atol=1e-5)
    assert list(b.labels) == ["mono", "poly"]
    assert np.all((b.uncertainty >= 0) & (b.uncertainty <= 1))
    if cnn:
        sal = saliency(pkg, test[0])
        assert sal.shape == (64, 64) and np.isfinite(sal).all() and sal.max() > 0


def test_morph_refuses_grey_crops():
    from napari_nucleus_ai.core.errors import InputError

    grey = TrainingSet(
        [cell(1, i)[..., 0] for i in range(6)], [0, 0, 0, 1, 1, 1], ["a", "b"], "fluorescence"
    )
    with pytest.raises(InputError, match="RGB"):
        train(grey, None, arch="morph", crop_size=32, epochs=1)


def test_auto_arch_picks_morph_for_rgb_and_smallcnn_for_grey():
    from napari_nucleus_ai.classify.train import resolve_arch

    assert resolve_arch("auto", _tiny_set(2)) == "morph"
    grey = TrainingSet([np.zeros((8, 8))] * 2, [0, 1], ["a", "b"], "fluorescence")
    assert resolve_arch("auto", grey) == "smallcnn"
    assert resolve_arch("hybrid", grey) == "hybrid"


@pytest.mark.slow
@pytest.mark.skipif(not PBC.is_dir(), reason="shared PBC crops (../shared/data) not present")
def test_descriptor_alone_separates_real_pbc_classes():
    """Logistic regression on the descriptor, trained on 8 real crops per class, tested on
    the other 4 (32 unseen crops of 8 classes)."""
    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    ts = load_class_folders(PBC)
    rank = np.zeros(len(ts), int)
    for c in range(len(ts.classes)):
        idx = np.flatnonzero(ts.labels == c)
        rank[idx] = np.arange(len(idx))
    tr, te = np.flatnonzero(rank % 3 != 2), np.flatnonzero(rank % 3 == 2)
    res = train(
        ts.subset(tr),
        None,
        arch="morph",
        params={"cnn": False, "imagenet": None},  # the descriptor alone
        val_fraction=0.0,
        threads=1,
        tta=1,
    )
    pred = predict_items(res.package, ts.subset(te).samples)
    assert balanced_accuracy(ts.labels[te], pred.index) >= 0.7
