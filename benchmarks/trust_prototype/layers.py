"""Unseen-class scores from intermediate layers of the frozen backbone (leave-one-class-out AUROC).

Research code (not part of the package). ``heads.py loco`` measures scores on the final
pooled EfficientNet-Lite0 features and the morphology descriptor. This module adds what
the near-OOD literature uses beyond them, on the same split (``bench_trust.py --only
loco``'s: per left-out class, 3 held-out crops of every seen class against the 12 unseen
ones; the other crops 80/20 into fitting and calibration):

- **intermediate layers** (Lee et al. 2018 "feature ensemble"; Sastry & Oore 2020): the
  global mean and s.d. of the outputs of the last block of every stage of the backbone
  (16, 24, 40, 80, 112, 192, 320 channels) and the final 1280 pooled features, each with
  a class-conditional Mahalanobis distance (principal components of the standardised
  features of the fitting cells' 8 dihedral views, one shared Ledoit-Wolf covariance);
- **deep nearest neighbours** (Sun et al. 2022): the cosine distance to the k-th nearest
  fitting view, per layer;
- **test-time views**: every score averaged over the first 4 dihedral views (``engine``'s
  order) instead of the first view alone.

Also: 16 / 64 principal components or the pooled means alone (``maha{c16,c64,mean}``);
a *class-consistent* ensemble (``cons``: per class the sum of its standardised distances
over the layers, then the smallest over classes); radial pooling (``r_*``: means over the
centre disk and the ring around it, rotation invariant like the rest).

Every term is robust-standardised on the calibration cells; fusions add the terms
(``card+<W>x<variant>_<layers>@<views>``: the card's three terms plus the layers' terms
with a total weight ``W``, ``sum`` = 1 per layer). Names and results:
``layers_results.md``.

Run (from the repository root; ``base.zip`` from ``train ../shared/data/smear/pbc``)::

    export PYTHONPATH=benchmarks OMP_NUM_THREADS=1
    .venv/bin/python -m trust_prototype.layers features --model base.zip --out /tmp/p13/A/f
    .venv/bin/python -m trust_prototype.layers loco --feats /tmp/p13/A/f --seeds 0,1
    .venv/bin/python -m trust_prototype.layers loco --feats /tmp/p13/A/f --seeds 2,3,4
    .venv/bin/python -m trust_prototype.layers alarm --feats /tmp/p13/A/f --seeds 0,1,2,3,4 \\
        --rule card+sumxc64_all@1
    # the card's score, the early blocks and a diffusion model's anomaly score, fused on the
    # splits of ``bench_diffusion.py loco`` (its saved errors)
    .venv/bin/python -m trust_prototype.layers loco_diffusion --feats /tmp/p13/A/f --weights 0.5,1

``domain_layers.patch`` (against commit aba21d4) puts the early-block terms into the product's
score (both models of the package); measured through ``bench_trust.py --only loco`` and not
kept (docs/trust.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from trust_prototype.heads import fit_and_calibration

#: Last block of every stage of EfficientNet-Lite0 (``net._blocks`` indices) and its name.
STAGES = {
    0: "b0_16",
    2: "b2_24",
    4: "b4_40",
    7: "b7_80",
    10: "b10_112",
    14: "b14_192",
    15: "b15_320",
}
#: The 8 dihedral views in ``models.engine``'s order (tta 1, 2, 4, 8).
VIEWS = ((0, False), (0, True), (1, False), (3, False), (2, False), (1, True), (2, True), (3, True))


# -- features ------------------------------------------------------------------------


def _layer_features(net, rgb, view: float):
    """Mean and s.d. pooled outputs of every :data:`STAGES` block and the final pooled
    features of RGB crops ``(N, 3, H, W)`` in [0, 1] (one dict of ``(N, F)`` arrays)."""
    import torch
    import torch.nn.functional as F

    from napari_nucleus_ai.models.nets.imagenet import MEAN, SIZE, STD

    h = rgb.shape[-1]
    k = max(8, int(round(h * float(view))))
    o = (h - k) // 2
    x = rgb[..., o : o + k, o : o + k]
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    x = (x - torch.tensor(MEAN)[None, :, None, None]) / torch.tensor(STD)[None, :, None, None]
    got = {}

    def pool(_m, _i, out, name):
        got[name] = torch.cat([out.mean((2, 3)), out.std((2, 3))], 1)
        s = out.shape[-1]
        r = (
            torch.hypot(
                *torch.meshgrid(
                    torch.arange(s) + 0.5 - s / 2, torch.arange(s) + 0.5 - s / 2, indexing="ij"
                )
            )
            / s
        )
        centre, ring = (r < 0.25).float(), ((r >= 0.25) & (r < 0.5)).float()
        got["r_" + name] = torch.cat([(out * w).sum((2, 3)) / w.sum() for w in (centre, ring)], 1)

    hooks = [
        net._blocks[i].register_forward_hook(lambda m, i_, o, name=name: pool(m, i_, o, name))
        for i, name in STAGES.items()
    ]
    try:
        got["head_1280"] = net.extract_features(x).mean((2, 3))
    finally:
        for hk in hooks:
            hk.remove()
    return {k: v.numpy() for k, v in got.items()}


def extract(model: str, out: Path) -> None:
    """Cache descriptor and layer features of PBC (8 views), BCCD and the simulated other
    microscope (4 views) under ``out`` (``<set>.npz`` + ``meta.npz``)."""
    import torch

    from napari_nucleus_ai.models.engine import dihedral
    from napari_nucleus_ai.models.inputs import prepare
    from trust_prototype.heads import model_and_sets

    m, card, sets = model_and_sets(model, out)
    view = float(m.params["imagenet_view"])
    for name, items in sets.items():
        x = torch.as_tensor(prepare(items, card)[0])
        arrays = {}
        with torch.no_grad():
            arrays["desc"] = torch.cat([m.descriptors(b) for b in x.split(32)]).numpy()
            per_view = []
            for k, flip in VIEWS if name == "pbc" else VIEWS[:4]:
                xv = m.rgb(dihedral(x, k, flip))
                parts = [_layer_features(m.img, b, view) for b in xv.split(32)]
                per_view.append({key: np.concatenate([p[key] for p in parts]) for key in parts[0]})
        for key in per_view[0]:
            arrays[key] = np.stack([v[key] for v in per_view], 1)  # (N, V, F)
        np.savez(out / f"{name}.npz", **arrays)
        print(name, {k: v.shape for k, v in arrays.items()}, flush=True)


def load(feats: Path):
    meta = np.load(feats / "meta.npz")
    sets = {n: dict(np.load(feats / f"{n}.npz")) for n in ("pbc", "bccd", "sim_another")}
    return meta, sets


LAYERS = tuple(STAGES.values()) + ("head_1280",)
#: Radial pooling (mean over the centre disk, r < 1/4 of the side, and the ring to 1/2).
RADIAL = tuple(f"r_{x}" for x in STAGES.values())


# -- scores --------------------------------------------------------------------------


def _robust(s):
    q1, m, q3 = np.percentile(s, [25, 50, 75])
    return m, max((q3 - q1) / 1.35, 1e-6)


def fit_maha(f, y, components: int = 32):
    """Standardisation, principal components, class means and a shared Ledoit-Wolf
    precision of rows ``f (R, F)`` with labels ``y``."""
    from sklearn.covariance import LedoitWolf

    mu, sd = f.mean(0), f.std(0) + 1e-6
    z = (f - mu) / sd
    comp = np.linalg.svd(z, full_matrices=False)[2][:components]
    p = z @ comp.T
    cl = np.unique(y)
    means = np.stack([p[y == c].mean(0) for c in cl])
    prec = LedoitWolf().fit(p - means[np.searchsorted(cl, y)]).precision_
    return {"mu": mu, "sd": sd, "comp": comp, "means": means, "prec": prec}


def maha_per_class(m, f):
    """Mahalanobis distance ``(N, C)`` of rows ``f`` to every class mean."""
    p = ((f - m["mu"]) / m["sd"]) @ m["comp"].T
    d = p[:, None] - m["means"][None]
    return np.einsum("nck,kl,ncl->nc", d, m["prec"], d)


def maha(m, f):
    return maha_per_class(m, f).min(1)


def _unit(a):
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def knn(ref, q, k: int):
    """Cosine distance of each row of ``q`` to its ``k``-th nearest row of ``ref``."""
    d = 1 - _unit(q) @ _unit(ref).T
    return np.partition(d, k - 1, 1)[:, k - 1]


def _views(a, idx, nv):
    """``(len(idx) * nv, F)`` rows of the first ``nv`` views, view-major."""
    return a[idx, :nv].transpose(1, 0, 2).reshape(-1, a.shape[-1])


#: Variants of the per-layer Mahalanobis: suffix -> (principal components, pooled part).
VARIANTS = {"": (32, "both"), "c16": (16, "both"), "c64": (64, "both"), "mean": (32, "mean")}


def _part(a, part: str):
    half = a.shape[-1] // 2
    return a if part == "both" else a[..., :half] if part == "mean" else a[..., half:]


def layer_terms(
    feat, fit_i, yfit, queries, fit_views: int = 8, test_views=(1, 4), k: int = 5, variants=None
):
    """Per layer: Mahalanobis and k-NN (on standardised, L2-normalised features) of every
    query set ``{name: (arrays, idx)}``; scores of the first view and the mean over the
    first 4 views (``@1`` / ``@4``). ``variants`` (:data:`VARIANTS` keys) add Mahalanobis
    terms named ``maha<variant>_<layer>@<views>``."""
    out = {name: {} for name in queries}
    y_rep = np.tile(yfit, fit_views)
    for layer in LAYERS + tuple(r for r in RADIAL if r in feat):
        for var in variants if variants is not None else ("",):
            comps, part = VARIANTS[var]
            if (layer == "head_1280" or layer.startswith("r_")) and part != "both":
                continue
            a_fit = _part(_views(feat[layer], fit_i, fit_views), part)
            m = fit_maha(a_fit, y_rep, comps)
            ref = (a_fit - m["mu"]) / m["sd"]
            for name, (arrs, idx) in queries.items():
                a = _part(arrs[layer][idx], part)
                for nv in test_views:
                    q = a[:, :nv].reshape(-1, a.shape[-1])
                    pc = maha_per_class(m, q).reshape(len(idx), nv, -1).mean(1)
                    out[name][f"maha{var}_{layer}@{nv}"] = pc.min(1)
                    out[name][f"_pc{var}_{layer}@{nv}"] = pc
                    if var == "":
                        sk = knn(ref, (q - m["mu"]) / m["sd"], k).reshape(len(idx), nv).mean(1)
                        out[name][f"knn_{layer}@{nv}"] = sk
    return out


def base_terms(pbc, fit_i, yfit, queries, n):
    """The card's score now (descriptor Mahalanobis + descriptor 3-NN + entropy, with
    ``trust.fit_domain``) and its terms, as ``heads.loco_scores`` fits them; ``queries``
    ``{name: (arrays, idx)}``; the first must be the calibration cells."""
    from scipy.special import softmax

    from napari_nucleus_ai.models import trust
    from trust_prototype.heads import C_DESC, C_IMG, head, logits

    desc, img = pbc["desc"], pbc["head_1280"]
    hd = head(desc[fit_i], yfit, n, C_DESC)
    v = img.shape[1]
    hi = head(_views(img, fit_i, v), np.tile(yfit, v), n, C_IMG, np.tile(np.arange(len(fit_i)), v))

    def emb(a, idx):
        return np.concatenate(
            [
                (a["desc"][idx] - hd["mean"]) / hd["std"],
                (a["head_1280"][idx, 0] - hi["mean"]) / hi["std"],
            ],
            1,
        )

    def probs(a, idx, nv=1):
        z = logits(hd, a["desc"][idx])
        z = z + np.mean([logits(hi, a["head_1280"][idx, j]) for j in range(nv)], 0)
        return softmax(z, 1)

    names = list(queries)
    cal_a, cal_i = queries[names[0]]
    dom = trust.fit_domain(
        emb(pbc, fit_i), yfit, emb(cal_a, cal_i), probs(cal_a, cal_i), descriptor=desc.shape[1]
    )
    out = {}
    for name, (a, idx) in queries.items():
        p = probs(a, idx)
        raw = trust._raw_scores(emb(a, idx), p, dom)
        out[name] = {
            "card_now": trust.domain_scores(emb(a, idx), p, dom),
            "desc_maha": raw["descriptor_mahalanobis"],
            "desc_knn": raw["descriptor_knn"],
            "entropy": raw["entropy"],
            "entropy@4": trust._entropy(probs(a, idx, 4)),
            "_pred": p.argmax(1),
        }
    return out, dom


def fuse(cal: dict, test: dict, terms) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``terms`` robust-standardised on the calibration cells (test, calibration).

    ``terms``: names, or ``(name, weight)`` pairs."""
    terms = [t if isinstance(t, tuple) else (t, 1.0) for t in terms]
    st = {t: _robust(cal[t]) for t, _ in terms}
    return (
        sum(w * (test[t] - st[t][0]) / st[t][1] for t, w in terms),
        sum(w * (cal[t] - st[t][0]) / st[t][1] for t, w in terms),
    )


