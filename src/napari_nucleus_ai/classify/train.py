"""Train a model package from labelled crops or STORM nuclei.

:func:`train_gen` is the core generator (progress for docks and the CLI);
:func:`train` is the plain function. Both accept a class-folder path (see
:mod:`napari_nucleus_ai.classify.trainset`) or an in-memory
:class:`~napari_nucleus_ai.classify.trainset.TrainingSet` (the dock's layers, the
corrections store), pick the model kind from ``arch`` (:mod:`.models.kinds`),
hold out a stratified validation split, train with the kind's ``fit`` and save
a package with calibration, provenance and validation metrics.

Every epoch yields an :class:`EpochProgress` whose ``metrics`` carry
``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy`` and
``val_balanced_accuracy`` (names in :mod:`.models.uncertainty`) - the dock plots them.
Cancelling (closing the generator, ``worker.quit()``) stops at the next batch
boundary and writes nothing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from dataclasses import dataclass, replace

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


#: Fewest validation items to calibrate conformal sets on.
MIN_CALIBRATION = 10
DEFAULT_CROP = {"morph": 192}  # the morphology descriptor needs fine detail (granules)
STAIN_AUGMENT = 3  # "other microscope" copies per training crop for canonical-frame models
#: Whether ``morph`` on RGB crops gets the canonical frame by default. Off: it transfers far
#: better to another microscope but costs clean accuracy on the training one (PBC 4-fold CV
#: 0.854 against 0.896; docs/trust.md, "Transfer to another microscope").
FRAME_DEFAULT = False
#: Whether canonical-frame models use the red cells of their crops as the ruler (the card's
#: ``input.frame.cell_rbc``, :func:`.models.framing.frame_cell_px`): the frame then keeps each
#: cell's size relative to the red cells instead of scaling every cell to one size. Off: on
#: cached features it left the PBC 4-fold CV where it was (0.854) and raised the harsh shift
#: (0.656 to 0.698) but lowered BCCD zero-shot (0.595 to 0.527; benchmarks/bench_transfer.py,
#: recipe ``frame_rbc_twopoint_micro3``).
FRAME_RED_CELLS = False


def pixel_size_um(value, unit: str) -> float | None:
    """The crops' pixel size in um (``None`` when unknown)."""
    from napari_nucleus_ai.models.framing import pixel_size_um as to_um

    return to_um(value, unit)


def resolve_frame(frame, arch: str, ts, field=None) -> bool:
    """Whether to use the canonical cell frame: as given (``None``: :data:`FRAME_DEFAULT`
    for ``morph`` on RGB brightfield crops when no crop ``field`` is asked for)."""
    rgb = ts.modality == "brightfield_rgb" and np.asarray(ts.samples[0]).ndim == 3
    if frame is None:
        return FRAME_DEFAULT and arch == "morph" and rgb and field is None
    if frame and not rgb:
        raise InputError(None, "the canonical cell frame applies to RGB brightfield crops")
    if frame and field is not None:
        raise InputError(None, "give either a crop field or the canonical cell frame, not both")
    return bool(frame)


FALLBACKS = ("auto", "frame", "none")


