"""Benchmark of the trust design on cached features (run ``python -m trust_prototype.features`` first).

Prints: PBC cross-validated balanced accuracy (4- and 12-fold, fold seeds 0 and 1) of the
current pipeline and of the canonical-frame pipelines; for every simulated shift the
balanced accuracy, the fraction of errors flagged (unidentified or conformal set > 1),
certain-and-wrong rate and coverage; leave-one-class-out anomaly AUROC; conformal
coverage; and the BCCD white cells (class mix, unidentified rate, by-eye accuracy).

Protocol: models are fitted on the training folds of the clean PBC crops (plus their
stain-augmented copies for ``aug`` configurations) and evaluated on the held-out fold,
clean and under every shift (the shift applied to the held-out crops only). Temperature,
conformal ``qhat`` and the OOD threshold of fold ``j`` come from the out-of-fold clean
predictions of the *other* folds; no shift is used to fit or tune anything. For the HED
and white-balance shifts, the matching augmentation is removed from training
(leave-one-shift-out).
"""

from __future__ import annotations

import argparse
import csv
import json
import time

import numpy as np

from . import conformal as CF
from . import ood as OD
from .data import CLASSES

SHIFT_NAMES = [
    "scale_0.5x",
    "scale_2x",
    "tight",
    "loose",
    "stain_hed",
    "white_balance",
    "blur",
    "jpeg_q30",
    "another_microscope",
]
LEAVE_OUT_AUG = {"stain_hed": ("aug_hed",), "white_balance": ("aug_light",)}


def folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Stratified fold index per crop."""
    rng = np.random.default_rng(seed)
    f = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        f[idx] = np.arange(len(idx)) % k
    return f


def balanced_accuracy(y, pred, classes=None) -> float:
    classes = np.unique(y) if classes is None else classes
    return float(np.mean([(pred[y == c] == c).mean() for c in classes if (y == c).any()]))


class Feats:
    """Access to one configuration's cached features."""

    def __init__(self, z, prefix: str, aug: tuple = ()):
        self.z, self.p, self.aug = z, prefix, aug

    def get(self, s):
        return self.z[f"{self.p}/{s}/desc"], self.z[f"{self.p}/{s}/img"]

    def train_rows(self, idx, n_aug=1, drop=()):
        """(desc, img, crop index) rows for training crops ``idx``: every cached view of the
        clean crops plus the augmented copies."""
        d, im = self.get("clean")
        D, I, G = [], [], []
        for v in range(im.shape[1]):
            D.append(d[idx])
            I.append(im[idx, v])
            G.append(idx)
        for a in self.aug:
            if a in drop:
                continue
            da, ia = self.get(a)
            rows = (idx[:, None] * n_aug + np.arange(n_aug)[None]).ravel()
            D.append(da[rows])
            I.append(ia[rows, 0])
            G.append(np.repeat(idx, n_aug))
        return np.concatenate(D), np.concatenate(I), np.concatenate(G)


def fit_model(d, im, y, c_desc=0.1, c_img=0.03, k_pca=32):
    """Two standardised logistic heads (descriptor, ImageNet) whose logits add, plus a
    Mahalanobis OOD model on the concatenated standardised features."""
    from sklearn.linear_model import LogisticRegression

    m = {}
    for key, f, c in (("desc", d, c_desc), ("img", im, c_img)):
        mu, sd = f.mean(0), f.std(0) + 1e-4
        lr = LogisticRegression(C=c, max_iter=300, tol=1e-3).fit((f - mu) / sd, y)
        m[key] = (mu, sd, lr)
    m["classes"] = m["desc"][2].classes_
    m["maha"] = OD.fit_mahalanobis(_joint(m, d, im), y, k_pca)
    m["knn"] = OD.fit_knn(_joint(m, d, im))
    return m


def _joint(m, d, im):
    (a, b, _), (c, e, _) = m["desc"], m["img"]
    return np.concatenate([(d - a) / b, (im - c) / e * np.sqrt(d.shape[1] / im.shape[1])], 1)


def logits(m, d, im):
    out = 0
    for key, f in (("desc", d), ("img", im)):
        mu, sd, lr = m[key]
        out = out + lr.decision_function((f - mu) / sd)
    return out