CARD = ("desc_maha", "desc_knn", "entropy")
MID = ("b4_40", "b7_80", "b10_112", "b14_192")


def fusions() -> dict:
    """Named fusions of terms."""
    f = {}
    for nv in (1, 4):
        s = f"@{nv}"
        for kind in ("maha", "knn"):
            f[f"{kind}_mid{s}"] = tuple(f"{kind}_{x}{s}" for x in MID)
            f[f"{kind}_all{s}"] = tuple(f"{kind}_{x}{s}" for x in LAYERS)
            f[f"card+{kind}_mid{s}"] = CARD + f[f"{kind}_mid{s}"]
            f[f"card+{kind}_all{s}"] = CARD + f[f"{kind}_all{s}"]
            for x in LAYERS:
                f[f"card+{kind}_{x}{s}"] = CARD + (f"{kind}_{x}{s}",)
        f[f"card+maha+knn_mid{s}"] = CARD + f[f"maha_mid{s}"] + f[f"knn_mid{s}"]
        f[f"desc+maha_mid{s}"] = ("desc_maha", "desc_knn") + f[f"maha_mid{s}"]
        f[f"maha_mid+entropy{s}"] = f[f"maha_mid{s}"] + ("entropy",)
        f[f"desc_maha+maha_mid{s}"] = ("desc_maha",) + f[f"maha_mid{s}"]
        f[f"card+maha_b7b10{s}"] = CARD + (f"maha_b7_80{s}", f"maha_b10_112{s}")
        f[f"card+maha_b4b7b10{s}"] = CARD + tuple(f"maha_{x}{s}" for x in MID[:3])
        f[f"card+maha_b2b4b7{s}"] = CARD + tuple(
            f"maha_{x}{s}" for x in ("b2_24", "b4_40", "b7_80")
        )
    f["card_now@4e"] = ("desc_maha", "desc_knn", "entropy@4")
    f["card@4e+maha_mid@4"] = ("desc_maha", "desc_knn", "entropy@4") + f["maha_mid@4"]
    for var in VARIANTS:
        for nv in (1, 4):
            for sname, layers in LAYER_SETS.items():
                if var and any(x.startswith("r_") for x in layers):
                    continue
                if var in ("mean",) and "head_1280" in layers:
                    layers = tuple(x for x in layers if x != "head_1280")
                names = tuple(f"maha{var}_{x}@{nv}" for x in layers)
                for w in WEIGHTS:
                    total = len(names) if w == "sum" else float(w)
                    f[f"card+{w}x{var or 'maha'}_{sname}@{nv}"] = CARD + tuple(
                        (t, total / len(names)) for t in names
                    )
    return f


