"""The built-in ``classifier`` kind: discriminative CNNs trained with cross-entropy.

Registers itself with :mod:`.kinds`. Training (:func:`fit`) does class-balanced
sampling, augmentation (dihedral flips/rotations, small rotations and scale,
colour/stain jitter; STORM patches get flips and intensity only, since scaling
would change the very clutch sizes being classified), AdamW with a cosine
schedule, early stopping on validation loss (best epoch kept), optional ensemble
members with different seeds, and temperature scaling on the validation set.
"""

from __future__ import annotations

import math
import time

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.models.kinds import Kind, register_kind
from napari_nucleus_ai.models.nets.registry import ARCHS, build_architecture


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


def predict(package, x: np.ndarray, options: dict) -> np.ndarray:
    from napari_nucleus_ai.models.engine import probability_samples

    unc = package.card["uncertainty"]
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
    )


# ---------------------------------------------------------------- augmentation
def augment(x, rng: np.random.Generator, modality: str):
    """Random dihedral transform per sample; affine + colour jitter for image crops."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    ks, flips = rng.integers(0, 4, n), rng.random(n) < 0.5
    x = torch.stack(
        [
            torch.rot90(torch.flip(x[i], (-1,)) if flips[i] else x[i], int(ks[i]), (-2, -1))
            for i in range(n)
        ]
    )
    if modality == "storm":
        gain = torch.from_numpy(rng.normal(1.0, 0.1, (n, 1, 1, 1)).astype(np.float32))
        return x * gain
    ang = rng.uniform(-math.pi / 4, math.pi / 4, n)
    scale = rng.uniform(0.9, 1.1, n)
    shift = rng.uniform(-0.06, 0.06, (n, 2))
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0] = np.cos(ang) / scale
    theta[:, 0, 1] = -np.sin(ang) / scale
    theta[:, 1, 0] = np.sin(ang) / scale
    theta[:, 1, 1] = np.cos(ang) / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    c = x.shape[1]
    gain = rng.normal(1.0, 0.08, (n, c, 1, 1)) * rng.normal(1.0, 0.08, (n, 1, 1, 1))
    bias = rng.normal(0.0, 0.1, (n, c, 1, 1)) + rng.normal(0.0, 0.1, (n, 1, 1, 1))
    x = x * torch.from_numpy(gain.astype(np.float32)) + torch.from_numpy(bias.astype(np.float32))
    return x + 0.03 * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(int(rng.integers(1 << 31)))
    )


# ---------------------------------------------------------------- training
def _balanced_order(labels: np.ndarray, n: int, rng) -> np.ndarray:
    counts = np.bincount(labels)
    w = 1.0 / counts[labels]
    return rng.choice(len(labels), size=n, replace=True, p=w / w.sum())


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


def fit(train, val, card: dict, options: dict):
    """Train ``card["members"]`` networks; yields progress, returns ``(modules, card, info)``."""
    import torch

    from napari_nucleus_ai.core.device import select_device
    from napari_nucleus_ai.core.progress import EpochProgress
    from napari_nucleus_ai.models.inputs import fit_normalisation, normalise, raw_inputs

    seed = int(options.get("seed", 0))
    rng = np.random.default_rng(seed)
    device = options.get("device_obj") or select_device(options.get("device") or "cpu")
    modality = card["modality"]
    epochs, bs = int(options.get("epochs", 40)), int(options.get("batch_size", 32))
    patience = int(options.get("patience", 10))
    per_item = int(options.get("patches_per_epoch", 8)) if modality == "storm" else 1

    # fixed inputs: crops once; STORM nuclei rendered once, patches re-drawn every epoch
    items_tr, items_va = train.samples, val.samples
    if modality == "storm":
        from napari_nucleus_ai.models.crops import render_nucleus

        st = card["input"]["storm"]
        items_tr = [render_nucleus(s, st["render_pixel_nm"], st["blur_px"]) for s in items_tr]
        items_va = [render_nucleus(s, st["render_pixel_nm"], st["blur_px"]) for s in items_va]
        yield Progress(0, None, "rendered nuclei")
    raw_tr, _ = raw_inputs(
        items_tr, card, rng=rng if modality == "storm" else None, n_patches=per_item
    )
    card["input"]["normalisation"] = fit_normalisation(raw_tr)
    x_va = g_va = None
    if len(items_va):
        raw_va, g_va = raw_inputs(items_va, card)
        x_va = normalise(raw_va, card)
    x_tr = normalise(raw_tr, card)
    y_tr_items = train.labels
    torch.manual_seed(seed)  # initial weights depend on the seed only
    modules = build(card)
    init_info = None
    if options.get("init_weights"):  # e.g. a backbone's pretrained weights from a local file
        from napari_nucleus_ai.models.init_weights import load_init_weights

        for module in modules:
            init_info = load_init_weights(module, options["init_weights"])
        yield Progress(0, None, f"initial weights from {init_info['file']}")
    total = epochs * len(modules)
    history, done = [], 0
    val_logits_all, info_fitted, t0 = [], [], time.perf_counter()
    for mi, module in enumerate(modules):
        torch.manual_seed(seed + 1000 * mi)
        mrng = np.random.default_rng(seed + 1000 * mi)
        if hasattr(module, "fit_feature_stats"):
            module.fit_feature_stats(torch.from_numpy(x_tr))
        if hasattr(module, "fit_descriptor"):  # fixed descriptor + closed-form head (morph)
            yield Progress(done, total, f"member {mi + 1}: measuring cell morphology")
            fitted = module.fit_descriptor(
                x_tr, y_tr_items, card["input"]["normalisation"], seed + 1000 * mi
            )
            info_fitted.append(fitted)
            module.cnn_only = True
        # the gradient-trained part may see smaller inputs (morph: its CNN at cnn_size)
        shrink = getattr(module, "cnn_inputs", None)
        x_loop = shrink(x_tr) if shrink else x_tr
        xv_loop = shrink(x_va) if shrink and x_va is not None else x_va
        trainable = [q for q in module.parameters() if q.requires_grad]
        module.to(device)
        if not trainable:  # nothing left to train by gradient descent: one record, no epochs
            done += epochs
            module.eval()
            rec = {"member": mi, "epoch": 1}
            if x_va is not None:
                logits = _input_logits(module, x_va, device)
                val_logits_all.append(logits)
                rec.update(_val_scores(pooled_probs(logits[None], g_va)[0], val.labels))
            history.append(rec)
            yield EpochProgress(
                done,
                total,
                f"member {mi + 1}/{len(modules)}: closed-form fit"
                + (f", val acc {rec['val_acc']:.2f}" if "val_acc" in rec else ""),
                rec,
            )
            module.to("cpu")
            continue
        opt = torch.optim.AdamW(
            trainable,
            lr=float(options.get("lr", 3e-3)),
            weight_decay=float(options.get("weight_decay", 1e-3)),
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
        best, best_state, bad = math.inf, None, 0
        for epoch in range(epochs):
            if modality == "storm" and epoch > 0:
                x_tr = normalise(raw_inputs(items_tr, card, rng=mrng, n_patches=per_item)[0], card)
                x_loop = x_tr
            y_tr = np.repeat(y_tr_items, per_item)
            steps = max(math.ceil(len(y_tr) / bs), int(options.get("min_steps", 8)))
            order = _balanced_order(y_tr, steps * bs, mrng)
            module.train()
            losses, correct = [], 0
            for i in range(0, len(order), bs):
                idx = order[i : i + bs]
                if len(idx) < 2:
                    continue
                xb = augment(torch.from_numpy(x_loop[idx]), mrng, modality).to(device)
                yb = torch.from_numpy(y_tr[idx]).to(device)
                out = module(xb)
                loss = torch.nn.functional.cross_entropy(out, yb, label_smoothing=0.05)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                correct += int((out.argmax(1) == yb).sum())
            sched.step()
            rec = {
                "member": mi,
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "train_acc": correct / max(len(order), 1),
            }
            if x_va is not None:
                vp = pooled_probs(_input_logits(module, xv_loop, device)[None], g_va)[0]
                rec.update(_val_scores(vp, val.labels))
                score = rec["val_loss"]
            else:
                score = rec["train_loss"]
            history.append(rec)
            done += 1
            yield EpochProgress(
                done,
                total,
                f"member {mi + 1}/{len(modules)} epoch {epoch + 1}: loss {rec['train_loss']:.3f}"
                + (f", val acc {rec['val_acc']:.2f}" if "val_acc" in rec else ""),
                rec,
            )
            if score < best - 1e-4:
                best, bad = score, 0
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                bad += 1
                if bad >= patience:
                    done += epochs - epoch - 1
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.cnn_only = False
        module.eval()
        if x_va is not None:
            val_logits_all.append(_input_logits(module, x_va, device))
        module.to("cpu")
    info = {"history": history, "seconds": time.perf_counter() - t0, "fitted": info_fitted}
    if init_info:
        info["init_weights"] = init_info
    if val_logits_all:
        logits = np.stack(val_logits_all)
        t = calibrate_temperature(logits, val.labels, g_va)
        card["calibration"]["temperature"] = t
        info["val_probs"] = pooled_probs(logits, g_va, t)
    return modules, card, info


def _input_logits(module, x, device) -> np.ndarray:
    """Logits ``(M, C)`` of every prepared input (eval mode)."""
    from napari_nucleus_ai.models.engine import logits_batched

    module.eval()
    return logits_batched(module, x, device, 128)


def _val_scores(p: np.ndarray, labels: np.ndarray) -> dict:
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    nll = float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-8, 1)).mean())
    pred = p.argmax(1)
    return {
        "val_loss": nll,
        "val_acc": float((pred == labels).mean()),
        "val_balanced_acc": balanced_accuracy(labels, pred),
    }


register_kind(
    Kind(
        name="classifier",
        archs=ARCHS,
        build=build,
        fit=fit,
        predict=predict,
        validate=validate,
        description="discriminative CNN (cross-entropy), calibrated, optional ensemble",
    )
)
