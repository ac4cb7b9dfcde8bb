"""Synthetic cells and counterfactual maps from the class-conditional denoiser.

:func:`generate` samples new crops of a chosen class with deterministic DDIM
(Song et al. 2021) and classifier-free guidance (Ho & Salimans 2022), starting
at the noise level :func:`sampling_timesteps` picks;
:func:`grid` tiles them into one RGB image for an Image layer.
:func:`counterfactual` explains a decision: over the shared noise trials it
maps, pixel by pixel, how much better the cell is denoised as its class than
as the runner-up (positive = evidence for its class), smoothed by
:data:`MAP_SMOOTH` pixels of the network's grid, and renders the cell
"as the runner-up" by partly noising it and denoising under the other class.
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.models.diffusion.latent import LATENT_CLIP

#: Sampling starts at the noisiest level whose signal amplitude ``sqrt(abar_t)`` is at least
#: this. Nearer the end of the schedule the predicted clean image is ``1 / sqrt(abar_t)``
#: times the noise prediction's error (~2e4 at the cosine schedule's last step): the
#: first step then injects a clipped, saturated image that the later steps take for
#: signal (colour casts, tiles of texture). Starting from pure noise at this level
#: assumes only the missing 1 % of the signal variance is the data mean (zero).
SAMPLE_START_SIGNAL = 0.1


#: Classifier-free guidance weight of :func:`generate` (eps = (1 + w) eps_class - w eps_none).
#: On the 64-px PBC latent model, weights 0 / 1 / 2 / 3 give 17 / 25 / 29 / 31 % of the
#: generated cells recognised as their class by the default classifier (docs/generative.md).
GUIDANCE = 2.0


#: Gaussian sigma of the counterfactual map, in pixels of the grid the network denoises
#: (crop pixels for a pixel model, latent pixels for a latent one). Per pixel the error
#: difference is a speckle: on synthetic cells whose classes differ only in a granule
#: sector, about a quarter of the sector's pixels have the wrong sign, and 64 trials
#: instead of 32 do not change that (it comes from the crop, not from the noise draws).
#: Smoothing by one grid pixel pools each pixel with its neighbours and keeps the map's
#: total (the error gap the classification sees) up to the border. Top-k IoU with the
#: sector: 0.53 smoothed, 0.34 per pixel, over 60 held-out cells (docs/generative.md).
MAP_SMOOTH = 1.0


def sampling_timesteps(abar, steps: int) -> np.ndarray:
    """``steps`` DDIM timesteps from the start level (:data:`SAMPLE_START_SIGNAL`) to 0."""
    a = np.asarray(abar, np.float64)
    start = int(np.flatnonzero(np.sqrt(a) >= SAMPLE_START_SIGNAL).max())
    return np.linspace(start, 0, max(1, min(int(steps), start + 1))).round().astype(int)


def _ddim(
    model,
    x,
    y,
    t_seq,
    guidance: float,
    done0: int = 0,
    total: int | None = None,
    *,
    eta: float = 0.0,
    interval: tuple[float, float] | None = None,
    gen=None,
):
    """DDIM from ``x`` at ``t_seq[0]`` down to a clean image (deterministic at ``eta`` 0).

    ``interval``: guide only where the noise level ``sqrt((1 - abar) / abar)`` lies in
    ``(lo, hi]`` (Kynkaanniemi et al. 2024); ``eta``: the share of DDPM noise per step."""
    import torch

    null = torch.full_like(y, len(model.class_names))
    abar = model.abar
    for i, t in enumerate(t_seq):
        tt = torch.full((len(x),), int(t), device=model.device, dtype=torch.long)
        a = abar[int(t)]
        guide = guidance
        if interval is not None:
            sigma = float(((1 - a) / a).sqrt())
            guide = guidance if interval[0] < sigma <= interval[1] else 0.0
        with torch.inference_mode():
            if guide:
                e = model.eps(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, null]))
                ec, eu = e.chunk(2)
                eps = (1 + guide) * ec - guide * eu
            else:
                eps = model.eps(x, tt, y)
        a_prev = (
            abar[int(t_seq[i + 1])]
            if i + 1 < len(t_seq)
            else torch.tensor(1.0, device=model.device)
        )
        # near t = T, 1 / sqrt(abar) is ~2e4 on the cosine schedule: clip the predicted
        # clean image to where the data live (crops: [-1, 1]; unit-variance latents: +-LATENT_CLIP)
        lim = 1.0 if model.latent is None else LATENT_CLIP
        x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-lim, lim)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        if eta and i + 1 < len(t_seq):
            var = eta**2 * (1 - a_prev) / (1 - a) * (1 - a / a_prev)
            noise = torch.randn(x.shape, generator=gen).to(x.device)
            x = a_prev.sqrt() * x0 + (1 - a_prev - var).sqrt() * eps + var.sqrt() * noise
        else:
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        yield Progress(done0 + i + 1, total or len(t_seq), f"denoising step {i + 1}/{len(t_seq)}")
    return x


def generate(
    model,
    class_name: str,
    n: int = 16,
    *,
    steps: int = 50,
    guidance: float = GUIDANCE,
    seed: int = 0,
    batch_size: int = 64,
    eta: float = 0.0,
    interval: tuple[float, float] | None = None,
):
    """Sample ``n`` synthetic crops of ``class_name``; a generator yielding Progress.

    ``eta`` > 0 adds that share of DDPM noise at every step (seeded by ``seed``);
    ``interval`` guides only at noise levels in ``(lo, hi]`` (see :func:`_ddim`). Neither
    raised the share of 128-px cells the default classifier recognises (docs/generative.md).

    Returns float32 ``(n, C, S, S)`` in [-1, 1].
    """
    import torch

    if class_name not in model.class_names:
        raise ValueError(
            f"unknown class {class_name!r}; the model knows {', '.join(model.class_names)}"
        )
    if n < 1 or steps < 1:
        raise ValueError("n and steps must be >= 1")
    t_seq = sampling_timesteps(model.abar.cpu().numpy(), steps)
    steps = len(t_seq)
    g = torch.Generator().manual_seed(int(seed))
    out = []
    n_batches = -(-n // batch_size)
    for b in range(n_batches):
        m = min(batch_size, n - b * batch_size)
        x = torch.randn((m, *model.z_shape), generator=g).to(model.device)
        y = torch.full(
            (m,), model.class_names.index(class_name), device=model.device, dtype=torch.long
        )
        x = yield from _ddim(
            model,
            x,
            y,
            t_seq,
            guidance,
            b * steps,
            n_batches * steps,
            eta=eta,
            interval=interval,
            gen=g,
        )
        out.append(model.decode(x).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Model-range crops (N, C, S, S) in [-1, 1] -> uint8 (N, S, S, C) (C=1 squeezed)."""
    a = np.clip((np.asarray(x) + 1) * 127.5, 0, 255).round().astype(np.uint8)
    a = np.moveaxis(a, 1, -1)
    return a[..., 0] if a.shape[-1] == 1 else a