def resolve_fallback(fallback, arch: str, ts, framed: bool) -> bool:
    """Whether to train a canonical-frame fallback model beside the first one: ``"auto"``
    for ``morph`` on RGB brightfield crops when the first model cuts a field (no frame);
    ``"frame"`` asks for it (refused where it cannot work); ``"none"`` / ``None`` never."""
    if fallback in (None, "none"):
        return False
    if fallback not in FALLBACKS:
        raise InputError(None, f"the fallback must be one of {FALLBACKS}, got {fallback!r}")
    rgb = ts.modality == "brightfield_rgb" and np.asarray(ts.samples[0]).ndim == 3
    possible = arch == "morph" and rgb and not framed
    if fallback == "frame" and not possible:
        raise InputError(
            None,
            "a canonical-frame fallback model needs a 'morph' model of RGB brightfield crops "
            "that is not in the canonical frame itself",
        )
    return possible


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
    kind: str = "classifier",
    field: float = 1.0,
    frame: bool = False,
    options: TrainOptions | None = None,
    **fields,
) -> dict:
    """A card for training set ``ts`` before training (normalisation and calibration to be filled).

    ``field`` is the centre fraction of each crop the network sees (:mod:`.framing`);
    ``frame`` brings every crop to the canonical cell frame instead (fitted on ``ts``). The
    rest of the card (``params``, ``colours``, ``members``, ``tta``, ``mc_dropout``,
    ``threshold``; STORM ``render_pixel_nm`` and ``patches``) comes from ``options``, with
    ``fields`` (the same names as keywords) set over them.
    """
    o = replace(options, **fields) if options is not None else TrainOptions(**fields)
    colours = list(o.colours or default_colours(ts.classes))
    return {
        "format": "napari-nucleus-ai-model",
        "format_version": 1,
        "name": name,
        "kind": kind,
        "task": "classification",
        "modality": ts.modality,
        "classes": [{"name": c, "colour": colours[i]} for i, c in enumerate(ts.classes)],
        "input": _input_spec(ts, crop_size, field, o, frame),
        "architecture": {"name": arch, "params": dict(o.params or {})},
        "members": int(o.members),
        "calibration": {"temperature": 1.0},
        "uncertainty": {
            "threshold": float(o.threshold),
            "tta": int(o.tta),
            "mc_dropout": int(o.mc_dropout),
        },
        "provenance": {},
        "metrics": {},
    }


def _input_spec(ts, crop_size: int, field: float, o: TrainOptions, frame: bool = False) -> dict:
    """The card's ``input``: size, channels, physical pixel size (STORM: the render), and
    the canonical frame (fitted on ``ts``) when ``frame``."""
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
        nm = o.render_pixel_nm
        if not 0 < nm <= 20:
            raise InputError(None, f"STORM nuclei must be rendered at 20 nm or finer, got {nm} nm")
        spec.update(
            pixel_size=float(nm),
            unit="nm",
            storm={"render_pixel_nm": float(nm), "patches": int(o.patches), "blur_px": 1.0},
        )
        return spec
    side = float(np.median([min(np.asarray(s).shape[:2]) for s in ts.samples]))
    if frame:
        from napari_nucleus_ai.models.framing import fit_frame

        um = pixel_size_um(ts.pixel_size, ts.unit)
        spec["frame"], cell_px = fit_frame(
            ts.samples, crop_size, pixel_size_um=um, red_cells=FRAME_RED_CELLS
        )
        fill = spec["frame"]["fill"]
        # one network pixel: the training cells' median diameter / fill / crop_size
        if "cell_um" in spec["frame"]:
            spec.update(pixel_size=spec["frame"]["cell_um"] / fill / crop_size, unit="um")
        else:
            spec.update(pixel_size=max(cell_px, 1.0) / fill / crop_size, unit="px")
        spec["source_crop_px"] = side
        return spec
    if not 0.05 <= float(field) <= 1.0:
        raise InputError(None, f"the field must be 0.05..1 of the crop side, got {field}")
    spec.update(
        pixel_size=float(ts.pixel_size) * side * float(field) / crop_size,
        unit=ts.unit,
        source_crop_px=side,
    )
    if float(field) < 1.0:
        spec["field"] = float(field)
    return spec


def _sources_digest(ts) -> str:
    h = hashlib.sha256()
    for s, y in zip(ts.sources, ts.labels, strict=True):
        h.update(f"{y}\t{s}\n".encode())
    return h.hexdigest()[:16]