#: Sets of layers fused, and the total weight of the set against the card's 3 terms.
LAYER_SETS = {
    "all": LAYERS,
    "stages": tuple(STAGES.values()),
    "low": ("b0_16", "b2_24", "b4_40", "b7_80"),
    "mid": MID,
    "radial": RADIAL,
    "all+radial": LAYERS + RADIAL,
    "low+rlow": ("b0_16", "b2_24", "b4_40", "b7_80", "r_b2_24", "r_b4_40", "r_b7_80"),
}
WEIGHTS = ("1", "2", "3", "sum")


def _split(y_all, c, seed, n_classes):
    """The split for left-out class ``c``: 3 held-out crops of every other class, drawn
    with a generator seeded for this class alone (so the held-out crops of the known
    classes are the same whatever class is left out; ``bench_trust.loco`` draws them
    from one generator for all classes, so only the first class's split is the same), and
    the rest into fitting and calibration (:func:`~trust_prototype.heads.fit_and_calibration`)."""
    rng = np.random.default_rng(seed)
    held = np.concatenate(
        [rng.permutation(np.flatnonzero(y_all == k))[:3] for k in range(n_classes)]
    )
    held = held[y_all[held] != c]
    tr = np.setdiff1d(np.flatnonzero(y_all != c), held)
    return (held, *fit_and_calibration(tr, y_all, c, n_classes, seed))


