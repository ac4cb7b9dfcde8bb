"""The diffusion classifier's proposer: a morphology short list of classes, so the paired
trials are spent on two classes instead of all of them."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from conftest import SHARED_DATA  # noqa: E402
from napari_nucleus_ai.models.diffusion.proposer import candidates, fit_proposer, proposer_probs

PBC = SHARED_DATA / "smear" / "pbc"


def test_candidates_are_the_top_classes():
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.2, 0.6]])
    assert candidates(p, 2).tolist() == [
        [False, True, True],
        [True, False, True],
        [True, False, True],
    ]
    assert candidates(p, 9).all() and candidates(p, 1).sum(1).tolist() == [1, 1, 1]


def test_trained_package_spends_its_trials_on_the_proposed_classes(tmp_path):
    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.models.diffusion.kind import predict as kind_predict
    from napari_nucleus_ai.models.inputs import prepare
    from napari_nucleus_ai.models.package import load_model
    from test_diffusion_package import _write_class_folders

    names = _write_class_folders(tmp_path / "data", per_class=6)
    res = train(
        tmp_path / "data",
        tmp_path / "m.zip",
        arch="diffusion",
        crop_size=16,
        val_fraction=0.34,
        params={"base": 8, "mults": [1, 2], "dropout": 0.0},
        kind_options={"steps": 120, "lr": 3e-3},
    )
    prop = res.card["diffusion"]["proposer"]
    assert prop["top"] == 2 and len(prop["weight"]) == len(names)
    pkg = load_model(tmp_path / "m.zip")
    _write_class_folders(tmp_path / "test", per_class=3, seed=7)
    test = load_class_folders(tmp_path / "test")
    pred = predict_items(pkg, test.samples, device="cpu")
    ev, trials = pred.extra["evaluations"], pred.extra["trials"]
    assert (ev >= 1).all() and (ev <= 2 * prop["protocol"]["max_trials"]).all()
    assert (trials <= prop["protocol"]["max_trials"]).all()
    assert ((pred.probs > 0).sum(1) <= 2).all()  # classes never proposed get no probability
    wanted = candidates(proposer_probs(prop, test.samples), 2)
    assert wanted[np.arange(len(test)), pred.index].all()  # the winner is always a candidate
    assert (np.asarray(pred.index) == test.labels).mean() >= 0.6

    # with "prior", the decision is the denoising softmax times the proposer's probabilities
    # (the same trials: the noise plan is fixed), renormalised over the candidates
    assert prop["prior"] is True  # the default
    x, _ = prepare(test.samples, pkg.card)
    p_fused, fused = kind_predict(pkg, x, {"items": test.samples})
    pkg.card["diffusion"]["proposer"]["prior"] = False
    p_errors, _ = kind_predict(pkg, x, {"items": test.samples})
    pkg.card["diffusion"]["proposer"]["prior"] = True
    want = p_errors[0] * proposer_probs(prop, test.samples)
    np.testing.assert_allclose(p_fused[0], want / want.sum(1, keepdims=True), atol=1e-5)
    assert (fused["evaluations"] == np.asarray(ev)).all()  # the prior costs no evaluation

    # the exhaustive (naive) run and the proposer switched off still evaluate every class
    x, _ = prepare(test.samples, pkg.card)
    proto = pkg.card["diffusion"]["protocol"]
    k = proto["max_trials"]
    n_unc = min(proto["anomaly_trials"], k) if proto["anomaly"] == "unconditional" else 0
    _, naive = kind_predict(pkg, x, {"exhaustive": True, "items": test.samples})
    assert (naive["evaluations"] == len(names) * k + n_unc).all()
    _, off = kind_predict(pkg, x, {"propose": False, "items": test.samples})
    assert off["evaluations"].mean() > ev.mean()

    # the CLI: the proposer by default, --no-proposer for the pure protocol
    import pandas as pd

    from napari_nucleus_ai.cli import main

    runs = {}
    for flag in ([], ["--no-proposer"]):
        csv = tmp_path / f"p{len(flag)}.csv"
        cmd = ["predict", str(tmp_path / "m.zip"), str(tmp_path / "test"), "--out", str(csv)]
        assert main(cmd + ["--device", "cpu"] + flag) == 0
        runs[bool(flag)] = pd.read_csv(csv)["evaluations"]
    assert runs[False].max() <= 12 and runs[True].mean() > runs[False].mean()


@pytest.mark.slow
@pytest.mark.skipif(not PBC.is_dir(), reason="shared PBC crops (../shared/data) not present")
def test_proposer_keeps_the_true_class_of_unseen_real_cells():
    """Fitted on 8 real PBC crops per class, its top 2 hold the true class of >= 90 % of
    the 32 unseen crops (the rest are the diffusion model's to lose)."""
    from napari_nucleus_ai.classify.trainset import load_class_folders

    ts = load_class_folders(PBC)
    rank = np.zeros(len(ts), int)
    for c in range(len(ts.classes)):
        idx = np.flatnonzero(ts.labels == c)
        rank[idx] = np.arange(len(idx))
    tr, te = np.flatnonzero(rank % 3 != 2), np.flatnonzero(rank % 3 == 2)
    prop = fit_proposer([ts.samples[i] for i in tr], ts.labels[tr], len(ts.classes))
    assert 0.5 <= prop["field"] <= 0.8  # the PBC cells fill about a third of the crop
    p = proposer_probs(prop, [ts.samples[i] for i in te])
    top2 = candidates(p, 2)[np.arange(len(te)), ts.labels[te]]
    assert top2.mean() >= 0.9


def test_no_proposer_when_asked_or_for_grey_crops(tmp_path):
    from _diffusion_data import toy_crops
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import TrainingSet
    from napari_nucleus_ai.models.diffusion.kind import proposal

    x, y, names = toy_crops(per_class=4)
    rgb = [np.moveaxis((v + 1) / 2, 0, -1) for v in x]
    opts = dict(arch="diffusion", crop_size=16, val_fraction=0.0, kind_options={"steps": 4})
    small = {"base": 8, "mults": [1, 2]}
    off = train(
        TrainingSet(rgb, y, names, "brightfield_rgb"),
        None,
        params={**small, "proposer": False},
        **opts,
    )
    grey = train(
        TrainingSet([a.mean(-1) for a in rgb], y, names, "fluorescence"), None, params=small, **opts
    )
    for res in (off, grey):
        assert "proposer" not in res.card["diffusion"]
        assert proposal(res.card, rgb) == (None, {}, None)
