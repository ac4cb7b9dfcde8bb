"""Gradient training shared by ``train`` (:mod:`.classifier_kind`) and ``retrain``.

Both learn the same way: AdamW on the parameters that require gradients, batches
augmented by :func:`augment`, cross-entropy with label smoothing. Only what feeds
the loop differs (class-balanced orders and a cosine schedule when training;
correction-weighted draws and a fixed rate when fine-tuning), so that is passed
in as ``batches`` and the optimiser.

Networks declare what else training must do for them with class attributes, read
by :func:`declares`:

``fits_feature_stats``
    ``fit_feature_stats(x)`` fits input feature statistics before gradient training
    (``hybrid``).
``closed_form_heads``
    ``fit_descriptor(x, y, normalisation, seed)`` and ``refit_heads(x, y, seed,
    groups=...)`` fit logistic heads in closed form, ``cnn_inputs(x)`` shrinks inputs
    for the gradient-trained CNN and ``cnn_only`` makes the forward pass that CNN
    alone while it trains (``morph``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

FITS_FEATURE_STATS = "fits_feature_stats"
CLOSED_FORM_HEADS = "closed_form_heads"
LABEL_SMOOTHING = 0.05


def declares(module, capability: str) -> bool:
    """Whether ``module``'s class declares training ``capability`` (see the module docstring)."""
    return bool(getattr(type(module), capability, False))


def trainable_parameters(module) -> list:
    """The parameters gradient descent updates (frozen heads and backbones excluded)."""
    return [q for q in module.parameters() if q.requires_grad]


def make_optimizer(module, lr: float, weight_decay: float):
    """AdamW over :func:`trainable_parameters`."""
    import torch

    return torch.optim.AdamW(trainable_parameters(module), lr=lr, weight_decay=weight_decay)


def balanced_order(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices drawn with replacement so that every class is drawn equally often."""
    counts = np.bincount(labels)
    w = 1.0 / counts[labels]
    return rng.choice(len(labels), size=n, replace=True, p=w / w.sum())


def augment(x, rng: np.random.Generator, modality: str):
    """Random dihedral transform per sample; affine + colour jitter for image crops.

    STORM patches get the dihedral transform and an intensity gain only: scaling would
    change the very clutch sizes being classified.
    """
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    ks, flips = rng.integers(0, 4, n), rng.random(n) < 0.5
    x = torch.stack(
        [
            torch.rot90(torch.flip(x[i], (-1,)) if flips[i] else x[i], int(ks[i]), (-2, -1))
            for i in range(n)
        ]
    )
    if modality == "storm":
        gain = torch.from_numpy(rng.normal(1.0, 0.1, (n, 1, 1, 1)).astype(np.float32))
        return x * gain
    ang = rng.uniform(-math.pi / 4, math.pi / 4, n)
    scale = rng.uniform(0.9, 1.1, n)
    shift = rng.uniform(-0.06, 0.06, (n, 2))
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0] = np.cos(ang) / scale
    theta[:, 0, 1] = -np.sin(ang) / scale
    theta[:, 1, 0] = np.sin(ang) / scale
    theta[:, 1, 1] = np.cos(ang) / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    c = x.shape[1]
    gain = rng.normal(1.0, 0.08, (n, c, 1, 1)) * rng.normal(1.0, 0.08, (n, 1, 1, 1))
    bias = rng.normal(0.0, 0.1, (n, c, 1, 1)) + rng.normal(0.0, 0.1, (n, 1, 1, 1))
    x = x * torch.from_numpy(gain.astype(np.float32)) + torch.from_numpy(bias.astype(np.float32))
    return x + 0.03 * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    )


@dataclass
class EpochStats:
    """What one pass of :func:`train_epoch` saw: the batch losses and correct predictions."""

    losses: list
    correct: int

    @property
    def mean_loss(self) -> float:
        return float(np.mean(self.losses)) if self.losses else float("nan")


def train_epoch(
    module,
    optimizer,
    x: np.ndarray,
    y: np.ndarray,
    batches: Iterable[np.ndarray],
    rng: np.random.Generator,
    modality: str,
    device,
) -> EpochStats:
    """One gradient step per batch of indices into ``x`` / ``y`` (batches of 1 are skipped).

    ``batches`` may be drawn lazily from ``rng``: each batch is drawn right before its
    augmentation, so a caller that draws per step and one that draws a whole order
    up front each keep their own random stream.
    """
    import torch

    module.train()
    losses, correct = [], 0
    for idx in batches:
        if len(idx) < 2:  # batch-norm cannot train on a single sample
            continue
        xb = augment(torch.from_numpy(x[idx]), rng, modality).to(device)
        yb = torch.from_numpy(y[idx]).to(device)
        out = module(xb)
        loss = torch.nn.functional.cross_entropy(out, yb, label_smoothing=LABEL_SMOOTHING)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        correct += int((out.argmax(1) == yb).sum())
    return EpochStats(losses, correct)
