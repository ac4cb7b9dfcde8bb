"""When not to trust a prediction: conformal sets, a domain-shift score and input checks.

A classifier trained on one microscope can be confidently wrong on another. Three
things travel with every prediction so that a user sees it:

Conformal sets (:func:`fit_conformal`, :func:`conformal_sets`)
    Split-conformal APS (Romano et al. 2020) fitted on the held-back validation crops at
    training time: one number ``qhat`` in the card. A cell's set holds the classes whose
    sorted cumulative probability stays within ``qhat``; on data like the training data
    the set contains the true class with probability >= the card's coverage (90 % by
    default). Coverage is *not* guaranteed under a domain shift: that is the alarm's job.
Domain-shift score (:func:`fit_domain`, :func:`domain_scores`)
    Where the features start with a morphology descriptor (``morph``: ``descriptor``
    columns), three terms: the smallest Mahalanobis distance (Lee et al. 2018) of the
    cell's descriptor to a class mean, on its principal components with one shared
    Ledoit-Wolf covariance; the cosine distance to its k-th nearest training cell in
    descriptor space, relative to the training cells' own k-th neighbour distances; and
    the predictive entropy. Without a descriptor: the Mahalanobis distance of all
    features and the entropy. Each term is standardised on held-back in-distribution
    cells and the terms are added. Above the card's threshold (the 95th percentile of
    held-back cells) a cell is ``unidentified``; when most cells of an image are, the
    image gets one warning (:func:`domain_warning`).
Input checks (:func:`check_modality`)
    A grey image, a 4-channel image or a STORM render given to a model trained on RGB
    crops is refused in one line naming the file, the model's modality and the image's.

Every fitted quantity is a plain number or list, stored in the card's ``trust`` entry
(validated on load, never code). A package's fallback model may also carry ``trust.adapt``,
the reference of its test-time adaptation to a batch of one microscope
(:mod:`napari_nucleus_ai.models.adapt`), validated here too.
"""

from __future__ import annotations

import numpy as np

from napari_nucleus_ai.core.errors import InputError

#: Default target coverage of conformal sets.
COVERAGE = 0.9
#: Fraction of held-back in-distribution cells the domain threshold lets through.
DOMAIN_QUANTILE = 0.95
#: An image whose cells are out of domain at least this often gets a warning.
WARN_FRACTION = 0.5
#: Neighbour of the descriptor k-nearest-neighbour term, and the most training cells the
#: card keeps as its neighbours (a random sample of larger sets).
KNN_K = 3
KNN_REFERENCE = 400


# -- conformal sets ------------------------------------------------------------------


