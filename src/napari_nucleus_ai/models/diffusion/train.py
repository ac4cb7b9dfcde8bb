"""Training the class-conditional denoiser (a generator yielding Progress).

Standard DDPM epsilon-prediction loss with uniform timesteps, class dropout to
the "no class" token (for classifier-free guidance in generation), an
exponential moving average of the weights (the EMA weights are what is saved),
flips / 90-degree rotations / mild colour jitter as augmentation, class-balanced
sampling and fixed seeds. After training, :func:`~.classify.calibrate` fits the
confidence temperature and the anomaly reference on the training crops.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.models.diffusion.model import (
    PROTOCOL_DEFAULTS,
    DiffusionClassifier,
    build_net,
)

#: Small enough to train on 2 CPU cores in minutes at 32 px (about 0.2 M parameters).
ARCH_DEFAULTS = {
    "base": 16,
    "mults": [1, 2, 2],
    "attention": False,
    "dropout": 0.1,
    "backbone": "unet",
}


@dataclass(frozen=True)
class StepProgress(Progress):
    """Training progress with the running (smoothed) loss."""

    loss: float = float("nan")


TRAIN_DEFAULTS = {
    "steps": 3000,
    "batch_size": 32,
    "lr": 1e-3,
    "ema": 0.995,
    "p_uncond": 0.1,
    "seed": 0,
    "calibration_trials": 32,
}


def _augment(x, rng):
    """Random dihedral transform and per-channel gain/offset jitter of a batch (torch)."""
    import torch

    k = int(rng.integers(4))
    x = torch.rot90(x, k, dims=(2, 3))
    if rng.random() < 0.5:
        x = torch.flip(x, dims=(3,))
    b, c = x.shape[:2]
    gain = torch.from_numpy(rng.uniform(0.92, 1.08, (b, c, 1, 1)).astype(np.float32))
    shift = torch.from_numpy(rng.uniform(-0.04, 0.04, (b, c, 1, 1)).astype(np.float32))
    return ((x + 1) * gain - 1 + shift).clamp(-1, 1)


def train_diffusion(
    x: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    *,
    arch: dict | None = None,
    steps: int = TRAIN_DEFAULTS["steps"],
    batch_size: int = TRAIN_DEFAULTS["batch_size"],
    lr: float = TRAIN_DEFAULTS["lr"],
    ema: float = TRAIN_DEFAULTS["ema"],
    p_uncond: float = TRAIN_DEFAULTS["p_uncond"],
    seed: int = TRAIN_DEFAULTS["seed"],
    schedule: str = "cosine",
    timesteps: int = 1000,
    protocol: dict | None = None,
    calibration_trials: int = TRAIN_DEFAULTS["calibration_trials"],
    device=None,
    extra_config: dict | None = None,
    calibrate_after: bool = True,
    augment: bool = True,
    checkpoint=None,
    checkpoint_every: int = 500,
    init_state: dict | None = None,
    precision: str = "auto",
):
    """Train a :class:`DiffusionClassifier` on crops ``x`` (N, C, S, S) in [-1, 1].

    Yields :class:`~napari_nucleus_ai.core.progress.Progress` (message holds the
    running loss) and returns the trained, calibrated model. ``history`` in the
    returned config holds the loss curve. ``calibrate_after=False`` leaves
    calibration to the caller (:func:`~.classify.calibrate`). ``augment=False``
    skips the batch augmentation (for latents augmented before encoding).
    ``checkpoint(ema_net, step)`` is called every ``checkpoint_every`` steps and
    at the end, so a stopped run still leaves a model. ``init_state`` (a state
    dict of the same network) starts from trained weights instead of random ones.
    ``precision``: the network's arithmetic in training (:func:`~napari_nucleus_ai.models.
    engine.training_precision`; ``auto``: bfloat16 where the device computes it natively);
    the config's ``training.precision`` records the one used.
    """
    import torch

    from napari_nucleus_ai.models.diffusion.classify import calibrate
    from napari_nucleus_ai.models.engine import autocast, training_precision

    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    if x.ndim != 4 or x.shape[2] != x.shape[3] or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"expected crops (N, C, S, S) with N labels, got {x.shape} and {y.shape}")
    n_classes = len(class_names)
    arch = {**ARCH_DEFAULTS, **(arch or {})}
    levels = len(arch["mults"]) - 1
    if x.shape[-1] % (2**levels):
        raise ValueError(f"crop size {x.shape[-1]} must be divisible by {2**levels}")
    config = {
        "kind": "diffusion",
        "class_names": list(class_names),
        "size": int(x.shape[-1]),
        "channels": int(x.shape[1]),
        "schedule": schedule,
        "timesteps": int(timesteps),
        "arch": arch,
        "protocol": {**PROTOCOL_DEFAULTS, **(protocol or {})},
        "training": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "ema": ema,
            "p_uncond": p_uncond,
            "seed": seed,
            "n_train": int(len(x)),
            "per_class": np.bincount(y, minlength=n_classes).tolist(),
        },
        **(extra_config or {}),
    }
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = device if device is not None else torch.device("cpu")
    precision = training_precision(precision, dev)
    config["training"]["precision"] = precision
    net = build_net(config)
    if init_state is not None:
        net.load_state_dict(init_state)
    net = net.to(dev)
    ema_net = copy.deepcopy(net).eval()
    for p in ema_net.parameters():
        p.requires_grad_(False)
    model = DiffusionClassifier(net, config, device=dev)
    abar = model.abar
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, min(200, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            min(1.0, (s + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / max(1, steps))))
        ),
    )
    # class-balanced sampling weights
    counts = np.bincount(y, minlength=n_classes).astype(float)
    w = 1.0 / counts[y]
    w /= w.sum()
    xt_all = torch.from_numpy(x)
    yt_all = torch.from_numpy(y)
    history = []
    t0 = time.perf_counter()
    running = None
    net.train()
    for step in range(steps):
        idx = rng.choice(len(x), size=batch_size, p=w)
        xb = (_augment(xt_all[idx], rng) if augment else xt_all[idx]).to(dev)
        yb = yt_all[idx].clone()
        yb[torch.from_numpy(rng.random(batch_size) < p_uncond)] = n_classes
        yb = yb.to(dev)
        t = torch.randint(0, timesteps, (batch_size,), device=dev)
        eps = torch.randn_like(xb)
        with autocast(precision, dev):
            pred = net(model.noisy(xb, t, eps), t, yb)
        loss = torch.nn.functional.mse_loss(pred.float(), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            d = min(ema, (1 + step) / (10 + step))
            for pe, pn in zip(ema_net.parameters(), net.parameters(), strict=True):
                pe.mul_(d).add_(pn.detach(), alpha=1 - d)
            for be, bn in zip(ema_net.buffers(), net.buffers(), strict=True):
                be.copy_(bn)
        lv = float(loss.detach())
        running = lv if running is None else 0.98 * running + 0.02 * lv
        if (step + 1) % 20 == 0 or step == steps - 1:
            history.append([step + 1, running])
            msg = f"diffusion step {step + 1}/{steps} loss {running:.4f}"
            yield StepProgress(step + 1, steps + 1, msg, running)
        if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or step == steps - 1):
            checkpoint(ema_net, step + 1)
    del abar
    model = DiffusionClassifier(ema_net, config, device=dev)
    config["history"] = history
    config["training"]["seconds"] = round(time.perf_counter() - t0, 1)
    if calibrate_after:
        yield Progress(steps, steps + 1, "calibrating confidence and anomaly reference")
        calibrate(model, x, y, trials=calibration_trials)
    yield Progress(steps + 1, steps + 1, "done")
    return model
