"""Uncertainty from repeated predictions: entropy, disagreement, ``unidentified``.

A classifier returns probability *samples* ``(S, N, C)``: one per ensemble
member x test-time augmentation x MC-dropout pass (all temperature-calibrated).
From them:

``entropy``
    Predictive entropy of the mean probabilities, divided by ``log C`` so it lies
    in [0, 1] whatever the number of classes (total uncertainty).
``disagreement``
    Mutual information between the prediction and the sample (BALD: entropy of
    the mean minus mean entropy of the samples), also divided by ``log C``; it is
    high when members / augmentations / dropout masks disagree (model uncertainty).
``uncertainty``
    The score used to rank and flag cells: the normalised entropy (it already
    includes disagreement, since the mean of disagreeing samples is flat).

Cells whose ``uncertainty`` exceeds the threshold are labelled
:data:`~napari_nucleus_ai.cells.CLASS_UNIDENTIFIED` so they go to a human, as
CellaVision-style analysers do; their probabilities are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED


def entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=axis)


@dataclass
class Prediction:
    """Per-item result of a classifier.

    Attributes
    ----------
    probs : (N, C) mean probabilities
    entropy, disagreement, uncertainty : (N,) in [0, 1]
    classes : list of str
    threshold : float
    samples : (S, N, C) or None
    """

    probs: np.ndarray
    entropy: np.ndarray
    disagreement: np.ndarray
    uncertainty: np.ndarray
    classes: list[str]
    threshold: float
    samples: np.ndarray | None = None
    extra: dict = field(
        default_factory=dict
    )  # per-item columns a kind adds (e.g. diffusion: anomaly)

    @property
    def index(self) -> np.ndarray:
        """Index of the most probable class per item."""
        return self.probs.argmax(1) if len(self.probs) else np.zeros(0, int)

    @property
    def predicted(self) -> list[str]:
        """Most probable class name per item (ignoring the threshold)."""
        return [self.classes[i] for i in self.index]

    @property
    def labels(self) -> list[str]:
        """Class name, or ``unidentified`` where uncertainty exceeds the threshold."""
        out = self.extra.get("out_of_domain")
        out = np.zeros(len(self.probs), bool) if out is None else np.asarray(out, bool)
        return [
            CLASS_UNIDENTIFIED if (u > self.threshold or o) else c
            for c, u, o in zip(self.predicted, self.uncertainty, out, strict=True)
        ]

    def to_frame(self, **leading) -> pd.DataFrame:  # noqa: F821 - pandas imported lazily
        """``leading`` columns, then ``label`` (class or unidentified), ``predicted``,
        ``uncertainty``, ``entropy``, ``disagreement`` and ``p_<class>``."""
        import pandas as pd

        df = pd.DataFrame(leading)
        df["class"] = self.labels
        df["predicted"] = self.predicted
        df["uncertainty"] = self.uncertainty
        df["entropy"] = self.entropy
        df["disagreement"] = self.disagreement
        for j, c in enumerate(self.classes):
            df[f"p_{c}"] = self.probs[:, j] if len(self.probs) else []
        for k, v in self.extra.items():
            df[k] = v
        return df


def summarise(samples: np.ndarray, classes: list[str], threshold: float) -> Prediction:
    """Turn probability samples ``(S, N, C)`` into a :class:`Prediction`."""
    samples = np.asarray(samples, np.float64)
    if samples.ndim == 2:
        samples = samples[None]
    c = samples.shape[-1]
    norm = np.log(c) if c > 1 else 1.0
    mean = samples.mean(0)
    total = entropy(mean) / norm
    expected = entropy(samples).mean(0) / norm
    disagreement = np.clip(total - expected, 0.0, 1.0)
    return Prediction(
        probs=mean.astype(np.float32),
        entropy=total,
        disagreement=disagreement,
        uncertainty=total,
        classes=list(classes),
        threshold=float(threshold),
        samples=samples.astype(np.float32),
    )


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the ``positive`` items (ties count half).

    Returns NaN when either group is empty.
    """
    from scipy.stats import rankdata

    score = np.asarray(score, float)
    positive = np.asarray(positive, bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# Metric names: one word per measure (``loss``, ``accuracy``, ``balanced_accuracy``), prefixed
# with the split it was measured on (``train_``, ``val_``). Cards keep ``val_*`` (validation)
# and ``corrections_before`` / ``corrections_after`` dicts of the unprefixed names, so these
# strings are a file format: cards written earlier carry exactly them.
ACCURACY = "accuracy"
BALANCED_ACCURACY = "balanced_accuracy"
TRAIN_LOSS = "train_loss"
TRAIN_ACCURACY = "train_accuracy"
VAL_LOSS = "val_loss"
VAL_ACCURACY = "val_accuracy"
VAL_BALANCED_ACCURACY = "val_balanced_accuracy"


def accuracy_scores(true: np.ndarray, pred: np.ndarray, prefix: str = "") -> dict:
    """``{prefix}accuracy`` and ``{prefix}balanced_accuracy`` of ``pred`` against ``true``."""
    true, pred = np.asarray(true), np.asarray(pred)
    return {
        prefix + ACCURACY: float((pred == true).mean()) if len(true) else float("nan"),
        prefix + BALANCED_ACCURACY: balanced_accuracy(true, pred),
    }


def balanced_accuracy(true: np.ndarray, pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``true``."""
    true, pred = np.asarray(true), np.asarray(pred)
    recalls = [float((pred[true == c] == c).mean()) for c in np.unique(true)]
    return float(np.mean(recalls)) if recalls else float("nan")


def expected_calibration_error(confidence, correct, n_bins: int = 10, *, return_bins: bool = False):
    """Expected calibration error: how far confidence is from accuracy, over equal-width bins.

    The one ECE of the plugin (validation metrics, the review report's reliability diagram).
    Confidence ``c`` falls in bin ``min(floor(c * n_bins), n_bins - 1)``; the ECE is the mean
    over bins of ``|accuracy - mean confidence|`` weighted by each bin's share of items.

    Parameters
    ----------
    confidence : (N,) array
        The probability of each item's predicted class, in [0, 1].
    correct : (N,) bool array
        Whether the prediction was right.
    n_bins : int
        Number of bins (10-15 is usual).
    return_bins : bool
        Also return the bins (for a reliability diagram).

    Returns
    -------
    float
        ECE in [0, 1] (NaN for no items); with ``return_bins``, ``(ece, bins)`` where
        ``bins`` has ``lower``, ``upper``, ``count``, ``confidence`` and ``accuracy``
        arrays of length ``n_bins`` (NaN in empty bins).
    """
    conf = np.clip(np.asarray(confidence, float).ravel(), 0.0, 1.0)
    ok = np.asarray(correct, bool).ravel()
    if len(conf) != len(ok):
        raise ValueError("confidence and correct differ in length")
    b = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, conf, minlength=n_bins) / count
        accuracy = np.bincount(b, ok.astype(float), minlength=n_bins) / count
    filled = count > 0
    ece = (
        float(np.sum(np.abs(accuracy[filled] - mean_conf[filled]) * count[filled]) / len(conf))
        if len(conf)
        else float("nan")
    )
    if not return_bins:
        return ece
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "confidence": mean_conf,
        "accuracy": accuracy,
    }
    return ece, bins