def softmax(z, t=1.0):
    z = z / t
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(z, y):
    ts = np.exp(np.linspace(np.log(0.3), np.log(10), 60))
    nll = [-np.log(softmax(z, t)[np.arange(len(y)), y] + 1e-12).mean() for t in ts]
    return float(ts[int(np.argmin(nll))])


def scores(m, d, im, t):
    z = logits(m, d, im)
    p = softmax(z, t)
    j = _joint(m, d, im)
    return p, {
        "maha": OD.mahalanobis_score(j, m["maha"]),
        "knn": OD.knn_score(j, m["knn"]),
        "entropy": OD.entropy(p),
    }


COMBO = ("maha", "entropy")  # scores summed (robustly standardised) in the "combo" OOD score


def cv_run(F: Feats, y, k, seed, sets=(), ood_key="maha", alpha=0.1, q=0.95, c=(0.1, 0.03)):
    """Cross-validation: clean OOF predictions and per-set held-out predictions with flags."""
    fo = folds(y, k, seed)
    d0, i0 = F.get("clean")
    n = len(y)
    models, oof_z = {}, np.zeros((n, len(np.unique(y))))
    oof_s = {k_: np.zeros(n) for k_ in ("maha", "knn", "entropy")}
    for j in range(k):
        tr = np.flatnonzero(fo != j)
        d, im, g = F.train_rows(tr)
        m = fit_model(d, im, y[g], *c)
        models[j] = m
        te = fo == j
        oof_z[te] = logits(m, d0[te], i0[te, 0])
    out = {"clean": {"pred": oof_z.argmax(1)}}
    cal = {}
    for j in range(k):
        o = fo != j
        t = fit_temperature(oof_z[o], y[o])
        te = fo == j
        _, s = scores(models[j], d0[te], i0[te, 0], t)
        for k_ in oof_s:
            oof_s[k_][te] = s[k_]
    for j in range(k):
        o = fo != j
        t = fit_temperature(oof_z[o], y[o])
        std = {k_: OD.fit_standardiser(oof_s[k_][o]) for k_ in COMBO}
        sc = OD.combine(oof_s, std) if ood_key == "combo" else oof_s[ood_key]
        cal[j] = (t, CF.fit(softmax(oof_z[o], t), y[o], alpha), OD.threshold(sc[o], q), std)
    sub_all = np.arange(n)
    for sname in ("clean",) + tuple(sets):
        ds, is_ = F.get("clean" if sname == "clean" else "shift_" + sname)
        sub = sub_all if sname == "clean" else F.z["shift_idx"]  # crops that have this set
        pos = np.full(n, -1)
        pos[sub] = np.arange(len(sub))
        P, S, U = np.zeros_like(oof_z), np.zeros(n), np.zeros(n, bool)
        sizes = np.zeros(n, int)
        cov = np.zeros(n, bool)
        for j in range(k):
            te = np.flatnonzero((fo == j) & (pos >= 0))
            m = models[j]
            drop = LEAVE_OUT_AUG.get(sname, ())
            if drop and any(a in F.aug for a in drop):
                d, im, g = F.train_rows(np.flatnonzero(fo != j), drop=drop)
                m = fit_model(d, im, y[g], *c)
            t, cq, thr, std = cal[j]
            p, s = scores(m, ds[pos[te]], is_[pos[te], 0], t)
            s["combo"] = OD.combine(s, std)
            P[te], S[te] = p, s[ood_key]
            U[te] = s[ood_key] > thr
            st = CF.predict_sets(p, cq)
            sizes[te] = [len(v) for v in st]
            cov[te] = [int(a) in v for a, v in zip(y[te], st)]
        P, S, U, sizes, cov, yy = P[sub], S[sub], U[sub], sizes[sub], cov[sub], y[sub]
        pred = P.argmax(1)
        wrong = pred != yy
        flagged = U | (sizes > 1)
        out[sname] = {
            "n": int(len(sub)),
            "bacc": balanced_accuracy(yy, pred),
            "acc": float((~wrong).mean()),
            "err_flagged": float(flagged[wrong].mean()) if wrong.any() else 1.0,
            "certain_wrong": float((wrong & ~flagged).mean()),
            "unidentified": float(U.mean()),
            "coverage": float(cov.mean()),
            "set_size": float(sizes.mean()),
            "pred": pred,
            "probs": P,
            "sub": sub,
        }
    out["oof_z"] = oof_z
    out["oof_s"] = oof_s
    out["cal"] = cal
    out["folds"] = fo
    return out