def _aps_scores(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Randomised APS conformity score of every class for every row ``(N, C)``."""
    order = np.argsort(-probs, axis=1, kind="stable")
    ps = np.take_along_axis(probs, order, 1)
    sorted_scores = np.cumsum(ps, 1) - ps * u[:, None]
    out = np.empty_like(sorted_scores)
    np.put_along_axis(out, order, sorted_scores, 1)
    return out


def check_coverage(coverage) -> float:
    """The target coverage of conformal sets, checked: a number in [0.5, 1)."""
    try:
        value = float(coverage)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.5 <= value < 1.0:
        raise InputError(None, f"conformal coverage must be in [0.5, 1), got {coverage}")
    return value


def fit_conformal(probs, labels, coverage: float = COVERAGE, seed: int = 0) -> dict:
    """``qhat`` of split-conformal APS from held-back probabilities ``(N, C)`` and labels.

    A set always holds the most probable class (:func:`conformal_sets`), so an item whose
    true class is its most probable one is covered whatever ``qhat``: its conformity score is
    0 here. Calibrating the plain APS score instead would count such items as possibly missed
    and over-cover by about the share of confident right answers (measured on PBC: 96 % for a
    nominal 90 %).

    Parameters
    ----------
    probs : array (N, C)
        Calibrated probabilities of held-back training items.
    labels : array (N,)
        Their class indices.
    coverage : float
        Target probability that a set holds the true class (0.5..0.999).
    seed : int
        Seed of the randomisation (APS ties the score to a uniform draw per item).

    Returns
    -------
    dict
        ``{"method": "aps", "top": True, "coverage", "qhat", "n_calibration"}`` (plain numbers;
        ``top`` says the score counts the most probable class as covered).
    """
    probs = np.asarray(probs, float)
    labels = np.asarray(labels, int)
    coverage = check_coverage(coverage)
    n = len(labels)
    u = np.random.default_rng(seed).random(n)
    s = _aps_scores(probs, u)[np.arange(n), labels]
    s = np.where(probs.argmax(1) == labels, 0.0, s)  # the top class is always in the set
    k = int(np.ceil((n + 1) * coverage))  # the k-th smallest score (1-based)
    qhat = float(np.sort(s)[k - 1]) if 0 < k <= n else 1.0
    return {
        "method": "aps",
        "top": True,
        "coverage": float(coverage),
        "qhat": qhat,
        "n_calibration": n,
    }


def conformal_sets(probs, conformal: dict, seed: int = 1) -> list[list[int]]:
    """Prediction sets (class indices, most probable first) for probabilities ``(N, C)``.

    A set always holds the most probable class: where no class passes ``qhat`` (a very
    confident cell), the set is that class alone. Cards fitted by :func:`fit_conformal`
    (``top``) are calibrated for this rule; older cards' ``qhat`` over-covers somewhat.
    """
    probs = np.asarray(probs, float)
    u = np.random.default_rng(seed).random(len(probs))
    scores = _aps_scores(probs, u)
    order = np.argsort(-probs, axis=1, kind="stable")
    out = []
    for i in range(len(probs)):
        keep = [int(c) for c in order[i] if scores[i, c] <= conformal["qhat"]]
        out.append(keep or [int(order[i, 0])])
    return out


def set_columns(probs, conformal: dict, classes) -> dict:
    """``{"set": ["a|b", ...], "set_size": [...]}`` for a cell table."""
    sets = conformal_sets(probs, conformal)
    return {
        "set": ["|".join(classes[c] for c in s) for s in sets],
        "set_size": np.array([len(s) for s in sets], int),
    }


def coverage_of(sets, labels) -> float:
    """Fraction of items whose set holds the true class."""
    return float(np.mean([int(t) in s for s, t in zip(sets, labels, strict=True)]))


# -- domain-shift score --------------------------------------------------------------


def _entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(1)


def fit_domain(
    features,
    labels,
    held_features,
    held_probs,
    *,
    components: int = 32,
    quantile: float = DOMAIN_QUANTILE,
    descriptor: int = 0,
    seed: int = 0,
) -> dict:
    """Fit the domain-shift score on training features; calibrate it on held-back cells.

    Parameters
    ----------
    features : array (N, F)
        Features of the training items (as :func:`domain_scores` will get them).
    labels : array (N,)
        Their class indices.
    held_features, held_probs : arrays (M, F), (M, C)
        Features and probabilities of held-back in-distribution items (the validation
        split): the score's location, scale and threshold come from them.
    components : int
        Principal components kept.
    quantile : float
        The threshold lets this fraction of held-back items through.
    descriptor : int
        How many leading feature columns are a morphology descriptor (``morph``'s
        :meth:`embed`); 0 for none. With one, the score's terms are the descriptor's
        Mahalanobis and k-nearest-neighbour distances and the entropy; without, the
        Mahalanobis distance of all features and the entropy.
    seed : int
        Seeds the sample of training cells kept as neighbours (at most
        :data:`KNN_REFERENCE`).

    Returns
    -------
    dict of plain lists and numbers (``mean``, ``scale``, ``components``,
    ``class_means``, ``precision``, ``descriptor`` (with one), ``standardise`` (the
    terms and their location and scale), ``threshold``).
    """
    from sklearn.covariance import LedoitWolf

    f = np.asarray(features, float)
    y = np.asarray(labels, int)
    mu = f.mean(0)
    sd = np.maximum(f.std(0), 1e-6)
    z = (f - mu) / sd
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    comp = vt[: min(components, len(vt))]
    p = z @ comp.T
    classes = np.unique(y)
    means = np.stack([p[y == c].mean(0) for c in classes])
    resid = p - means[np.searchsorted(classes, y)]
    precision = LedoitWolf().fit(resid).precision_
    dom = {
        "mean": compact(mu),
        "scale": compact(sd),
        "components": compact(comp),
        "class_means": compact(means),
        "precision": compact(precision),
    }
    if 0 < descriptor <= f.shape[1]:
        dom["descriptor"] = _fit_descriptor(z[:, :descriptor], y, components, seed)
    raw = _raw_scores(np.asarray(held_features, float), np.asarray(held_probs, float), dom)
    terms = TERMS if "descriptor" in dom else TERMS_NO_DESCRIPTOR
    dom["standardise"] = {k: _robust(raw[k]) for k in terms}
    combined = _combine(raw, dom["standardise"])
    dom["threshold"] = float(np.quantile(combined, quantile)) if len(combined) else float("inf")
    dom["quantile"] = float(quantile)
    return dom


def _mahalanobis_fit(z: np.ndarray, y: np.ndarray, components: int) -> dict:
    """Principal components of ``z``, class means on them and one shrunk precision."""
    from sklearn.covariance import LedoitWolf

    centre = z.mean(0)
    _, _, vt = np.linalg.svd(z - centre, full_matrices=False)
    comp = vt[: min(components, len(vt))]
    p = (z - centre) @ comp.T
    classes = np.unique(y)
    means = np.stack([p[y == c].mean(0) for c in classes])
    precision = LedoitWolf().fit(p - means[np.searchsorted(classes, y)]).precision_
    return {"centre": centre, "components": comp, "class_means": means, "precision": precision}


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def _kth_distance(reference: np.ndarray, query: np.ndarray, k: int, skip_self=False):
    """Cosine distance of every ``query`` row to its ``k``-th nearest ``reference`` row."""
    d = 1.0 - _unit(query) @ _unit(reference).T
    k = min(k + int(skip_self), d.shape[1])
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def _fit_descriptor(z: np.ndarray, y: np.ndarray, components: int, seed: int) -> dict:
    """The descriptor terms: Mahalanobis on its principal components and the k-th
    nearest training neighbour (reference cells and their own neighbour distance)."""
    maha = _mahalanobis_fit(z, y, components)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(len(z))[:KNN_REFERENCE])
    ref = z[keep]
    own = _kth_distance(ref, ref, KNN_K, skip_self=True)
    return {
        "n": int(z.shape[1]),
        "centre": compact(maha["centre"]),
        "components": compact(maha["components"]),
        "class_means": compact(maha["class_means"]),
        "precision": compact(maha["precision"]),
        "reference": compact(ref, 4),
        "k": KNN_K,
        "knn_scale": float(max(np.median(own), 1e-6)) if len(own) else 1.0,
    }


def compact(a: np.ndarray, digits: int = 6) -> list:
    """``a`` as nested lists of floats with 6 significant digits (the card stays small)."""
    a = np.asarray(a, np.float64)
    flat = [float(f"{v:.{digits}g}") for v in a.ravel()]
    return np.asarray(flat).reshape(a.shape).tolist()


def _robust(s: np.ndarray) -> dict:
    q1, med, q3 = np.percentile(np.asarray(s, float), [25, 50, 75]) if len(s) else (0, 0, 1)
    return {"median": float(med), "scale": float(max((q3 - q1) / 1.35, 1e-6))}


def _min_mahalanobis(p: np.ndarray, means, precision) -> np.ndarray:
    d = p[:, None, :] - np.asarray(means)[None]
    return np.einsum("nck,kl,ncl->nc", d, np.asarray(precision), d).min(1)


def _raw_scores(features: np.ndarray, probs: np.ndarray, dom: dict) -> dict:
    """Every term of the score the card fits (``descriptor_*`` only where it has one).

    ``features`` may be the descriptor's columns alone (:func:`descriptor_span`): the
    all-feature ``mahalanobis`` term is then left out.
    """
    mean = np.asarray(dom["mean"])
    n = features.shape[1]
    z = (features - mean[:n]) / np.asarray(dom["scale"])[:n]
    out = {"entropy": _entropy(probs)}
    if n == len(mean):
        p = z @ np.asarray(dom["components"]).T
        out["mahalanobis"] = _min_mahalanobis(p, dom["class_means"], dom["precision"])
    desc = dom.get("descriptor")
    if desc:
        zd = z[:, : desc["n"]]
        pd = (zd - np.asarray(desc["centre"])) @ np.asarray(desc["components"]).T
        out["descriptor_mahalanobis"] = _min_mahalanobis(pd, desc["class_means"], desc["precision"])
        ref = np.asarray(desc["reference"], float)
        out["descriptor_knn"] = _kth_distance(ref, zd, int(desc["k"])) / desc["knn_scale"]
    return out


#: The terms of the score: with a descriptor, and without.
TERMS = ("descriptor_mahalanobis", "descriptor_knn", "entropy")
TERMS_NO_DESCRIPTOR = ("mahalanobis", "entropy")


def descriptor_span(domain: dict) -> int | None:
    """How many leading features the score of ``domain`` reads: the descriptor's columns
    when its terms are the descriptor's and the entropy (:data:`TERMS`), else None (all)."""
    desc = domain.get("descriptor")
    if not desc or set(domain["standardise"]) - set(TERMS):
        return None
    return int(desc["n"])


def _combine(raw: dict, standardise: dict) -> np.ndarray:
    return sum((raw[k] - s["median"]) / s["scale"] for k, s in standardise.items())


def domain_scores(features, probs, domain: dict) -> np.ndarray:
    """The domain-shift score ``(N,)`` of items: 0 is typical, above ``threshold`` is out."""
    raw = _raw_scores(np.asarray(features, float), np.asarray(probs, float), domain)
    return _combine(raw, domain["standardise"])


def _most_cells(flags, where: str, fraction: float, what: str) -> str | None:
    """``"<where>: <n> of <N> cells <what>"`` when at least ``fraction`` of ``flags`` are set."""
    flags = np.asarray(flags, bool)
    if len(flags) == 0 or flags.mean() < fraction:
        return None
    prefix = f"{where}: " if where else ""
    return f"{prefix}{int(flags.sum())} of {len(flags)} cells {what}"


def domain_warning(out_of_domain, where: str = "", fraction: float = WARN_FRACTION) -> str | None:
    """One warning when at least ``fraction`` of the cells are out of domain (else None)."""
    return _most_cells(
        out_of_domain,
        where,
        fraction,
        "do not look like the model's training data (another microscope, stain or framing?): "
        "correct a few and retrain",
    )


def routing_note(routed, where: str = "", fraction: float = WARN_FRACTION) -> str | None:
    """One note when at least ``fraction`` of the cells went to a package's fallback model
    (``routed``; :func:`napari_nucleus_ai.classify.predict.route`), else None."""
    return _most_cells(
        routed,
        where,
        fraction,
        "look unlike the first model's training microscope: its canonical-frame fallback model "
        "classified them",
    )


# -- input checks --------------------------------------------------------------------


def image_modality(item) -> str:
    """What an input looks like: ``rgb``, ``grey``, ``4-channel``, ``localizations``...

    A three-channel image is ``grey`` when its channels (nearly) agree, judged on an even
    grid of at most ~1 million of its pixels.
    """
    a = np.asarray(item)
    if a.ndim == 2 and a.shape[1] in (2, 3) and a.shape[0] > 3 and a.dtype.kind == "f":
        return "localizations"
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 1):
        return "grey"
    if a.ndim == 3 and a.shape[-1] == 3:
        step = max(1, int(np.ceil(np.sqrt(a.shape[0] * a.shape[1] / 2**20))))
        rgb = a[::step, ::step].astype(np.float32)
        spread = np.abs(rgb[..., 0] - rgb[..., 2]).mean() + np.abs(rgb[..., 0] - rgb[..., 1]).mean()
        return "grey" if spread < 1e-3 * max(float(rgb.max()), 1.0) else "rgb"
    if a.ndim == 3:
        return f"{a.shape[-1]}-channel"
    return f"{a.ndim}-D"


