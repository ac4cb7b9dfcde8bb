"""Out-of-distribution scores fitted at train time as plain numbers (JSON-storable).

Two feature-space scores on the *standardised* features the classifier uses
(descriptor and frozen ImageNet features, concatenated):

* :func:`fit_mahalanobis` / :func:`mahalanobis_score` - project on the first ``k``
  principal components of the training features, class means and one shared
  (Ledoit-Wolf shrunk) covariance; the score is the smallest squared Mahalanobis
  distance to a class mean (Lee et al. 2018);
* :func:`fit_knn` / :func:`knn_score` - cosine distance to the ``k``-th nearest
  training feature (Sun et al. 2022), on L2-normalised PCA features.

:func:`threshold` turns held-out in-distribution scores into a cut-off (a quantile);
cells above it become *unidentified*. :func:`input_checks` are cheap sanity checks
on the raw crop (RGB brightfield, a nucleus found, colour and cell size within the
training range) whose failures also make a cell unidentified.
"""

from __future__ import annotations

import numpy as np


def _pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    mu = x.mean(0)
    _, _, vt = np.linalg.svd(x - mu, full_matrices=False)
    return mu, vt[: min(k, len(vt))]


def fit_mahalanobis(f: np.ndarray, y: np.ndarray, k: int = 32) -> dict:
    """Class-conditional Gaussians with a shared covariance on ``k`` principal components.

    Parameters
    ----------
    f : np.ndarray (N, F)
        Standardised training features.
    y : np.ndarray (N,)
        Class indices.
    k : int
        Principal components kept.

    Returns
    -------
    dict of lists (``pca_mean``, ``pca_components``, ``class_means``, ``precision``).
    """
    from sklearn.covariance import LedoitWolf

    mu, comp = _pca(f, k)
    z = (f - mu) @ comp.T
    classes = np.unique(y)
    means = np.stack([z[y == c].mean(0) for c in classes])
    resid = z - means[np.searchsorted(classes, y)]
    prec = LedoitWolf().fit(resid).precision_
    return {
        "pca_mean": mu.tolist(),
        "pca_components": comp.tolist(),
        "class_means": means.tolist(),
        "precision": prec.tolist(),
    }


def mahalanobis_score(f: np.ndarray, m: dict) -> np.ndarray:
    """Smallest squared Mahalanobis distance ``(N,)`` to a class mean (higher = stranger)."""
    z = (f - np.asarray(m["pca_mean"])) @ np.asarray(m["pca_components"]).T
    d = z[:, None, :] - np.asarray(m["class_means"])[None]
    return np.einsum("nck,kl,ncl->nc", d, np.asarray(m["precision"]), d).min(1)


def fit_knn(f: np.ndarray, k_pca: int = 64, k: int = 5) -> dict:
    """kNN reference: L2-normalised PCA features of the training crops (stored)."""
    mu, comp = _pca(f, k_pca)
    z = (f - mu) @ comp.T
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-9
    return {"pca_mean": mu.tolist(), "pca_components": comp.tolist(), "bank": z.tolist(), "k": k}


def knn_score(f: np.ndarray, m: dict) -> np.ndarray:
    """Cosine distance ``(N,)`` to the k-th nearest training feature."""
    z = (f - np.asarray(m["pca_mean"])) @ np.asarray(m["pca_components"]).T
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-9
    sim = z @ np.asarray(m["bank"]).T
    k = int(m["k"])
    return 1 - np.sort(sim, axis=1)[:, -k]


def entropy(p: np.ndarray) -> np.ndarray:
    """Predictive entropy ``(N,)`` of probabilities ``(N, C)``."""
    return -(p * np.log(np.clip(p, 1e-12, 1))).sum(1)


def threshold(scores_in: np.ndarray, quantile: float = 0.95) -> float:
    """Cut-off: the ``quantile`` of held-out in-distribution scores (a plain float)."""
    return float(np.quantile(np.asarray(scores_in), quantile))


def fit_input_ranges(frameinfo: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> dict:
    """Training ranges of the frame measurements (see :func:`frame_measurements`)."""
    a = np.asarray(frameinfo, float)
    return {
        "lo": np.percentile(a, lo, axis=0).tolist(),
        "hi": np.percentile(a, hi, axis=0).tolist(),
    }


def frame_measurements(rgb: np.ndarray, info: dict) -> np.ndarray:
    """(cell diameter / crop side, nucleus area fraction, plasma R, G, B) of a crop."""
    return np.array(
        [info["diameter"] / max(rgb.shape[:2]), info["nucleus_area_frac"], *info["plasma"]]
    )


def input_checks(
    rgb: np.ndarray, meas: np.ndarray | None = None, ranges: dict | None = None, slack: float = 0.5
) -> list[str]:
    """Reasons why a crop is not a stained brightfield white-cell crop (empty list = fine).

    Checks: 3 channels; not grey (channel spread); a bright background; a nucleus found
    (nucleus area fraction > 0); plasma colour within the training range widened by
    ``slack`` of its width on each side. The cell diameter is *not* checked against the
    training crops: the canonical frame removes the framing, so a different framing is
    not a reason to refuse a cell.
    """
    why = []
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        return ["not an RGB image"]
    x = rgb[..., :3].astype(np.float32)
    if x.max() > 1.5:
        x = x / 255.0
    if (
        float(np.abs(x[..., 0] - x[..., 2]).mean()) < 0.01
        and float(np.abs(x[..., 0] - x[..., 1]).mean()) < 0.01
    ):
        why.append("grey image: not a stained smear")
    if float(np.percentile(x.mean(-1), 95)) < 0.35:
        why.append("no bright background: not brightfield")
    if meas is not None:
        if meas[1] <= 0:
            why.append("no nucleus found")
        if ranges is not None:
            lo, hi = np.asarray(ranges["lo"]), np.asarray(ranges["hi"])
            w = hi - lo
            for j, name in ((2, "plasma red"), (3, "plasma green"), (4, "plasma blue")):
                if not lo[j] - slack * w[j] - 0.05 <= meas[j] <= hi[j] + slack * w[j] + 0.05:
                    why.append(f"{name} {meas[j]:.2f} outside training range")
    return why


def fit_standardiser(scores_in: np.ndarray) -> dict:
    """Robust location/scale (median, IQR/1.35) of held-out in-distribution scores."""
    s = np.asarray(scores_in, float)
    q1, med, q3 = np.percentile(s, [25, 50, 75])
    return {"median": float(med), "scale": float(max((q3 - q1) / 1.35, 1e-6))}


def combine(scores: dict, standardisers: dict) -> np.ndarray:
    """Sum of robustly standardised scores (e.g. Mahalanobis + entropy): one OOD score
    where a cell can be strange either in feature space or to the classifier."""
    return sum((np.asarray(scores[k]) - s["median"]) / s["scale"] for k, s in standardisers.items())