def loco(F: Feats, y, k=4, seed=0, c=(0.1, 0.03)):
    """Leave-one-class-out anomaly AUROC per class for each OOD score (mean over folds).

    For class ``c``: the other 7 classes are split into ``k`` folds; a model fitted on
    ``k-1`` folds scores the held-out known crops and all crops of ``c``. The ``combo``
    score is standardised with the out-of-fold known scores of the *other* folds.
    """
    from sklearn.metrics import roc_auc_score

    d0, i0 = F.get("clean")
    keys = ("maha", "knn", "entropy")
    res = {}
    for cls in np.unique(y):
        known = np.flatnonzero(y != cls)
        unk = np.flatnonzero(y == cls)
        fo = folds(y[known], k, seed)
        oof = {k_: np.zeros(len(known)) for k_ in keys}
        s_out = {}
        for j in range(k):
            tr, te = known[fo != j], known[fo == j]
            d, im, g = F.train_rows(tr)
            m = fit_model(d, im, y[g], *c)
            _, s_in = scores(m, d0[te], i0[te, 0], 1.0)
            for k_ in keys:
                oof[k_][fo == j] = s_in[k_]
            s_out[j] = scores(m, d0[unk], i0[unk, 0], 1.0)[1]
        aucs = {k_: [] for k_ in keys + ("combo",)}
        for j in range(k):
            std = {k_: OD.fit_standardiser(oof[k_][fo != j]) for k_ in COMBO}
            s_in = {k_: oof[k_][fo == j] for k_ in keys}
            s_in["combo"], s_out[j]["combo"] = OD.combine(s_in, std), OD.combine(s_out[j], std)
            lab = np.r_[np.zeros(len(s_in["maha"])), np.ones(len(unk))]
            for k_ in aucs:
                aucs[k_].append(roc_auc_score(lab, np.r_[s_in[k_], s_out[j][k_]]))
        res[CLASSES[cls]] = {k_: float(np.mean(v)) for k_, v in aucs.items()}
    return res


def bccd_eval(F: Feats, z, y, ood_key="maha", c=(0.1, 0.03), alpha=0.1, q=0.95, labels_csv=None):
    """Train on all PBC crops; predict the BCCD white cells.

    Temperature, conformal ``qhat``, score standardisers and the OOD threshold come from
    4-fold out-of-fold predictions on the clean PBC crops.
    """
    cv = cv_run(F, y, 4, 0, (), ood_key, alpha, q, c)
    oof_z, oof_s = cv["oof_z"], cv["oof_s"]
    t = fit_temperature(oof_z, y)
    cq = CF.fit(softmax(oof_z, t), y, alpha)
    std = {k_: OD.fit_standardiser(oof_s[k_]) for k_ in COMBO}
    s_in = OD.combine(oof_s, std) if ood_key == "combo" else oof_s[ood_key]
    thr = OD.threshold(s_in, q)
    d, im, g = F.train_rows(np.arange(len(y)))
    m = fit_model(d, im, y[g], *c)
    db, ib = F.get("bccd")
    p, s = scores(m, db, ib[:, 0], t)
    s["combo"] = OD.combine(s, std)
    pred = p.argmax(1)
    U = s[ood_key] > thr
    sets = CF.predict_sets(p, cq)
    res = {
        "n": len(pred),
        "mix": {CLASSES[c_]: float((pred == c_).mean()) for c_ in range(len(CLASSES))},
        "unidentified": float(U.mean()),
        "set_gt1": float(np.mean([len(v) > 1 for v in sets])),
        "ood_pbc_median": float(np.median(s_in)),
        "ood_bccd_median": float(np.median(s[ood_key])),
        "ood_thr": thr,
        "mean_maxprob": float(p.max(1).mean()),
    }
    if labels_csv:
        ids = list(z["bccd_ids"])
        rows = list(csv.DictReader(open(labels_csv)))
        idx, lab, conf = [], [], []
        for r in rows:
            key = r["image"].replace(".jpg", "") + ":" + r["box"]
            idx.append(ids.index(key))
            lab.append(CLASSES.index(r["label"]))
            conf.append(r["confidence"])
        idx, lab, conf = np.array(idx), np.array(lab), np.array(conf)
        pr = pred[idx]
        wrong = pr != lab
        flagged = U[idx] | np.array([len(sets[i]) > 1 for i in idx])
        hi = conf != "low"
        res["eye"] = {
            "n": len(idx),
            "acc": float((~wrong).mean()),
            "bacc": balanced_accuracy(lab, pr),
            "acc_not_low": float((~wrong[hi]).mean()),
            "n_not_low": int(hi.sum()),
            "err_flagged": float(flagged[wrong].mean()) if wrong.any() else 1.0,
            "certain_wrong": float((wrong & ~flagged).mean()),
            "in_set": float(np.mean([lab[k_] in sets[i] for k_, i in enumerate(idx)])),
            "confusion": [
                [int(((lab == a) & (pr == b)).sum()) for b in range(len(CLASSES))]
                for a in range(len(CLASSES))
            ],
        }
    return res


