"""Toy crops and a tiny trained diffusion classifier shared by the diffusion tests."""

from __future__ import annotations

import functools

import numpy as np

NAMES = ["red blob", "blue ring", "green bar"]


def toy_crops(per_class: int = 8, size: int = 16, seed: int = 0):
    """Three visually distinct classes of 16 px RGB "cells" in [-1, 1] with jitter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    xs, ys = [], []
    for c in range(3):
        for _ in range(per_class):
            dy, dx = rng.uniform(-1.5, 1.5, 2)
            r = np.hypot(yy - dy, xx - dx)
            img = np.full((3, size, size), 0.85)
            if c == 0:
                m = r < rng.uniform(4, 5.5)
                img[:, m] = [[0.8], [0.2], [0.25]]
            elif c == 1:
                m = (r > 3) & (r < rng.uniform(5, 6.5))
                img[:, m] = [[0.2], [0.25], [0.8]]
            else:
                m = np.abs(yy - dy) < rng.uniform(1.5, 2.5)
                img[:, m] = [[0.2], [0.7], [0.25]]
            img += rng.normal(0, 0.03, img.shape)
            xs.append(np.clip(img, 0, 1) * 2 - 1)
            ys.append(c)
    return np.asarray(xs, np.float32), np.asarray(ys), list(NAMES)


@functools.lru_cache(maxsize=1)
def tiny_model():
    """Trained once per test session (a few seconds on one core)."""
    import torch

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.train import train_diffusion

    torch.manual_seed(0)
    x, y, names = toy_crops(per_class=8, seed=0)
    return run_sync(
        train_diffusion(
            x,
            y,
            names,
            steps=250,
            batch_size=24,
            lr=3e-3,
            arch={"base": 8, "mults": [1, 2], "dropout": 0.0},
            protocol={"max_trials": 16, "check_every": 2, "alpha": 0.05, "t_lo": 0.05, "t_hi": 0.6},
        )
    )


def tiny_package(out):
    """Save :func:`tiny_model` as a model package at ``out`` (a folder); returns the path."""
    from napari_nucleus_ai.models.package import save_model

    model = tiny_model()
    cfg = model.config
    card = {
        "name": "tiny diffusion",
        "kind": "diffusion",
        "task": "classification",
        "modality": "brightfield_rgb",
        "classes": [
            {"name": c, "colour": col}
            for c, col in zip(cfg["class_names"], ["#ff0000", "#0000ff", "#00ff00"], strict=True)
        ],
        "input": {
            "crop_size": cfg["size"],
            "channels": 3,
            "pixel_size": 1.0,
            "unit": "px",
            "source_crop_px": 16.0,
            "normalisation": {"mean": [0.5] * 3, "std": [0.5] * 3},
        },
        "architecture": {
            "name": "diffusion",
            "params": {**cfg["arch"], "schedule": cfg["schedule"], "timesteps": cfg["timesteps"]},
        },
        "calibration": {"temperature": 1.0},
        "uncertainty": {"threshold": 0.5, "tta": 1, "mc_dropout": 0},
        "diffusion": {"protocol": cfg["protocol"], "calibration": cfg["calibration"]},
        "provenance": {},
        "metrics": {},
    }
    return save_model(card, [model.net], out)


def toy_field(seed: int = 0):
    """A 48 x 48 RGB uint8 field holding 3 toy cells (one per class) and their labels."""
    x, y, _ = toy_crops(per_class=1, seed=seed)
    img = np.full((48, 48, 3), 217, np.uint8)
    labels = np.zeros((48, 48), np.uint16)
    for i, crop in enumerate(x):
        r0, c0 = 16, 4 + 14 * i
        rgb = np.clip((np.moveaxis(crop, 0, -1) + 1) * 127.5, 0, 255).astype(np.uint8)
        img[r0 : r0 + 16, c0 - 2 : c0 + 14] = rgb
        labels[r0 + 3 : r0 + 13, c0 + 1 : c0 + 11] = i + 1
    return img, labels, y