def validation_metrics(val_probs: np.ndarray, labels: np.ndarray, classes) -> dict:
    """Accuracy, balanced accuracy, NLL, ECE, per-class recall and uncertainty AUROC on validation.

    ``val_probs``: calibrated probability samples ``(S, N, C)`` of the validation items.
    """
    from napari_nucleus_ai.models.uncertainty import (
        accuracy_scores,
        auroc,
        expected_calibration_error,
        summarise,
    )

    p = np.asarray(val_probs)
    pred = summarise(p, classes, 1.0)
    k = pred.index
    ece = expected_calibration_error(pred.probs.max(1), k == labels, 10)
    wrong = k != labels
    cm = np.zeros((len(classes), len(classes)), int)
    np.add.at(cm, (labels, k), 1)
    return {
        "n_val": int(len(labels)),
        **accuracy_scores(labels, k, prefix="val_"),
        "val_nll": float(
            -np.log(np.clip(pred.probs[np.arange(len(labels)), labels], 1e-8, 1)).mean()
        ),
        "val_ece": float(ece),
        "val_uncertainty_auroc": auroc(pred.uncertainty, wrong),
        "val_recall": {c: float(cm[i, i] / max(cm[i].sum(), 1)) for i, c in enumerate(classes)},
        "val_confusion": cm.tolist(),
    }


@dataclass
class TrainOptions:
    """How :func:`train_gen` trains (its keyword arguments).

    Attributes
    ----------
    arch : str
        ``smallcnn``, ``hybrid``, ``morph``, a timm backbone, an arch of another registered
        kind, or ``auto`` (``morph`` for RGB brightfield crops, ``smallcnn`` otherwise).
    name : str, optional
        Model name shown in the dock (default: ``ARCH on DATA``).
    epochs, batch_size, lr, weight_decay, patience : training schedule (early stopping
        on validation loss after ``patience`` epochs without improvement).
    val_fraction : float
        Stratified hold-out per class (0 trains on everything, no calibration).
    seed : int
        Seeds numpy and torch: the same data and seed give the same model on a device.
    device : str, optional
        ``auto``, ``cuda``, ``cuda:N``, ``mps`` or ``cpu`` (``None``: the plugin setting).
    crop_size : int, optional
        Network input side (default 96 for crops, 192 for ``morph``, 64-pixel patches for
        STORM).
    pixel_size, unit : physical pixel size of the crops, recorded in the card.
    members : int
        Ensemble size (members differ by seed).
    tta, mc_dropout, threshold : defaults for uncertainty at inference.
    render_pixel_nm, patches, patches_per_epoch : STORM rendering (<= 20 nm) and patch sampling.
    params : dict, optional
        Architecture parameters (``widths``...).
    colours : list, optional
        Class colours (default: the palette's).
    as_zip : bool, optional
        Save as one ``.zip`` file (default: from ``out``'s suffix).
    kind_options : dict, optional
        Extra options for the model kind's ``fit``.
    threads : int, optional
        torch CPU threads (``torch.set_num_threads``); 1 is often fastest on a busy machine.
    init_weights : path, optional
        Start from the matching tensors of a local weights file (``.safetensors`` or a torch
        state dict, e.g. ImageNet weights of a timm backbone; :mod:`.models.init_weights`).
    field : float or ``"auto"``, optional
        Centre fraction of each image crop the network sees (:mod:`.framing`). ``"auto"``
        sizes it to the cells in the crops; the default is ``"auto"`` for ``morph`` and 1
        (the whole crop) for every other architecture.
    imagenet : str or None
        ``morph`` only: frozen ImageNet features (:mod:`.models.imagenet`). ``"auto"`` uses
        them where the ``[pretrained]`` extra is installed, ``None`` never, a backbone name
        always; ``params["imagenet"]`` wins over this. Other architectures ignore it.
    coverage : float or None
        Target coverage of the conformal prediction sets calibrated on the validation
        split (:mod:`.models.trust`); ``None`` stores none.
    frame : bool, optional
        Bring every crop to the canonical cell frame (:mod:`.models.framing`: the cell
        found, centred and scaled, the stain normalised) instead of cutting a ``field``.
        The default (``None``) is :data:`FRAME_DEFAULT` (off) for ``morph`` on RGB
        brightfield crops, off otherwise.
    stain_augment : int, optional
        "Other microscope" copies of each training crop: framing, pixel size, stain,
        background, defocus, JPEG (:func:`.models.stain.augment_set`; canonical-frame
        models only). Default :data:`STAIN_AUGMENT` with the frame.
    fallback : str, optional
        ``"frame"``: also train a fallback model in the canonical cell frame, stored in
        the same package, for the cells the first model's domain-shift score puts out of
        its domain (:func:`.predict.route`); ``"none"``: no fallback; ``"auto"``
        (default): ``"frame"`` for ``morph`` on RGB brightfield crops cut with a field
        (:func:`resolve_fallback`).
    """

    arch: str = "smallcnn"
    name: str | None = None
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-3
    val_fraction: float = 0.2
    patience: int = 10
    seed: int = 0
    device: str | None = "cpu"
    crop_size: int | None = None
    pixel_size: float | None = None
    unit: str = "um"
    members: int = 1
    tta: int = 4
    mc_dropout: int = 0
    threshold: float = 0.5
    render_pixel_nm: float = 10.0
    patches: int = 16
    patches_per_epoch: int = 8
    params: dict | None = None
    colours: list | None = None
    as_zip: bool | None = None
    kind_options: dict | None = None
    threads: int | None = None
    init_weights: str | os.PathLike | None = None
    field: float | str | None = None
    imagenet: str | None = "auto"
    coverage: float | None = 0.9
    frame: bool | None = None
    stain_augment: int | None = None
    fallback: str | None = "auto"

    def fit_options(self, device) -> dict:
        """The options a kind's ``fit`` reads (``device_obj``: the selected torch device)."""
        options = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "patience": self.patience,
            "seed": self.seed,
            "device_obj": device,
            "patches_per_epoch": self.patches_per_epoch,
            "stain_augment": STAIN_AUGMENT if self.stain_augment is None else self.stain_augment,
            **(self.kind_options or {}),
        }
        if self.init_weights is not None:
            options["init_weights"] = os.fspath(self.init_weights)
        return options


