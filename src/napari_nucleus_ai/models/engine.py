"""Batched forward passes: devices, pinned memory, mixed precision, TTA and MC dropout.

:func:`probability_samples` is what the classifier kind's ``predict`` runs. On
CUDA, batches go through pinned host memory (``non_blocking`` copies) and
``torch.autocast`` (float16); on MPS and CPU in float32.
"""

from __future__ import annotations

import numpy as np

# Dihedral transforms in the order they are added for tta = 1, 2, 4, 8.
_DIHEDRAL = (
    (0, False),
    (0, True),
    (1, False),
    (3, False),
    (2, False),
    (1, True),
    (2, True),
    (3, True),
)


def dihedral(x, k: int, flip: bool):
    import torch

    if flip:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def set_mc_dropout(module, on: bool) -> None:
    """Dropout layers in train mode (sampling) while everything else stays in eval."""
    from torch import nn

    module.eval()
    if on:
        for m in module.modules():
            if isinstance(m, nn.Dropout | nn.Dropout2d | nn.AlphaDropout):
                m.train()


def to_device(batch: np.ndarray, device):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(batch))
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def logits_batched(module, x: np.ndarray, device, batch_size: int = 64, transform=None):
    """Logits ``(N, C)`` float32 of ``module`` over ``x`` in batches (no grad)."""
    import torch

    out = []
    amp = device.type == "cuda"
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            t = to_device(x[i : i + batch_size], device)
            if transform is not None:
                t = transform(t)
            if amp:
                with torch.autocast("cuda", dtype=torch.float16):
                    y = module(t)
            else:
                y = module(t)
            out.append(y.float().cpu())
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).numpy()


def probability_samples(
    modules,
    x: np.ndarray,
    *,
    device,
    temperature: float = 1.0,
    batch_size: int = 64,
    tta: int = 1,
    mc_dropout: int = 0,
) -> np.ndarray:
    """Calibrated softmax samples ``(S, N, C)``: members x TTA transforms x dropout passes."""
    import torch

    samples = []
    for module in modules:
        for k, flip in _DIHEDRAL[: max(1, int(tta))]:

            def transform(t, k=k, flip=flip):
                return dihedral(t, k, flip)

            passes = [False] + [True] * int(mc_dropout)
            for mc in passes:
                set_mc_dropout(module, mc)
                logits = logits_batched(module, x, device, batch_size, transform)
                samples.append(torch.softmax(torch.from_numpy(logits) / temperature, 1).numpy())
            set_mc_dropout(module, False)
    return np.stack(samples)


def pool_items(samples: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Pool per-patch probability samples ``(S, M, C)`` into per-item ``(S, n, C)``.

    Patches of one STORM nucleus are pooled by their geometric mean (mean
    log-probability, renormalised): each patch is evidence about the same nucleus.
    Items with one input each are returned unchanged.
    """
    if len(groups) == n and np.array_equal(groups, np.arange(n)):
        return samples
    logp = np.log(np.clip(np.asarray(samples, np.float64), 1e-12, 1.0))
    out = np.zeros((logp.shape[0], n, logp.shape[2]), np.float64)
    np.add.at(out, (slice(None), groups), logp)
    out /= np.bincount(groups, minlength=n)[None, :, None]
    out = np.exp(out - out.max(-1, keepdims=True))
    return out / out.sum(-1, keepdims=True)
