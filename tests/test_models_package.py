"""Model packages: save/load round trips, refusal of corrupt or unsafe files, kinds, backbones."""

from __future__ import annotations

import json
import sys
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_nucleus_ai.classify.predict import predict_items  # noqa: E402
from napari_nucleus_ai.classify.train import make_card  # noqa: E402
from napari_nucleus_ai.classify.trainset import TrainingSet  # noqa: E402
from napari_nucleus_ai.core.errors import InputError  # noqa: E402
from napari_nucleus_ai.models import kinds  # noqa: E402
from napari_nucleus_ai.models.nets.registry import build_architecture  # noqa: E402
from napari_nucleus_ai.models.package import (  # noqa: E402
    clear_cache,
    load_model,
    read_package,
    save_model,
    validate_card,
)


def _card(n_classes=3, arch="smallcnn", modality="brightfield_rgb"):
    ts = TrainingSet(
        [np.zeros((40, 40, 3), np.uint8)] * n_classes,
        list(range(n_classes)),
        [f"c{i}" for i in range(n_classes)],
        modality,
    )
    card = make_card(ts, arch=arch, name="t", crop_size=32, params={"widths": [4, 8]})
    card["input"]["normalisation"] = {"mean": [0.5] * 3, "std": [0.2] * 3}
    return card


def _modules(card, members=1):
    torch.manual_seed(0)
    return [
        build_architecture(
            card["architecture"]["name"], 3, len(card["classes"]), card["architecture"]["params"]
        ).eval()
        for _ in range(members)
    ]


@pytest.mark.parametrize("suffix", ["", ".zip", ".safetensors"])
def test_round_trip_same_predictions(tmp_path, suffix):
    card, mods = _card(), None
    mods = _modules(card, members=2)
    out = save_model(card, mods, tmp_path / f"model{suffix}")
    clear_cache()
    pkg = load_model(out)
    assert pkg.classes == ["c0", "c1", "c2"] and len(pkg.modules) == 2
    assert pkg.card["members"] == 2 and pkg.colours[0].startswith("#")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(mods, pkg.modules, strict=True):
            assert torch.allclose(a(x), b(x), atol=1e-6)
    assert load_model(out) is pkg  # cached


def test_predict_returns_probabilities_and_uncertainty(tmp_path):
    card = _card()
    card["uncertainty"].update(tta=2, mc_dropout=2)
    pkg = load_model(save_model(card, _modules(card), tmp_path / "m"))
    crops = [
        np.random.default_rng(i).integers(0, 255, (50, 60, 3), dtype=np.uint8) for i in range(5)
    ]
    pred = predict_items(pkg, crops)
    assert pred.probs.shape == (5, 3)
    np.testing.assert_allclose(pred.probs.sum(1), 1, atol=1e-5)
    assert pred.samples.shape == (2 * 3, 5, 3)  # 2 TTA x (1 + 2 MC passes)
    assert np.all((pred.uncertainty >= 0) & (pred.uncertainty <= 1))
    assert np.all(pred.disagreement <= pred.entropy + 1e-9)
    df = pred.to_frame(path=[f"{i}.png" for i in range(5)])
    assert list(df.columns[:2]) == ["path", "class"] and "p_c2" in df


def test_pickle_checkpoint_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1)}, p)
    with pytest.raises(InputError, match="pickle") as e:
        load_model(p)
    assert "\n" not in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda d: (d / "card.json").write_text("{not json"), "not valid JSON"),
        (
            lambda d: (d / "card.json").write_text(json.dumps({"format": "other"})),
            "invalid model card",
        ),
        (
            lambda d: (d / "weights.safetensors").write_bytes(
                b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage"
            ),
            "safetensors",
        ),
        (
            lambda d: (d / "weights.safetensors").write_bytes(
                (d / "weights.safetensors").read_bytes()[:300]
            ),
            "safetensors",
        ),
        (lambda d: (d / "weights.safetensors").unlink(), "no weights.safetensors"),
    ],
)
def test_corrupt_packages_refused_with_one_line(tmp_path, damage, match):
    card = _card()
    out = save_model(card, _modules(card), tmp_path / "m")
    damage(out)
    clear_cache()
    with pytest.raises(InputError, match=match) as e:
        load_model(out)
    assert "\n" not in str(e.value)


def test_weights_of_another_architecture_refused(tmp_path):
    card = _card()
    out = save_model(card, _modules(card), tmp_path / "m")
    other = json.loads((out / "card.json").read_text())
    other["architecture"]["params"]["widths"] = [4, 16]
    (out / "card.json").write_text(json.dumps(other))
    with pytest.raises(InputError, match="do not match"):
        load_model(out, cache=False)


def test_nan_weights_refused(tmp_path):
    card = _card()
    mods = _modules(card)
    with torch.no_grad():
        mods[0].head.weight[0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        load_model(save_model(card, mods, tmp_path / "m"), cache=False)


def test_zip_bombs_and_duplicates_refused(tmp_path):
    card = _card()
    good = save_model(card, _modules(card), tmp_path / "m.zip")
    bad = tmp_path / "dup.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("x/card.json", src.read("card.json"))
    with pytest.raises(InputError, match="2 'card.json'"):
        read_package(bad)
    trunc = tmp_path / "trunc.zip"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(InputError):
        read_package(trunc)


def test_card_validation_messages():
    card = _card()
    validate_card(card)
    for mutate, match in [
        (lambda c: c["classes"].append(dict(c["classes"][0])), "unique"),
        (lambda c: c["classes"][0].update(colour="red"), "colour"),
        (lambda c: c["input"].update(pixel_size=-1), "pixel_size"),
        (lambda c: c.update(kind="alien"), "unknown model kind"),
        (lambda c: c.update(format_version=99), "newer"),
        (lambda c: c["calibration"].update(temperature=float("nan")), "temperature"),
        (lambda c: c["architecture"].update(name="resnet9000"), "unknown classifier architecture"),
    ]:
        c = json.loads(json.dumps(card))
        mutate(c)
        with pytest.raises(InputError, match=match):
            validate_card(c)


def test_kind_registry_dispatch(tmp_path, monkeypatch):
    """A new kind registers itself and packages with its card load through it."""
    calls = []

    def build(card):
        calls.append("build")
        return [torch.nn.Linear(2, len(card["classes"]))]

    toy = kinds.Kind(
        name="toy",
        archs=("toyarch",),
        build=build,
        fit=None,
        predict=lambda pkg, x, o: np.full((1, len(x), 3), 1 / 3),
    )
    monkeypatch.setitem(kinds._REGISTRY, "toy", toy)
    assert kinds.kind_for_arch("toyarch") is toy
    assert "smallcnn" in kinds.all_archs() and "classifier" in kinds.all_kinds()
    card = _card()
    card["kind"] = "toy"
    pkg = load_model(save_model(card, [torch.nn.Linear(2, 3)], tmp_path / "toy"), cache=False)
    assert calls == ["build"] and pkg.kind is toy
    pred = predict_items(pkg, [np.zeros((32, 32, 3), np.uint8)] * 2)
    assert np.allclose(pred.uncertainty, 1.0)


def test_missing_timm_gives_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(InputError, match=r"backbones.*pip install") as e:
        build_architecture("densenet121", 3, 4)
    assert "\n" not in str(e.value)


def test_unknown_arch_param_refused():
    with pytest.raises(InputError, match="no parameter"):
        build_architecture("smallcnn", 3, 2, {"depth": 3})
