"""A small class-conditional UNet that predicts the noise added to a cell crop.

Written for CPU training at 32-64 px: residual blocks with GroupNorm and SiLU,
one self-attention block at the lowest resolution (optional), a sinusoidal
time embedding and a learned class embedding added to it. Class index
``n_classes`` is the "no class" token used for classifier-free guidance.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "Attention",
    "ClassUNet",
    "DiffusersUNet",
    "LatentDenoiser",
    "ResBlock",
    "timestep_embedding",
]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (float) timesteps, shape ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, ch), ch)


class ResBlock(nn.Module):
    """Residual block conditioned on an embedding (scale and shift after the second norm).

    GroupNorm, SiLU, 3x3 convolution; the embedding gives a per-channel scale and shift;
    SiLU, dropout and a zero-initialised 3x3 convolution; a 1x1 convolution on the skip
    path when the channel count changes.

    Parameters
    ----------
    cin, cout : int
        Input and output channels.
    emb_dim : int
        Length of the conditioning embedding.
    dropout : float
        Dropout probability before the second convolution.

    Notes
    -----
    ``forward(x, emb)`` maps ``(B, cin, H, W)`` and ``(B, emb_dim)`` to ``(B, cout, H, W)``.
    """

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = _norm(cout)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Residual multi-head self-attention over the pixels of a feature map.

    Parameters
    ----------
    ch : int
        Channels (divisible by ``heads``).
    heads : int
        Attention heads.

    Notes
    -----
    ``forward(x)`` maps ``(B, ch, H, W)`` to the same shape.
    """

    def __init__(self, ch: int, heads: int = 4):
        super().__init__()
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)
        self.heads = heads

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        a = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class ClassUNet(nn.Module):
    """Noise predictor ``eps(x_t, t, class)``.

    Parameters
    ----------
    n_classes : int
        Number of real classes; the model also learns a "no class" token.
    in_channels : int
        3 for RGB crops, 1 for grey.
    base : int
        Channels at full resolution.
    mults : tuple of int
        Channel multipliers per resolution level (each level halves the size).
    attention : bool
        Self-attention at the lowest resolution.
    dropout : float
        Dropout probability inside the residual blocks.

    Notes
    -----
    ``forward(x, t, y)`` maps noisy crops ``(B, in_channels, H, W)``, timesteps ``(B,)``
    and class indices ``(B,)`` (``n_classes`` = no class) to the predicted noise.
    """

    def __init__(
        self,
        n_classes: int,
        in_channels: int = 3,
        base: int = 32,
        mults: tuple[int, ...] = (1, 2, 2),
        attention: bool = True,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.n_classes = int(n_classes)
        emb_dim = 4 * base
        self.base = base
        self.time_mlp = nn.Sequential(
            nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.class_emb = nn.Embedding(self.n_classes + 1, emb_dim)
        self.inp = nn.Conv2d(in_channels, base, 3, padding=1)
        chans = [base * m for m in mults]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        skips = []
        c = base
        for i, co in enumerate(chans):
            self.down.append(ResBlock(c, co, emb_dim, dropout))
            skips.append(co)
            c = co
            last = i == len(chans) - 1
            self.pool.append(nn.Identity() if last else nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid1 = ResBlock(c, c, emb_dim, dropout)
        self.attn = Attention(c) if attention else nn.Identity()
        self.mid2 = ResBlock(c, c, emb_dim, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, co in reversed(list(enumerate(chans))):
            self.up.append(ResBlock(c + skips[i], co, emb_dim, dropout))
            c = co
            self.upsample.append(
                nn.Upsample(scale_factor=2, mode="nearest") if i > 0 else nn.Identity()
            )
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv2d(c, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base)) + self.class_emb(y)
        h = self.inp(x)
        hs = []
        for block, pool in zip(self.down, self.pool, strict=True):
            h = block(h, emb)
            hs.append(h)
            h = pool(h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for block, up in zip(self.up, self.upsample, strict=True):
            h = block(torch.cat([h, hs.pop()], dim=1), emb)
            h = up(h)
        return self.out(h)


class DiffusersUNet(nn.Module):
    """The same interface on diffusers' ``UNet2DModel`` (optional extra ``diffusion``).

    Class conditioning uses its ``num_class_embeds`` (``n_classes + 1`` with the
    "no class" token). diffusers installs without torchvision or another torch.

    Parameters
    ----------
    n_classes, in_channels, base, mults, attention, dropout
        As for :class:`ClassUNet`.
    size : int
        The crop size (``sample_size`` of the UNet).
    """

    def __init__(
        self,
        n_classes: int,
        in_channels: int = 3,
        base: int = 32,
        mults: tuple[int, ...] = (1, 2, 2),
        attention: bool = True,
        dropout: float = 0.1,
        size: int = 32,
    ):
        super().__init__()
        from diffusers import UNet2DModel

        self.n_classes = int(n_classes)
        chans = tuple(base * m for m in mults)
        last = len(chans) - 1
        down = tuple(
            "AttnDownBlock2D" if attention and i == last else "DownBlock2D"
            for i in range(len(chans))
        )
        up = tuple(
            reversed(
                [
                    "AttnUpBlock2D" if attention and i == last else "UpBlock2D"
                    for i in range(len(chans))
                ]
            )
        )
        self.unet = UNet2DModel(
            sample_size=size,
            in_channels=in_channels,
            out_channels=in_channels,
            block_out_channels=chans,
            layers_per_block=1,
            down_block_types=down,
            up_block_types=up,
            num_class_embeds=self.n_classes + 1,
            norm_num_groups=math.gcd(8, base),
            dropout=dropout,
            add_attention=attention,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=y).sample


class LatentDenoiser(nn.Module):
    """A denoiser on autoencoder latents; ``forward(z_t, t, y)`` predicts the noise.

    What is noised is the standardised latent ``(ae latent - shift) * scale``,
    ``shift`` and ``scale`` per latent channel (buffers ``(C, 1, 1)``, fitted by
    :func:`~.latent.latent_stats`), so every channel the UNet sees is centred with
    unit variance. Weights saved with one scalar ``scale`` and no ``shift`` load as
    that scale on every channel and no shift.

    Parameters
    ----------
    unet : torch.nn.Module
        The class-conditional noise predictor on latents.
    ae : diffusers.AutoencoderTiny
        The crop autoencoder.
    """

    def __init__(self, unet, ae):
        super().__init__()
        self.unet = unet
        self.ae = ae
        c = int(ae.config.latent_channels)
        self.register_buffer("shift", torch.zeros(c, 1, 1))
        self.register_buffer("scale", torch.ones(c, 1, 1))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        scale = state_dict.get(prefix + "scale")
        if scale is not None and scale.dim() == 0:  # one scale for every channel
            state_dict[prefix + "scale"] = scale.expand_as(self.scale).clone()
            state_dict.setdefault(prefix + "shift", torch.zeros_like(self.shift))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_stats(self, shift, scale) -> None:
        """Store per-channel ``shift`` and ``scale`` (sequences of length C)."""
        with torch.no_grad():
            self.shift.copy_(torch.as_tensor(shift, dtype=torch.float32).view_as(self.shift))
            self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32).view_as(self.scale))

    def forward(self, x, t, y):
        return self.unet(x, t, y)

    def encode(self, x):
        """Crops ``(B, C, S, S)`` in [-1, 1] -> standardised latents."""
        return (self.ae.encode(x).latents - self.shift) * self.scale

    def decode(self, z):
        """Standardised latents -> crops in [-1, 1]."""
        return self.ae.decode(z / self.scale + self.shift).sample.clamp(-1, 1)