def train_gen(data, out=None, **options):
    """Train a model; yields :class:`Progress` / :class:`EpochProgress`, returns :class:`TrainResult`.

    Parameters
    ----------
    data : path or TrainingSet
        Class folders of crops or localization files, or samples in memory.
    out : path, optional
        Where to save the package (folder; ``.zip`` or ``.safetensors`` for one file).
    **options
        The fields of :class:`TrainOptions`; an unknown one raises ``TypeError`` when
        the generator starts.
    """
    # a generator function itself, so napari's thread_worker runs it as a generator
    return (yield from _train(data, out, TrainOptions(**options)))


def _train(data, out, o: TrainOptions):
    """:func:`train_gen` with its options checked."""
    import torch

    from napari_nucleus_ai.classify.trainset import stratified_split
    from napari_nucleus_ai.core.device import select_device
    from napari_nucleus_ai.models.package import ModelPackage, save_model, validate_card

    if o.threads:
        torch.set_num_threads(int(o.threads))
    if o.coverage is not None:  # a bad target is said before any work
        from napari_nucleus_ai.models.trust import check_coverage

        check_coverage(o.coverage)
    if o.init_weights is not None:  # a bad weights file is said before the data are read
        from napari_nucleus_ai.models.init_weights import read_state_dict

        read_state_dict(o.init_weights)
    ts, data_desc = yield from _read_training_set(data, o)
    ts.check(min_per_class=2)
    arch, kind, params = yield from _choose_model(ts, o)
    dev = select_device(o.device)
    card = _new_card(ts, arch, kind.name, params, o, data_desc)
    pair = resolve_fallback(o.fallback, arch, ts, "frame" in card["input"])
    tr_idx, va_idx = stratified_split(ts.labels, o.val_fraction, o.seed)
    train_set, val_set = ts.subset(tr_idx), ts.subset(va_idx)
    options = o.fit_options(dev)
    started = _dt.datetime.now(_dt.timezone.utc)
    modules, card, info = yield from kind.fit(train_set, val_set, card, options)
    sizes = (len(train_set), len(val_set))
    card["provenance"] = _provenance(ts, data_desc, sizes, options, info, started, len(modules))
    if getattr(ts, "origins", None):  # several sources: what retrain replays
        card["provenance"]["sources"] = ts.origins
    for key in ("init_weights", "fitted"):  # the start file's digest; closed-form choices
        if info.get(key):
            card["provenance"][key] = info[key]
    if "val_probs" in info and len(val_set):
        card["metrics"] = validation_metrics(info["val_probs"], val_set.labels, ts.classes)
        home = home_rows(ts, tr_idx, va_idx) if pair else None
        trust = yield from _trust(
            modules, card, train_set, val_set, info["val_probs"], o, home=home
        )
        if trust:
            card["trust"] = trust
    fallback = None
    if pair and (card.get("trust") or {}).get("domain"):
        fallback = yield from _train_fallback(ts, card, data_desc, o)
    validate_card(card)
    path = None
    if out is not None:
        yield Progress(1, 1, "saving model")
        path = os.fspath(save_model(card, modules, out, as_zip=o.as_zip, fallback=fallback))
    if fallback is not None:
        card = dict(card, fallback=fallback.card)
    package = ModelPackage(card, [m.eval() for m in modules], path, fallback)
    return TrainResult(package, path, info.get("history", []), card.get("metrics", {}))


