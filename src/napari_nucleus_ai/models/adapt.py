"""Test-time adaptation of a linear head to a batch of one microscope's unlabelled cells.

A batch (a folder of crops, a field, a slide) comes from one microscope, whose stain,
optics and camera move every cell's frozen features alike. When the batch is large enough
and mostly out of the model's domain, :func:`adapt_batch` re-standardises its features on
the batch itself, in a way that does not mistake the batch's class mix (a smear is mostly
neutrophils; the training set is balanced) for a shift:

1. the head ``z @ W.T + b`` (on standardised features ``z``: ``morph``'s :meth:`embed`)
   labels every cell;
2. over the classes predicted for at least :data:`MIN_CLASS_CELLS` cells, the mean of the
   batch's per-class means is moved onto the mean of the same classes' training means, and
   each feature's pooled within-class spread is scaled to the training one;
3. the labels are refreshed on the moved features and step 2 repeated from the original
   features (:data:`ROUNDS` in all); the head classifies the moved features.

The training side is two arrays fitted with the heads (:func:`fit_reference`): the class
means and the pooled within-class standard deviation of the standardised training features.
A model package keeps them in its fallback model's card as ``trust.adapt``
(:func:`napari_nucleus_ai.models.trust.adapt_entry`, checked with the card's other ``trust``
entries);
:func:`napari_nucleus_ai.classify.predict.adapt_routed` applies them to the cells a package
routed to its fallback, once every chunk of an input is classified.

Measured on cached features (``benchmarks/bench_adapt.py``, method ``bal_std``): see
docs/trust.md ("Adapting to a batch of one microscope"). Qt-free; numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MIN_CELLS",
    "MIN_CLASS_CELLS",
    "MIN_OUT_OF_DOMAIN",
    "METHOD",
    "ROUNDS",
    "adapt_batch",
    "balanced_standardise",
    "fit_reference",
    "head_probs",
    "join_references",
    "reference_of",
    "should_adapt",
]

#: Batches with fewer cells are left alone (10-cell batches lost accuracy).
MIN_CELLS = 30
#: Batches with a smaller share of out-of-domain cells are left alone (the training
#: microscope's batches).
MIN_OUT_OF_DOMAIN = 0.5
#: A predicted class takes part in the statistics from this many cells.
MIN_CLASS_CELLS = 2
#: Label-and-move rounds of :func:`balanced_standardise`.
ROUNDS = 2
#: The method name in a card's ``trust.adapt``.
METHOD = "class_mix_restandardise"


def fit_reference(features, labels, n_classes: int) -> dict:
    """The training statistics :func:`balanced_standardise` moves a batch onto.

    Parameters
    ----------
    features : array (N, F)
        Standardised training features (the head's input).
    labels : array (N,)
        Their class indices.
    n_classes : int

    Returns
    -------
    dict
        ``class_means`` ``(n_classes, F)`` (zeros for a class without cells) and
        ``within_sd`` ``(F,)``, the pooled within-class standard deviation.
    """
    z = np.asarray(features, np.float64)
    y = np.asarray(labels, np.int64)
    means = np.zeros((n_classes, z.shape[1]))
    for k in np.unique(y):
        means[k] = z[y == k].mean(0)
    within = np.sqrt(((z - means[y]) ** 2).mean(0)) + 1e-4
    return {"class_means": means, "within_sd": within}


def join_references(references: list) -> dict:
    """Column blocks of one reference: :func:`fit_reference` of each block of features
    (e.g. the descriptor's and the ImageNet features', each on the rows its head was fitted
    on), side by side in the order of the blocks."""
    return {
        "class_means": np.concatenate([r["class_means"] for r in references], 1),
        "within_sd": np.concatenate([r["within_sd"] for r in references]),
    }


def should_adapt(
    n_cells: int,
    out_of_domain=None,
    *,
    min_cells: int = MIN_CELLS,
    min_out_of_domain: float = MIN_OUT_OF_DOMAIN,
) -> bool:
    """Whether a batch is adapted to: at least ``min_cells`` cells, and at least
    ``min_out_of_domain`` of them out of the model's domain.

    Parameters
    ----------
    n_cells : int
        Cells in the batch.
    out_of_domain : array of bool or None
        The model's domain-shift flags of the batch's cells (None: not checked).
    min_cells : int
    min_out_of_domain : float

    Returns
    -------
    bool
    """
    if n_cells < min_cells:
        return False
    if out_of_domain is None:
        return True
    flags = np.asarray(out_of_domain, bool)
    return bool(len(flags)) and float(flags.mean()) >= min_out_of_domain


def balanced_standardise(features, weight, bias, reference: dict, rounds: int = ROUNDS):
    """A batch's standardised features moved onto the training statistics, robust to its
    class mix (see the module docstring).

    Parameters
    ----------
    features : array (N, F)
        The batch's standardised features.
    weight, bias : arrays (C, F), (C,)
        The head.
    reference : dict
        :func:`fit_reference` of the training features.
    rounds : int
        Label-and-move rounds.

    Returns
    -------
    array (N, F)
        The moved features (``features`` unchanged when no class has
        :data:`MIN_CLASS_CELLS` cells).
    """
    z = np.asarray(features, np.float64)
    w, b = np.asarray(weight, np.float64), np.asarray(bias, np.float64)
    ref_means = np.asarray(reference["class_means"], np.float64)
    ref_within = np.asarray(reference["within_sd"], np.float64)
    moved = z
    for _ in range(rounds):
        labels = (moved @ w.T + b).argmax(1)
        present = [k for k in np.unique(labels) if (labels == k).sum() >= MIN_CLASS_CELLS]
        if not present:
            return z
        means = np.stack([z[labels == k].mean(0) for k in present])
        row = {k: i for i, k in enumerate(present)}
        sel = np.isin(labels, present)
        dev = z[sel] - means[[row[k] for k in labels[sel]]]
        ratio = ref_within / (np.sqrt((dev**2).mean(0)) + 1e-4)
        moved = (z - means.mean(0)) * ratio + ref_means[present].mean(0)
    return moved


def head_probs(features, weight, bias, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities of the linear head on standardised ``features``:
    ``softmax((z @ W.T + b) / temperature)`` ``(N, C)`` (a ``morph`` model's own single-view
    probabilities when ``W, b`` are its :meth:`linear_head` and ``temperature`` its card's)."""
    z = np.asarray(features, np.float64)
    logits = (z @ np.asarray(weight, np.float64).T + np.asarray(bias, np.float64)) / temperature
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def adapt_batch(
    features, weight, bias, reference: dict, out_of_domain=None, temperature=1.0, **gate
):
    """Class probabilities of a batch after :func:`balanced_standardise`, or None when
    :func:`should_adapt` leaves the batch alone.

    Parameters
    ----------
    features : array (N, F)
        The batch's standardised features.
    weight, bias : arrays (C, F), (C,)
        The head.
    reference : dict
        :func:`fit_reference` of the training features (or a card's ``trust.adapt``).
    out_of_domain : array of bool or None
        The batch's domain-shift flags (:func:`should_adapt`).
    temperature : float
        The model's calibration temperature (:func:`head_probs`).
    **gate
        ``min_cells``, ``min_out_of_domain`` for :func:`should_adapt`.

    Returns
    -------
    array (N, C) or None
    """
    z = np.asarray(features, np.float64)
    if not should_adapt(len(z), out_of_domain, **gate):
        return None
    moved = balanced_standardise(z, weight, bias, reference, int(reference.get("rounds", ROUNDS)))
    return head_probs(moved, weight, bias, temperature)


# -- in a model card -----------------------------------------------------------------


def reference_of(module):
    """``(weight, bias, reference)`` of a network that can be adapted, else None.

    The network must classify with one linear head on its :meth:`embed` columns
    (``morph`` without a CNN: :meth:`linear_head`) and hold the reference its last head fit
    left (``adapt_reference``, set by :meth:`refit_heads`).
    """
    head = module.linear_head() if hasattr(module, "linear_head") else None
    reference = getattr(module, "adapt_reference", None)
    if head is None or reference is None:
        return None
    return (*head, reference)
