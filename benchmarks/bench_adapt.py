"""Benchmark: test-time adaptation of the ``morph`` heads to a batch of one microscope's
unlabelled cells, on cached features.

The heads are ``bench_transfer.py``'s (descriptor head + ImageNet head, closed-form
logistic regressions on standardised frozen features, logits summed), seen as one linear
classifier ``z @ W.T + b`` on the joint standardised features ``z``. A batch (a folder, a
field, a slide: one microscope) is adapted to without labels by:

* ``none``: the heads as trained;
* ``em``: EM re-estimation of the class priors (Saerens et al. 2002);
* ``t3a_M``: T3A (Iwasawa & Matsuo 2021): per class the ``M`` lowest-entropy batch cells
  pseudo-labelled by the heads plus the class weight vector, prototypes = their normalised
  mean, classification by similarity to the prototypes (``_head``: per head, summed);
* ``km_shot`` / ``km_means``: k-means in cosine space seeded by the probability-weighted
  batch centroids (SHOT's pseudo-labels) / by the training class means, 2 Lloyd steps;
* ``self_q``: self-training - the batch's cells whose pseudo-label confidence is in the top
  ``q`` of their predicted class are added to the training rows (each predicted class
  counting like the training rows of that class) and the heads refitted with the same ``C``
  (``_r2``: twice); ``anch_q_lam``: the same without training data, the joint head refitted
  on the pseudo-labelled cells alone with an L2 pull ``lam / 2 |W - W0|^2`` to the trained
  weights;
* ``restd`` / ``recentre``: the features standardised on the batch's mean and s.d. / mean;
* ``bal_centre`` / ``bal_std``: the same robust to the class mix: the mean of the batch's
  per-predicted-class means moved onto the mean of those classes' training means (with
  ``bal_std`` the pooled within-class s.d. matched too), pseudo-labels refreshed once;
* ``A+B``: method ``B`` on ``A``'s output (``t3a_20+em``, ``bal_std+self_0.15``, ...).

The heads' ``C`` is chosen once per recipe by inner CV on all PBC training rows and kept
for every fold (``train`` chooses it per training set; this saves most of the time).

Settings (the method and its parameters are chosen on the simulated ones only):

* ``harsh``: PBC 4-fold CV (split seeds 0-2), held-out crops under 4 draws of
  ``bench_transfer.harsh_shift`` (a batch of 96 rows per fold);
* ``another``: the same folds under ``trust_prototype.shifts.another_microscope`` (24);
* ``blood``: 2-fold CV, a batch of 50 rows drawn from the held-out crops' 5 shifted
  versions with a blood-like class mix (60 % neutrophils; 5 draws per fold);
* ``micro`` (``--only micro``, measured after the choice): 2-fold CV, each held-out half
  (48 crops) under one of 6 fixed harsh microscopes (:func:`micro_ranges`: every
  ``HARSH`` range drawn once per microscope) is a batch of one microscope;
* ``clean``: the 4-fold held-out PBC crops unshifted (must not lose);
* ``bccd``: trained on all PBC, the 295 BCCD cells labelled by eye as one batch (4 counted
  classes), and ``bccd_few``: with 5 labelled BCCD cells per class learnt, the other 273;
* ``small`` (``harsh_bN``, ``bccd_bN``): batches of N = 10 / 30 / 100 cells drawn from a
  fold's ``harsh`` rows (8 / 8 / 2 draws per fold; a fold has 96 rows, so N = 100 is the
  whole batch) and from the 295 BCCD cells (30 / 30 / 10 draws), each adapted to alone,
  balanced accuracy of the pooled predictions (``--small-methods``: which methods; the
  self-training ones are left out by default for time).

Models: ``fallback`` (the ``frame_twopoint_micro3`` recipe alone) and ``package`` (the
``field`` model, cells its domain score flags routed to the fallback as ``bench_gate.py``'s
hard gate; the adaptation sees the routed cells only). ``--gate`` adds, per method, a
switch: adapt only batches of at least ``MIN_BATCH`` cells of which at least half are out
of the fallback's own domain.

Run (features cached by ``bench_transfer.py`` in ``--cache``; the extra shifted features
are computed once)::

    PYTHONPATH=benchmarks OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python \\
        benchmarks/bench_adapt.py --cache /tmp/bench_transfer
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bench_transfer import (  # noqa: E402
    COUNTED,
    bacc,
    extract,
    fewshot_mask,
    pbc_folds,
    train_rows,
)

FALLBACK, FIRST = "frame_twopoint_micro3", "field"
BLOOD_MIX = {"neutrophil": 0.6, "lymphocyte": 0.14, "eosinophil": 0.08, "monocyte": 0.08}
BLOOD_N = 50
MIN_BATCH = 30
SMALL: dict = {}  # "names": the methods measured on small batches (default: the fast ones)


# ----------------------------------------------------------------------------- features
def shifted_features(name: str, pbc, cache: Path) -> dict:
    """Extra shifted PBC features of recipe ``name`` (cached): ``harsh`` (3 more draws of
    ``harsh_shift``, seed 2024) and ``another`` (``shifts.another_microscope``)."""
    path = cache / f"{name}_adapt_shifts.npz"
    if path.exists():
        return dict(np.load(path))
    from bench_transfer import RECIPES, Features, Inputs, harsh_shift
    from trust_prototype.shifts import another_microscope

    kind, norm, _, _ = RECIPES[name]
    make, feat = Inputs(kind, norm, pbc), Features()
    rng = np.random.default_rng(2024)
    out = {
        "harsh": np.stack([feat([make(harsh_shift(c, rng)) for c in pbc]) for _ in range(3)]),
        "another": feat([make(another_microscope(c)) for c in pbc]),
    }
    np.savez(path, **out)
    return out


N_MICRO = 6


def micro_ranges(rng) -> dict:
    """One simulated microscope: every ``bench_transfer.HARSH`` range drawn once (the same
    shift for every crop of a batch)."""
    from bench_transfer import HARSH

    out = {}
    for k, (lo, hi) in HARSH.items():
        if k == "jpeg":
            q = int(rng.integers(lo, hi))
            out[k] = (q, q + 1)
        elif k == "balance":  # one gain per channel
            g = rng.uniform(lo, hi, 3)
            out[k] = (g, g)
        else:
            v = float(rng.uniform(lo, hi))
            out[k] = (v, v)
    return out


def micro_features(name: str, pbc, cache: Path) -> np.ndarray:
    """Features of the PBC crops under :data:`N_MICRO` fixed harsh microscopes (cached),
    ``(N_MICRO, 96, F)``."""
    path = cache / f"{name}_adapt_micro.npz"
    if path.exists():
        return np.load(path)["micro"]
    from bench_transfer import RECIPES, Features, Inputs, harsh_shift

    kind, norm, _, _ = RECIPES[name]
    make, feat = Inputs(kind, norm, pbc), Features()
    rng = np.random.default_rng(77)
    out = []
    for _ in range(N_MICRO):
        ranges = micro_ranges(rng)
        out.append(feat([make(harsh_shift(c, rng, ranges)) for c in pbc]))
    np.savez(path, micro=np.stack(out))
    return np.stack(out)


def load_recipe(name, pbc, y, bccd, cache, fixed_c: bool = True) -> dict:
    """A recipe's cached features; with ``fixed_c`` also ``c``, the two heads' ``C`` chosen
    once by inner CV on all PBC training rows (used for every fold, to save time)."""
    F = dict(extract(name, pbc, y, bccd, cache))
    S = shifted_features(name, pbc, cache)
    F["harsh"] = np.concatenate([F["shift"], S["harsh"]])  # (4, 96, F)
    F["another"] = S["another"]
    if fixed_c:
        f, yy, g = train_rows(F, np.arange(len(y)), y)
        F["c"] = fit_linear(f, yy, g, int(y.max()) + 1)["c"]
    return F


# ----------------------------------------------------------------------------- model
def fit_linear(f, y, groups, n_cls: int, c=None) -> dict:
    """Both heads fitted as ``bench_transfer.fit_predict`` fits them, as one linear model on
    the joint standardised features (``c``: the two heads' ``C``, else chosen by inner CV)."""
    from napari_nucleus_ai.models.nets.morph import fit_head
    from napari_nucleus_ai.models.nets.morph_params import DEFAULTS
    from napari_nucleus_ai.models.nets.morphology import N_FEATURES

    parts = [
        (slice(0, N_FEATURES), DEFAULTS["c_grid"]),
        (slice(N_FEATURES, None), DEFAULTS["imagenet_c_grid"]),
    ]
    heads = [
        fit_head(f[:, sl], y, n_cls, grid if c is None else [c[i]], 4, 0, groups)
        for i, (sl, grid) in enumerate(parts)
    ]
    mean = np.concatenate([h["mean"] for h in heads])
    std = np.concatenate([h["std"] for h in heads])
    w = np.concatenate([h["weight"].numpy() for h in heads], 1).astype(np.float64)
    b = sum(h["bias"].numpy().astype(np.float64) for h in heads)
    z = (f - mean) / std
    counts = np.bincount(y, minlength=n_cls).astype(float)
    means = np.stack(
        [z[y == k].mean(0) if counts[k] else np.zeros(z.shape[1]) for k in range(n_cls)]
    )
    within = np.sqrt(((z - means[y]) ** 2).mean(0)) + 1e-4
    return {
        "within": within,
        "mean": mean,
        "std": std,
        "weight": w,
        "bias": b,
        "prior": counts / counts.sum(),
        "class_means": means,
        "c": [h["c"] for h in heads],
        "split": N_FEATURES,
    }


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def entropy(p):
    return -(p * np.log(p + 1e-12)).sum(1)


def unit(a):
    return a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-12)