#: What each model modality accepts.
ACCEPTS = {
    "brightfield_rgb": {"rgb"},
    "fluorescence": {"grey", "rgb"},
    "storm": {"localizations", "grey"},
}


def check_modality(item, card: dict, source=None) -> None:
    """Raise one line naming ``source``, the model's modality and the input's if they differ."""
    modality = card.get("modality", "")
    kind = image_modality(item)
    if modality in ACCEPTS and kind not in ACCEPTS[modality]:
        raise InputError(
            source,
            f"the model '{card.get('name', '?')}' classifies {modality} crops; this input is {kind}",
        )


def validate_trust(trust, path=None, n_classes: int | None = None) -> None:
    """Check a card's ``trust`` entry (plain numbers in the expected places).

    ``n_classes`` (the card's): the rows the test-time adaptation's ``adapt.class_means``
    must have (:func:`napari_nucleus_ai.models.adapt.validate_entry`).
    """

    def need(ok, problem):
        if not ok:
            raise InputError(path, f"'trust' {problem}")

    need(isinstance(trust, dict), "must be an object")
    conf = trust.get("conformal")
    if conf is not None:
        need(isinstance(conf, dict) and conf.get("method") == "aps", "conformal method must be aps")
        need(
            isinstance(conf.get("qhat"), int | float) and 0 <= conf["qhat"] <= 2,
            "qhat must be 0..2",
        )
        need(0.5 <= float(conf.get("coverage", 0)) < 1, "coverage must be in [0.5, 1)")
        need(isinstance(conf.get("top", False), bool), "conformal top must be true or false")
    dom = trust.get("domain")
    if dom is not None:
        need(isinstance(dom, dict), "domain must be an object")
        for key in ("mean", "scale", "components", "class_means", "precision"):
            need(isinstance(dom.get(key), list), f"domain.{key} must be a list")
        k = len(dom["components"])
        need(np.asarray(dom["precision"], float).shape == (k, k), "domain.precision shape")
        need(np.isfinite(float(dom.get("threshold", np.nan))), "domain.threshold must be finite")
        std = dom.get("standardise")
        need(isinstance(std, dict) and std, "domain.standardise must be an object")
        known = set(TERMS) | set(TERMS_NO_DESCRIPTOR)
        need(set(std) <= known, f"domain.standardise terms must be among {sorted(known)}")
        desc = dom.get("descriptor")
        need(
            desc is not None or not {"descriptor_mahalanobis", "descriptor_knn"} & set(std),
            "domain.descriptor is missing for its terms",
        )
        if desc is not None:
            need(isinstance(desc, dict), "domain.descriptor must be an object")
            for key in ("centre", "components", "class_means", "precision", "reference"):
                need(isinstance(desc.get(key), list), f"domain.descriptor.{key} must be a list")
            n, kd = int(desc.get("n", 0)), len(desc["components"])
            need(0 < n <= len(dom["mean"]), "domain.descriptor.n must be 1..features")
            need(
                np.asarray(desc["precision"], float).shape == (kd, kd),
                "domain.descriptor.precision shape",
            )
            need(
                np.asarray(desc["reference"], float).shape[1:] == (n,),
                "domain.descriptor.reference shape",
            )
            need(
                int(desc.get("k", 0)) >= 1 and float(desc.get("knn_scale", 0)) > 0,
                "domain.descriptor k and knn_scale must be positive",
            )
    if trust.get("adapt") is not None:
        need(dom is not None, "adapt needs the domain-shift score ('domain') for its gate")
        _validate_adapt(trust["adapt"], need, n_classes, len(dom["mean"]))


