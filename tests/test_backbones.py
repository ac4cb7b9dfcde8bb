"""The published backbones (DenseNet-121, ResNeXt-50, EfficientNet-B0) through timm, for real.

timm needs a torchvision that matches torch, which the CPU torch of the main test environment
does not have; ``scripts/test.sh`` runs this file a second time in ``.venv-backbones`` (torch +
torchvision + timm, made by ``scripts/setup.sh --backbones``), where nothing here is skipped.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
try:  # timm imports torchvision, which may be missing or built for another torch
    import timm  # noqa: F401
except Exception as e:  # noqa: BLE001
    pytest.skip(
        f"the 'backbones' extra is not usable here ({type(e).__name__}); "
        "scripts/test.sh runs this file in .venv-backbones",
        allow_module_level=True,
    )

from napari_nucleus_ai.classify.predict import predict_items  # noqa: E402
from napari_nucleus_ai.classify.train import train  # noqa: E402
from napari_nucleus_ai.cli import main  # noqa: E402
from napari_nucleus_ai.models.package import load_model  # noqa: E402
from test_train_predict import blob, write_storm_classes  # noqa: E402

BACKBONES = ("densenet121", "resnext50_32x4d", "efficientnet_b0")


@pytest.mark.parametrize("arch", BACKBONES)
def test_backbone_trains_saves_and_reloads(arch, crop_folder, tmp_path):
    out = tmp_path / f"{arch}.zip"
    res = train(crop_folder, out, arch=arch, epochs=2, crop_size=32, threads=2, tta=1, seed=3)
    card = res.card
    assert card["architecture"]["name"] == arch
    # the weights are the timm module's own state dict, in safetensors, no pickle anywhere
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == ["card.json", "weights.safetensors"]
        assert json.loads(z.read("card.json"))["architecture"]["name"] == arch
    from safetensors.torch import load_file

    names = set(load_file(str(_extract(out, tmp_path))).keys())
    own = timm.create_model(arch, num_classes=2).state_dict().keys()
    assert names == {f"m0.{k}" for k in own}  # ensemble member 0
    # the package loaded from disk gives the same probabilities as the one in memory
    cells = [blob(0, 900), blob(1, 901), blob(0, 902)]
    again = load_model(out, cache=False)
    p0 = predict_items(res.package, cells, device="cpu").probs
    p1 = predict_items(again, cells, device="cpu").probs
    np.testing.assert_allclose(p0, p1, atol=1e-5)
    np.testing.assert_allclose(p1.sum(1), 1, atol=1e-5)


def _extract(zpath, tmp_path):
    with zipfile.ZipFile(zpath) as z:
        z.extract("weights.safetensors", tmp_path / "w")
    return tmp_path / "w" / "weights.safetensors"


def test_resnext_learns_and_predict_cli_writes_columns(crop_folder, tmp_path):
    """ResNeXt-50 (Matek 2019) from scratch separates two easy classes within a few epochs."""
    model = tmp_path / "rx.zip"
    args = ["train", str(crop_folder), "--out", str(model), "--arch", "resnext50_32x4d"]
    assert main([*args, "--epochs", "6", "--crop-size", "32", "--threads", "2", "--quiet"]) == 0
    paths = sorted(str(p) for p in crop_folder.glob("*/*.png"))
    csv = tmp_path / "p.csv"
    assert main(["predict", str(model), *paths, "--out", str(csv), "--tta", "1"]) == 0
    df = pd.read_csv(csv)
    assert list(df.columns[:5]) == ["path", "label", "uncertainty", "p_disc", "p_square"]
    truth = ["disc" if "/disc/" in p else "square" for p in paths]
    assert (df["predicted"] == truth).mean() >= 0.8


def test_densenet_on_storm_nuclei(tmp_path):
    """AINU's set-up: DenseNet-121 on nanoscale renders of localization files (one channel)."""
    from napari_nucleus_ai.classify.predict import predict_paths
    from napari_nucleus_ai.localizations.thunderstorm import write_thunderstorm_csv
    from napari_nucleus_ai.samples.storm import simulate_nucleus

    sim = write_storm_classes(tmp_path / "train")
    res = train(
        tmp_path / "train",
        tmp_path / "dn",
        arch="densenet121",
        epochs=1,
        crop_size=32,
        patches=4,
        patches_per_epoch=2,
        threads=2,
        tta=1,
    )
    assert res.card["modality"] == "storm" and res.card["input"]["channels"] == 1
    test = tmp_path / "n.csv"
    write_thunderstorm_csv(simulate_nucleus("default", seed=70, clutch_size_nm=45.0, **sim), test)
    df = predict_paths(tmp_path / "dn", [str(test)])
    assert df["path"].tolist() == [str(test)]
    np.testing.assert_allclose(df[["p_small", "p_large"]].sum(1), 1, atol=1e-5)


def test_densenet_starts_from_local_imagenet_style_weights(crop_folder, tmp_path):
    """A lab's own copy of a backbone's 1000-class weights: features copied, head left."""
    from safetensors.torch import save_file

    torch.manual_seed(5)
    src = timm.create_model("densenet121", num_classes=1000).state_dict()
    path = tmp_path / "densenet121.imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in src.items()}, str(path))
    res = train(
        crop_folder,
        None,
        arch="densenet121",
        init_weights=path,
        epochs=1,
        lr=0.0,
        weight_decay=0.0,
        crop_size=32,
        threads=2,
        tta=1,
    )
    own = res.package.modules[0].state_dict()
    convs = [k for k, v in src.items() if v.ndim == 4]
    assert all(torch.equal(own[k], src[k]) for k in convs)
    assert own["classifier.weight"].shape == (2, src["classifier.weight"].shape[1])
    prov = res.card["provenance"]["init_weights"]
    assert prov["file"] == path.name and prov["skipped"] == 2  # classifier weight and bias