def logits_of(m, x, mean=None, std=None):
    z = (x - (m["mean"] if mean is None else mean)) / (m["std"] if std is None else std)
    return z @ m["weight"].T + m["bias"]


# ----------------------------------------------------------------------------- methods
def em_prior(m, x, iters: int = 100, p=None):
    """Saerens et al. 2002: the batch's class priors by EM, posteriors re-weighted."""
    p = softmax(logits_of(m, x)) if p is None else p
    base = np.clip(m["prior"], 1e-6, None)
    pi = base.copy()
    q = p
    for _ in range(iters):
        q = p * (pi / base)
        q /= q.sum(1, keepdims=True)
        new = q.mean(0)
        if np.abs(new - pi).max() < 1e-6:
            break
        pi = new
    return q


def t3a(m, x, keep: int, per_head: bool = False):
    """T3A: prototypes from the weight vectors and the ``keep`` lowest-entropy batch cells
    pseudo-labelled to each class; logits ``z . prototype``."""
    z = (x - m["mean"]) / m["std"]
    p = softmax(z @ m["weight"].T + m["bias"])
    yhat, ent = p.argmax(1), entropy(p)
    n_cls = len(m["bias"])
    w = m["weight"]
    w_ent = entropy(softmax(w @ w.T + m["bias"]))
    sl = [slice(0, m["split"]), slice(m["split"], None)] if per_head else [slice(None)]
    out = 0.0
    for s in sl:
        protos = []
        for k in range(n_cls):
            sup = np.concatenate([w[k : k + 1, s], z[yhat == k][:, s]])
            e = np.concatenate([w_ent[k : k + 1], ent[yhat == k]])
            sup = sup[np.argsort(e, kind="stable")[:keep]]
            protos.append(unit(unit(sup).sum(0)))
        out = out + z[:, s] @ np.stack(protos).T
    return softmax(out)