def _train_fallback(ts, card: dict, data_desc: str, o: TrainOptions):
    """The canonical-frame fallback model of the same data (a :class:`ModelPackage`)."""
    yield Progress(0, None, "training the fallback model (canonical cell frame)")
    sub = replace(o, frame=True, field=None, fallback="none", name=f"{card['name']} (frame)")
    result = yield from _train(ts, None, sub)
    fb_card = result.package.card
    fb_card["provenance"]["data"] = card["provenance"]["data"]
    set_adapt(fb_card, result.package.modules[0])
    return result.package


def set_adapt(card: dict, module) -> None:
    """Put the test-time adaptation's reference of ``module`` (the card's model, its heads
    just fitted) in ``card["trust"]["adapt"]`` (:func:`.models.trust.adapt_entry`), or drop
    the entry where the model cannot be adapted: a card never keeps a reference of other
    heads. ``train`` and ``retrain`` call it for a package's fallback model."""
    from napari_nucleus_ai.models.package import validate_card
    from napari_nucleus_ai.models.trust import adapt_entry

    trust = card.get("trust")
    if trust is None:
        return
    trust.pop("adapt", None)
    entry = adapt_entry(module, card)
    if entry is not None:
        trust["adapt"] = entry
        validate_card(card)


def home_rows(ts, tr_idx: np.ndarray, va_idx: np.ndarray):
    """Which rows of ``ts.subset(tr_idx)`` and ``ts.subset(va_idx)`` come from the training
    set's largest source (``None`` for a set of one source).

    A package with a fallback routes by its first model's domain-shift score, fitted on
    these rows only: cells like those of the other sources (a few corrections from another
    microscope) still go to the fallback, which learnt them too, the model that transfers.
    """
    origins = getattr(ts, "origins", None) or []
    if len(origins) < 2:
        return None
    source = np.repeat(np.arange(len(origins)), [int(d["n"]) for d in origins])
    if len(source) != len(ts):
        return None
    largest = int(np.argmax([int(d["n"]) for d in origins]))
    reps = ts.repeats if ts.repeats is not None else np.ones(len(ts), np.int64)

    def rows(idx):
        return np.repeat(source[idx], reps[idx]) == largest

    return rows(tr_idx), rows(va_idx), str(origins[largest]["data"])


