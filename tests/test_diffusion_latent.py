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
    import torch

    from napari_nucleus_ai.models.package import clear_cache, load_model

    _, out, names = trained
    with zipfile.ZipFile(out) as zf:
        card = json.loads(zf.read("card.json"))
    assert card["architecture"]["name"] == "latent-diffusion"
    assert card["architecture"]["params"]["latent"] == {"channels": 4, "factor": 4, "width": 8}
    assert card["members"] == 1
    assert card["diffusion"]["autoencoder"]["steps"] == 10  # how the autoencoder was trained
    clear_cache()
    pkg = load_model(out)
    net = pkg.modules[0]
    assert hasattr(net, "ae") and hasattr(net, "unet")
    assert net.scale.shape == net.shift.shape == (4, 1, 1)  # one per latent channel
    assert (net.scale > 0).all() and not torch.allclose(net.scale, torch.ones(4, 1, 1))
    assert not torch.allclose(net.shift, torch.zeros(4, 1, 1))  # fitted to the latents


def test_package_latents_of_the_training_crops_are_centred_per_channel(trained):
    import torch

    from napari_nucleus_ai.models.diffusion.kind import as_classifier
    from napari_nucleus_ai.models.package import load_model

    _, out, _ = trained
    model = as_classifier(load_model(out))
    x, _, _ = toy_crops(per_class=4, seed=0)  # the crops the package was trained on
    z = model.encode(x)
    # the stats were fitted on augmented copies (stain jitter, dihedral), so only close
    assert torch.all(z.mean(dim=(0, 2, 3)).abs() < 0.5)
    assert torch.all((z.std(dim=(0, 2, 3)) - 1).abs() < 0.5)


