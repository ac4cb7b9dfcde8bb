"""Latent diffusion: a small autoencoder around the class-conditional denoiser.

At 64 px a pixel-space denoiser is too slow to train on a CPU. The latent
variant squeezes each crop through diffusers' ``AutoencoderTiny`` (a plain
convolutional encoder and decoder, TAESD's architecture with a small config)
to a ``latent_channels x S/factor x S/factor`` latent and runs the same
class-conditional UNet, schedule, classification protocol and sampler there;
generated latents are decoded back to crops.

:class:`~.unet.LatentDenoiser` is one ``torch.nn.Module`` holding both networks
(``unet`` and ``ae``) and the per-channel latent statistics, so a latent model is
stored as an ordinary single-member package (keys ``m0.unet.*``, ``m0.ae.*``,
``m0.shift``, ``m0.scale``). Its ``forward`` is the UNet's, so everything that
denoises works unchanged on latents; :meth:`encode` / :meth:`decode` map crops in
``[-1, 1]`` to latents centred with unit variance per channel
(:func:`latent_stats`) and back.

Training (:func:`train_autoencoder`, then :func:`latent_bank` and the usual
:func:`~.train.train_diffusion` on the latents) puts the augmentation in pixel
space, where it means something: the 8 dihedral transforms and HED stain plus
light jitter (:mod:`napari_nucleus_ai.models.stain`). The autoencoder's loss can add
:class:`PerceptualLoss` (the frozen ImageNet EfficientNet-Lite0), which keeps granules
and chromatin texture that pixel losses smooth away, and :func:`colour_loss` (block mean
colours), which keeps the stain colours those unit-length features leave grey.
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.core.progress import Progress

#: ``factor`` = downsampling of the autoencoder (power of 2), ``channels`` = latent
#: channels, ``width`` = channels of every autoencoder block.
LATENT_DEFAULTS = {"channels": 4, "factor": 4, "width": 32}

#: Sampling clips predicted clean latents (scaled to unit variance) to +- this.
LATENT_CLIP = 5.0

#: How the autoencoder is trained by default (``train --ae-steps``, ``--ae-lr``,
#: ``--ae-perceptual``, ``--ae-colour``, ``--ae-latent-noise``). ``perceptual`` is the weight
#: :func:`~.kind.fit` gives :class:`PerceptualLoss` for RGB crops where the ImageNet backbone
#: is installed; :func:`train_autoencoder` itself uses none unless asked.
AE_TRAIN_DEFAULTS = {
    "steps": 600,
    "batch_size": 8,
    "lr": 2e-3,
    "seed": 0,
    "perceptual": 1.0,
    "colour": 0.0,
    "latent_noise": 0.0,
}

#: Blocks of the frozen EfficientNet-Lite0 whose outputs the perceptual loss compares
#: (after the stem: 64, 32, 16 and 8 px maps of a crop seen at :data:`PERCEPTUAL_SIZE`).
PERCEPTUAL_BLOCKS = (0, 2, 4, 8)
PERCEPTUAL_SIZE = 128

#: Block size (px) of the local mean colours :func:`colour_loss` compares.
COLOUR_POOL = 8


def latent_stats(z: np.ndarray, std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``shift`` (mean) and ``scale`` (``std`` / standard deviation) of
    latents ``(N, C, s, s)``.

    ``(z - shift) * scale`` is centred with standard deviation ``std`` in every channel.
    ``std`` 1 is the variance the noise schedule assumes; ``std`` below 1 lowers every
    noise level's signal-to-noise ratio by ``std ** 2`` (Chen 2023, input scaling), which
    larger latents need: neighbouring latent pixels repeat each other, so at the same noise
    level more of the cell's shape survives in a 32 x 32 latent than in a 16 x 16 one
    (``train --latent-std``, ``diffusion.latent_std`` in the card).
    """
    z = np.asarray(z, np.float64)
    if z.ndim != 4 or len(z) == 0:
        raise ValueError(f"expected latents (N, C, s, s), got {z.shape}")
    if not (np.isfinite(std) and std > 0):
        raise ValueError(f"latent std must be > 0, got {std}")
    shift = z.mean(axis=(0, 2, 3))
    scale = float(std) / np.maximum(z.std(axis=(0, 2, 3)), 1e-6)
    return shift.astype(np.float32), scale.astype(np.float32)