def consistent(cal: dict, test: dict, layers, var: str = "", nv: int = 1, extra=CARD):
    """Class-consistent layer ensemble: per class, the sum over ``layers`` of its
    Mahalanobis distance (each layer standardised by the robust location and scale of the
    calibration cells' smallest distance), then the smallest over classes; added to the
    ``extra`` terms standardised as in :func:`fuse` (test, calibration)."""
    out = []
    for d in (test, cal):
        tot = 0
        for x in layers:
            key = f"_pc{var}_{x}@{nv}"
            loc, sc = _robust(cal[key].min(1))
            tot = tot + (d[key] - loc) / sc
        out.append(tot.min(1))
    loc, sc = _robust(out[1])
    t, c = (out[0] - loc) / sc, (out[1] - loc) / sc
    if extra:
        ft, fc = fuse(cal, test, extra)
        t, c = t + ft, c + fc
    return t, c


def loco_scores(meta, sets, seed: int) -> dict:
    """AUROC of every single term and fusion for every left-out class (one split seed)."""
    from napari_nucleus_ai.models.uncertainty import auroc

    classes, y_all = list(meta["classes"]), meta["pbc_y"]
    pbc = sets["pbc"]
    res = {}
    for c, name in enumerate(classes):
        held, fit_i, val_i, yfit = _split(y_all, c, seed, len(classes))
        test = np.concatenate([held, np.flatnonzero(y_all == c)])
        pos = np.r_[np.zeros(len(held), bool), np.ones((y_all == c).sum(), bool)]
        q = {"cal": (pbc, val_i), "test": (pbc, test)}
        base, _ = base_terms(pbc, fit_i, yfit, q, len(classes) - 1)
        lay = layer_terms(pbc, fit_i, yfit, q, variants=tuple(VARIANTS))
        cal = {**base["cal"], **lay["cal"]}
        tst = {**base["test"], **lay["test"]}
        scores = {k: v for k, v in tst.items() if not k.startswith("_")}
        for fname, terms in fusions().items():
            scores[fname] = fuse(cal, tst, terms)[0]
        for var in VARIANTS:
            for nv in (1, 4):
                for sname, layers in LAYER_SETS.items():
                    if var and any(x.startswith("r_") for x in layers):
                        continue
                    if var == "mean":
                        layers = tuple(x for x in layers if x != "head_1280")
                    key = f"cons{var}_{sname}@{nv}"
                    scores[key] = consistent(cal, tst, layers, var, nv, ())[0]
                    scores["card+" + key] = consistent(cal, tst, layers, var, nv)[0]
                    for w in (2, 3):
                        t = consistent(cal, tst, layers, var, nv, ())[0]
                        scores[f"card+{w}x{key}"] = w * t + fuse(cal, tst, CARD)[0]
        res[name] = {k: auroc(v, pos) for k, v in scores.items()}
    return res


