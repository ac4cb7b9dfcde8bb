"""The latent-diffusion model: autoencoder + UNet on latents, as a package, generating crops."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from _diffusion_data import toy_crops  # noqa: E402
from test_diffusion_package import _write_class_folders  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from napari_nucleus_ai.classify.train import train

    root = tmp_path_factory.mktemp("latentdata")
    names = _write_class_folders(root / "data", per_class=4)
    out = root / "latent.zip"
    train(
        root / "data",
        out,
        arch="latent-diffusion",
        crop_size=16,
        val_fraction=0.34,
        seed=0,
        params={"base": 8, "mults": [1, 2], "dropout": 0.0, "latent": {"width": 8}},
        kind_options={"steps": 20, "ae_steps": 10, "copies": 2, "lr": 3e-3},
    )
    return root, out, names


def test_latent_package_round_trips_and_stores_one_member(trained):
    from napari_nucleus_ai.models.package import clear_cache, load_model

    _, out, names = trained
    with zipfile.ZipFile(out) as zf:
        card = json.loads(zf.read("card.json"))
    assert card["architecture"]["name"] == "latent-diffusion"
    assert card["architecture"]["params"]["latent"] == {"channels": 4, "factor": 4, "width": 8}
    assert card["members"] == 1
    clear_cache()
    pkg = load_model(out)
    net = pkg.modules[0]
    assert hasattr(net, "ae") and hasattr(net, "unet")
    assert float(net.scale) > 0 and float(net.scale) != 1.0  # fitted to the latents' spread


def test_generate_decodes_latents_to_crops_of_the_card_size(trained):
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.generate import generate
    from napari_nucleus_ai.models.diffusion.kind import as_classifier
    from napari_nucleus_ai.models.package import load_model

    _, out, names = trained
    model = as_classifier(load_model(out))
    assert model.z_shape == (4, 4, 4)
    x = run_sync(generate(model, names[0], n=3, steps=4, guidance=1.0))
    assert x.shape == (3, 3, 16, 16) and x.dtype == np.float32
    assert x.min() >= -1 and x.max() <= 1
    assert np.ptp(x) > 0  # decoded, not a constant


def test_generate_cli_writes_a_grid_from_a_latent_package(trained, tmp_path):
    import imageio.v3 as iio

    from napari_nucleus_ai.cli import main

    _, out, names = trained
    png = tmp_path / "grid.png"
    args = ["generate", str(out), "--class", names[1], "-n", "4", "--steps", "3", "--out", str(png)]
    assert main([*args, "--device", "cpu"]) == 0
    assert iio.imread(png).shape == (2 * 18 + 2, 2 * 18 + 2, 3)  # 2 x 2 tiles of 16 px


def test_predict_and_counterfactual_work_on_latents(trained):
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.classify import classify_crops
    from napari_nucleus_ai.models.diffusion.generate import counterfactual
    from napari_nucleus_ai.models.diffusion.kind import as_classifier
    from napari_nucleus_ai.models.package import load_model

    _, out, _ = trained
    model = as_classifier(load_model(out))
    x, _, _ = toy_crops(per_class=1, seed=3)
    res = run_sync(classify_crops(model, x, max_trials=4, check_every=2))
    assert res["p"].shape == (3, 3) and np.allclose(res["p"].sum(1), 1)
    cf = run_sync(counterfactual(model, x[0], trials=4, steps=3))
    assert cf["map"].shape == (16, 16) and cf["image"].shape == (3, 16, 16)
    assert cf["source"] != cf["target"]


def test_autoencoder_training_reduces_reconstruction_error():
    import torch

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.latent import build_autoencoder, train_autoencoder

    x, _, _ = toy_crops(per_class=4, seed=0)
    lat = {"width": 8}

    def l1(ae):
        with torch.inference_mode():
            t = torch.from_numpy(x)
            return float((ae.decode(ae.encode(t).latents).sample - t).abs().mean())

    torch.manual_seed(0)
    before = l1(build_autoencoder(3, lat).eval())
    ae = run_sync(train_autoencoder(x, latent=lat, steps=60, batch_size=8, lr=3e-3))
    assert l1(ae) < 0.6 * before


def test_dihedral_group_has_eight_distinct_elements():
    from napari_nucleus_ai.models.diffusion.latent import dihedral

    a = np.arange(16.0).reshape(1, 4, 4)
    views = {dihedral(a, k).tobytes() for k in range(8)}
    assert len(views) == 8


def test_loading_the_kind_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, napari_nucleus_ai.models.diffusion.kind, "
        "napari_nucleus_ai.models.diffusion.generate; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bad_latent_settings_are_refused_in_one_line():
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.models.diffusion.kind import validate

    card = {
        "architecture": {"name": "latent-diffusion", "params": {"latent": {"factor": 3}}},
        "classes": [{"name": "a"}, {"name": "b"}],
        "input": {"crop_size": 64},
    }
    with pytest.raises(InputError, match="latent"):
        validate(card)
    card["architecture"]["params"] = {}
    with pytest.raises(InputError, match="needs 'latent'"):
        validate(card)
    card["architecture"]["params"] = {"latent": {"factor": 4}}
    card["input"]["crop_size"] = 36  # not divisible by 4 x 2 (two UNet levels)
    card["architecture"]["params"]["mults"] = [1, 2]
    with pytest.raises(InputError, match="divisible by 8"):
        validate(card)


def test_init_starts_from_saved_weights(trained, tmp_path):
    import torch
    from safetensors.torch import save_file

    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.models.package import clear_cache, load_model

    root, out, _ = trained
    clear_cache()
    net = load_model(out).modules[0]
    with torch.no_grad():
        net.scale.fill_(3.5)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "w.safetensors")
    out2 = tmp_path / "again.zip"
    train(
        root / "data",
        out2,
        arch="latent-diffusion",
        crop_size=16,
        val_fraction=0.34,
        params={"base": 8, "mults": [1, 2], "dropout": 0.0, "latent": {"width": 8}},
        kind_options={"steps": 0, "copies": 1, "init": str(tmp_path / "w.safetensors")},
    )
    clear_cache()
    net2 = load_model(out2).modules[0]
    assert float(net2.scale) == 3.5
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_sampled_latents_stay_in_the_clip_range(trained):
    """Near t = T the cosine schedule divides by sqrt(abar) ~ 5e-5: unclipped latents explode."""
    import torch

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.generate import _ddim
    from napari_nucleus_ai.models.diffusion.kind import as_classifier
    from napari_nucleus_ai.models.diffusion.latent import LATENT_CLIP
    from napari_nucleus_ai.models.package import load_model

    _, out, _ = trained
    model = as_classifier(load_model(out))
    z = torch.randn((4, *model.z_shape), generator=torch.Generator().manual_seed(0))
    y = torch.zeros(4, dtype=torch.long)
    t_seq = np.linspace(999, 0, 5).round().astype(int)
    z0 = run_sync(_ddim(model, z, y, t_seq, guidance=1.0))
    assert float(z0.abs().max()) <= LATENT_CLIP + 1e-4