def _trust(modules, card: dict, train_set, val_set, val_probs, o: TrainOptions, home=None):
    """What the card needs to say when not to trust a prediction (:mod:`.models.trust`).

    Conformal sets and the domain-shift score (for networks that can :func:`embed`
    their inputs; its descriptor terms where the embedding starts with a morphology
    descriptor) are calibrated on the validation split; none with too few items.
    ``home`` (:func:`home_rows`): the domain-shift score is fitted and calibrated on those
    training and validation rows only.
    """
    from napari_nucleus_ai.models.trust import fit_conformal, fit_domain

    if len(val_set) < MIN_CALIBRATION:
        return {}
    probs = np.asarray(val_probs).mean(0)
    out = {}
    if o.coverage is not None:
        out["conformal"] = fit_conformal(probs, val_set.labels, o.coverage, o.seed)
    if hasattr(modules[0], "embed"):
        yield Progress(0, None, "fitting the domain-shift score")
        px = pixel_size_um(train_set.pixel_size, train_set.unit)
        keep_train = np.ones(len(train_set), bool)
        keep_val = np.ones(len(val_set), bool)
        if home is not None and home[1].sum() >= MIN_CALIBRATION:
            keep_train, keep_val = home[0], home[1]
        f_train = embed_items(modules[0], _rows(train_set.samples, keep_train), card, px)
        f_val = embed_items(modules[0], _rows(val_set.samples, keep_val), card, px)
        out["domain"] = fit_domain(
            f_train,
            train_set.labels[keep_train],
            f_val,
            probs[keep_val],
            descriptor=descriptor_columns(modules[0]),
            seed=o.seed,
        )
        if not keep_train.all():
            out["domain"]["reference_source"] = home[2]
    return out


def _rows(items: list, keep: np.ndarray) -> list:
    return [x for x, k in zip(items, keep, strict=True) if k]


def descriptor_columns(module) -> int:
    """How many leading columns of ``module.embed`` are its morphology descriptor (``morph``:
    the length of its ``desc_mean``; 0 for networks without one)."""
    buf = getattr(module, "desc_mean", None)
    return int(buf.numel()) if buf is not None else 0


def _read_training_set(data, o: TrainOptions):
    """``(training set, description)`` of ``data``.

    ``data`` is a :class:`TrainingSet`, a class-folder path, or several sources to combine
    (:class:`~napari_nucleus_ai.classify.trainset.Sources`, or a list of paths weighted
    ``"auto"``): their cells are repeated so each source counts
    (:func:`~napari_nucleus_ai.classify.trainset.combine_sources`) and the description
    names every source with its weight.
    """
    from napari_nucleus_ai.classify.trainset import (
        Sources,
        TrainingSet,
        load_class_folders,
        load_sources,
    )

    if isinstance(data, TrainingSet):
        return data, "in-memory training set"
    if isinstance(data, list | tuple):
        data = Sources(list(data))
    yield Progress(0, None, "reading training data")
    if isinstance(data, Sources):
        if len(data.paths) == 1 and data.weights == "auto":
            data = data.paths[0]
        else:
            ts = load_sources(data, pixel_size=o.pixel_size, unit=o.unit)
            desc = " + ".join(f"{d['data']} (weight {d['weight']:g})" for d in ts.origins)
            return ts, desc
    return load_class_folders(data, pixel_size=o.pixel_size, unit=o.unit), os.fspath(data)