def loco(feats: Path, seeds, top: int = 60, out=None) -> None:
    meta, sets = load(feats)
    runs = [loco_scores(meta, sets, s) for s in seeds]
    classes = list(runs[0])
    rows = []
    for key in runs[0][classes[0]]:
        per = [np.mean([r[c][key] for r in runs]) for c in classes]
        rows.append((float(np.mean(per)), key, per))
    rows.sort(reverse=True)
    print(f"seeds {seeds}")
    print("score".ljust(30), "mean ", " ".join(c[:5] for c in classes))
    for mean, key, per in rows[:top]:
        print(f"{key:30s} {mean:.3f} " + " ".join(f"{p:.2f}" for p in per))
    if out:
        Path(out).write_text(
            "\n".join(f"{k}\t{m:.4f}\t" + "\t".join(f"{p:.3f}" for p in per) for m, k, per in rows)
        )


def alarm(feats: Path, seeds, rule: str) -> None:
    """``rule`` (a name of :func:`fusions`, or ``card_now``) fitted on 8 PBC crops per class,
    calibrated on 2 (threshold: their 95th percentile), 2 more an in-domain test (as
    ``heads.alarm``): share flagged of held-out PBC, BCCD and the simulated microscope."""
    meta, sets = load(feats)
    classes, y = list(meta["classes"]), meta["pbc_y"]
    truth = np.array([classes.index(c) for c in meta["bccd_y"]])
    pbc = sets["pbc"]
    terms = fusions().get(rule)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        va, te = np.zeros(len(y), bool), np.zeros(len(y), bool)
        for k in np.unique(y):
            order = rng.permutation(np.flatnonzero(y == k))
            va[order[:2]], te[order[2:4]] = True, True
        fi, vi, ti = np.flatnonzero(~va & ~te), np.flatnonzero(va), np.flatnonzero(te)
        q = {
            "cal": (pbc, vi),
            "pbc": (pbc, ti),
            "bccd": (sets["bccd"], np.arange(len(truth))),
            "sim_another": (sets["sim_another"], np.arange(len(sets["sim_another"]["desc"]))),
        }
        base, dom = base_terms(pbc, fi, y[fi], q, len(classes))
        lay = (
            layer_terms(pbc, fi, y[fi], q, variants=tuple(VARIANTS))
            if terms
            else {k: {} for k in q}
        )
        all_ = {k: {**base[k], **lay[k]} for k in q}
        line = f"seed {seed} {rule:24s}"
        for name in ("pbc", "bccd", "sim_another"):
            if terms is None:
                s, thr = all_[name]["card_now"], dom["threshold"]
            else:
                s, sc = fuse(all_["cal"], all_[name], terms)
                thr = np.quantile(sc, 0.95)
            flag = s > thr
            line += f" {name} flagged {flag.mean():.3f}"
            if name == "bccd":
                wrong = all_[name]["_pred"] != truth
                line += f" (wrong, not flagged {np.mean(wrong & ~flag):.3f})"
        print(line, flush=True)


