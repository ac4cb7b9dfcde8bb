"""The precision of training passes (``models.engine``): which one ``auto`` takes, what
``autocast`` runs in, and a diffusion model trained in bfloat16 that keeps float32 weights."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_nucleus_ai.models import engine  # noqa: E402


def _probes(mp, amx, avx512_bf16):
    mp.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    mp.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)


@pytest.mark.parametrize(
    ("amx", "avx", "native"),
    [(True, False, True), (False, True, True), (False, False, False)],
)
def test_auto_takes_bfloat16_only_where_the_cpu_computes_it(monkeypatch, amx, avx, native):
    _probes(monkeypatch, amx, avx)
    assert engine.native_bfloat16() is native
    assert engine.native_bfloat16(torch.device("cpu")) is native
    assert engine.training_precision("auto") == ("bfloat16" if native else "float32")
    assert engine.training_precision("float32") == "float32"  # asked for: taken as asked
    assert engine.training_precision("bfloat16") == "bfloat16"


def test_a_torch_without_the_probes_is_float32(monkeypatch):
    def missing():
        raise AttributeError("no such probe")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", missing, raising=False)
    assert engine.native_bfloat16() is False
    assert engine.training_precision("auto") == "float32"
    assert engine.native_bfloat16(torch.device("mps")) is False


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="auto, float32, bfloat16"):
        engine.training_precision("float16")


def test_autocast_runs_the_layers_in_the_resolved_precision():
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with engine.autocast("bfloat16"):
        assert lin(x).dtype == torch.bfloat16
    with engine.autocast("float32"):
        assert lin(x).dtype == torch.float32
    assert lin.weight.dtype == torch.float32


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_a_diffusion_model_trains_in_either_precision(precision):
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.train import train_diffusion

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, 3, 16, 16)).astype(np.float32)
    y = np.repeat([0, 1], 4)
    model = run_sync(
        train_diffusion(
            x, y, ["a", "b"], arch={"base": 8}, steps=12, batch_size=4,
            calibrate_after=False, precision=precision,
        )
    )  # fmt: skip
    assert model.config["training"]["precision"] == precision
    losses = [v for _, v in model.config["history"]]
    assert losses and all(np.isfinite(losses))
    assert all(p.dtype == torch.float32 for p in model.net.parameters())


def test_the_autoencoder_trains_in_bfloat16_with_a_float32_loss(monkeypatch):
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.latent import train_autoencoder

    asked = []
    real = engine.autocast

    def spy(precision, device=None):
        asked.append(precision)
        return real(precision, device)

    monkeypatch.setattr(engine, "autocast", spy)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 3, 16, 16)).astype(np.float32)
    latent = {"channels": 2, "factor": 2, "width": 8}
    ae = run_sync(train_autoencoder(x, latent=latent, steps=3, precision="bfloat16"))
    assert asked and set(asked) == {"bfloat16"}
    assert all(p.dtype == torch.float32 for p in ae.parameters())
    with torch.inference_mode():
        r = ae.decode(ae.encode(torch.from_numpy(x)).latents).sample
    assert r.dtype == torch.float32 and torch.isfinite(r).all()
