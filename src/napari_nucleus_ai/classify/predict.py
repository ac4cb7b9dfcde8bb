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
    pixel_size_um=None,
):
    """Generator form of :func:`predict_items` (yields progress per chunk of items).

    ``proposer=False`` makes a diffusion package with a proposer classify over every
    class (:mod:`.models.diffusion.proposer`); other kinds ignore it. ``pixel_size_um``
    (one number, or one per item) is the crops' pixel size: a model with a canonical
    cell frame then scales the cell physically (:mod:`.models.framing`).
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
    chunks, extras, embedded = [], [], []
    domain = (package.card.get("trust") or {}).get("domain")
    embed = getattr(package.modules[0], "embed", None) if domain else None
    # about 32 progress steps (a slow model on 64 crops still reports), at most CHUNK items each
    step = min(CHUNK, max(8, -(-len(items) // 32)))
    px = pixel_size_um
    for start in range(0, len(items), step):
        chunk = items[start : start + step]
        px_chunk = px if px is None or np.ndim(px) == 0 else list(px)[start : start + step]
        x, groups = prepare(chunk, package.card, pixel_size_um=px_chunk)
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
        chunks.append(pool_items(np.asarray(s), groups, min(step, len(items) - start)))
        if embed is not None:
            embedded.append(_embed(package, x))
        done = min(start + step, len(items))
        yield Progress(done, len(items), f"classifying {done}/{len(items)}")
    n_classes = len(package.classes)
    samples = np.concatenate(chunks, 1) if chunks else np.zeros((1, 0, n_classes))
    thr = package.card["uncertainty"]["threshold"] if threshold is None else threshold
    pred = summarise(samples, package.classes, thr)
    if extras:
        cols = {k: np.concatenate([np.asarray(e[k]) for e in extras]) for k in extras[0]}
        if "uncertainty" in cols:  # the kind's own uncertainty replaces the entropy
            pred.uncertainty = cols.pop("uncertainty")
        pred.extra = cols
    _add_trust(pred, package.card, np.concatenate(embedded) if embedded else None)
    return pred


def _embed(package, x: np.ndarray) -> np.ndarray:
    """The first member's :meth:`embed` of prepared inputs (features the domain score reads)."""
    import torch

    module = package.modules[0]
    with torch.inference_mode():
        return module.embed(torch.as_tensor(x).to(package.device)).cpu().numpy()


def _add_trust(pred, card: dict, features=None) -> None:
    """``set`` / ``set_size`` (conformal) and ``ood`` / ``out_of_domain`` where the card has them.

    An out-of-domain cell is ``unidentified`` whatever its probabilities say.
    """
    from napari_nucleus_ai.models.trust import domain_scores, set_columns

    info = card.get("trust") or {}
    if not len(pred.probs):
        return
    extra = dict(pred.extra)
    if info.get("conformal"):
        extra.update(set_columns(pred.probs, info["conformal"], pred.classes))
    if info.get("domain") and features is not None and len(features) == len(pred.probs):
        score = domain_scores(features, pred.probs, info["domain"])
        extra["ood"] = score.astype(np.float32)
        extra["out_of_domain"] = score > info["domain"]["threshold"]
    pred.extra = extra


def predict_items(model, items, **options):
    """Classify raw samples; returns a :class:`~napari_nucleus_ai.models.uncertainty.Prediction`.

    Parameters
    ----------
    model : ModelPackage or path
    items : sequence
        Image crops ``(H, W[, C])`` for crop models; for STORM models, per-nucleus
        localization arrays ``(N, 2)`` (x, y nm) or images rendered at the card's
        ``render_pixel_nm``.
    device, batch_size, tta, mc_dropout, threshold, notes, pixel_size_um : see
        :func:`predict_items_gen`.
    """
    return run_sync(predict_items_gen(model, items, **options))


def predict_paths_gen(model, paths, *, skip_bad: bool = False, **options):
    """Generator form of :func:`predict_paths`.

    ``skip_bad=True``: an input that cannot be read does not stop the others; it
    is a row with an empty ``label`` and its one-line ``error`` (the column is
    added only when some input failed). When no input can be read, the first
    error is raised.
    """
    from napari_nucleus_ai.core.errors import NucleusAIError, one_line

    package = as_package(model)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise InputError(None, "no input files given")
    items, good, errors = [], [], {}
    for i, p in enumerate(paths):
        try:
            items.append(read_item(p, package))
            good.append(i)
        except (NucleusAIError, OSError, ValueError) as e:
            if not skip_bad:
                raise
            errors[i] = one_line(e, p)
        if i % 16 == 0 or i == len(paths) - 1:
            yield Progress(i + 1, len(paths), f"reading inputs {i + 1}/{len(paths)}")
    if not items:
        first = next(iter(errors.values()))
        raise InputError(None, f"none of the {len(paths)} inputs could be read; first: {first}")
    pred = yield from predict_items_gen(package, items, **options)
    df = pred.to_frame(path=[paths[i] for i in good])
    df = df.rename(columns={"class": "label"})
    cols = ["path", "label", "uncertainty"] + [f"p_{c}" for c in package.classes]
    df = df[cols + ["predicted", "entropy", "disagreement"] + list(pred.extra)]
    if errors:
        import pandas as pd

        bad = pd.DataFrame(
            {"path": [paths[i] for i in errors], "error": list(errors.values()), "_i": list(errors)}
        )
        df = pd.concat([df.assign(error="", _i=good), bad], ignore_index=True)
        df = df.sort_values("_i", kind="stable").drop(columns="_i").reset_index(drop=True)
    return df


def predict_paths(model, paths, **options):  # skip_bad=True: see predict_paths_gen
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
    pixel_size_um: float | None = None,
) -> np.ndarray:
    """Where the model looked: SmoothGrad |gradient x input| of the class logit.

    Returns an ``(H, W)`` map in [0, 1] over the network input of ``item`` (the
    resized crop or its canonical frame; for STORM nuclei, the first patch).
    """
    import torch

    from napari_nucleus_ai.models.inputs import prepare

    package = as_package(model)
    x, _ = prepare([item], package.card, n_patches=1, pixel_size_um=pixel_size_um)
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