def kmeans(m, x, seed_with: str, steps: int = 2):
    """Cosine k-means on the batch's standardised features, seeded by the probability-weighted
    batch centroids (``shot``) or the training class means (``means``)."""
    z = unit((x - m["mean"]) / m["std"])
    p = softmax(logits_of(m, x))
    if seed_with == "shot":
        cent = unit((p.T @ z) / (p.sum(0)[:, None] + 1e-12))
    else:
        cent = unit(m["class_means"])
    for _ in range(steps):
        lab = (z @ cent.T).argmax(1)
        for k in range(len(cent)):
            if (lab == k).any():
                cent[k] = unit(z[lab == k].mean(0))
    return softmax(10.0 * (z @ cent.T))


def restandardise(m, x, scale: bool):
    mean = x.mean(0)
    std = x.std(0) + 1e-4 if scale else None
    return softmax(logits_of(m, x, mean, std))


def balanced_shift(m, x, scale: bool, rounds: int = 2):
    """Re-standardisation robust to the batch's class mix (``bal_std``:
    :func:`napari_nucleus_ai.models.adapt.balanced_standardise`; ``bal_centre``: its means
    only, no scaling). Returns adapted raw features (so any method can follow)."""
    from napari_nucleus_ai.models.adapt import balanced_standardise

    ref = {"class_means": m["class_means"], "within_sd": m["within"]}
    z = (x - m["mean"]) / m["std"]
    if scale:
        return balanced_standardise(z, m["weight"], m["bias"], ref, rounds) * m["std"] + m["mean"]
    za = z
    for _ in range(rounds):
        yhat = (za @ m["weight"].T + m["bias"]).argmax(1)
        present = [k for k in np.unique(yhat) if (yhat == k).sum() >= 2]
        if not present:
            return x
        mu_b = np.stack([z[yhat == k].mean(0) for k in present]).mean(0)
        za = z - mu_b + m["class_means"][present].mean(0)
    return za * m["std"] + m["mean"]


