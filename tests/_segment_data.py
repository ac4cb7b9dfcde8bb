"""Small synthetic images for the segmentation tests (no files, deterministic)."""

from __future__ import annotations

import numpy as np


def disk(shape, cy, cx, r):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def ellipse(shape, cy, cx, ry, rx):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def nuclei_image(
    seed=0,
    shape=(256, 256),
    r=10.0,
    touching_pairs=3,
    singles=8,
    noise=20.0,
    bg=100.0,
    signal=800.0,
    gradient=0.0,
):
    """A Hoechst-like field: bright round nuclei (some pairs touching) on a noisy background.

    Returns the image (uint16) and the list of true nucleus centres.
    """
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    truth = np.zeros(shape, float)
    centres = []
    h, w = shape
    tries = 0
    while len(centres) < singles + 2 * touching_pairs and tries < 5000:
        tries += 1
        cy, cx = rng.uniform(2 * r, h - 2 * r), rng.uniform(2 * r, w - 2 * r)
        pair = len(centres) < 2 * touching_pairs
        pts = [(cy, cx)]
        if pair:
            ang = rng.uniform(0, np.pi)
            d = 1.6 * r
            pts.append((cy + d * np.sin(ang), cx + d * np.cos(ang)))
        if any(not (r < py < h - r and r < px < w - r) for py, px in pts):
            continue
        if any(np.hypot(py - qy, px - qx) < 3.2 * r for py, px in pts for qy, qx in centres):
            continue
        for py, px in pts:
            rr = r * rng.uniform(0.85, 1.15)
            truth += disk(shape, py, px, rr) * rng.uniform(0.7, 1.0)
            centres.append((py, px))
    img = ndi.gaussian_filter(np.clip(truth, 0, 1), 1.0) * signal + bg
    if gradient:
        img += gradient * np.linspace(0, 1, w)[None, :]
    img += rng.normal(0, noise, shape)
    return np.clip(img, 0, 65535).astype(np.uint16), centres


def empty_field(seed=0, shape=(256, 256), bg=100.0, noise=20.0):
    rng = np.random.default_rng(seed)
    return np.clip(bg + rng.normal(0, noise, shape), 0, None).astype(np.uint16)
