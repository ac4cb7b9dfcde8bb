"""Noise schedule of the denoising diffusion model (numpy, no torch needed).

``x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * eps`` for integer ``t`` in
``[0, T)``. The cosine schedule (Nichol & Dhariwal 2021) is the default; the
linear one of DDPM (Ho et al. 2020) is available.
"""

from __future__ import annotations

import numpy as np


def alphas_cumprod(kind: str = "cosine", steps: int = 1000) -> np.ndarray:
    """``abar_t`` for ``t = 0 .. steps-1``, float64, decreasing from ~1 to ~0."""
    if steps < 2:
        raise ValueError(f"a schedule needs at least 2 steps, got {steps}")
    if kind == "cosine":
        s = 0.008
        x = np.linspace(0, steps, steps + 1) / steps
        f = np.cos((x + s) / (1 + s) * np.pi / 2) ** 2
        abar = f / f[0]
        betas = np.clip(1 - abar[1:] / abar[:-1], 0, 0.999)
    elif kind == "linear":
        betas = np.linspace(1e-4 * 1000 / steps, 0.02 * 1000 / steps, steps)
    else:
        raise ValueError(f"unknown noise schedule {kind!r} (cosine or linear)")
    return np.cumprod(1.0 - betas)


def trial_timesteps(
    n: int, steps: int, lo: float = 0.0, hi: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Noise levels for ``n`` classification trials, well spread in every prefix.

    Stratified over ``[lo, hi) * steps`` with a van der Corput (base 2) order,
    so the first ``k`` trials of the sequence already cover the range evenly:
    that matters because adaptive classification stops after a prefix.
    The ``seed`` jitters each level inside its stratum.
    """
    rng = np.random.default_rng(seed)
    k = np.arange(1, n + 1)
    vdc = np.zeros(n)
    denom = 1.0
    kk = k.copy()
    while kk.any():
        denom *= 2
        vdc += (kk % 2) / denom
        kk //= 2
    u = (vdc + rng.uniform(0, 1, n) / max(n, 1)) % 1.0
    t = (lo + (hi - lo) * u) * steps
    return np.clip(t.astype(np.int64), 0, steps - 1)