def build_autoencoder(in_channels: int = 3, latent: dict | None = None):
    """diffusers ``AutoencoderTiny`` downsampling by ``latent["factor"]`` (untrained)."""
    from diffusers import AutoencoderTiny

    lat = _latent(latent)
    levels = int(np.log2(int(lat["factor"])))
    if 2**levels != int(lat["factor"]) or levels < 1:
        raise ValueError(f"latent factor must be a power of 2 >= 2, got {lat['factor']}")
    chans = (int(lat["width"]),) * (levels + 1)
    return AutoencoderTiny(
        in_channels=in_channels,
        out_channels=in_channels,
        encoder_block_out_channels=chans,
        decoder_block_out_channels=chans,
        num_encoder_blocks=(1,) * (levels + 1),
        num_decoder_blocks=(1,) * (levels + 1),
        latent_channels=int(lat["channels"]),
        upsampling_scaling_factor=2,
    )


def autoencoder_settings(state: dict) -> dict | None:
    """``{in_channels, channels, factor, width}`` of an autoencoder state dict as
    :func:`build_autoencoder` makes it (keys ``encoder.layers.*``, ``decoder.layers.*``),
    read from the tensors' shapes; ``None`` when ``state`` is not such an autoencoder."""
    try:
        first = state["encoder.layers.0.weight"]
        last = state["decoder.layers.0.weight"]
        layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")}
    except (KeyError, ValueError, IndexError):
        return None
    levels = max(layers) // 2 - 1  # a stem, then per level a block (and a down-sampling conv)
    if first.ndim != 4 or last.ndim != 4 or levels < 1:
        return None
    return {
        "in_channels": int(first.shape[1]),
        "channels": int(last.shape[1]),
        "factor": 2**levels,
        "width": int(first.shape[0]),
    }


def read_autoencoder(path) -> tuple[dict, int | None]:
    """The autoencoder's tensors in ``path`` and the crop size it was trained at (or ``None``).

    ``path`` is a latent-diffusion model package (folder, ``.zip`` or ``.safetensors`` with
    its card; its crop size is known), the safetensors of a whole latent denoiser (keys
    ``ae.*``) or of the autoencoder alone (``ae.safetensors`` of
    ``benchmarks/diffusion_latent.py``). Raises :class:`InputError` naming the file.
    """
    import zipfile
    from pathlib import Path

    from napari_nucleus_ai.core.errors import InputError

    p = Path(path)
    if not p.exists():
        raise InputError(path, "no such autoencoder file or model package")
    size = None
    if p.is_dir() or zipfile.is_zipfile(p) or _has_card(p):
        from napari_nucleus_ai.models.package import read_package

        card, tensors = read_package(p)
        name = card["architecture"]["name"]
        if name != "latent-diffusion":
            raise InputError(path, f"a {name!r} model, not a latent-diffusion one: no autoencoder")
        size = int(card["input"]["crop_size"])
    else:
        from napari_nucleus_ai.models.init_weights import read_state_dict

        tensors = read_state_dict(p)
    for prefix in ("m0.ae.", "ae.", ""):
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if autoencoder_settings(state) is not None:
            return state, size
    raise InputError(path, "holds no autoencoder (no encoder.layers.* / decoder.layers.* tensors)")


