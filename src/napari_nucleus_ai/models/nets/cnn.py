"""Network architectures, built from a card's ``architecture`` entry.

``smallcnn``
    A compact VGG-style CNN (4 stages of two 3x3 conv + batch-norm + ReLU, max
    pooling, global average pooling, dropout, linear) that trains from scratch
    on two CPU cores in minutes.
``hybrid``
    ``smallcnn`` plus a fixed, parameter-free colour and texture descriptor
    (:func:`colour_texture_features`: centre-weighted channel statistics, soft colour
    histograms, multi-scale Laplacian-of-Gaussian and gradient energy, dark-area
    fraction and spread), standardised with statistics of the training set and
    concatenated before the last linear layer. With ~10 crops per class and no
    pretrained weights the descriptor carries most of the signal; the CNN adds
    learned shape cues. Both parts are in the one module, so saliency, MC dropout
    and the package format treat it like any other network.
``morph``
    A fixed morphology descriptor of the cell (:mod:`.morphology`: nucleus
    segmentation, lobes, nucleus / cell ratio, cytoplasm colour and granularity,
    texture) with a logistic-regression head, plus the ``hybrid`` CNN at
    ``cnn_size`` pixels; the two logit vectors are added (:mod:`.morph`). The
    best architecture for brightfield white-cell crops (``--arch auto`` picks it).
``densenet121``, ``resnext50_32x4d``, ``efficientnet_b0``
    The published backbones (AINU, Matek 2019) from ``timm`` (optional extra
    ``pip install 'napari-nucleus-ai[backbones]'``), randomly initialised:
    no weights can be downloaded here.

Every builder takes ``(in_channels, n_classes, **params)`` and returns a
``torch.nn.Module`` mapping ``(N, C, H, W)`` float tensors to ``(N, n_classes)``
logits. This module holds the ``smallcnn`` and ``hybrid`` modules (:class:`SmallCNN`,
:class:`Hybrid`) and imports torch at its top: only the builders import it (the
registry inside :func:`~.registry.build_architecture`), never a cheap import path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Hybrid",
    "SmallCNN",
    "build_hybrid",
    "build_smallcnn",
    "colour_texture_features",
    "hybrid_feature_count",
]


def _conv_block(cin: int, cout: int):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def _make_trunk(in_channels: int, widths):
    layers, cin = [], in_channels
    for w in widths:
        layers.append(_conv_block(cin, int(w)))
        cin = int(w)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), cin


class SmallCNN(nn.Module):
    """The ``smallcnn`` architecture: a compact VGG-style CNN.

    One stage per entry of ``widths`` (two 3x3 convolutions without bias, each followed
    by batch-norm and ReLU, then 2x2 max pooling), global average pooling, dropout and
    a linear layer.

    Parameters
    ----------
    in_channels : int
        Channels of the input crops.
    n_classes : int
        Number of classes (outputs).
    widths : sequence of int
        Channels of each stage.
    dropout : float
        Dropout probability before the linear layer.

    Attributes
    ----------
    trunk : torch.nn.Sequential
        The convolution stages, pooling and flattening: ``(N, C, H, W)`` ->
        ``(N, widths[-1])``.
    dropout : torch.nn.Dropout
    head : torch.nn.Linear
        The classifier layer.

    Notes
    -----
    ``forward(x)`` maps ``(N, in_channels, H, W)`` float tensors to ``(N, n_classes)``
    logits. The state dict keys are ``trunk.*`` and ``head.*``.
    """

    def __init__(self, in_channels: int, n_classes: int, widths=(16, 32, 64, 128), dropout=0.3):
        super().__init__()
        self.trunk, width = _make_trunk(in_channels, widths)
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x):
        return self.head(self.dropout(self.trunk(x)))


def build_smallcnn(in_channels: int, n_classes: int, widths=(16, 32, 64, 128), dropout=0.3):
    """The ``smallcnn`` network (:class:`SmallCNN`), randomly initialised."""
    return SmallCNN(in_channels, n_classes, widths=widths, dropout=dropout)


def colour_texture_features(x, n_bins: int = 8):
    """Fixed colour and texture descriptor of centred crops.

    Parameters
    ----------
    x : torch.Tensor (N, C, H, W)
        Normalised crops (about zero mean, unit variance per channel).

    Returns
    -------
    torch.Tensor (N, F)
        ``F = C * (2 + n_bins + 4) + 6`` features (plus ``2 * n_bins`` colour
        contrasts and 48 nucleus features when ``C == 3``); no parameters.
    """
    n, c, h, w = x.shape
    yy, xx = torch.meshgrid(
        torch.linspace(-1, 1, h, device=x.device),
        torch.linspace(-1, 1, w, device=x.device),
        indexing="ij",
    )
    r2 = (yy**2 + xx**2)[None, None]
    weight = torch.exp(-r2 / (2 * 0.35**2))
    weight = weight / weight.sum()

    def wmean(v):
        return (v * weight).sum(dim=(-2, -1))

    feats = []
    mean = wmean(x)
    feats += [mean, torch.sqrt(torch.clamp(wmean(x**2) - mean**2, min=1e-6))]
    centres = torch.linspace(-2.0, 2.0, n_bins, device=x.device)
    width = 4.0 / (n_bins - 1)

    def soft_hist(v):  # (N, K, H, W) -> (N, K * n_bins)
        d = (v[:, :, None] - centres[None, None, :, None, None]) / width
        return wmean(torch.exp(-0.5 * d**2)).flatten(1)

    feats.append(soft_hist(x))
    if c == 3:
        contrast = torch.stack([x[:, 0] - x[:, 2], x[:, 1] - 0.5 * (x[:, 0] + x[:, 2])], 1)
        feats.append(soft_hist(contrast))
    for sigma in (1.0, 2.0, 4.0):
        k = int(math.ceil(3 * sigma))
        t = torch.arange(-k, k + 1, device=x.device, dtype=x.dtype)
        g = torch.exp(-(t**2) / (2 * sigma**2))
        g = g / g.sum()
        blur = F.conv2d(x.reshape(n * c, 1, h, w), g.view(1, 1, 1, -1), padding=(0, k))
        blur = F.conv2d(blur, g.view(1, 1, -1, 1), padding=(k, 0)).reshape(n, c, h, w)
        feats.append(wmean((x - blur).abs()))
    gy = x[..., 1:, :] - x[..., :-1, :]
    gx = x[..., :, 1:] - x[..., :, :-1]
    feats.append(wmean(F.pad(gy.abs(), (0, 0, 0, 1)) + F.pad(gx.abs(), (0, 1, 0, 0))))
    grey = x.mean(1, keepdim=True)
    for t in (-1.0, -0.5, 0.0):  # dark (stained) area fraction and spread
        dark = torch.sigmoid((t - grey) * 6.0)
        area = dark.mean(dim=(-2, -1))
        spread = (dark * r2).sum(dim=(-2, -1)) / (dark.sum(dim=(-2, -1)) + 1e-3)
        feats += [area, spread]
    if c == 3:
        feats += _nucleus_features(x, r2)
    return torch.cat([f.reshape(n, -1) for f in feats], 1)


def _nucleus_features(x, r2):
    """Soft nucleus masks (blue minus green, the stain contrast of Romanowsky nuclei) near
    the centre: area, spread, colour, lobulation (closing / opening with max-pool
    morphology) and the colour of two cytoplasm rings around them. 48 features."""

    def dilate(m, k):
        return F.max_pool2d(m, 2 * k + 1, 1, k)

    def erode(m, k):
        return -F.max_pool2d(-m, 2 * k + 1, 1, k)

    centre = torch.exp(-r2 / (2 * 0.3**2))
    contrast = x[:, 2:3] - x[:, 1:2]
    out = []
    for t in (0.0, 0.75, 1.5):
        m = torch.sigmoid((contrast - t) * 4) * centre
        a = m.sum((-2, -1)) + 1e-3
        out += [m.mean((-2, -1)), (m * r2).sum((-2, -1)) / a, (x * m).sum((-2, -1)) / a]
        for k in (2, 5):
            out.append((erode(dilate(m, k), k) - m).clamp(min=0).sum((-2, -1)) / a)
            out.append(dilate(erode(m, k), k).sum((-2, -1)) / a)
        ring = (dilate(m, 8) - m).clamp(min=0)
        ra = ring.sum((-2, -1)) + 1e-3
        out += [(x * ring).sum((-2, -1)) / ra, (contrast * ring).sum((-2, -1)) / ra]
        ring2 = (dilate(m, 16) - dilate(m, 8)).clamp(min=0)
        out.append((x * ring2).sum((-2, -1)) / (ring2.sum((-2, -1)) + 1e-3))
    return out


def hybrid_feature_count(in_channels: int) -> int:
    """Length of :func:`colour_texture_features` for ``in_channels``-channel crops."""
    return in_channels * (2 + 8 + 4) + 6 + (16 + 48 if in_channels == 3 else 0)


class Hybrid(nn.Module):
    """The ``hybrid`` architecture: :class:`SmallCNN` plus a fixed colour/texture descriptor.

    The descriptor (:func:`colour_texture_features`, no parameters) is standardised with
    statistics of the training crops (:meth:`fit_feature_stats`) and concatenated with
    the pooled CNN features before the linear layer.

    Parameters
    ----------
    in_channels : int
        Channels of the input crops.
    n_classes : int
        Number of classes (outputs).
    widths : sequence of int
        Channels of each CNN stage.
    dropout : float
        Dropout probability before the linear layer.

    Attributes
    ----------
    trunk : torch.nn.Sequential
        The CNN stages, as in :class:`SmallCNN`.
    feat_mean, feat_std : torch.Tensor
        Buffers standardising the descriptor (zeros and ones until fitted).
    dropout : torch.nn.Dropout
    head : torch.nn.Linear
        The classifier layer on ``widths[-1] + hybrid_feature_count(in_channels)``
        features.

    Notes
    -----
    ``forward(x)`` maps ``(N, in_channels, H, W)`` normalised crops to
    ``(N, n_classes)`` logits. The state dict keys are ``feat_mean``, ``feat_std``,
    ``trunk.*`` and ``head.*``. The class attribute ``fits_feature_stats`` tells training
    (:func:`napari_nucleus_ai.models.training.declares`) to call :meth:`fit_feature_stats`
    on the training crops first.
    """

    fits_feature_stats = True  # training calls fit_feature_stats(x) first

    def __init__(self, in_channels: int, n_classes: int, widths=(16, 32, 64, 128), dropout=0.3):
        super().__init__()
        n_feat = hybrid_feature_count(in_channels)
        self.trunk, width = _make_trunk(in_channels, widths)
        self.register_buffer("feat_mean", torch.zeros(n_feat))
        self.register_buffer("feat_std", torch.ones(n_feat))
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(width + n_feat, n_classes)

    @torch.no_grad()
    def fit_feature_stats(self, x):
        """Standardise the descriptor with the mean and std over training crops ``x``."""
        f = colour_texture_features(x)
        self.feat_mean.copy_(f.mean(0))
        self.feat_std.copy_(f.std(0).clamp(min=1e-4))

    def forward(self, x):
        f = (colour_texture_features(x) - self.feat_mean) / self.feat_std
        return self.head(self.dropout(torch.cat([self.trunk(x), f], 1)))


def build_hybrid(in_channels: int, n_classes: int, widths=(16, 32, 64, 128), dropout=0.3):
    """The ``hybrid`` network (:class:`Hybrid`), randomly initialised."""
    return Hybrid(in_channels, n_classes, widths=widths, dropout=dropout)
