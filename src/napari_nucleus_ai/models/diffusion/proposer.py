"""A cheap first look that leaves the diffusion classifier two classes to decide between.

CytoDiffusion's cost is one network evaluation per class per noise level. Most
of the classes of a blood cell are out of the question at a glance: a
neutrophil is not a platelet. The proposer is that glance: the fixed
morphology descriptor of :mod:`..morphology` (nucleus, lobes, cytoplasm colour
and granules, texture) with a multinomial logistic head, measured on the
cell's crop at 192 px, framed by :mod:`napari_nucleus_ai.models.framing`. It runs no
network. Its ``top`` most probable classes become the only candidates of the
adaptive protocol (:func:`.classify.classify_crops`), which then spends its
paired trials on them alone.

Everything is stored as plain numbers in the card (``card["diffusion"]["proposer"]``)::

    {"kind": "morph-descriptor", "top": 2, "crop_size": 192, "field": 0.65, "c": 0.1,
     "prior": true, "desc_mean": [F], "desc_std": [F], "weight": [[F] * C], "bias": [C],
     "protocol": {"max_trials": 6, "check_every": 2, "keep_top": [], "anomaly": "reference"}}

``protocol`` overrides the classification protocol while the proposer is used
(candidates x ``max_trials`` network evaluations at most). With ``prior`` the decision
between the candidates weighs the denoising errors by the proposer's probabilities
(:func:`.classify.decide`); without it the denoising errors alone decide.
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.core.errors import InputError

KIND = "morph-descriptor"
#: The proposer's defaults; its protocol keeps the evaluations per cell at or below 2 x 6.
DEFAULTS = {
    "top": 2,
    "crop_size": 192,
    "c_grid": [0.03, 0.1, 0.3, 1.0],
    # weigh the denoising errors by the proposer's probabilities (PBC 4-fold: 0.906 with
    # the 32-px model against 0.812 for the denoising errors alone; docs/generative.md)
    "prior": True,
    # no "unconditional" evaluations: the anomaly score is read from the class trials
    "protocol": {"max_trials": 6, "check_every": 2, "keep_top": [], "anomaly": "reference"},
}


def proposer_crops(items, prop: dict) -> np.ndarray:
    """RGB crops ``(N, S, S, 3)`` in [0, 1] framed as the proposer was trained."""
    from napari_nucleus_ai.models.crops import square_resize
    from napari_nucleus_ai.models.framing import centre_field

    size, field = int(prop["crop_size"]), float(prop.get("field", 1.0))
    out = [
        np.clip(square_resize(centre_field(np.asarray(it), field), size)[..., :3], 0, 1)
        for it in items
    ]
    return np.stack(out) if out else np.zeros((0, size, size, 3), np.float32)


def _descriptors(items, prop: dict) -> np.ndarray:
    from napari_nucleus_ai.models.nets.morphology import describe_cells

    return np.asarray(describe_cells(proposer_crops(items, prop)), np.float64)


def fit_proposer(samples, labels, n_classes: int, *, field="auto", seed: int = 0, **options):
    """Fit the proposer on RGB training crops; returns the card section (JSON-able)."""
    from napari_nucleus_ai.models.framing import auto_field
    from napari_nucleus_ai.models.nets.morph import fit_head

    p = {**DEFAULTS, **options}
    prop = {"kind": KIND, "top": int(p["top"]), "crop_size": int(p["crop_size"])}
    prop["prior"] = bool(p["prior"])
    prop["field"] = auto_field(samples) if field == "auto" else float(field)
    head = fit_head(_descriptors(samples, prop), labels, n_classes, p["c_grid"], 4, seed)
    prop.update(
        c=float(head["c"]),
        desc_mean=[float(v) for v in head["mean"]],
        desc_std=[float(v) for v in head["std"]],
        weight=[[float(v) for v in row] for row in head["weight"].numpy()],
        bias=[float(v) for v in head["bias"].numpy()],
        protocol=dict(p["protocol"]),
    )
    return prop


def proposer_probs(prop: dict, items) -> np.ndarray:
    """Class probabilities ``(N, C)`` of the proposer for raw crops ``items``."""
    f = _descriptors(items, prop)
    z = (f - np.asarray(prop["desc_mean"])) / np.asarray(prop["desc_std"])
    logits = z @ np.asarray(prop["weight"]).T + np.asarray(prop["bias"])
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def candidates(probs: np.ndarray, top: int) -> np.ndarray:
    """Boolean ``(N, C)``: the ``top`` most probable classes of each row."""
    probs = np.asarray(probs)
    k = max(1, min(int(top), probs.shape[1]))
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    mask = np.zeros(probs.shape, bool)
    mask[np.arange(len(probs))[:, None], idx] = True
    return mask


def validate_proposer(prop, n_classes: int) -> None:
    """Refuse a malformed proposer section in one line (shapes, finiteness, ranges)."""
    from napari_nucleus_ai.models.nets.morphology import N_FEATURES

    def bad(why):
        raise InputError(None, f"diffusion 'proposer' {why}")

    if not isinstance(prop, dict) or prop.get("kind") != KIND:
        bad(f"must be an object of kind {KIND!r}")
    try:
        mu, sd = np.asarray(prop["desc_mean"], float), np.asarray(prop["desc_std"], float)
        w, b = np.asarray(prop["weight"], float), np.asarray(prop["bias"], float)
        top, size, field = int(prop["top"]), int(prop["crop_size"]), float(prop.get("field", 1))
    except (KeyError, TypeError, ValueError):
        bad("needs numeric desc_mean, desc_std, weight, bias, top and crop_size")
    if mu.shape != (N_FEATURES,) or sd.shape != (N_FEATURES,) or (sd <= 0).any():
        bad(f"descriptor statistics must be {N_FEATURES} numbers (positive std)")
    if w.shape != (n_classes, N_FEATURES) or b.shape != (n_classes,):
        bad(f"weights must be {n_classes} x {N_FEATURES} with {n_classes} biases")
    if not all(np.isfinite(a).all() for a in (mu, sd, w, b)):
        bad("holds non-finite numbers")
    if not (1 <= top <= n_classes and 32 <= size <= 1024 and 0.05 <= field <= 1):
        bad("needs 1 <= top <= classes, 32 <= crop_size <= 1024 and 0.05 <= field <= 1")
    if not isinstance(prop.get("protocol", {}), dict):
        bad("protocol must be an object")
    if not isinstance(prop.get("prior", False), bool):
        bad("prior must be true or false")