def self_train(m, x, q: float, refit):
    """Pseudo-labelled batch cells (top ``q`` confidence within each predicted class) added to
    the training rows, the heads refitted with the same ``C``."""
    p = softmax(logits_of(m, x))
    yhat, conf = p.argmax(1), p.max(1)
    keep = np.zeros(len(x), bool)
    for k in np.unique(yhat):
        idx = np.flatnonzero(yhat == k)
        n = max(1, int(round(q * len(idx))))
        keep[idx[np.argsort(-conf[idx])[:n]]] = True
    m2 = refit(x[keep], yhat[keep])
    return softmax(logits_of(m2, x))


def anchored(m, x, q: float, lam: float, rounds: int = 1):
    """Source-free self-training: the joint head refitted on the batch's pseudo-labelled
    cells (top ``q`` per predicted class, classes weighted alike) with an L2 pull
    ``lam / 2 |W - W0|^2`` towards the trained weights (no training data needed)."""
    import torch

    z = torch.as_tensor((x - m["mean"]) / m["std"], dtype=torch.float64)
    w0 = torch.as_tensor(m["weight"], dtype=torch.float64)
    b0 = torch.as_tensor(m["bias"], dtype=torch.float64)
    w, b = w0.clone(), b0.clone()
    for _ in range(rounds):
        with torch.no_grad():
            p = torch.softmax(z @ w.T + b, 1).numpy()
        yhat, conf = p.argmax(1), p.max(1)
        keep = np.zeros(len(x), bool)
        for k in np.unique(yhat):
            idx = np.flatnonzero(yhat == k)
            keep[idx[np.argsort(-conf[idx])[: max(1, int(round(q * len(idx))))]]] = True
        cnt = np.bincount(yhat[keep], minlength=len(b0)).astype(float)
        cw = torch.as_tensor(np.where(cnt > 0, 1.0 / np.maximum(cnt, 1), 0.0))
        zk, yk = z[keep], torch.as_tensor(yhat[keep])
        wk = cw[yk] / cw[yk].sum()
        w = w0.clone().requires_grad_(True)
        b = b0.clone().requires_grad_(True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

        def closure(w=w, b=b, opt=opt, zk=zk, yk=yk, wk=wk):
            opt.zero_grad()
            ce = torch.nn.functional.cross_entropy(zk @ w.T + b, yk, reduction="none")
            loss = (wk * ce).sum() + 0.5 * lam * ((w - w0) ** 2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        w, b = w.detach(), b.detach()
    return softmax((z @ w.T + b).numpy())


def self_train_restd(m, x, q, refit):
    """Self-training on the batch-re-standardised features' pseudo-labels."""
    p = restandardise(m, x, True)
    yhat, conf = p.argmax(1), p.max(1)
    keep = np.zeros(len(x), bool)
    for k in np.unique(yhat):
        idx = np.flatnonzero(yhat == k)
        keep[idx[np.argsort(-conf[idx])[: max(1, int(round(q * len(idx))))]]] = True
    return softmax(logits_of(refit(x[keep], yhat[keep]), x))


def self_train_rounds(m, x, q, refit, rounds):
    p = None
    m2 = m
    for _ in range(rounds):
        p = softmax(logits_of(m2, x))
        yhat, conf = p.argmax(1), p.max(1)
        keep = np.zeros(len(x), bool)
        for k in np.unique(yhat):
            idx = np.flatnonzero(yhat == k)
            keep[idx[np.argsort(-conf[idx])[: max(1, int(round(q * len(idx))))]]] = True
        m2 = refit(x[keep], yhat[keep])
    return softmax(logits_of(m2, x))


def methods() -> dict:
    out = {
        "none": lambda m, x, r: softmax(logits_of(m, x)),
        "em": lambda m, x, r: em_prior(m, x),
        "km_shot": lambda m, x, r: kmeans(m, x, "shot"),
        "km_means": lambda m, x, r: kmeans(m, x, "means"),
        "restd": lambda m, x, r: restandardise(m, x, True),
        "recentre": lambda m, x, r: restandardise(m, x, False),
    }
    for k in (5, 10, 20, 50):
        out[f"t3a_{k}"] = lambda m, x, r, k=k: t3a(m, x, k)
        out[f"t3a_{k}_head"] = lambda m, x, r, k=k: t3a(m, x, k, True)
    out["t3a_20+em"] = lambda m, x, r: em_prior(m, x, p=t3a(m, x, 20))
    out["bal_centre"] = lambda m, x, r: softmax(logits_of(m, balanced_shift(m, x, False)))
    out["bal_std"] = lambda m, x, r: softmax(logits_of(m, balanced_shift(m, x, True)))
    out["bal_centre+self_0.15"] = lambda m, x, r: self_train(
        m, balanced_shift(m, x, False), 0.15, r
    )
    out["bal_std+self_0.15"] = lambda m, x, r: self_train(m, balanced_shift(m, x, True), 0.15, r)
    out["restd+self_0.15"] = lambda m, x, r: self_train_restd(m, x, 0.15, r)
    for q in (0.15, 0.3, 0.45, 0.6, 1.0):
        out[f"self_{q}"] = lambda m, x, r, q=q: self_train(m, x, q, r)
    for q in (0.15, 0.3):
        out[f"self_{q}_r2"] = lambda m, x, r, q=q: self_train_rounds(m, x, q, r, 2)
    for q in (0.15, 0.3, 0.45):
        for lam in (0.01, 0.1, 1.0):
            out[f"anch_{q}_{lam}"] = lambda m, x, r, q=q, lam=lam: anchored(m, x, q, lam)
    return out


METHODS = methods()


# ----------------------------------------------------------------------------- members
class Member:
    """One recipe's model fitted on PBC cells ``train`` (+ ``extra`` target cells), with its
    own domain score fitted as ``bench_gate.member`` fits it."""

    def __init__(self, F, y, train, n_cls, extra=None):
        from napari_nucleus_ai.classify.trainset import stratified_split
        from napari_nucleus_ai.models.nets.morphology import N_FEATURES
        from napari_nucleus_ai.models.trust import fit_domain

        self.F, self.y, self.n_cls = F, y, n_cls
        self.rows = self._rows(train, extra)
        self.m = fit_linear(*self.rows, n_cls, F.get("c"))
        kept, held = stratified_split(y[train], 0.2, 0)
        ref, cal = train[kept], train[held]
        f_ref, y_ref, f_cal, ex_ref = F["clean"][ref], y[ref], F["clean"][cal], None
        if extra is not None:
            fx, yx, _ = extra
            kx, hx = stratified_split(yx, 0.2, 0)
            ex_ref = (fx[kx], yx[kx], max(1, round(len(ref) / max(len(kx), 1))))
            f_ref, y_ref = np.concatenate([f_ref, fx[kx]]), np.concatenate([y_ref, yx[kx]])
            f_cal = np.concatenate([f_cal, fx[hx]])
        m_ref = fit_linear(*self._rows(ref, ex_ref), n_cls, self.m["c"])
        p_cal = softmax(logits_of(m_ref, f_cal))
        self.dom = fit_domain(f_ref, y_ref, f_cal, p_cal, descriptor=N_FEATURES, seed=0)

    def _rows(self, idx, extra):
        f, yy, g = train_rows(self.F, idx, self.y)
        if extra is not None and len(extra[1]):
            fx, yx, rep = extra
            ci = np.repeat(np.arange(len(yx)), rep)
            f, yy = np.concatenate([f, fx[ci]]), np.concatenate([yy, yx[ci]])
            g = np.concatenate([g, len(self.y) + ci])
        return f, yy, g

    def flags(self, x):
        from napari_nucleus_ai.models.trust import domain_scores

        p = softmax(logits_of(self.m, x))
        return domain_scores(x, p, self.dom) > self.dom["threshold"]

    def refit(self, fx, yx):
        """The heads refitted with pseudo-labelled cells ``fx`` as one more source."""
        f, yy, g = self.rows
        per = np.bincount(yy, minlength=self.n_cls)
        cnt = np.bincount(yx, minlength=self.n_cls)
        rep = np.array([max(1, round(per[k] / cnt[k])) if cnt[k] else 0 for k in yx])
        ci = np.repeat(np.arange(len(yx)), rep)
        return fit_linear(
            np.concatenate([f, fx[ci]]),
            np.concatenate([yy, yx[ci]]),
            np.concatenate([g, 10**6 + ci]),
            self.n_cls,
            self.m["c"],
        )

    def predict(self, x, method: str, gate: bool = False):
        if gate and (len(x) < MIN_BATCH or self.flags(x).mean() < 0.5):
            method = "none"
        return METHODS[method](self.m, x, self.refit)


def package_predict(first: Member, fb: Member, xa, xb, method, gate=False):
    """The routed package: ``first``'s argmax where its domain score lets the cell through,
    the fallback's (adapted on the routed cells only) elsewhere."""
    from napari_nucleus_ai.models.trust import domain_scores

    pa = softmax(logits_of(first.m, xa))
    routed = domain_scores(xa, pa, first.dom) > first.dom["threshold"]
    pred = pa.argmax(1)
    if routed.any():
        pred[routed] = fb.predict(xb[routed], method, gate).argmax(1)
    return pred, routed


# ----------------------------------------------------------------------------- settings
def batches_pbc(y, folds: int, seed: int):
    fold = pbc_folds(y, folds, seed)
    for k in range(folds):
        yield np.flatnonzero(fold != k), np.flatnonzero(fold == k)


def blood_rows(y_rows, classes, rng) -> np.ndarray:
    """Row indices of a :data:`BLOOD_N` batch with :data:`BLOOD_MIX` (the rest spread over
    the other classes)."""
    names = list(classes)
    want = {names.index(c): int(round(f * BLOOD_N)) for c, f in BLOOD_MIX.items()}
    others = [k for k in range(len(names)) if k not in want]
    rest = BLOOD_N - sum(want.values())
    for i, k in enumerate(rng.permutation(others)):
        want[k] = rest // len(others) + (i < rest % len(others))
    out = []
    for k, n in want.items():
        idx = np.flatnonzero(y_rows == k)
        out.append(rng.choice(idx, min(n, len(idx)), replace=False))
    return np.concatenate(out)


def run_sim(Fa, Fb, y, classes, names, seeds, gate) -> dict:
    """Balanced accuracy per setting, model and method on PBC (clean, harsh, another, blood)."""
    n_cls = len(classes)
    res = {}  # (setting, model, method) -> list of (truth, pred)

    def add(setting, model, meth, truth, pred):
        res.setdefault((setting, model, meth), []).append((truth, pred))

    small = {n: [] for n in (10, 30, 100)}
    for seed in seeds:
        for tr, te in batches_pbc(y, 4, seed):
            a, b = Member(Fa, y, tr, n_cls), Member(Fb, y, tr, n_cls)
            sets = {
                "clean": ("clean", None),
                "harsh": ("harsh", None),
                "another": ("another", None),
            }
            for s in sets:
                if s == "harsh":
                    xa = Fa["harsh"][:, te].reshape(-1, Fa["clean"].shape[1])
                    xb = Fb["harsh"][:, te].reshape(-1, Fb["clean"].shape[1])
                    yt = np.tile(y[te], 4)
                else:
                    xa, xb, yt = Fa[s][te], Fb[s][te], y[te]
                for meth in names:
                    add(s, "fallback", meth, yt, b.predict(xb, meth, gate).argmax(1))
                    add(s, "package", meth, yt, package_predict(a, b, xa, xb, meth, gate)[0])
            # small batches from harsh, on the fallback
            xb = Fb["harsh"][:, te].reshape(-1, Fb["clean"].shape[1])
            yt = np.tile(y[te], 4)
            rng = np.random.default_rng(seed * 10 + len(tr))
            for n in small:
                for _ in range(8 if n < 100 else 2):
                    idx = rng.choice(len(yt), min(n, len(yt)), replace=False)
                    for meth in SMALL.get("names") or [
                        k for k in names if not k.startswith(("self", "anch"))
                    ]:
                        add(
                            f"harsh_b{n}",
                            "fallback",
                            meth,
                            yt[idx],
                            b.predict(xb[idx], meth, gate).argmax(1),
                        )
        # blood-like class mix, 2-fold
        for tr, te in batches_pbc(y, 2, seed):
            a, b = Member(Fa, y, tr, n_cls), Member(Fb, y, tr, n_cls)
            pool_a = np.concatenate(
                [Fa["harsh"][:, te].reshape(-1, Fa["clean"].shape[1]), Fa["another"][te]]
            )
            pool_b = np.concatenate(
                [Fb["harsh"][:, te].reshape(-1, Fb["clean"].shape[1]), Fb["another"][te]]
            )
            y_pool = np.tile(y[te], 5)
            rng = np.random.default_rng(100 + seed)
            for _ in range(5):
                idx = blood_rows(y_pool, classes, rng)
                for meth in names:
                    yt = y_pool[idx]
                    add("blood", "fallback", meth, yt, b.predict(pool_b[idx], meth, gate).argmax(1))
                    pred = package_predict(a, b, pool_a[idx], pool_b[idx], meth, gate)[0]
                    add("blood", "package", meth, yt, pred)
    return summarise(res)


def run_micro(Fa, Fb, y, classes, names, seeds, gate) -> dict:
    """``micro``: 2-fold CV, each held-out half (48 crops, balanced) under each of the
    :data:`N_MICRO` fixed harsh microscopes is one batch."""
    res = {}
    for seed in seeds:
        for tr, te in batches_pbc(y, 2, seed):
            a, b = Member(Fa, y, tr, len(classes)), Member(Fb, y, tr, len(classes))
            for j in range(len(Fb["micro"])):
                xa, xb = Fa["micro"][j][te], Fb["micro"][j][te]
                for meth in names:
                    pf = b.predict(xb, meth, gate).argmax(1)
                    res.setdefault(("micro", "fallback", meth), []).append((y[te], pf))
                    pp = package_predict(a, b, xa, xb, meth, gate)[0]
                    res.setdefault(("micro", "package", meth), []).append((y[te], pp))
    return summarise(res)


def summarise(res) -> dict:
    """Mean over batches of the balanced accuracy over the classes present (``_b*``: of the
    pooled predictions, the batches being too small for a per-batch figure)."""
    out = {}
    for (s, model, meth), runs in res.items():
        if "_b" in s:
            t = np.concatenate([r[0] for r in runs])
            p = np.concatenate([r[1] for r in runs])
            v = bacc(t, p)
        else:
            v = float(np.mean([bacc(t, p) for t, p in runs]))
        out.setdefault(s, {}).setdefault(model, {})[meth] = v
    return out


def run_bccd(Fa, Fb, y, by, classes, names, seeds, gate) -> dict:
    n_cls = len(classes)
    counted = [list(classes).index(c) for c in COUNTED]
    out = {}
    allpbc = np.arange(len(y))
    a, b = Member(Fa, y, allpbc, n_cls), Member(Fb, y, allpbc, n_cls)
    rng = np.random.default_rng(7)
    for meth in names:
        pf = b.predict(Fb["bccd"], meth, gate).argmax(1)
        pp, routed = package_predict(a, b, Fa["bccd"], Fb["bccd"], meth, gate)
        out.setdefault("bccd", {}).setdefault("fallback", {})[meth] = bacc(by, pf, counted)
        out["bccd"].setdefault("package", {})[meth] = bacc(by, pp, counted)
    for n in (10, 30, 100):
        draws = [rng.choice(len(by), n, replace=False) for _ in range(30 if n < 100 else 10)]
        for meth in SMALL.get("names") or [k for k in names if not k.startswith(("self", "anch"))]:
            t = np.concatenate([by[i] for i in draws])
            p = np.concatenate([b.predict(Fb["bccd"][i], meth, gate).argmax(1) for i in draws])
            out.setdefault(f"bccd_b{n}", {}).setdefault("fallback", {})[meth] = bacc(t, p, counted)
    few = {}
    for seed in seeds:
        mask = fewshot_mask(by, seed)
        rep = max(1, round(len(y) / mask.sum()))
        te = ~mask
        a = Member(Fa, y, allpbc, n_cls, (Fa["bccd"][mask], by[mask], rep))
        b = Member(Fb, y, allpbc, n_cls, (Fb["bccd"][mask], by[mask], rep))
        for meth in names:
            pf = b.predict(Fb["bccd"][te], meth, gate).argmax(1)
            pp = package_predict(a, b, Fa["bccd"][te], Fb["bccd"][te], meth, gate)[0]
            few.setdefault(("fallback", meth), []).append(bacc(by[te], pf, counted))
            few.setdefault(("package", meth), []).append(bacc(by[te], pp, counted))
    for (model, meth), v in few.items():
        out.setdefault("bccd_few", {}).setdefault(model, {})[meth] = float(np.mean(v))
        out.setdefault("bccd_few_seeds", {}).setdefault(model, {})[meth] = v
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default="/tmp/bench_transfer")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--gate", action="store_true", help="adapt only large, out-of-domain batches")
    ap.add_argument("--only", default="sim,bccd")
    ap.add_argument("--small-methods", default="", help="methods run on small batches")
    ap.add_argument("--tag", default="", help="results key suffix")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_adapt.json"))
    args = ap.parse_args(argv)
    from bench_transfer import load_bccd_by_eye
    from trust_prototype.data import CLASSES, load_pbc

    t0 = time.perf_counter()
    cache = Path(args.cache)
    pbc, y, _ = load_pbc()
    bccd, bnames = load_bccd_by_eye()
    by = np.array([list(CLASSES).index(c) for c in bnames])
    Fa, Fb = (load_recipe(n, pbc, y, bccd, cache) for n in (FIRST, FALLBACK))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    names = args.methods.split(",")
    SMALL["names"] = [k for k in args.small_methods.split(",") if k]
    results = {}
    if "micro" in args.only:
        for F, n in ((Fa, FIRST), (Fb, FALLBACK)):
            F["micro"] = micro_features(n, pbc, cache)
        results.update(run_micro(Fa, Fb, y, CLASSES, names, seeds, args.gate))
        print_table(results, names)
    if "sim" in args.only:
        results.update(run_sim(Fa, Fb, y, CLASSES, names, seeds, args.gate))
        print_table(results, names)
    if "bccd" in args.only:
        results.update(run_bccd(Fa, Fb, y, by, CLASSES, names, seeds, args.gate))
        print_table(results, names)
    out_path = Path(args.out)
    stored = json.loads(out_path.read_text()) if out_path.exists() else {}
    key = ("gated" if args.gate else "ungated") + (f"_{args.tag}" if args.tag else "")
    stored[key] = {
        "results": results,
        "seeds": list(seeds),
        "command": "PYTHONPATH=benchmarks OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python "
        "benchmarks/bench_adapt.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": time.perf_counter() - t0,
        "load": os.getloadavg()[0],
    }
    out_path.write_text(json.dumps(stored, indent=1))
    return 0


def print_table(results, names) -> None:
    cols = [(s, m) for s in results for m in results[s] if not s.endswith("_seeds")]
    print("method".ljust(16) + " ".join(f"{s[:9]}/{m[:3]}".rjust(14) for s, m in cols))
    for meth in names:
        vals = (results[s][m].get(meth, float("nan")) for s, m in cols)
        print(meth.ljust(16) + " ".join(f"{v:14.3f}" for v in vals), flush=True)


if __name__ == "__main__":
    sys.exit(main())
