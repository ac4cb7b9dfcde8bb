"""Inference: crops and nuclei -> classes, probabilities and uncertainty.

``predict_items(_gen)``
    Raw samples (image crops, or STORM nuclei as localization arrays) through a
    package, batched on the chosen device, with test-time augmentation / MC
    dropout / ensemble members for disagreement; returns a
    :class:`~napari_nucleus_ai.models.uncertainty.Prediction`.
``predict_paths``
    Files (crops or localization files) -> table ``path, label, uncertainty,
    p_<class>`` (what ``napari-nucleus-ai predict`` writes).
``classify_cells_gen`` (in :mod:`napari_nucleus_ai.classify.cells`)
    A segmented image -> cell table with predictions, class image, uncertainty map.

Devices: ``device`` is a choice for :func:`~.models.device.select_device`; when the
device is unavailable, or fails while running (out of memory, driver error), the
work falls back to the CPU and the reason is recorded in ``notes`` (and logged).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from napari_nucleus_ai.core.device import resolve_device
from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress, run_sync
from napari_nucleus_ai.models.crops import read_item
from napari_nucleus_ai.models.engine import pool_items
from napari_nucleus_ai.models.package import as_package

log = logging.getLogger(__name__)
CHUNK = 256  # items per progress step


def predict_items_gen(
    model,
    items,
    *,
    device: str | None = None,
    batch_size: int = 64,
    tta: int | None = None,
    mc_dropout: int | None = None,
    threshold: float | None = None,
    notes: list | None = None,
    proposer: bool = True,
):
    """Generator form of :func:`predict_items` (yields progress per chunk of items).

    ``proposer=False`` makes a diffusion package with a proposer classify over every
    class (:mod:`.models.diffusion.proposer`); other kinds ignore it.
    """
    from napari_nucleus_ai.models.inputs import prepare
    from napari_nucleus_ai.models.uncertainty import summarise

    package = as_package(model)
    notes = notes if notes is not None else []
    dev = resolve_device(device, notes)
    items = list(items)
    package.to(dev)
    options = {"batch_size": batch_size, "tta": tta, "mc_dropout": mc_dropout}
    options["propose"] = bool(proposer)
    chunks, extras = [], []
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        x, groups = prepare(chunk, package.card)
        options["items"] = chunk  # raw items, for kinds that look at them (a proposer)
        try:
            s = package.kind.predict(package, x, options)
        except (RuntimeError, MemoryError) as e:
            if package.device.type == "cpu":
                raise
            msg = (
                f"{package.device} failed ({' '.join(str(e).split())[:100]}); continuing on the CPU"
            )
            log.warning(msg)
            notes.append(msg)
            package.to("cpu")
            s = package.kind.predict(package, x, options)
        if isinstance(s, tuple):  # a kind may add per-item columns: (samples, {name: (N,) array})
            s, extra = s
            extras.append(extra)
        chunks.append(pool_items(np.asarray(s), groups, min(CHUNK, len(items) - start)))
        yield Progress(min(start + CHUNK, len(items)), len(items), "classifying")
    n_classes = len(package.classes)
    samples = np.concatenate(chunks, 1) if chunks else np.zeros((1, 0, n_classes))
    thr = package.card["uncertainty"]["threshold"] if threshold is None else threshold
    pred = summarise(samples, package.classes, thr)
    if extras:
        cols = {k: np.concatenate([np.asarray(e[k]) for e in extras]) for k in extras[0]}
        if "uncertainty" in cols:  # the kind's own uncertainty replaces the entropy
            pred.uncertainty = cols.pop("uncertainty")
        pred.extra = cols
    return pred


def predict_items(model, items, **options):
    """Classify raw samples; returns a :class:`~napari_nucleus_ai.models.uncertainty.Prediction`.

    Parameters
    ----------
    model : ModelPackage or path
    items : sequence
        Image crops ``(H, W[, C])`` for crop models; for STORM models, per-nucleus
        localization arrays ``(N, 2)`` (x, y nm) or images rendered at the card's
        ``render_pixel_nm``.
    device, batch_size, tta, mc_dropout, threshold, notes : see module docstring.
    """
    return run_sync(predict_items_gen(model, items, **options))


def predict_paths_gen(model, paths, **options):
    """Generator form of :func:`predict_paths`."""
    package = as_package(model)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise InputError(None, "no input files given")
    items = []
    for i, p in enumerate(paths):
        items.append(read_item(p, package))
        if i % 64 == 0:
            yield Progress(i, len(paths), "reading inputs")
    pred = yield from predict_items_gen(package, items, **options)
    df = pred.to_frame(path=paths)
    df = df.rename(columns={"class": "label"})
    cols = ["path", "label", "uncertainty"] + [f"p_{c}" for c in package.classes]
    return df[cols + ["predicted", "entropy", "disagreement"] + list(pred.extra)]


def predict_paths(model, paths, **options):
    """Classify files: DataFrame ``path`` (as given), ``label`` (class or ``unidentified``),
    ``uncertainty``, ``p_<class>`` for every class, then ``predicted``, ``entropy``,
    ``disagreement``."""
    return run_sync(predict_paths_gen(model, paths, **options))


def saliency(
    model,
    item,
    class_index: int | None = None,
    *,
    samples: int = 8,
    noise: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Where the model looked: SmoothGrad |gradient x input| of the class logit.

    Returns an ``(H, W)`` map in [0, 1] over the network input of ``item`` (the
    resized crop; for STORM nuclei, the first patch).
    """
    import torch

    from napari_nucleus_ai.models.inputs import prepare

    package = as_package(model)
    x, _ = prepare([item], package.card, n_patches=1)
    module = package.modules[0].to("cpu").eval()
    t = torch.from_numpy(x[:1])
    if class_index is None:
        with torch.no_grad():
            class_index = int(module(t).argmax(1))
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros_like(t)
    for _ in range(samples):
        xi = (t + noise * torch.randn(t.shape, generator=g)).requires_grad_(True)
        module(xi)[0, class_index].backward()
        total += (xi.grad * xi).abs().detach()
    if package.device is not None:
        module.to(package.device)
    sal = total[0].sum(0).numpy()
    from scipy import ndimage

    sal = ndimage.gaussian_filter(sal, 1.5)
    return (sal / max(float(sal.max()), 1e-12)).astype(np.float32)
