"""Few-shot heads and unseen-class scores, compared on cached features of the default model.

Research code (not part of the package). It measures, on the frozen features the default
``morph`` model computes (morphology descriptor + EfficientNet-Lite0, with its fitted
``C``: 1.0 for the descriptor head, 0.1 for the ImageNet head):

``features``
    Descriptor and ImageNet features (8 dihedral views for PBC, 2 for the others) of the
    96 PBC crops, the 295 BCCD white cells labelled by eye and the PBC crops through
    ``shifts.another_microscope``, as ``train``'s model ``--model`` prepares them.
``fewshot``
    Learning a new microscope from 5 labelled cells per class (per split seed; the other
    cells are the test set): ``union`` (the product: logistic heads on PBC + the
    corrections, each correction repeated twice), ``persource`` (every source standardised
    on its own cells; ``_trans``: the target on all its cells, labelled or not;
    ``_matched``: class-balanced over the shared classes), ``corr_only`` (the corrections
    alone), ``ncm`` (nearest class mean; ``_prior``: shrunk towards PBC's), and the union
    with options ``_wN`` (each correction N times), ``dC``/``iC`` (head ``C``),
    ``noDesc``/``noImg`` (one head only). Balanced accuracy over classes with >= 5 test
    cells.
``loco``
    Leave one PBC class out (``bench_trust.py``'s split: 3 held-out crops of each seen
    class against the unseen class; the rest 80/20 into fitting and calibration): AUROC of
    the entropy, energy, the card's former score (``card_former``: Mahalanobis of all
    features + entropy), Mahalanobis on the descriptor's principal components, k-NN cosine
    distance in descriptor space, their fusions (each term robust-standardised on the
    calibration cells), and the card's score now (``card_now``: ``trust.fit_domain`` with
    the descriptor terms).
``alarm``
    The card's score, former and now, fitted on 8 PBC crops per class (2 more calibrate
    it, 2 more are an in-domain test): the share of held-out PBC, BCCD and
    simulated-microscope cells it flags, and of BCCD cells wrong and not flagged.
``fewshot_alarm``
    ``union`` on BCCD with both alarms fitted as ``train`` fits them on the combined set:
    the share of the other BCCD cells flagged, wrong and not flagged, and certain and wrong.

Run (from the repository root; ``base.zip`` from ``train ../shared/data/smear/pbc``)::

    export PYTHONPATH=benchmarks OMP_NUM_THREADS=1
    .venv/bin/python -m trust_prototype.heads features --model base.zip --out /tmp/heads
    .venv/bin/python -m trust_prototype.heads fewshot --feats /tmp/heads \\
        --targets sim_another,bccd --methods union,persource,persource_trans,corr_only
    .venv/bin/python -m trust_prototype.heads loco --feats /tmp/heads --seeds 0,1
    .venv/bin/python -m trust_prototype.heads alarm --feats /tmp/heads --seeds 0,1,2
    .venv/bin/python -m trust_prototype.heads fewshot_alarm --feats /tmp/heads
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

C_DESC, C_IMG = 1.0, 0.1  # the C the default model chose (card provenance.fitted)


# -- features ------------------------------------------------------------------------


def model_and_sets(model: str, out: Path):
    """The default model's first module and card, and the sets to cache (``pbc``, ``bccd``,
    ``sim_another``: lists of RGB crops in [0, 1]); writes ``out/meta.npz`` (labels)."""
    import sys

    import torch
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parents[1]))
    import bench_fewshot_bccd as bf

    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.models.package import load_model
    from trust_prototype import shifts

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    pkg = load_model(model)
    m, card = pkg.modules[0].eval(), pkg.card
    ts = load_class_folders(bf.DATA / "pbc")
    table = bf.crops(out / "bccd_crops")
    np.savez(
        out / "meta.npz",
        pbc_y=ts.labels,
        classes=np.array(ts.classes),
        bccd_y=table["label"].to_numpy().astype(str),
    )
    pbc = [np.asarray(s, np.float32) / (255 if np.max(s) > 1.5 else 1) for s in ts.samples]
    sets = {
        "pbc": pbc,
        "bccd": [np.asarray(Image.open(p).convert("RGB"), np.float32) / 255 for p in table["path"]],
        "sim_another": [shifts.another_microscope(x) for x in pbc],
    }
    return m, card, sets


def extract(model: str, out: Path) -> None:
    """Cache the features of every set under ``out`` (``<set>.npz`` + ``meta.npz``)."""
    import torch

    from napari_nucleus_ai.models.inputs import prepare

    m, card, sets = model_and_sets(model, out)
    for name, items in sets.items():
        x = torch.as_tensor(prepare(items, card)[0])
        with torch.no_grad():
            desc = torch.cat([m.descriptors(b) for b in x.split(32)]).numpy()
            views = []
            for v in range(8) if name == "pbc" else (0, 5):
                xv = torch.rot90(x, v % 4, (-2, -1))
                xv = xv.flip(-1) if v >= 4 else xv
                views.append(torch.cat([m.imagenet_features(b) for b in xv.split(32)]).numpy())
        np.savez(out / f"{name}.npz", desc=desc, img=np.stack(views, 1))
        print(name, desc.shape, flush=True)


def load(feats: Path):
    meta = np.load(feats / "meta.npz")
    sets = {}
    for name in ("pbc", "bccd", "sim_another"):
        f = np.load(feats / f"{name}.npz")
        sets[name] = {"desc": f["desc"], "img": f["img"]}
    return meta, sets


# -- heads ---------------------------------------------------------------------------


def head(f, y, n_classes: int, c: float, groups=None) -> dict:
    from napari_nucleus_ai.models.nets.morph import fit_head

    return fit_head(f, y, n_classes, [c], 4, 0, groups)


def logits(h: dict, f: np.ndarray) -> np.ndarray:
    w = h["weight"].numpy().astype(np.float64)
    return ((f - h["mean"]) / h["std"]) @ w.T + h["bias"].numpy()


def _flat(a):
    return a.reshape(-1, a.shape[-1]) if a.ndim == 3 else a


def _rows(a, y, g0: int):
    """Rows of every view of ``a`` (N, [V,] F) with labels and groups (one per cell)."""
    if a.ndim == 2:
        return a, y, g0 + np.arange(len(a))
    v = a.shape[1]
    return (
        a.transpose(1, 0, 2).reshape(-1, a.shape[-1]),
        np.tile(y, v),
        np.tile(g0 + np.arange(len(a)), v),
    )


def _balanced_stats(f, y, shared):
    keep = np.isin(y, shared)
    f, y = f[keep], y[keep]
    w = np.zeros(len(y))
    for c in shared:
        w[y == c] = 1.0 / max((y == c).sum(), 1)
    w /= w.sum()
    mu = (w[:, None] * f).sum(0)
    return mu, np.sqrt((w[:, None] * (f - mu) ** 2).sum(0)) + 1e-4


def fit_predict(method: str, src: dict, ys, corr: dict, yc, test: dict, target: dict, n_cls):
    """Logits ``(N_test, C)`` of ``method`` (see the module docstring): sum of both heads."""
    d_c = float(re.search(r"dC([0-9.]+)", method).group(1)) if "dC" in method else C_DESC
    i_c = float(re.search(r"iC([0-9.]+)", method).group(1)) if "iC" in method else C_IMG
    rep = int(re.search(r"_w([0-9]+)", method).group(1)) if "_w" in method else 2
    out = 0
    for part, c_value in (("desc", d_c), ("img", i_c)):
        if ("noDesc" in method and part == "desc") or ("noImg" in method and part == "img"):
            continue
        s, c, t = src[part], corr[part], test[part]
        if method.startswith(("persource", "corr_only", "ncm")):
            if "trans" in method:
                mt, st = _flat(target[part]).mean(0), _flat(target[part]).std(0) + 1e-4
                ms, ss = _flat(s).mean(0), _flat(s).std(0) + 1e-4
            elif "matched" in method:
                shared = np.unique(yc)
                ms, ss = _balanced_stats(*_rows(s, ys, 0)[:2], shared)
                mt, st = _balanced_stats(*_rows(c, yc, 0)[:2], shared)
            else:
                ms, ss = _flat(s).mean(0), _flat(s).std(0) + 1e-4
                mt, st = _flat(c).mean(0), _flat(c).std(0) + 1e-4
            s, c, t = (s - ms) / ss, (c - mt) / st, (t - mt) / st
        if method.startswith("ncm"):
            cm, tm, sm = (a.mean(1) if a.ndim == 3 else a for a in (c, t, s))
            means = np.stack(
                [
                    (
                        ((yc == k).sum() * cm[yc == k].mean(0) + 3.0 * sm[ys == k].mean(0))
                        / ((yc == k).sum() + 3.0)
                        if "prior" in method
                        else cm[yc == k].mean(0)
                    )
                    if (yc == k).any()
                    else sm[ys == k].mean(0)
                    for k in range(n_cls)
                ]
            )
            out = out - 5.0 * ((tm[:, None] - means[None]) ** 2).sum(-1) / cm.shape[1]
            continue
        parts = [] if method.startswith("corr_only") else [_rows(s, ys, 0)]
        parts += [_rows(c, yc, 10_000)] * (1 if method.startswith("corr_only") else rep)
        x, y, g = (np.concatenate([p[i] for p in parts]) for i in range(3))
        h = head(x, y, n_cls, c_value, g)
        out = out + (
            np.mean([logits(h, t[:, v]) for v in range(t.shape[1])], 0)
            if t.ndim == 3
            else logits(h, t)
        )
    return out


def split(y, seed: int, k: int = 5) -> np.ndarray:
    """``k`` corrections per class (all but one of a smaller class): ``bench_fewshot_bccd``."""
    from bench_transfer import fewshot_mask

    return fewshot_mask(y, seed, k)


def fewshot(feats: Path, targets, methods, seeds) -> None:
    meta, sets = load(feats)
    classes = list(meta["classes"])
    ys = meta["pbc_y"]
    for tgt in targets:
        yt = np.array([classes.index(c) for c in meta["bccd_y"]]) if tgt == "bccd" else ys
        tg = sets[tgt]
        for meth in methods:
            accs = []
            for seed in seeds:
                m = split(yt, seed)
                corr = {k: v[m] for k, v in tg.items()}
                test = {k: v[~m] for k, v in tg.items()}
                z = fit_predict(meth, sets["pbc"], ys, corr, yt[m], test, tg, len(classes))
                yy, pred = yt[~m], z.argmax(1)
                counted = [c for c in np.unique(yy) if (yy == c).sum() >= 5]
                accs.append(float(np.mean([(pred[yy == c] == c).mean() for c in counted])))
            print(
                f"{tgt:12s} {meth:22s} mean {np.mean(accs):.3f}  "
                + " ".join(f"{a:.3f}" for a in accs),
                flush=True,
            )


# -- unseen classes ------------------------------------------------------------------


def _robust(s):
    q1, m, q3 = np.percentile(s, [25, 50, 75])
    return m, max((q3 - q1) / 1.35, 1e-6)


def _maha(ptr, ytr, pte):
    from sklearn.covariance import LedoitWolf

    cl = np.unique(ytr)
    means = np.stack([ptr[ytr == c].mean(0) for c in cl])
    prec = LedoitWolf().fit(ptr - means[np.searchsorted(cl, ytr)]).precision_
    d = pte[:, None] - means[None]
    return np.einsum("nck,kl,ncl->nc", d, prec, d).min(1)


def _knn(ref, q, k: int = 3):
    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    d = 1 - unit(q) @ unit(ref).T
    return np.partition(d, k - 1, 1)[:, k - 1]


def fit_and_calibration(tr, y_all, c: int, n_classes: int, seed: int):
    """The training crops ``tr`` of a split leaving class ``c`` out, 80/20 per class into
    fitting and calibration crops: ``(fit indices, calibration indices, fitting labels
    among the other classes)``."""
    ytr = np.searchsorted([k for k in range(n_classes) if k != c], y_all[tr])
    rng = np.random.default_rng(seed + 7)
    va = np.zeros(len(tr), bool)
    for k in np.unique(ytr):
        idx = rng.permutation(np.flatnonzero(ytr == k))
        va[idx[: max(1, round(0.2 * len(idx)))]] = True
    return tr[~va], tr[va], ytr[~va]


def loco_scores(feats: Path, seed: int) -> dict:
    """AUROC of every candidate score for every left-out class (one seed)."""
    from bench_trust import loco_held
    from scipy.special import logsumexp, softmax

    from napari_nucleus_ai.models import trust
    from napari_nucleus_ai.models.uncertainty import auroc

    meta, sets = load(feats)
    classes, y_all = list(meta["classes"]), meta["pbc_y"]
    desc, img = sets["pbc"]["desc"], sets["pbc"]["img"]
    rng = np.random.default_rng(seed)
    res = {}
    for c, name in enumerate(classes):
        held = loco_held(y_all, c, rng)
        tr = np.setdiff1d(np.flatnonzero(y_all != c), held)
        fit_i, val_i, yfit = fit_and_calibration(tr, y_all, c, len(classes), seed)
        n = len(classes) - 1
        hd = head(desc[fit_i], yfit, n, C_DESC)
        v = img.shape[1]
        hi = head(
            img[fit_i].transpose(1, 0, 2).reshape(-1, img.shape[-1]),
            np.tile(yfit, v),
            n,
            C_IMG,
            np.tile(np.arange(len(fit_i)), v),
        )
        test = np.concatenate([held, np.flatnonzero(y_all == c)])
        pos = np.r_[np.zeros(len(held), bool), np.ones((y_all == c).sum(), bool)]

        def z_of(idx, hd=hd, hi=hi):
            return logits(hd, desc[idx]) + logits(hi, img[idx, 0])

        def emb(idx, hd=hd, hi=hi):
            return np.concatenate(
                [(desc[idx] - hd["mean"]) / hd["std"], (img[idx, 0] - hi["mean"]) / hi["std"]], 1
            )

        def embd(idx, hd=hd):
            return (desc[idx] - hd["mean"]) / hd["std"]

        s, sv = {}, {}
        for idx, store in ((test, s), (val_i, sv)):
            z = z_of(idx)
            p = softmax(z, 1)
            store["entropy"] = -(p * np.log(p + 1e-12)).sum(1)
            store["energy"] = -logsumexp(z, 1)
            store["_p"] = p
        dom = trust.fit_domain(emb(fit_i), yfit, emb(val_i), sv["_p"])
        s["card_former"] = trust.domain_scores(emb(test), s["_p"], dom)
        now = trust.fit_domain(emb(fit_i), yfit, emb(val_i), sv["_p"], descriptor=desc.shape[1])
        s["card_now"] = trust.domain_scores(emb(test), s["_p"], now)
        for store, idx in ((s, test), (sv, val_i)):
            store["maha_all"] = trust._raw_scores(emb(idx), store["_p"], dom)["mahalanobis"]
        ztr = embd(fit_i)
        mu = ztr.mean(0)
        comp = np.linalg.svd(ztr - mu, full_matrices=False)[2][:32]
        for store, idx in ((s, test), (sv, val_i)):
            store["maha_desc"] = _maha((ztr - mu) @ comp.T, yfit, (embd(idx) - mu) @ comp.T)
            store["knn_desc"] = _knn(ztr, embd(idx))
        fusions = {
            "maha_desc+entropy": ("maha_desc", "entropy"),
            "maha_desc+knn_desc+entropy": ("maha_desc", "knn_desc", "entropy"),
            "maha_desc+maha_all+entropy": ("maha_desc", "maha_all", "entropy"),
        }
        for fname, terms in fusions.items():
            s[fname] = sum((s[t] - _robust(sv[t])[0]) / _robust(sv[t])[1] for t in terms)
        res[name] = {k: auroc(v, pos) for k, v in s.items() if not k.startswith("_")}
    return res


def loco(feats: Path, seeds) -> None:
    runs = [loco_scores(feats, s) for s in seeds]
    classes = list(runs[0])
    rows = []
    for key in runs[0][classes[0]]:
        per = [np.mean([r[c][key] for r in runs]) for c in classes]
        rows.append((float(np.mean(per)), key, per))
    print("score".ljust(28), "mean ", " ".join(c[:5] for c in classes))
    for mean, key, per in sorted(rows, reverse=True):
        print(f"{key:28s} {mean:.3f} " + " ".join(f"{p:.2f}" for p in per))


def alarm(feats: Path, seeds) -> None:
    """The card's score, former and now, fitted on PBC (8 crops per class; 2 calibrate, 2
    are an in-domain test, per split seed): share of held-out PBC, BCCD and
    simulated-microscope cells flagged, and BCCD cells wrong and not flagged."""
    from scipy.special import softmax

    from napari_nucleus_ai.models import trust

    meta, sets = load(feats)
    classes, y = list(meta["classes"]), meta["pbc_y"]
    truth = np.array([classes.index(c) for c in meta["bccd_y"]])
    pbc = sets["pbc"]
    for seed in seeds:
        rng = np.random.default_rng(seed)
        va, te = np.zeros(len(y), bool), np.zeros(len(y), bool)
        for k in np.unique(y):
            order = rng.permutation(np.flatnonzero(y == k))
            va[order[:2]], te[order[2:4]] = True, True  # calibration; in-domain test
        fi, vi, ti = np.flatnonzero(~va & ~te), np.flatnonzero(va), np.flatnonzero(te)
        hd = head(pbc["desc"][fi], y[fi], len(classes), C_DESC)
        v = pbc["img"].shape[1]
        hi = head(
            pbc["img"][fi].transpose(1, 0, 2).reshape(-1, pbc["img"].shape[-1]),
            np.tile(y[fi], v),
            len(classes),
            C_IMG,
            np.tile(np.arange(len(fi)), v),
        )

        def emb(d, i, hd=hd, hi=hi):
            return np.concatenate([(d - hd["mean"]) / hd["std"], (i - hi["mean"]) / hi["std"]], 1)

        def probs(d, i, hd=hd, hi=hi):
            return softmax(logits(hd, d) + logits(hi, i), 1)

        f_tr = emb(pbc["desc"][fi], pbc["img"][fi, 0])
        f_va, p_va = (
            emb(pbc["desc"][vi], pbc["img"][vi, 0]),
            probs(pbc["desc"][vi], pbc["img"][vi, 0]),
        )
        n_desc = pbc["desc"].shape[1]
        for name, n in (("card_former", 0), ("card_now", n_desc)):
            dom = trust.fit_domain(f_tr, y[fi], f_va, p_va, descriptor=n)
            d_in, i_in = pbc["desc"][ti], pbc["img"][ti, 0]
            s_in = trust.domain_scores(emb(d_in, i_in), probs(d_in, i_in), dom)
            line = f"seed {seed} {name:12s} PBC held-out flagged {np.mean(s_in > dom['threshold']):.2f}"
            for tgt in ("bccd", "sim_another"):
                d, i = sets[tgt]["desc"], sets[tgt]["img"][:, 0]
                p = probs(d, i)
                flag = trust.domain_scores(emb(d, i), p, dom) > dom["threshold"]
                line += f" {tgt} flagged {flag.mean():.2f}"
                if tgt == "bccd":
                    line += (
                        f" (wrong and not flagged {np.mean(~flag & (p.argmax(1) != truth)):.3f})"
                    )
            print(line, flush=True)


def fewshot_alarm(feats: Path, seeds) -> None:
    """``union`` on BCCD as ``train PBC CORRECTIONS`` does it (2 PBC crops and 1 correction
    per class held back to calibrate): balanced accuracy, and per alarm (former, now) the
    share of test cells flagged, wrong and not flagged, and certain (not flagged, a one-class
    conformal set calibrated on the same held-back cells) and wrong."""
    from scipy.special import softmax

    from napari_nucleus_ai.models import trust

    meta, sets = load(feats)
    classes, ys = list(meta["classes"]), meta["pbc_y"]
    yt = np.array([classes.index(c) for c in meta["bccd_y"]])
    src, tg, n_cls = sets["pbc"], sets["bccd"], len(classes)
    for seed in seeds:
        m = split(yt, seed)
        rng = np.random.default_rng(seed)
        cal_s = np.zeros(len(ys), bool)
        for k in np.unique(ys):
            cal_s[rng.permutation(np.flatnonzero(ys == k))[:2]] = True
        corr = np.flatnonzero(m)
        cal_t = np.zeros(len(yt), bool)
        for k in np.unique(yt[corr]):
            cal_t[rng.permutation(corr[yt[corr] == k])[:1]] = True
        fit_s, fit_t, test = ~cal_s, m & ~cal_t, ~m
        hs = {}
        for part, c_value in (("desc", C_DESC), ("img", C_IMG)):
            parts = [_rows(src[part][fit_s], ys[fit_s], 0)]
            parts += [_rows(tg[part][fit_t], yt[fit_t], 10_000)] * 2
            x, y, g = (np.concatenate([p[i] for p in parts]) for i in range(3))
            hs[part] = head(x, y, n_cls, c_value, g)

        def feats_of(a, idx, hs=hs):
            d, i = a["desc"][idx], a["img"][idx, 0]
            z = logits(hs["desc"], d) + logits(hs["img"], i)
            e = [(d - hs["desc"]["mean"]) / hs["desc"]["std"]]
            e.append((i - hs["img"]["mean"]) / hs["img"]["std"])
            return np.concatenate(e, 1), softmax(z, 1)

        f_fit = np.concatenate([feats_of(src, fit_s)[0], feats_of(tg, fit_t)[0]])
        y_fit = np.r_[ys[fit_s], yt[fit_t]]
        cs, ct = feats_of(src, cal_s), feats_of(tg, cal_t)
        f_cal, p_cal = np.concatenate([cs[0], ct[0]]), np.concatenate([cs[1], ct[1]])
        f_te, p_te = feats_of(tg, test)
        wrong = p_te.argmax(1) != yt[test]
        yy = yt[test]
        counted = [c for c in np.unique(yy) if (yy == c).sum() >= 5]
        bacc = np.mean([(p_te.argmax(1)[yy == c] == c).mean() for c in counted])
        line = f"seed {seed} balanced accuracy {bacc:.3f}"
        conf = trust.fit_conformal(p_cal, np.r_[ys[cal_s], yt[cal_t]])
        for name, n in (("former", 0), ("now", src["desc"].shape[1])):
            dom = trust.fit_domain(f_fit, y_fit, f_cal, p_cal, descriptor=n)
            flag = trust.domain_scores(f_te, p_te, dom) > dom["threshold"]
            one = np.array([len(x) == 1 for x in trust.conformal_sets(p_te, conf)])
            line += (
                f" | {name}: flagged {flag.mean():.2f}, wrong not flagged "
                f"{np.mean(wrong & ~flag):.3f}, certain and wrong {np.mean(wrong & ~flag & one):.3f}"
            )

        print(line, flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("features", "fewshot", "loco", "alarm", "fewshot_alarm"))
    ap.add_argument("--model", default="base.zip")
    ap.add_argument("--out", default="/tmp/heads")
    ap.add_argument("--feats", default="/tmp/heads")
    ap.add_argument("--targets", default="sim_another,bccd")
    ap.add_argument("--methods", default="union,persource,persource_trans,corr_only,ncm")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    if a.what == "features":
        extract(a.model, Path(a.out))
    elif a.what == "fewshot":
        fewshot(Path(a.feats), a.targets.split(","), a.methods.split(","), seeds)
    elif a.what == "fewshot_alarm":
        fewshot_alarm(Path(a.feats), seeds)
    elif a.what == "alarm":
        alarm(Path(a.feats), seeds)
    else:
        loco(Path(a.feats), seeds)


if __name__ == "__main__":
    main()