def _has_card(path) -> bool:
    """A safetensors file with a model card in its metadata (a one-file model package)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return "card" in (fh.metadata() or {})
    except Exception:  # noqa: BLE001 - not safetensors: read_state_dict says what it is
        return False


def autoencoder_init(path, latent: dict | None, in_channels: int, size: int | None = None) -> dict:
    """The state dict in ``path`` (see :func:`read_autoencoder`) of an autoencoder with the
    ``latent`` settings for ``in_channels``-channel crops of ``size`` px, to continue from.

    Raises :class:`InputError` naming the file and every setting that differs (a bare
    autoencoder file records no crop size, so only a package's is compared).
    """
    from napari_nucleus_ai.core.errors import InputError

    state, trained_size = read_autoencoder(path)
    have = autoencoder_settings(state)
    want = {"in_channels": int(in_channels), **{k: int(v) for k, v in _latent(latent).items()}}
    words = {
        "in_channels": "image channels",
        "channels": "latent channels",
        "factor": "down-sampling factor",
        "width": "width",
    }
    diff = [f"{words[k]} {have[k]} (not {want[k]})" for k in words if have[k] != want[k]]
    if size is not None and trained_size is not None and trained_size != int(size):
        diff.append(f"crop size {trained_size} px (not {int(size)})")
    if diff:
        raise InputError(path, "an autoencoder of other settings: " + ", ".join(diff))
    return state


def _latent(latent: dict | None) -> dict:
    """``latent`` with :data:`LATENT_DEFAULTS` for what it leaves out."""
    return {**LATENT_DEFAULTS, **(latent or {})}


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """Transform ``k`` (0..7) of the dihedral group on crops ``(..., S, S)``."""
    y = np.rot90(x, k % 4, axes=(-2, -1))
    return np.ascontiguousarray(y[..., ::-1] if k >= 4 else y)


def augment_pixels(x: np.ndarray, rng: np.random.Generator, stain: bool = True) -> np.ndarray:
    """Random dihedral transform, HED stain and light jitter of crops ``(B, 3, S, S)`` in [-1, 1]."""
    from napari_nucleus_ai.models.stain import hed_jitter, light_jitter

    out = np.empty_like(x, dtype=np.float32)
    for i, crop in enumerate(x):
        c = dihedral(crop, int(rng.integers(8)))
        if stain and c.shape[0] == 3:
            rgb = np.moveaxis((c + 1) / 2, 0, -1)
            rgb = light_jitter(hed_jitter(rgb, rng), rng)
            c = np.moveaxis(rgb, -1, 0) * 2 - 1
        out[i] = c
    return out


class PerceptualLoss:
    """Distance between crops as the frozen ImageNet EfficientNet-Lite0 sees them.

    The backbone of the default classifier's ImageNet features
    (:mod:`napari_nucleus_ai.models.nets.imagenet`), frozen. Both crops are resized to
    :data:`PERCEPTUAL_SIZE` px and normalised as for ImageNet; at the outputs of
    :data:`PERCEPTUAL_BLOCKS` every pixel's feature vector is scaled to unit length (as
    in LPIPS) and the squared differences are averaged, each block weighing the same.
    Granules, chromatin and lobes are what these filters respond to, so the loss is
    large where a reconstruction smooths them away even when its pixel error is small.
    Needs the ``pretrained`` extra.
    """

    def __init__(self, device=None):
        import torch

        from napari_nucleus_ai.models.nets.imagenet import (
            MEAN,
            STD,
            build_backbone,
            load_imagenet_weights,
        )

        net = build_backbone()
        load_imagenet_weights(net)
        self.net = net.to(device if device is not None else torch.device("cpu")).eval()
        dev = next(self.net.parameters()).device
        self.mean = torch.tensor(MEAN, device=dev)[None, :, None, None]
        self.std = torch.tensor(STD, device=dev)[None, :, None, None]

    def maps(self, x):
        """Unit-length feature maps of crops ``(B, 3, S, S)`` in [-1, 1], one per block."""
        import torch.nn.functional as F

        net = self.net
        x = F.interpolate((x + 1) / 2, size=PERCEPTUAL_SIZE, mode="bilinear", align_corners=False)
        h = net._swish(net._bn0(net._conv_stem((x - self.mean) / self.std)))
        out = []
        for i, block in enumerate(net._blocks[: max(PERCEPTUAL_BLOCKS) + 1]):
            h = block(h)
            if i in PERCEPTUAL_BLOCKS:
                out.append(h / (h.square().sum(1, keepdim=True).sqrt() + 1e-6))
        return out

    def __call__(self, r, x):
        """Mean over blocks of the mean squared difference of unit feature maps."""
        import torch

        with torch.no_grad():
            target = self.maps(x)
        pairs = zip(self.maps(r), target, strict=True)
        return sum((a - b).square().sum(1).mean() for a, b in pairs) / len(target)


def colour_loss(r, x, pool: int = COLOUR_POOL):
    """L1 between the mean colours of ``pool x pool`` blocks of crops ``r`` and ``x`` (torch)."""
    import torch.nn.functional as F

    return (F.avg_pool2d(r, pool) - F.avg_pool2d(x, pool)).abs().mean()


def reconstruction_loss(r, x, feat=None, perceptual: float = 0.0, colour: float = 0.0):
    """The autoencoder's loss of reconstructions ``r`` of crops ``x`` (torch, [-1, 1]): L1,
    plus the L1 of horizontal and vertical image gradients, plus ``perceptual`` times
    ``feat(r, x)`` (a :class:`PerceptualLoss`, when given) and ``colour`` times
    :func:`colour_loss`."""
    loss = (r - x).abs().mean()
    for d in (2, 3):
        loss = loss + (r.diff(dim=d) - x.diff(dim=d)).abs().mean()
    if feat is not None:
        loss = loss + perceptual * feat(r, x)
    if colour > 0:
        loss = loss + colour * colour_loss(r, x)
    return loss


def add_latent_noise(z, fraction: float):
    """Latents ``z`` (torch, N x c x s x s) plus Gaussian noise of ``fraction`` of each
    channel's standard deviation over the batch: the slightly-off latents a denoiser samples,
    which the decoder learns to decode (``latent_noise`` of :func:`train_autoencoder`)."""
    import torch

    if fraction <= 0:
        return z
    sd = z.detach().float().std(dim=(0, 2, 3), keepdim=True)
    return z + fraction * sd * torch.randn_like(z)


def train_autoencoder(
    x: np.ndarray,
    *,
    latent: dict | None = None,
    steps: int = AE_TRAIN_DEFAULTS["steps"],
    batch_size: int = AE_TRAIN_DEFAULTS["batch_size"],
    lr: float = AE_TRAIN_DEFAULTS["lr"],
    seed: int = AE_TRAIN_DEFAULTS["seed"],
    perceptual: float = 0.0,
    colour: float = AE_TRAIN_DEFAULTS["colour"],
    latent_noise: float = AE_TRAIN_DEFAULTS["latent_noise"],
    init=None,
    device=None,
    precision: str = "auto",
):
    """Train the autoencoder on crops ``x`` (N, C, S, S) in [-1, 1]; a generator.

    Loss (:func:`reconstruction_loss`): L1 plus the L1 of horizontal and vertical image
    gradients (keeps edges sharper than a plain pixel loss), plus ``perceptual`` times
    :class:`PerceptualLoss` for RGB crops when ``perceptual > 0`` (keeps granules and
    chromatin texture, which pixel losses average away), plus ``colour`` times
    :func:`colour_loss` (the L1 of the crops' local mean colours, which the perceptual
    loss's unit-length features leave grey). ``latent_noise``: the decoder sees latents
    with noise (:func:`add_latent_noise`), so it learns to decode the slightly-off latents
    a denoiser samples. ``init``: an autoencoder of the same ``latent``
    settings to continue from, as a state dict or as a file (:func:`autoencoder_init`
    reads it and refuses, naming the file, one of other settings or crop size).
    ``precision``: the arithmetic of the autoencoder's passes
    (:func:`~napari_nucleus_ai.models.engine.training_precision`); the loss, the perceptual
    network's features included, stays float32 (in bfloat16 it saves no time). Yields
    :class:`Progress`; returns the trained ``AutoencoderTiny`` (eval mode, CPU).
    """
    import torch

    from napari_nucleus_ai.models.engine import autocast, training_precision

    x = np.asarray(x, np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"expected crops (N, C, S, S), got {x.shape}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = device if device is not None else torch.device("cpu")
    precision = training_precision(precision, dev)
    if init is not None and not isinstance(init, dict):
        init = autoencoder_init(init, latent, x.shape[1], x.shape[-1])
    ae = build_autoencoder(x.shape[1], latent)
    if init is not None:
        ae.load_state_dict(init)
    ae = ae.to(dev).train()
    feat = PerceptualLoss(dev) if perceptual > 0 and x.shape[1] == 3 else None
    opt = torch.optim.AdamW(ae.parameters(), lr=lr, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 2))
    running = None
    for step in range(steps):
        idx = rng.integers(0, len(x), batch_size)
        xb = torch.from_numpy(augment_pixels(x[idx], rng)).to(dev)
        with autocast(precision, dev):
            r = ae.decode(add_latent_noise(ae.encode(xb).latents, latent_noise)).sample
        loss = reconstruction_loss(r.float(), xb, feat, perceptual, colour)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step + 1 < max(steps, 2):
            sched.step()
        lv = float(loss.detach())
        running = lv if running is None else 0.95 * running + 0.05 * lv
        if (step + 1) % 10 == 0 or step == steps - 1:
            yield Progress(
                step + 1, steps, f"autoencoder step {step + 1}/{steps} loss {running:.4f}"
            )
    return ae.cpu().eval()


def latent_bank(
    ae,
    x: np.ndarray,
    y: np.ndarray,
    copies: int = 8,
    seed: int = 0,
    batch_size: int = 64,
    jitter: bool = True,
):
    """Encode ``copies`` augmented versions of every crop (the first copy of each
    crop un-jittered, every copy under another dihedral transform).

    ``jitter`` adds HED stain and light jitter to every copy but the first
    (``train --latent-jitter``). Without it the copies differ by their dihedral
    transform alone, and a generator learns the training microscope's colours
    rather than the spread of the jitter.

    Returns unscaled latents ``(N * copies, c, s, s)`` float32 and their labels.
    """
    import torch

    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(copies):
        if k == 0:
            xa = np.asarray(x, np.float32)
        else:
            xa = augment_pixels(x, rng, stain=jitter)
            xa = np.stack([dihedral(c, (k + i) % 8) for i, c in enumerate(xa)])
        xs.append(xa)
        ys.append(np.asarray(y))
    xa = np.concatenate(xs)
    out = []
    with torch.inference_mode():
        for s in range(0, len(xa), batch_size):
            out.append(ae.encode(torch.from_numpy(xa[s : s + batch_size])).latents.numpy())
    return np.concatenate(out).astype(np.float32), np.concatenate(ys)
