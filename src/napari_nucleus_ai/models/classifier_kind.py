"""The built-in ``classifier`` kind: discriminative CNNs trained with cross-entropy.

Registers itself with :mod:`.kinds`. Training (:func:`fit`) does class-balanced
sampling, augmentation (dihedral flips/rotations, small rotations and scale,
colour/stain jitter; STORM patches get flips and intensity only, since scaling
would change the very clutch sizes being classified), AdamW with a cosine
schedule, early stopping on validation loss (best epoch kept), optional ensemble
members with different seeds, and temperature scaling on the validation set.
The gradient steps and the augmentation are :mod:`.training`'s, shared with
``retrain``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import EpochProgress, Progress
from napari_nucleus_ai.models.kinds import Kind, register_kind
from napari_nucleus_ai.models.nets.registry import ARCHS, build_architecture
from napari_nucleus_ai.models.training import (
    CLOSED_FORM_HEADS,
    FITS_FEATURE_STATS,
    balanced_order,
    declares,
    make_optimizer,
    train_epoch,
    trainable_parameters,
)
from napari_nucleus_ai.models.uncertainty import (
    TRAIN_ACCURACY,
    TRAIN_LOSS,
    VAL_ACCURACY,
    VAL_LOSS,
    accuracy_scores,
)


def build(card: dict) -> list:
    arch = card["architecture"]
    modules = []
    for _ in range(int(card["members"])):
        modules.append(
            build_architecture(
                arch["name"], card["input"]["channels"], len(card["classes"]), arch.get("params")
            )
        )
    return modules


def validate(card: dict) -> None:
    if card["architecture"]["name"] not in ARCHS:
        raise InputError(None, f"unknown classifier architecture {card['architecture']['name']!r}")
    if len(card["classes"]) < 2:
        raise InputError(None, "a classifier needs at least 2 classes")


# Adaptive test-time augmentation (card ``uncertainty.tta_mode: "adaptive"``): the extra views
# go to cells whose first view's normalised entropy is above ``tta_gate`` x the threshold.
TTA_GATE = 0.5


def adaptive_gate(card: dict) -> float | None:
    """The entropy above which a cell gets the extra test-time views, or None (all cells).

    Cards without ``uncertainty.tta_mode`` (older models) run every view on every cell.
    """
    unc = card["uncertainty"]
    if unc.get("tta_mode", "all") != "adaptive":
        return None
    return float(unc.get("tta_gate", TTA_GATE)) * float(unc["threshold"])


def ready(package) -> None:
    """Set ``package``'s modules up for :func:`predict`: ``morph`` measures one descriptor per
    crop for all its views when the card's test-time views are adaptive (its memo keys then
    meet, whoever measures first)."""
    gate = adaptive_gate(package.card)
    for m in package.modules:
        if hasattr(m, "shared_views"):
            m.shared_views = gate is not None


def predict(package, x: np.ndarray, options: dict) -> np.ndarray:
    from napari_nucleus_ai.models.engine import probability_samples, use_cores

    unc = package.card["uncertainty"]
    if package.device is None or package.device.type == "cpu":
        use_cores()
    gate = adaptive_gate(package.card)
    ready(package)
    return probability_samples(
        package.modules,
        x,
        device=package.device,
        temperature=package.temperature,
        batch_size=int(options.get("batch_size") or 64),
        tta=int(options.get("tta") or unc.get("tta", 1)),
        mc_dropout=int(
            options["mc_dropout"]
            if options.get("mc_dropout") is not None
            else unc.get("mc_dropout", 0)
        ),
        adaptive=gate,
        info=options.get("tta_info"),
        settled=options.get("settled"),
        skip=options.get("skip"),
        n_classes=len(package.card["classes"]),
    )


# ---------------------------------------------------------------- calibration
def pooled_probs(logits: np.ndarray, groups, temperature: float = 1.0) -> np.ndarray:
    """Calibrated per-item probabilities ``(S, N, C)`` from per-input logits ``(S, M, C)``."""
    from napari_nucleus_ai.models.engine import pool_items

    z = np.asarray(logits, np.float64) / temperature
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    groups = np.asarray(groups)
    n = int(groups.max()) + 1 if len(groups) else 0
    return pool_items(p, groups, n)


def calibrate_temperature(logits: np.ndarray, labels: np.ndarray, groups=None) -> float:
    """Temperature minimising the NLL of the mean member probabilities.

    ``logits`` are per input ``(S, M, C)``; ``groups`` maps inputs to items (STORM patches
    to nuclei; default one input per item), pooled as at inference.
    """
    logits = np.asarray(logits, np.float32)
    labels = np.asarray(labels, np.int64)
    groups = np.arange(logits.shape[1]) if groups is None else np.asarray(groups)
    if logits.shape[1] == 0:
        return 1.0
    if (pooled_probs(logits, groups).mean(0).argmax(-1) == labels).all():
        return 1.0  # no validation error: nothing to calibrate against (NLL would push T to 0)
    best, best_t = math.inf, 1.0
    idx = np.arange(len(labels))
    for t in np.exp(np.linspace(np.log(0.05), np.log(20.0), 121)):
        p = pooled_probs(logits, groups, float(t)).mean(0)
        nll = float(-np.log(np.clip(p[idx, labels], 1e-12, 1)).mean())
        if nll < best - 1e-9:
            best, best_t = nll, float(t)
    return best_t


# ---------------------------------------------------------------- training
@dataclass
class _Schedule:
    """The training options :func:`fit` reads (``options`` as ``train`` passes them)."""

    modality: str
    device: object
    seed: int = 0
    epochs: int = 40
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-3
    patience: int = 10
    min_steps: int = 8
    per_item: int = 1  # inputs per item and epoch: STORM patches, one crop otherwise
    stain_augment: int = 0  # augmented copies per training crop (canonical-frame cards)

    @classmethod
    def from_options(cls, options: dict, modality: str) -> _Schedule:
        from napari_nucleus_ai.core.device import select_device

        storm = modality == "storm"
        return cls(
            modality=modality,
            device=options.get("device_obj") or select_device(options.get("device") or "cpu"),
            seed=int(options.get("seed", 0)),
            epochs=int(options.get("epochs", 40)),
            batch_size=int(options.get("batch_size", 32)),
            lr=float(options.get("lr", 3e-3)),
            weight_decay=float(options.get("weight_decay", 1e-3)),
            patience=int(options.get("patience", 10)),
            min_steps=int(options.get("min_steps", 8)),
            per_item=int(options.get("patches_per_epoch", 8)) if storm else 1,
            stain_augment=0 if storm else int(options.get("stain_augment") or 0),
        )


@dataclass
class _Inputs:
    """Normalised network inputs of one fit: crops once; STORM patches re-drawn per epoch."""

    card: dict
    items_tr: list
    y_items: np.ndarray
    x_tr: np.ndarray
    y_va: np.ndarray
    x_va: np.ndarray | None = None
    g_va: np.ndarray | None = None
    groups: np.ndarray | None = None  # the original crop of each training row (augmented)

    def redraw(self, rng, per_item: int) -> np.ndarray:
        """New STORM patches of the training nuclei; they stay ``x_tr`` until the next draw
        (so the next ensemble member starts from the patches the last one drew)."""
        from napari_nucleus_ai.models.inputs import normalise, raw_inputs

        raw = raw_inputs(self.items_tr, self.card, rng=rng, n_patches=per_item)[0]
        self.x_tr = normalise(raw, self.card)
        return self.x_tr


@dataclass
class _Run:
    """What :func:`fit` accumulates over members: progress, curves, validation logits."""

    total: int
    done: int = 0
    history: list = dataclass_field(default_factory=list)
    val_logits: list = dataclass_field(default_factory=list)
    fitted: list = dataclass_field(default_factory=list)


def fit(train, val, card: dict, options: dict):
    """Train ``card["members"]`` networks; yields progress, returns ``(modules, card, info)``."""
    import torch

    s = _Schedule.from_options(options, card["modality"])
    data = yield from _prepare_inputs(train, val, card, s)
    torch.manual_seed(s.seed)  # initial weights depend on the seed only
    modules = build(card)
    init_info = yield from _initial_weights(modules, options.get("init_weights"))
    run, t0 = _Run(total=s.epochs * len(modules)), time.perf_counter()
    for mi, module in enumerate(modules):
        yield from _fit_member(module, (mi, len(modules)), data, s, run)
    if card["architecture"]["name"] == "morph":  # new morph cards: adaptive test-time views
        card["uncertainty"].setdefault("tta_mode", "adaptive")
        card["uncertainty"].setdefault("tta_gate", TTA_GATE)
    info = {"history": run.history, "seconds": time.perf_counter() - t0, "fitted": run.fitted}
    if init_info:
        info["init_weights"] = init_info
    if run.val_logits:
        logits = np.stack(run.val_logits)
        t = calibrate_temperature(logits, val.labels, data.g_va)
        card["calibration"]["temperature"] = t
        info["val_probs"] = pooled_probs(logits, data.g_va, t)
    return modules, card, info


def _prepare_inputs(train, val, card: dict, s: _Schedule):
    """Inputs of both splits, with the input normalisation fitted on the training inputs."""
    from napari_nucleus_ai.models.framing import frame_of, pixel_size_um
    from napari_nucleus_ai.models.inputs import fit_normalisation, normalise, raw_inputs

    storm = s.modality == "storm"
    items_tr, items_va = train.samples, val.samples
    if storm:  # nuclei rendered once; patches drawn from the renders
        from napari_nucleus_ai.models.crops import render_nucleus

        st = card["input"]["storm"]
        items_tr = [render_nucleus(x, st["render_pixel_nm"], st["blur_px"]) for x in items_tr]
        items_va = [render_nucleus(x, st["render_pixel_nm"], st["blur_px"]) for x in items_va]
        yield Progress(0, None, "rendered nuclei")
    rng = np.random.default_rng(s.seed) if storm else None
    # the crops' pixel size (um) when the training set knows it: the frame's physical scale
    px = pixel_size_um(getattr(train, "pixel_size", None), getattr(train, "unit", "px"))
    y_tr, groups = train.labels, None
    if s.stain_augment > 0 and frame_of(card) is not None:  # stain / camera / focus copies
        from napari_nucleus_ai.models.stain import augment_set

        yield Progress(0, None, f"{s.stain_augment} stain-augmented copies per crop")
        items_tr, y_tr, groups = augment_set(items_tr, y_tr, s.stain_augment, s.seed)
    raw_tr, _ = raw_inputs(items_tr, card, rng=rng, n_patches=s.per_item, pixel_size_um=px)
    card["input"]["normalisation"] = fit_normalisation(raw_tr)
    data = _Inputs(card, items_tr, y_tr, None, val.labels, groups=groups)
    if len(items_va):
        raw_va, data.g_va = raw_inputs(items_va, card, pixel_size_um=px)
        data.x_va = normalise(raw_va, card)
    data.x_tr = normalise(raw_tr, card)
    return data


def _initial_weights(modules: list, path):
    """Load ``path`` (e.g. a backbone's pretrained weights) into every member, if given."""
    if not path:
        return None
    from napari_nucleus_ai.models.init_weights import load_init_weights

    info = None
    for module in modules:
        info = load_init_weights(module, path)
    yield Progress(0, None, f"initial weights from {info['file']}")
    return info


def _fit_member(module, member: tuple[int, int], data: _Inputs, s: _Schedule, run: _Run):
    """Fit member ``member = (index, count)``: closed-form parts, then gradient descent."""
    import torch

    mi = member[0]
    member_seed = s.seed + 1000 * mi
    torch.manual_seed(member_seed)
    rng = np.random.default_rng(member_seed)
    if declares(module, FITS_FEATURE_STATS):
        module.fit_feature_stats(torch.from_numpy(data.x_tr))
    closed_form = declares(module, CLOSED_FORM_HEADS)
    if closed_form:  # fixed descriptor + closed-form heads; the CNN part trains alone
        yield Progress(run.done, run.total, f"member {mi + 1}: measuring cell morphology")
        norm = data.card["input"]["normalisation"]
        run.fitted.append(
            module.fit_descriptor(data.x_tr, data.y_items, norm, member_seed, data.groups)
        )
        module.cnn_only = True
    # the gradient-trained part may see smaller inputs (morph: its CNN at cnn_size)
    shrink = module.cnn_inputs if closed_form else None
    module.to(s.device)
    if not trainable_parameters(module):
        yield from _closed_form_only(module, member, data, s, run)
    else:
        yield from _descend(module, member, data, s, run, rng, shrink)
        module.cnn_only = False
        module.eval()
        if data.x_va is not None:
            run.val_logits.append(_input_logits(module, data.x_va, s.device))
    module.to("cpu")


def _closed_form_only(module, member: tuple[int, int], data: _Inputs, s: _Schedule, run: _Run):
    """Record a member with nothing to train by gradient descent: one record, no epochs."""
    mi, n = member
    run.done += s.epochs
    module.eval()
    rec = {"member": mi, "epoch": 1}
    if data.x_va is not None:
        logits = _input_logits(module, data.x_va, s.device)
        run.val_logits.append(logits)
        rec.update(_val_scores(pooled_probs(logits[None], data.g_va)[0], data.y_va))
    run.history.append(rec)
    yield EpochProgress(
        run.done, run.total, f"member {mi + 1}/{n}: closed-form fit" + _val_note(rec), rec
    )


def _descend(module, member, data: _Inputs, s: _Schedule, run: _Run, rng, shrink):
    """Gradient epochs with a cosine schedule; early stopping keeps the best epoch's weights."""
    import torch

    mi, n = member
    x_loop = shrink(data.x_tr) if shrink else data.x_tr
    x_val = shrink(data.x_va) if shrink and data.x_va is not None else data.x_va
    opt = make_optimizer(module, s.lr, s.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(s.epochs, 1))
    y_tr = np.repeat(data.y_items, s.per_item)
    best = _BestEpoch(s.patience)
    for epoch in range(s.epochs):
        if s.modality == "storm" and epoch > 0:
            x_loop = data.redraw(rng, s.per_item)
        steps = max(math.ceil(len(y_tr) / s.batch_size), s.min_steps)
        order = balanced_order(y_tr, steps * s.batch_size, rng)
        batches = (order[i : i + s.batch_size] for i in range(0, len(order), s.batch_size))
        stats = train_epoch(module, opt, x_loop, y_tr, batches, rng, s.modality, s.device)
        sched.step()
        rec = {
            "member": mi,
            "epoch": epoch + 1,
            TRAIN_LOSS: stats.mean_loss,
            TRAIN_ACCURACY: stats.correct / max(len(order), 1),
        }
        if x_val is not None:
            vp = pooled_probs(_input_logits(module, x_val, s.device)[None], data.g_va)[0]
            rec.update(_val_scores(vp, data.y_va))
        run.history.append(rec)
        run.done += 1
        message = f"member {mi + 1}/{n} epoch {epoch + 1}: loss {rec[TRAIN_LOSS]:.3f}"
        yield EpochProgress(run.done, run.total, message + _val_note(rec), rec)
        if best.stop(rec.get(VAL_LOSS, rec[TRAIN_LOSS]), module):
            run.done += s.epochs - epoch - 1
            break
    best.restore(module)


class _BestEpoch:
    """Early stopping on a score (validation loss, else training loss): keeps the best weights."""

    def __init__(self, patience: int):
        self.patience, self.best, self.state, self.bad = patience, math.inf, None, 0

    def stop(self, score: float, module) -> bool:
        """Record an epoch's ``score``; True after ``patience`` epochs without improvement."""
        if score < self.best - 1e-4:
            self.best, self.bad = score, 0
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self, module) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


def _val_note(rec: dict) -> str:
    return f", val acc {rec[VAL_ACCURACY]:.2f}" if VAL_ACCURACY in rec else ""


def _input_logits(module, x, device) -> np.ndarray:
    """Logits ``(M, C)`` of every prepared input (eval mode)."""
    from napari_nucleus_ai.models.engine import logits_batched

    module.eval()
    return logits_batched(module, x, device, 128)


def _val_scores(p: np.ndarray, labels: np.ndarray) -> dict:
    """Validation loss (NLL of the pooled probabilities ``p``), accuracy, balanced accuracy."""
    nll = float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-8, 1)).mean())
    return {VAL_LOSS: nll, **accuracy_scores(labels, p.argmax(1), prefix="val_")}


register_kind(
    Kind(
        name="classifier",
        archs=ARCHS,
        build=build,
        fit=fit,
        predict=predict,
        validate=validate,
        description="discriminative CNN (cross-entropy), calibrated, optional ensemble",
        skips_inputs=True,
        ready=ready,
    )
)
