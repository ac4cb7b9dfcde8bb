"""The diffusion classifier as one object: network, noise schedule and settings.

:class:`DiffusionClassifier` bundles the :class:`~.unet.ClassUNet`, the
cumulative noise schedule and the JSON-able ``config`` (class names, crop size,
architecture, classification protocol, calibration). It is stored as an
ordinary model package (card + safetensors, see :mod:`.kind`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from napari_nucleus_ai.models.diffusion.latent import LATENT_DEFAULTS
from napari_nucleus_ai.models.diffusion.schedule import alphas_cumprod

#: Defaults of the adaptive classification protocol (see ``classify.py``).
PROTOCOL_DEFAULTS = {
    "max_trials": 32,  # noise draws per cell at most (naive protocol: every class at each)
    "check_every": 4,  # paired t-tests after every this many trials
    "alpha": 0.01,  # one-sided p-value below which a class is pruned
    "t_lo": 0.0,  # sampled noise levels span [t_lo, t_hi) of the schedule
    "t_hi": 0.9,  # (the last 10 % are almost pure noise and carry no class information)
    "stable_checks": 0,  # > 0: also stop once the same class led this many checks in a row
    "keep_top": [[2, 4], [6, 2]],  # [[n, k], ...]: after n trials keep at most the k best classes
    "score": "error",  # statistic averaged over trials: raw "error" or "log" errors
    "anomaly": "unconditional",  # anomaly vs the "unconditional" error or "reference" errors
    "anomaly_trials": 8,  # "unconditional": first this many trials get a no-class evaluation
    "seed": 0,
    "threshold": 0.5,  # confidence below this -> "unidentified"
}


@dataclass
class DiffusionClassifier:
    """A trained class-conditional denoiser used as a classifier and generator."""

    net: object  # ClassUNet
    config: dict
    device: object = None
    abar: object = field(default=None, repr=False)

    def __post_init__(self):
        import torch

        if self.device is None:
            self.device = torch.device("cpu")
        self.net = self.net.to(self.device).eval()
        kind = self.config.get("schedule", "cosine")
        steps = int(self.config.get("timesteps", 1000))
        self.abar = torch.tensor(
            alphas_cumprod(kind, steps), dtype=torch.float32, device=self.device
        )

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def size(self) -> int:
        return int(self.config["size"])

    @property
    def channels(self) -> int:
        return int(self.config.get("channels", 3))

    @property
    def latent(self) -> dict | None:
        """The autoencoder settings of a latent model, ``None`` for a pixel model."""
        lat = self.config.get("arch", {}).get("latent")
        return {**LATENT_DEFAULTS, **lat} if lat else None

    @property
    def z_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, S, S)`` of what is noised: the crop, or its latent."""
        lat = self.latent
        if lat is None:
            return (self.channels, self.size, self.size)
        s = self.size // int(lat["factor"])
        return (int(lat["channels"]), s, s)

    def encode(self, x, batch_size: int = 64):
        """Crops ``(N, C, S, S)`` in [-1, 1] -> what is noised (latents, or the crops)."""
        import torch

        x = torch.as_tensor(x, dtype=torch.float32)
        if self.latent is None:
            return x
        with torch.inference_mode():
            return torch.cat(
                [
                    self.net.encode(x[s : s + batch_size].to(self.device)).float().cpu()
                    for s in range(0, len(x), batch_size)
                ]
            )

    def decode(self, z):
        """Inverse of :meth:`encode`: crops in [-1, 1] (on the model's device)."""
        import torch

        if self.latent is None:
            return z
        with torch.inference_mode():
            return self.net.decode(z)

    @property
    def protocol(self) -> dict:
        return {**PROTOCOL_DEFAULTS, **self.config.get("protocol", {})}

    def to(self, device) -> DiffusionClassifier:
        self.device = device
        self.net = self.net.to(device)
        self.abar = self.abar.to(device)
        return self

    def noisy(self, x0, t, eps):
        """``x_t`` for clean ``x0`` (B,C,H,W), integer ``t`` (B,) and noise ``eps``."""
        a = self.abar[t].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * eps

    def eps(self, xt, t, y):
        """Predicted noise; one network evaluation per row."""
        return self.net(xt, t, y)


BACKBONES = ("unet", "diffusers")


def build_net(config: dict):
    """The noise predictor described by ``config["arch"]`` (untrained).

    ``arch["backbone"]``: ``"unet"`` (default, :class:`~.unet.ClassUNet`, plain
    torch) or ``"diffusers"`` (:class:`~.unet.DiffusersUNet`, needs the optional
    ``diffusion`` extra). ``arch["latent"]`` (a dict, see
    :data:`~.latent.LATENT_DEFAULTS`) wraps it with an autoencoder in a
    :class:`~.unet.LatentDenoiser`: the UNet then works on latents.
    """
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.models.diffusion.unet import ClassUNet, DiffusersUNet

    arch = config.get("arch", {})
    latent = arch.get("latent")
    size, channels = int(config["size"]), int(config.get("channels", 3))
    if latent:
        latent = {**LATENT_DEFAULTS, **latent}
        size, channels = size // int(latent["factor"]), int(latent["channels"])
    kwargs = dict(
        n_classes=len(config["class_names"]),
        in_channels=channels,
        base=int(arch.get("base", 16)),
        mults=tuple(int(m) for m in arch.get("mults", (1, 2, 2))),
        attention=bool(arch.get("attention", False)),
        dropout=float(arch.get("dropout", 0.1)),
    )
    backbone = arch.get("backbone", "unet")
    if backbone == "diffusers" or latent:
        try:
            import diffusers  # noqa: F401
        except ImportError:
            raise InputError(
                None,
                "the 'diffusers' backbone and latent models need the optional extra: "
                "pip install 'napari-nucleus-ai[diffusion]'",
            ) from None
    if backbone == "diffusers":
        net = DiffusersUNet(size=size, **kwargs)
    elif backbone == "unet":
        net = ClassUNet(**kwargs)
    else:
        raise InputError(
            None, f"unknown diffusion backbone {backbone!r} (choose {', '.join(BACKBONES)})"
        )
    if not latent:
        return net
    from napari_nucleus_ai.models.diffusion.latent import build_autoencoder
    from napari_nucleus_ai.models.diffusion.unet import LatentDenoiser

    return LatentDenoiser(net, build_autoencoder(int(config.get("channels", 3)), latent))