def load_feats(paths: str) -> dict:
    """Merge the cached ``.npz`` files (comma-separated paths) into one dict."""
    z = {}
    for p in paths.split(","):
        p, _, rename = p.partition("=")  # "file.npz=old_prefix:new_prefix" renames keys
        with np.load(p) as f:
            for k in f.files:
                if rename:
                    a, b_ = rename.split(":")
                    if not k.startswith(a + "/"):
                        continue
                    z[b_ + k[len(a) :]] = f[k]
                else:
                    z[k] = f[k]
    return z


def frame_agreement(F: Feats, shifts=("tight", "loose", "scale_0.5x", "scale_2x")) -> dict:
    """How much each framing/magnification shift changes the features of the same crop:
    median Pearson correlation of standardised descriptor / ImageNet features (clean vs
    shifted), using the clean crops' feature statistics."""
    d0, i0 = F.get("clean")
    sub = F.z["shift_idx"]
    d0, i0 = d0[sub], i0[sub, 0]
    out = {}
    for s in shifts:
        d1, i1 = F.get("shift_" + s)
        i1 = i1[:, 0]
        r = {}
        for key, a, b in (("desc", d0, d1), ("img", i0, i1)):
            mu, sd = a.mean(0), a.std(0) + 1e-4
            za, zb = (a - mu) / sd, (b - mu) / sd
            r[key] = float(np.median([np.corrcoef(u, v)[0, 1] for u, v in zip(za, zb)]))
        out[s] = r
    return out


DEFAULT_FEATS = ",".join(
    [
        "/tmp/tc_shifts_meta.npz",
        "/tmp/trust_feats.npz=base/clean:base/clean",
        "/tmp/var_s128_noctx.npz=v/clean:canon/none/clean",
        "/tmp/tc_shifts.npz",
        "/tmp/tc_aug.npz",
        "/tmp/tb.npz",
        "/tmp/c6_a.npz=canon:canon6",
        "/tmp/c6_b.npz=canon:canon6",
        "/tmp/c6_c.npz=canon:canon6",
    ]
)