def table(choose: Path, held: Path, *more: Path, out: Path) -> None:
    """Markdown table of every score from ``loco --table`` files: the mean over the choosing
    seeds, the mean and per-class AUROC over the held-back seeds (``held``), and the means
    over further held-back seeds (``more``); sorted by the choosing seeds' mean (the rule is
    chosen on them alone)."""

    def read(path):
        rows = {}
        for line in Path(path).read_text().splitlines():
            key, mean, *per = line.split("\t")
            rows[key] = (float(mean), [float(p) for p in per])
        return rows

    a, b, rest = read(choose), read(held), [read(m) for m in more]
    head = [
        "basophil",
        "eosinophil",
        "erythroblast",
        "IG",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    ]
    extra = "".join(f" more held-back seeds ({i + 1}) |" for i in range(len(rest)))
    lines = [
        "| score | choosing seeds | held-back seeds |" + extra + " " + " | ".join(head) + " |",
        "|---" * (3 + len(rest) + len(head)) + "|",
    ]
    for key in sorted(a, key=lambda k: -a[k][0]):
        if key in b and all(key in r for r in rest):
            per = " | ".join(f"{p:.2f}" for p in b[key][1])
            means = "".join(f" {r[key][0]:.3f} |" for r in rest)
            lines.append(f"| {key} | {a[key][0]:.3f} | {b[key][0]:.3f} |{means} {per} |")
    out.write_text("\n".join(lines) + "\n")


