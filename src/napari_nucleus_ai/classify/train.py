"""Train a model package from labelled crops or STORM nuclei.

:func:`train_gen` is the core generator (progress for docks and the CLI);
:func:`train` is the plain function. Both accept a class-folder path (see
:mod:`napari_nucleus_ai.classify.trainset`) or an in-memory
:class:`~napari_nucleus_ai.classify.trainset.TrainingSet` (the dock's layers, the
corrections store), pick the model kind from ``arch`` (:mod:`.models.kinds`),
hold out a stratified validation split, train with the kind's ``fit`` and save
a package with calibration, provenance and validation metrics.

Every epoch yields an :class:`EpochProgress` whose ``metrics`` carry
``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` - the dock plots them.
Cancelling (closing the generator, ``worker.quit()``) stops at the next batch
boundary and writes nothing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from dataclasses import dataclass

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.palette import default_colours
from napari_nucleus_ai.core.progress import Progress, run_sync


@dataclass
class TrainResult:
    """What training returns: the loaded package, where it was saved, the curves."""

    package: object
    path: str | None
    history: list
    metrics: dict

    @property
    def card(self) -> dict:
        return self.package.card


DEFAULT_CROP = {"morph": 192}  # the morphology descriptor needs fine detail (granules)


def resolve_arch(arch: str, ts) -> str:
    """``auto``: ``morph`` for RGB brightfield crops, ``smallcnn`` for everything else."""
    if arch != "auto":
        return arch
    rgb = ts.modality == "brightfield_rgb" and np.asarray(ts.samples[0]).ndim == 3
    return "morph" if rgb else "smallcnn"


def resolve_field(field, arch: str, ts) -> float:
    """The crop field for ``arch`` on ``ts``: a number as given, ``"auto"`` from the cells
    (:func:`.framing.auto_field`), ``None`` = auto for ``morph`` on RGB crops, else 1."""
    from napari_nucleus_ai.models.framing import auto_field

    if ts.modality == "storm":
        if field not in (None, "auto", 1, 1.0):
            raise InputError(None, "a crop field applies to image crops, not STORM nuclei")
        return 1.0
    if field is None:
        field = "auto" if arch == "morph" else 1.0
    if field == "auto":
        rgb = np.asarray(ts.samples[0]).ndim == 3
        return auto_field(ts.samples) if rgb else 1.0
    try:
        value = float(field)
    except (TypeError, ValueError):
        raise InputError(None, f"the field must be a number or 'auto', got {field!r}") from None
    if not 0.05 <= value <= 1.0:
        raise InputError(None, f"the field must be 0.05..1 of the crop side, got {value}")
    return value


def make_card(
    ts,
    *,
    arch: str,
    name: str,
    crop_size: int,
    params=None,
    colours=None,
    render_pixel_nm: float = 10.0,
    patches: int = 16,
    members: int = 1,
    tta: int = 4,
    mc_dropout: int = 0,
    threshold: float = 0.5,
    kind: str = "classifier",
    field: float = 1.0,
) -> dict:
    """A card for training set ``ts`` before training (normalisation and calibration to be filled).

    ``field`` is the centre fraction of each crop the network sees (:mod:`.framing`).
    """
    channels = 1
    if ts.modality != "storm":
        first = np.asarray(ts.samples[0])
        channels = 3 if first.ndim == 3 else 1
    spec = {
        "crop_size": int(crop_size),
        "channels": channels,
        "normalisation": {"mean": [0.0] * channels, "std": [1.0] * channels},
    }
    if ts.modality == "storm":
        if not 0 < render_pixel_nm <= 20:
            raise InputError(
                None, f"STORM nuclei must be rendered at 20 nm or finer, got {render_pixel_nm} nm"
            )
        spec.update(
            pixel_size=float(render_pixel_nm),
            unit="nm",
            storm={
                "render_pixel_nm": float(render_pixel_nm),
                "patches": int(patches),
                "blur_px": 1.0,
            },
        )
    else:
        side = float(np.median([min(np.asarray(s).shape[:2]) for s in ts.samples]))
        if not 0.05 <= float(field) <= 1.0:
            raise InputError(None, f"the field must be 0.05..1 of the crop side, got {field}")
        spec.update(
            pixel_size=float(ts.pixel_size) * side * float(field) / crop_size,
            unit=ts.unit,
            source_crop_px=side,
        )
        if float(field) < 1.0:
            spec["field"] = float(field)
    colours = list(colours or default_colours(ts.classes))
    return {
        "format": "napari-nucleus-ai-model",
        "format_version": 1,
        "name": name,
        "kind": kind,
        "task": "classification",
        "modality": ts.modality,
        "classes": [{"name": c, "colour": colours[i]} for i, c in enumerate(ts.classes)],
        "input": spec,
        "architecture": {"name": arch, "params": dict(params or {})},
        "members": int(members),
        "calibration": {"temperature": 1.0},
        "uncertainty": {
            "threshold": float(threshold),
            "tta": int(tta),
            "mc_dropout": int(mc_dropout),
        },
        "provenance": {},
        "metrics": {},
    }


def _sources_digest(ts) -> str:
    h = hashlib.sha256()
    for s, y in zip(ts.sources, ts.labels, strict=True):
        h.update(f"{y}\t{s}\n".encode())
    return h.hexdigest()[:16]


def validation_metrics(val_probs: np.ndarray, labels: np.ndarray, classes) -> dict:
    """Accuracy, balanced accuracy, NLL, ECE, per-class recall and uncertainty AUROC on validation.

    ``val_probs``: calibrated probability samples ``(S, N, C)`` of the validation items.
    """
    from napari_nucleus_ai.models.uncertainty import auroc, balanced_accuracy, summarise

    p = np.asarray(val_probs)
    pred = summarise(p, classes, 1.0)
    k = pred.index
    conf = pred.probs.max(1)
    bins = np.minimum((conf * 10).astype(int), 9)
    ece = sum(
        abs(float((k[bins == b] == labels[bins == b]).mean()) - float(conf[bins == b].mean()))
        * (bins == b).mean()
        for b in range(10)
        if (bins == b).any()
    )
    wrong = k != labels
    cm = np.zeros((len(classes), len(classes)), int)
    np.add.at(cm, (labels, k), 1)
    return {
        "n_val": int(len(labels)),
        "val_accuracy": float((~wrong).mean()),
        "val_balanced_accuracy": balanced_accuracy(labels, k),
        "val_nll": float(
            -np.log(np.clip(pred.probs[np.arange(len(labels)), labels], 1e-8, 1)).mean()
        ),
        "val_ece": float(ece),
        "val_uncertainty_auroc": auroc(pred.uncertainty, wrong),
        "val_recall": {c: float(cm[i, i] / max(cm[i].sum(), 1)) for i, c in enumerate(classes)},
        "val_confusion": cm.tolist(),
    }


def train_gen(
    data,
    out=None,
    *,
    arch: str = "smallcnn",
    name: str | None = None,
    epochs: int = 40,
    batch_size: int = 32,
    lr: float = 3e-3,
    weight_decay: float = 1e-3,
    val_fraction: float = 0.2,
    patience: int = 10,
    seed: int = 0,
    device: str | None = "cpu",
    crop_size: int | None = None,
    pixel_size: float | None = None,
    unit: str = "um",
    members: int = 1,
    tta: int = 4,
    mc_dropout: int = 0,
    threshold: float = 0.5,
    render_pixel_nm: float = 10.0,
    patches: int = 16,
    patches_per_epoch: int = 8,
    params: dict | None = None,
    colours=None,
    as_zip: bool | None = None,
    kind_options: dict | None = None,
    threads: int | None = None,
    init_weights=None,
    field: float | str | None = None,
    imagenet: str | None = "auto",
):
    """Train a model; yields :class:`Progress` / :class:`EpochProgress`, returns :class:`TrainResult`.

    Parameters
    ----------
    data : path or TrainingSet
        Class folders of crops or localization files, or samples in memory.
    out : path, optional
        Where to save the package (folder; ``.zip`` or ``.safetensors`` for one file).
    arch : str
        ``smallcnn``, ``hybrid``, ``morph``, a timm backbone, an arch of another registered
        kind, or ``auto`` (``morph`` for RGB brightfield crops, ``smallcnn`` otherwise).
    epochs, batch_size, lr, weight_decay, patience : training schedule (early stopping
        on validation loss after ``patience`` epochs without improvement).
    val_fraction : float
        Stratified hold-out per class (0 trains on everything, no calibration).
    seed : int
        Seeds numpy and torch: the same data and seed give the same model on a device.
    crop_size : int, optional
        Network input side (default 96 for crops, 192 for ``morph``, 64-pixel patches for
        STORM).
    pixel_size, unit : physical pixel size of the crops, recorded in the card.
    members : int
        Ensemble size (members differ by seed).
    tta, mc_dropout, threshold : defaults for uncertainty at inference.
    render_pixel_nm, patches, patches_per_epoch : STORM rendering (<= 20 nm) and patch sampling.
    threads : int, optional
        torch CPU threads (``torch.set_num_threads``); 1 is often fastest on a busy machine.
    init_weights : path, optional
        Start from the matching tensors of a local weights file (``.safetensors`` or a torch
        state dict, e.g. ImageNet weights of a timm backbone; :mod:`.models.init_weights`).
    imagenet : str or None
        ``morph`` only: frozen ImageNet features (:mod:`.models.imagenet`). ``"auto"`` uses
        them where the ``[pretrained]`` extra is installed, ``None`` never, a backbone name
        always; ``params["imagenet"]`` wins over this. Other architectures ignore it.
    field : float or ``"auto"``, optional
        Centre fraction of each image crop the network sees (:mod:`.framing`). ``"auto"``
        sizes it to the cells in the crops; the default is ``"auto"`` for ``morph`` and 1
        (the whole crop) for every other architecture.
    """
    import torch

    if threads:
        torch.set_num_threads(int(threads))

    from napari_nucleus_ai.classify.trainset import (
        TrainingSet,
        load_class_folders,
        stratified_split,
    )
    from napari_nucleus_ai.core.device import describe_device, select_device
    from napari_nucleus_ai.models.kinds import kind_for_arch
    from napari_nucleus_ai.models.package import ModelPackage, save_model, validate_card

    if init_weights is not None:  # a bad weights file is said before the data are read
        from napari_nucleus_ai.models.init_weights import read_state_dict

        read_state_dict(init_weights)
    if isinstance(data, TrainingSet):
        ts, data_desc = data, "in-memory training set"
    else:
        yield Progress(0, None, "reading training data")
        ts, data_desc = load_class_folders(data, pixel_size=pixel_size, unit=unit), os.fspath(data)
    ts.check(min_per_class=2)
    arch = resolve_arch(arch, ts)
    kind = kind_for_arch(arch)
    if arch == "morph":  # ImageNet features where the [pretrained] extra is installed
        from napari_nucleus_ai.models.nets.morph import resolve_params

        if imagenet != "auto" and "imagenet" not in (params or {}):
            params = {**(params or {}), "imagenet": imagenet}
        params, note = resolve_params(params)
        if note:
            yield Progress(0, None, note)
    if init_weights is not None and kind.name != "classifier":
        raise InputError(init_weights, f"initial weights are not supported for {arch!r} models")
    dev = select_device(device)
    if crop_size is None:
        crop_size = 64 if ts.modality == "storm" else DEFAULT_CROP.get(arch, 96)
    field = resolve_field(field, arch, ts)
    card = make_card(
        ts,
        arch=arch,
        name=name or f"{arch} on {os.path.basename(str(data_desc).rstrip('/'))}",
        crop_size=crop_size,
        params=params,
        colours=colours,
        render_pixel_nm=render_pixel_nm,
        patches=patches,
        members=members,
        tta=tta,
        mc_dropout=mc_dropout,
        threshold=threshold,
        kind=kind.name,
        field=field,
    )
    tr_idx, va_idx = stratified_split(ts.labels, val_fraction, seed)
    train_set, val_set = ts.subset(tr_idx), ts.subset(va_idx)
    options = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "patience": patience,
        "seed": seed,
        "device_obj": dev,
        "patches_per_epoch": patches_per_epoch,
        **(kind_options or {}),
    }
    if init_weights is not None:
        options["init_weights"] = os.fspath(init_weights)
    started = _dt.datetime.now(_dt.timezone.utc)
    modules, card, info = yield from kind.fit(train_set, val_set, card, options)
    from napari_nucleus_ai import __version__

    card["provenance"] = {
        "trained_with": f"napari-nucleus-ai {__version__}",
        "torch": torch.__version__,
        "date": started.isoformat(timespec="seconds"),
        "data": data_desc,
        "data_digest": _sources_digest(ts),
        "class_counts": ts.counts(),
        "n_train": len(train_set),
        "n_val": len(val_set),
        "seed": seed,
        "device": describe_device(dev),
        "seconds": round(float(info.get("seconds", 0.0)), 2),
        "options": {k: v for k, v in options.items() if k != "device_obj"},
        "epochs_run": [
            sum(1 for h in info.get("history", []) if h["member"] == m) for m in range(len(modules))
        ],
    }
    if info.get("init_weights"):  # what the network started from: file name and digest
        card["provenance"]["init_weights"] = info["init_weights"]
    if info.get("fitted"):  # closed-form parts (morph: the logistic head's C per member)
        card["provenance"]["fitted"] = info["fitted"]
    if "val_probs" in info and len(val_set):
        card["metrics"] = validation_metrics(info["val_probs"], val_set.labels, ts.classes)
    validate_card(card)
    path = None
    if out is not None:
        yield Progress(1, 1, "saving model")
        path = os.fspath(save_model(card, modules, out, as_zip=as_zip))
    package = ModelPackage(card, [m.eval() for m in modules], path)
    return TrainResult(package, path, info.get("history", []), card.get("metrics", {}))


def train(data, out=None, on_progress=None, **options) -> TrainResult:
    """Train without a progress UI (``on_progress`` gets every :class:`Progress`)."""
    return run_sync(train_gen(data, out, **options), on_progress)