CONFIGS = {
    "current": ("base", ()),
    "canon": ("canon/none", ()),
    "canon+aug": ("canon/none", ("aug_hed", "aug_light")),
    # context 0.6 (everything beyond 0.6 cell diameters fades to plasma), see frame.py
    "ctx+aug": ("canon6/none", ("aug_hed", "aug_light")),
    "ctx+nucod": ("canon6/nucod", ()),
    "ctx+nucod+aug": ("canon6/nucod", ("aug_hed", "aug_light")),
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--feats", default=DEFAULT_FEATS)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--ood", default="maha")
    ap.add_argument("--parts", default="cv,agree,shifts,loco,conformal,bccd")
    ap.add_argument("--labels", default="trust/bccd_labels_by_eye.csv")
    ap.add_argument("--json", default="/tmp/trust_bench.json")
    a = ap.parse_args(argv)
    z = load_feats(a.feats)
    y = z["y"]
    parts = a.parts.split(",")
    report = {}
    for name in a.configs.split(","):
        prefix, aug = CONFIGS[name]
        F = Feats(z, prefix, aug)
        r = report[name] = {}
        t0 = time.time()
        if "cv" in parts:
            r["cv"] = {
                f"{k}fold_seed{s}": cv_run(F, y, k, s)["clean"]["bacc"]
                for k in (4, 12)
                for s in (0, 1)
            }
            print(name, "PBC CV bacc", json.dumps(r["cv"]), flush=True)
        if "agree" in parts:
            r["agree"] = frame_agreement(F)
            print(
                name,
                "feature agreement clean vs shifted (median corr desc/img):",
                {s: (round(v["desc"], 2), round(v["img"], 2)) for s, v in r["agree"].items()},
                flush=True,
            )
        if "shifts" in parts or "conformal" in parts:
            res = cv_run(F, y, 4, 0, SHIFT_NAMES, a.ood)
            r["shifts"] = {
                s: {k_: v for k_, v in res[s].items() if k_ not in ("pred", "probs", "sub")}
                for s in ("clean",) + tuple(SHIFT_NAMES)
            }
            base_pred = res["clean"]["pred"]
            for s in SHIFT_NAMES:
                r["shifts"][s]["agree_with_clean"] = float(
                    (res[s]["pred"] == base_pred[res[s]["sub"]]).mean()
                )
            print(name, "shifts (bacc / err flagged / certain-wrong / coverage / agree):")
            for s, v in r["shifts"].items():
                print(
                    f"   {s:20s} {v['bacc']:.3f} {v['err_flagged']:.2f} {v['certain_wrong']:.3f} "
                    f"{v['coverage']:.2f} set {v['set_size']:.2f} unid {v['unidentified']:.2f} "
                    f"agree {v.get('agree_with_clean', 1):.2f}",
                    flush=True,
                )
            oof_p = softmax(res["oof_z"], fit_temperature(res["oof_z"], y))
            r["conformal"] = {
                "APS": CF.split_coverage(oof_p, y),
                "RAPS": CF.split_coverage(oof_p, y, lam=0.05, k_reg=1),
            }
            print(name, "conformal", json.dumps(r["conformal"]), flush=True)
        if "loco" in parts:
            r["loco"] = loco(F, y)
            means = {
                k_: float(np.mean([v[k_] for v in r["loco"].values()]))
                for k_ in next(iter(r["loco"].values()))
            }
            r["loco_mean"] = means
            print(name, "LOCO AUROC mean", json.dumps(means))
            for cls, v in r["loco"].items():
                print(f"   {cls:22s} " + " ".join(f"{k_} {x:.2f}" for k_, x in v.items()))
        if "bccd" in parts:
            r["bccd"] = bccd_eval(F, z, y, a.ood, labels_csv=a.labels)
            b = r["bccd"]
            print(name, "BCCD mix", {k_: round(v, 2) for k_, v in b["mix"].items() if v > 0})
            print(
                name,
                "BCCD unidentified %.2f set>1 %.2f ood median pbc %.1f bccd %.1f thr %.1f"
                % (
                    b["unidentified"],
                    b["set_gt1"],
                    b["ood_pbc_median"],
                    b["ood_bccd_median"],
                    b["ood_thr"],
                ),
            )
            if "eye" in b:
                e = b["eye"]
                print(
                    name,
                    "BCCD by-eye: acc %.2f bacc %.2f (not-low-confidence %d: acc %.2f) err flagged %.2f "
                    "certain-wrong %.2f label in set %.2f"
                    % (
                        e["acc"],
                        e["bacc"],
                        e["n_not_low"],
                        e["acc_not_low"],
                        e["err_flagged"],
                        e["certain_wrong"],
                        e["in_set"],
                    ),
                )
        print(name, f"done in {time.time() - t0:.0f}s", flush=True)
    json.dump(report, open(a.json, "w"), indent=1, default=float)


if __name__ == "__main__":
    main()