# -- test-time adaptation (models/adapt.py) in the card ------------------------------


def adapt_entry(module, card: dict) -> dict | None:
    """The card's ``trust.adapt`` for ``module`` (the card's only member): the reference of
    its test-time adaptation (:mod:`napari_nucleus_ai.models.adapt`) and the gate's numbers;
    None where the model cannot be adapted: more than one member, no linear head or no
    reference from its heads' last fit (:func:`~napari_nucleus_ai.models.adapt.reference_of`),
    or no domain-shift score for the gate. Numbers keep 6 significant digits."""
    from napari_nucleus_ai.models import adapt

    got = adapt.reference_of(module)
    if got is None or int(card.get("members", 1)) != 1:
        return None
    if not (card.get("trust") or {}).get("domain"):
        return None
    reference = got[2]
    return {
        "method": adapt.METHOD,
        "class_means": compact(reference["class_means"]),
        "within_sd": compact(reference["within_sd"]),
        "n_rows": int(reference["n_rows"]),
        "rounds": adapt.ROUNDS,
        "min_cells": adapt.MIN_CELLS,
        "min_out_of_domain": adapt.MIN_OUT_OF_DOMAIN,
    }


def _validate_adapt(entry, need, n_classes: int | None, n_features: int) -> None:
    """Check ``trust.adapt``: ``need(ok, problem)`` reports a problem; ``class_means`` has
    ``n_classes`` rows (when known) and ``n_features`` columns, as the domain score's."""
    from napari_nucleus_ai.models.adapt import METHOD

    need(isinstance(entry, dict), "adapt must be an object")
    need(entry.get("method") == METHOD, f"adapt.method must be {METHOD!r}")
    means = np.asarray(entry.get("class_means", []), float)
    within = np.asarray(entry.get("within_sd", []), float)
    need(means.ndim == 2 and means.size > 0, "adapt.class_means must be a (classes, F) list")
    need(within.shape == means.shape[1:], "adapt.within_sd must list one number per feature")
    need(len(within) == n_features, "adapt must have as many features as the domain score")
    need(bool(np.isfinite(means).all() and np.isfinite(within).all()), "adapt must be finite")
    need(bool((within > 0).all()), "adapt.within_sd must be > 0")
    if n_classes is not None:
        need(len(means) == n_classes, "adapt.class_means must have one row per class")
    need(isinstance(entry.get("rounds"), int) and entry["rounds"] >= 1, "adapt.rounds must be >= 1")
    need(
        isinstance(entry.get("min_cells"), int) and entry["min_cells"] >= 1,
        "adapt.min_cells must be >= 1",
    )
    share = entry.get("min_out_of_domain")
    need(
        isinstance(share, int | float) and not isinstance(share, bool) and 0 <= share <= 1,
        "adapt.min_out_of_domain must be 0..1",
    )