def grid(x: np.ndarray, cols: int | None = None, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile crops (N, C, S, S) in [-1, 1] into one uint8 image with ``pad`` pixel gutters."""
    tiles = to_uint8(x)
    n = len(tiles)
    cols = int(cols or int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / cols))
    s = tiles.shape[1]
    shape = (rows * (s + pad) + pad, cols * (s + pad) + pad) + tiles.shape[3:]
    img = np.full(shape, fill, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        img[
            pad + r * (s + pad) : pad + r * (s + pad) + s,
            pad + c * (s + pad) : pad + c * (s + pad) + s,
        ] = tile
    return img


def counterfactual(
    model,
    x0: np.ndarray,
    *,
    target: str | None = None,
    source: str | None = None,
    trials: int | None = None,
    strength: float = 0.5,
    steps: int = 25,
    guidance: float = 1.0,
    smooth: float = MAP_SMOOTH,
):
    """Explain one crop's class against the runner-up; a generator yielding Progress.

    Parameters
    ----------
    model : DiffusionClassifier
    x0 : (C, S, S) float in [-1, 1]
    source, target : str, optional
        The class to explain and the alternative; default the predicted class and
        the runner-up of an exhaustive classification with ``trials`` trials.
    strength : float
        How far the cell is noised (fraction of the schedule) before it is
        denoised as ``target`` for the counterfactual image.
    smooth : float
        Gaussian sigma of the map in pixels of the network's grid (0: per pixel).

    Returns
    -------
    dict
        ``map`` (S, S) float: mean over trials of the per-pixel denoising error as
        ``target`` minus as ``source`` (positive = pixels that look like ``source``),
        smoothed by ``smooth``;
        ``image`` (C, S, S): the cell re-drawn as ``target``; ``source``,
        ``target``, ``p`` (class probabilities).
    """
    import torch

    from napari_nucleus_ai.models.diffusion.classify import classify_crops, trial_plan

    k = int(trials or model.protocol["max_trials"])
    x0 = np.asarray(x0, np.float32)[None]
    res = yield from classify_crops(model, x0, exhaustive=True, max_trials=k)
    order = np.argsort(-res["p"][0])
    names = model.class_names
    src = names.index(source) if source else int(order[0])
    tgt = names.index(target) if target else int(order[1] if order[0] == src else order[0])
    t_plan, eps_plan = trial_plan(model, k)
    x = model.encode(x0).to(model.device)
    diff = torch.zeros(model.z_shape[1:])
    with torch.inference_mode():
        for s in range(0, k, 32):
            ks = np.arange(s, min(k, s + 32))
            eps = eps_plan[ks].to(model.device)
            t = torch.as_tensor(t_plan[ks], device=model.device)
            xt = model.noisy(x.expand(len(ks), -1, -1, -1), t, eps)
            maps = []
            for c in (src, tgt):
                y = torch.full((len(ks),), c, device=model.device, dtype=torch.long)
                maps.append(((model.eps(xt, t, y) - eps) ** 2).mean(dim=1))
            diff += (maps[1] - maps[0]).sum(0).float().cpu()
            yield Progress(s + len(ks), k + steps, "counterfactual map")
    steps_total = int(model.config.get("timesteps", 1000))
    t_max = int(sampling_timesteps(model.abar.cpu().numpy(), 1)[0])
    t_start = min(int(np.clip(strength, 0.0, 1.0) * (steps_total - 1)), t_max)
    t_seq = np.linspace(t_start, 0, max(1, steps)).round().astype(int)
    g = torch.Generator().manual_seed(int(model.protocol["seed"]))
    eps = torch.randn(x.shape, generator=g).to(model.device)
    xt = model.noisy(x, torch.tensor([t_start], device=model.device), eps)
    y = torch.tensor([tgt], device=model.device)
    img = yield from _ddim(model, xt, y, t_seq, guidance, k, k + steps)
    diff = diff / k
    if smooth > 0:
        from scipy.ndimage import gaussian_filter

        diff = torch.from_numpy(gaussian_filter(diff.numpy(), float(smooth), mode="nearest"))
    if diff.shape[-1] != model.size:  # a latent map, shown at the crop's size
        diff = torch.nn.functional.interpolate(
            diff[None, None], size=(model.size, model.size), mode="bilinear"
        )[0, 0]
    return {
        "map": diff.numpy().astype(np.float32),
        "image": model.decode(img)[0].float().cpu().numpy(),
        "source": names[src],
        "target": names[tgt],
        "p": res["p"][0],
        "classes": list(names),
    }