def loco_diffusion(feats: Path, loco_dir: Path, name: str, weights, t_hi: float = 0.9) -> None:
    """The card's score, its low layers' terms and a diffusion model's anomaly score, fused,
    on the splits of ``bench_diffusion.py loco`` (per held-out class: fold 0 of 3 of the
    known classes and every crop of the held-out class are the test set; the diffusion
    model learnt the other known crops, saved with every test and training crop's errors).

    The card's terms and the layers' are fitted on 80 % of the same training crops and
    robust-standardised on the other 20 % (as :func:`loco_scores`); the diffusion score on
    the diffusion model's own training crops (the only crops it has errors for).
    """
    import json
    import sys

    from napari_nucleus_ai.models.uncertainty import auroc

    sys.path.insert(0, str(Path(__file__).parents[1]))
    import diffusion_report as rep
    from bench_diffusion import folds_of

    meta, sets = load(feats)
    classes, y_all = list(meta["classes"]), meta["pbc_y"]
    pbc = sets["pbc"]
    low = tuple((f"maha{'c64'}_{x}@1", 1.0) for x in LAYER_SETS["low"])
    diffusion = {
        "unconditional": ("winner / unconditional", 8),
        "class average": ("winner / class average", None),
        "reference": ("winner vs training median (current)", 8),
    }
    rows = {}
    for c, cname in enumerate(classes):
        f = loco_dir / f"{name}_{c}.npz"
        if not f.exists():
            continue
        d = np.load(f)
        info = json.loads(f.with_suffix(".json").read_text())
        seed = int(info.get("seed", 0))
        known = y_all != c
        fold = folds_of(y_all, 3, seed)
        tr = np.flatnonzero(known & (fold != 0))
        te = np.flatnonzero((fold == 0) & known | ~known)
        if info["held_out"] != cname or not np.array_equal(y_all[te], d["y"]):
            raise SystemExit(f"{f}: its split is not this one")
        pos = ~known[te]
        fit_i, val_i, yfit = fit_and_calibration(tr, y_all, c, len(classes), seed)
        q = {"cal": (pbc, val_i), "test": (pbc, te)}
        base, _ = base_terms(pbc, fit_i, yfit, q, len(classes) - 1)
        lay = layer_terms(pbc, fit_i, yfit, q, test_views=(1,), variants=("c64",))
        cal = {**base["cal"], **lay["cal"]}
        tst = {**base["test"], **lay["test"]}
        res = {"card": auroc(tst["card_now"], pos)}
        card, _ = fuse(cal, tst, CARD)
        card_low, _ = fuse(cal, tst, CARD + low)
        res["card + low layers"] = auroc(card_low, pos)
        for label, (key, n) in diffusion.items():
            s_te = rep.anomaly_scores(
                d["errors"], d["train_errors"], d["train_y"], d["t"], (0.0, t_hi), n
            )[key]
            s_tr = rep.anomaly_scores(
                d["train_errors"], d["train_errors"], d["train_y"], d["t"], (0.0, t_hi), n
            )[key]
            loc, sc = _robust(s_tr)
            z = (s_te - loc) / sc
            res[f"diffusion {label}"] = auroc(s_te, pos)
            for w in weights:
                res[f"card + {w:g} x diffusion {label}"] = auroc(card + w * z, pos)
                res[f"card + low layers + {w:g} x diffusion {label}"] = auroc(card_low + w * z, pos)
        rows[cname] = res
    names = list(rows)
    print(f"{name}: {len(names)} held-out classes; AUROC, held-out class vs known (fold 0 of 3)")
    print("| score | mean | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 2) + "|")
    for k in rows[names[0]]:
        per = [rows[nm][k] for nm in names]
        print(f"| {k} | {np.mean(per):.3f} | " + " | ".join(f"{p:.2f}" for p in per) + " |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("features", "loco", "loco_diffusion", "alarm", "table"))
    ap.add_argument("--model", default="base.zip")
    ap.add_argument("--out", default="/tmp/p13/A/f")
    ap.add_argument("--feats", default="/tmp/p13/A/f")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--rule", default="card_now")
    ap.add_argument("--top", type=int, default=60)
    ap.add_argument("--table", default=None, help="loco: write every row (TSV) here")
    ap.add_argument("--tables", default=None, help="table: CHOOSE.tsv,HELD.tsv[,...],OUT.md")
    ap.add_argument("--loco-dir", default="benchmarks/results/diffusion")
    ap.add_argument("--loco-name", default="loco", help="loco_diffusion: results file prefix")
    ap.add_argument("--weights", default="0.5,1", help="loco_diffusion: diffusion term weights")
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.what == "features":
        extract(a.model, Path(a.out))
    elif a.what == "loco":
        loco(Path(a.feats), seeds, a.top, a.table)
    elif a.what == "loco_diffusion":
        w = [float(v) for v in a.weights.split(",")]
        loco_diffusion(Path(a.feats), Path(a.loco_dir), a.loco_name, w)
    elif a.what == "table":
        *files, out = (Path(p) for p in a.tables.split(","))
        table(*files, out=out)
    else:
        alarm(Path(a.feats), seeds, a.rule)


if __name__ == "__main__":
    main()