def _choose_model(ts, o: TrainOptions):
    """``(arch, kind, params)`` for ``ts``: ``auto`` resolved, ``morph``'s ImageNet choice made."""
    from napari_nucleus_ai.models.kinds import kind_for_arch

    arch = resolve_arch(o.arch, ts)
    kind = kind_for_arch(arch)
    params = o.params
    if arch == "morph":  # ImageNet features where the [pretrained] extra is installed
        from napari_nucleus_ai.models.nets.morph import resolve_params

        if o.imagenet != "auto" and "imagenet" not in (params or {}):
            params = {**(params or {}), "imagenet": o.imagenet}
        params, note = resolve_params(params)
        if note:
            yield Progress(0, None, note)
        if resolve_frame(o.frame, arch, ts, o.field):  # the model for other microscopes
            from napari_nucleus_ai.models.nets.morph_params import Z_CLIP

            params.setdefault("z_clip", Z_CLIP)
    if o.init_weights is not None and kind.name != "classifier":
        raise InputError(o.init_weights, f"initial weights are not supported for {arch!r} models")
    return arch, kind, params


def _data_name(ts, data_desc: str) -> str:
    """The training data in a model's default name: its folder, or every source's."""
    origins = getattr(ts, "origins", None)
    if origins:
        return " + ".join(os.path.basename(str(d["data"]).rstrip("/")) for d in origins)
    return os.path.basename(str(data_desc).rstrip("/"))


def _new_card(ts, arch: str, kind: str, params, o: TrainOptions, data_desc: str) -> dict:
    """The card of the model about to be trained (crop size and field resolved)."""
    framed = resolve_frame(o.frame, arch, ts, o.field)
    crop_size = o.crop_size
    if crop_size is None:
        crop_size = 64 if ts.modality == "storm" else DEFAULT_CROP.get(arch, 96)
    return make_card(
        ts,
        arch=arch,
        name=o.name or f"{arch} on {_data_name(ts, data_desc)}",
        crop_size=crop_size,
        kind=kind,
        field=1.0 if framed else resolve_field(o.field, arch, ts),
        frame=framed,
        options=o,
        params=params,  # morph's resolved (ImageNet choice made)
    )


def _provenance(ts, data_desc: str, sizes, options: dict, info: dict, started, members: int):
    """Where a model came from: software, data (with a digest), split sizes, options, and
    the epochs each of the ``members`` ran (training ``started`` at a UTC datetime)."""
    import torch

    from napari_nucleus_ai import __version__
    from napari_nucleus_ai.core.device import describe_device

    return {
        "trained_with": f"napari-nucleus-ai {__version__}",
        "torch": torch.__version__,
        "date": started.isoformat(timespec="seconds"),
        "data": data_desc,
        "data_digest": _sources_digest(ts),
        "class_counts": ts.counts(),
        "n_train": sizes[0],
        "n_val": sizes[1],
        "seed": options["seed"],
        "device": describe_device(options["device_obj"]),
        "seconds": round(float(info.get("seconds", 0.0)), 2),
        "options": {k: v for k, v in options.items() if k != "device_obj"},
        "epochs_run": [
            sum(1 for h in info.get("history", []) if h["member"] == m) for m in range(members)
        ],
    }


def train(data, out=None, on_progress=None, **options) -> TrainResult:
    """Train without a progress UI (``on_progress`` gets every :class:`Progress`)."""
    return run_sync(train_gen(data, out, **options), on_progress)


def embed_items(module, items, card: dict, pixel_size_um=None, batch_size: int = 32) -> np.ndarray:
    """``module.embed`` of raw ``items`` prepared as the card says, in eval mode: ``(N, F)``."""
    import torch

    from napari_nucleus_ai.models.inputs import prepare

    x, _ = prepare(list(items), card, pixel_size_um=pixel_size_um)
    device = next(iter(module.buffers())).device
    was = module.training
    module.eval()
    try:
        with torch.inference_mode():
            parts = [
                module.embed(torch.as_tensor(x[i : i + batch_size]).to(device)).cpu().numpy()
                for i in range(0, len(x), batch_size)
            ]
    finally:
        module.train(was)
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