def test_latent_stats_standardise_every_channel():
    from napari_nucleus_ai.models.diffusion.latent import latent_stats

    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, (50, 3, 4, 4)) * np.array([0.5, 2.0, 1.0])[:, None, None]
    z += np.array([-3.0, 0.5, 2.0])[:, None, None]
    shift, scale = latent_stats(z)
    zs = (z - shift[:, None, None]) * scale[:, None, None]
    assert np.allclose(zs.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    assert np.allclose(zs.std(axis=(0, 2, 3)), 1, atol=1e-5)
    assert shift.dtype == scale.dtype == np.float32
    with pytest.raises(ValueError, match="latents"):
        latent_stats(np.zeros((0, 4, 2, 2)))


def test_weights_with_one_scalar_scale_load_as_that_scale_on_every_channel():
    import torch

    from napari_nucleus_ai.models.diffusion.latent import build_autoencoder
    from napari_nucleus_ai.models.diffusion.unet import ClassUNet, LatentDenoiser

    def make():
        torch.manual_seed(0)
        ae = build_autoencoder(3, {"width": 8}).eval()
        return LatentDenoiser(ClassUNet(2, 4, base=8, mults=(1, 2)), ae)

    old = {k: v for k, v in make().state_dict().items() if k != "shift"}
    old["scale"] = torch.tensor(0.25)  # the layout of older packages
    net = make()
    net.load_state_dict(old)
    assert torch.equal(net.scale, torch.full((4, 1, 1), 0.25))
    assert torch.equal(net.shift, torch.zeros(4, 1, 1))
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.inference_mode():
        assert torch.allclose(net.encode(x), net.ae.encode(x).latents * 0.25)
        net.set_stats([1.0, -1.0, 0.5, 0.0], [2.0, 1.0, 0.5, 4.0])
        z = net.encode(x)
        assert torch.allclose(
            net.ae.decode(z / net.scale + net.shift).sample.clamp(-1, 1), net.decode(z)
        )
        raw = net.ae.encode(x).latents
        assert torch.allclose(z[:, 1], raw[:, 1] + 1.0) and torch.allclose(z[:, 3], raw[:, 3] * 4)


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


def test_generate_eta_and_the_guidance_interval(trained):
    """``eta`` 0 is the deterministic sampler; an interval holding no noise level is no
    guidance, one holding every level is guidance throughout."""
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.generate import generate
    from napari_nucleus_ai.models.diffusion.kind import as_classifier
    from napari_nucleus_ai.models.package import load_model

    _, out, names = trained
    model = as_classifier(load_model(out))

    def sample(**kw):
        return run_sync(generate(model, names[0], n=2, steps=4, seed=3, **kw))

    guided, plain = sample(guidance=2.0), sample(guidance=0.0)
    assert not np.allclose(guided, plain)
    assert np.array_equal(sample(guidance=2.0, eta=0.0), guided)
    assert np.array_equal(sample(guidance=2.0, interval=(1e6, 1e7)), plain)
    assert np.array_equal(sample(guidance=2.0, interval=(0.0, 1e7)), guided)
    stochastic = sample(guidance=2.0, eta=1.0)
    assert not np.allclose(stochastic, guided)
    assert np.array_equal(sample(guidance=2.0, eta=1.0), stochastic)  # seeded
    assert np.isfinite(stochastic).all() and stochastic.min() >= -1


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
        net.set_stats([0.5, -0.5, 1.0, 0.0], [3.5, 2.0, 1.0, 0.5])
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
    assert net2.scale.flatten().tolist() == [3.5, 2.0, 1.0, 0.5]
    assert net2.shift.flatten().tolist() == [0.5, -0.5, 1.0, 0.0]
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


class _GaussianDenoiser:
    """The exact noise predictor for data ``x0 ~ N(mu, s^2)`` per element, plus a small
    constant error ``err`` (a trained network is never exact)."""

    def __init__(self, mu=1.0, s=0.5, err=3e-3):
        import torch

        from napari_nucleus_ai.models.diffusion.schedule import alphas_cumprod

        self.mu, self.s, self.err = mu, s, err
        self.abar = torch.tensor(alphas_cumprod("cosine", 1000), dtype=torch.float32)
        self.class_names, self.device, self.latent = ["a"], torch.device("cpu"), {"channels": 1}

    def eps(self, x, t, y):
        a = self.abar[t].view(-1, 1, 1, 1)
        var = a * self.s**2 + 1 - a
        return (1 - a).sqrt() * (x - a.sqrt() * self.mu) / var + self.err


def _ddim_samples(t_seq):
    import torch

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.generate import _ddim

    model = _GaussianDenoiser()
    x = torch.randn((64, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    y = torch.zeros(64, dtype=torch.long)
    return run_sync(_ddim(model, x, y, t_seq, guidance=0.0)).numpy()


def test_sampling_starts_where_the_first_step_does_not_amplify_the_error():
    """The first step's clean-image estimate is 1 / sqrt(abar) times the error of the noise
    prediction: 2e4 at the cosine schedule's last step, at most 10 at the start picked; and
    a start that low (pure noise for 1 % signal variance) still gives the data's mean and
    spread with a near-exact denoiser."""
    from napari_nucleus_ai.models.diffusion.generate import (
        SAMPLE_START_SIGNAL,
        sampling_timesteps,
    )
    from napari_nucleus_ai.models.diffusion.schedule import alphas_cumprod

    abar = alphas_cumprod("cosine", 1000)
    assert 1 / np.sqrt(abar[-1]) > 1e4
    t_seq = sampling_timesteps(abar, 50)
    assert len(t_seq) == 50 and t_seq[-1] == 0 and np.all(np.diff(t_seq) < 0)
    assert np.sqrt(abar[t_seq[0]]) >= SAMPLE_START_SIGNAL > np.sqrt(abar[t_seq[0] + 1])
    assert len(sampling_timesteps(abar, 5000)) == t_seq[0] + 1  # never more than the levels
    x = _ddim_samples(t_seq)
    assert abs(x.mean() - 1.0) < 0.1 and abs(x.std() - 0.5) < 0.05
    late = _ddim_samples(np.linspace(600, 0, 50).round().astype(int))  # starting too late
    assert abs(late.mean() - 1.0) > 0.3


def _textured_crops(n: int = 4, size: int = 32, seed: int = 0) -> np.ndarray:
    """Pale crops with a dark disc dotted with fine granules, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = []
    for _ in range(n):
        img = np.full((3, size, size), 0.85)
        disc = np.hypot(yy, xx) < size / 3
        img[:, disc] = [[0.55], [0.35], [0.6]]
        dots = disc & (rng.random((size, size)) < 0.25)
        img[:, dots] = [[0.25], [0.1], [0.3]]
        out.append(img * 2 - 1)
    return np.asarray(out, np.float32)


def test_perceptual_loss_penalises_lost_granules_more_than_an_equal_pixel_shift():
    pytest.importorskip("efficientnet_lite_pytorch")
    import torch
    import torch.nn.functional as F

    from napari_nucleus_ai.models.diffusion.latent import PerceptualLoss
    from napari_nucleus_ai.models.nets.imagenet import available

    if not available():
        pytest.skip("needs the pretrained extra")
    loss = PerceptualLoss()
    x = torch.from_numpy(_textured_crops())
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    l1 = float((blurred - x).abs().mean())
    shifted = x + l1  # the same pixel (L1) error, granules kept
    assert abs(float((shifted - x).abs().mean()) - l1) < 1e-6
    assert float(loss(x, x)) < 1e-6
    assert float(loss(blurred, x)) > 3 * float(loss(shifted, x))


def test_autoencoder_training_with_the_perceptual_term_uses_it(monkeypatch):
    """``perceptual > 0`` adds the feature loss to every step; 0 never builds it."""
    import torch

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion import latent

    calls = []

    class Fake:
        def __init__(self, device=None):
            calls.append("built")

        def __call__(self, r, x):
            calls.append("loss")
            return (r - x).square().mean()

    monkeypatch.setattr(latent, "PerceptualLoss", Fake)
    x = _textured_crops(n=4, size=16)
    run_sync(latent.train_autoencoder(x, latent={"width": 8}, steps=3, perceptual=0.0))
    assert calls == []
    ae = run_sync(latent.train_autoencoder(x, latent={"width": 8}, steps=3, perceptual=0.5))
    assert calls == ["built", "loss", "loss", "loss"]
    assert isinstance(ae, torch.nn.Module)


def test_perceptual_loss_is_the_default_where_the_backbone_is_installed(monkeypatch):
    from napari_nucleus_ai.models.diffusion.kind import _perceptual_weight
    from napari_nucleus_ai.models.diffusion.latent import AE_TRAIN_DEFAULTS
    from napari_nucleus_ai.models.nets import imagenet

    monkeypatch.setattr(imagenet, "available", lambda name="efficientnet-lite0": True)
    assert _perceptual_weight(None, 3) == AE_TRAIN_DEFAULTS["perceptual"] > 0
    assert _perceptual_weight(None, 1) == 0.0  # grey crops: no ImageNet colours
    assert _perceptual_weight(0.25, 3) == 0.25
    monkeypatch.setattr(imagenet, "available", lambda name="efficientnet-lite0": False)
    assert _perceptual_weight(None, 3) == 0.0
    assert _perceptual_weight(0.0, 3) == 0.0


def test_colour_loss_sees_a_colour_cast_the_pixel_texture_hides():
    """A grey cast of the mean colour costs more than moving texture at equal pixel L1."""
    import torch

    from napari_nucleus_ai.models.diffusion.latent import colour_loss

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    cast = x.clone()
    cast[:, 0] -= 0.2  # less red everywhere: the eosin cast
    rolled = torch.roll(x, 1, dims=3)  # texture moved by a pixel, same colours
    assert float(colour_loss(x, x)) == 0.0
    assert float(colour_loss(cast, x)) > 0.05
    assert float(colour_loss(rolled, x)) < 0.5 * float(colour_loss(cast, x))
    assert float((rolled - x).abs().mean()) > float((cast - x).abs().mean())


def test_autoencoder_training_continues_from_init():
    """``init`` starts from the given weights: zero steps return them unchanged."""
    import numpy as np
    import torch

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion import latent

    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 16, 16)).astype(np.float32)
    lat = {"width": 8}
    first = run_sync(latent.train_autoencoder(x, latent=lat, steps=3, seed=1))
    again = run_sync(latent.train_autoencoder(x, latent=lat, steps=0, init=first.state_dict()))
    fresh = run_sync(latent.train_autoencoder(x, latent=lat, steps=0))
    for k, v in first.state_dict().items():
        assert torch.equal(again.state_dict()[k], v)
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in first.state_dict().items())
    more = run_sync(
        latent.train_autoencoder(x, latent=lat, steps=2, colour=1.0, init=first.state_dict())
    )
    assert any(not torch.equal(more.state_dict()[k], v) for k, v in first.state_dict().items())
