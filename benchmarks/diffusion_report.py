"""Tables of ``bench_diffusion.py report``: protocols and anomaly scores, offline.

Every protocol is replayed on the saved full error matrices with
:func:`~napari_nucleus_ai.models.diffusion.protocol.simulate` (the exact
decisions of the live run), so all rows share the same noise.

Protocol choice is *nested*: for test fold ``f`` the protocol is the cheapest of
the grid whose balanced accuracy on the *other* folds is within ``tolerance``
of the naive protocol on those folds; fold ``f``'s labels play no part in it.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

ANOMALY_TRIALS = 8  # the package default for the unconditional anomaly score
TOP_K = ([], [[2, 4]], [[2, 3]], [[2, 4], [6, 2]], [[2, 3], [6, 2]], [[2, 3], [4, 2]], [[2, 2]])
GRID = [
    {"check_every": ce, "alpha": a, "keep_top": tk, "stable_checks": st}
    for ce, a, tk, st in itertools.product((2, 4), (0.01, 0.05, 0.1), TOP_K, (0, 4))
]


def _name(p):
    top = ",".join(f"{n}:{k}" for n, k in p["keep_top"]) or "-"
    return (
        f"t-test every {p['check_every']}, alpha {p['alpha']}, top-k {top}, "
        f"stable {p['stable_checks'] or '-'}"
    )


def _bacc(y, idx):
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    return float(balanced_accuracy(y, idx))


def _run(data, proto, k, anomaly_trials=0):
    """Per fold: (predicted index, evaluations per cell [+ unconditional anomaly trials])."""
    from napari_nucleus_ai.models.diffusion.classify import decide
    from napari_nucleus_ai.models.diffusion.protocol import simulate, unconditional_mask

    out = []
    for d in data:
        e = d["errors"][:, :, :k]
        ev = simulate(e, {**proto, "max_trials": k})
        n = ev.sum((1, 2)) + unconditional_mask(ev, anomaly_trials).sum(1)
        out.append((decide(e, ev, score=proto["score"])["index"], n))
    return out


def cv_tables(files, score="log", naive_trials=None, tolerance=0.01, t_range=(0.0, 1.0)):
    """Naive curve, the protocol grid and the nested choice per fold, as markdown lines.

    ``t_range`` keeps the trials whose noise level lies in it (fractions of the
    schedule), in their original low-discrepancy order.
    """
    data = [dict(np.load(f)) for f in files]
    for d in data:
        keep = (d["t"] >= t_range[0] * 1000) & (d["t"] < t_range[1] * 1000)
        d["errors"], d["t"] = d["errors"][:, :, keep], d["t"][keep]
    n_min = min(d["errors"].shape[2] for d in data)
    for d in data:
        d["errors"] = d["errors"][:, :, :n_min]
    metas = [json.loads(Path(f).with_suffix(".json").read_text()) for f in files]
    ys = [d["y"] for d in data]
    y = np.concatenate(ys)
    kmax = data[0]["errors"].shape[2]
    c = data[0]["errors"].shape[1]
    k_ref = int(naive_trials or kmax)
    m = metas[0]
    lines = [
        f"PBC, {len(files)}-fold CV, {len(y)} test crops, {m['size']} px, {m['steps']} training "
        f"steps, t in [{t_range[0]}, {t_range[1]}), score {score}",
        "",
        "| naive trials | evaluations / cell | balanced accuracy (pooled) | per fold |",
        "|---|---|---|---|",
    ]
    naive = {}
    for k in sorted({2**i for i in range(12) if 2**i <= kmax} | {kmax, k_ref}):
        res = _run(data, {"alpha": 0.0, "check_every": k, "score": score}, k)
        per = [_bacc(yy, r[0]) for yy, r in zip(ys, res, strict=True)]
        naive[k] = (_bacc(y, np.concatenate([r[0] for r in res])), per)
        lines.append(
            f"| {k} | {c * k} | {naive[k][0]:.3f} | {' / '.join(f'{p:.3f}' for p in per)} |"
        )
    ref_b, ref_per = naive[k_ref] if k_ref in naive else (np.nan, [np.nan] * len(data))
    lines += ["", f"naive reference: {k_ref} trials = {c * k_ref} evaluations per cell", ""]
    lines += [
        "| protocol (max trials = naive) | evaluations / cell | fewer | balanced accuracy |",
        "|---|---|---|---|",
    ]
    table = []
    for p in GRID:
        proto = {**p, "score": score}
        res = _run(data, proto, k_ref)
        ev = float(np.concatenate([r[1] for r in res]).mean())
        table.append((proto, res, ev, _bacc(y, np.concatenate([r[0] for r in res]))))
    for proto, _, ev, b in sorted(table, key=lambda r: r[2]):
        if b >= ref_b - 0.03 or ev < c * 4:
            lines.append(f"| {_name(proto)} | {ev:.1f} | {c * k_ref / ev:.1f}x | {b:.3f} |")
    lines += ["", "Nested choice (protocol picked on the other folds):", ""]
    lines += [
        "| test fold | protocol | evaluations / cell | fewer | balanced accuracy | naive "
        f"| + {ANOMALY_TRIALS} unconditional (anomaly) |",
        "|---|---|---|---|---|---|---|",
    ]
    naive_res = _run(data, {"alpha": 0.0, "score": score, "check_every": k_ref}, k_ref)
    idx_all, ev_all = [], []
    for f in range(len(data)):
        others = [i for i in range(len(data)) if i != f]
        yo = np.concatenate([ys[i] for i in others])
        nb = _bacc(yo, np.concatenate([naive_res[i][0] for i in others]))
        best = None
        for proto, res, _, _ in table:
            b = _bacc(yo, np.concatenate([res[i][0] for i in others]))
            e = float(np.concatenate([res[i][1] for i in others]).mean())
            if b >= nb - tolerance and (best is None or e < best[2]):
                best = (proto, res[f], e)
        proto, r, _ = best
        idx_all.append(r[0])
        ev_all.append(r[1])
        ra = _run([data[f]], proto, k_ref, ANOMALY_TRIALS)[0][1].mean()
        lines.append(
            f"| {f} | {_name(proto)} | {r[1].mean():.1f} | {c * k_ref / r[1].mean():.1f}x | "
            f"{_bacc(ys[f], r[0]):.3f} | {ref_per[f]:.3f} | {ra:.1f} ({c * k_ref / ra:.1f}x) |"
        )
    ev = np.concatenate(ev_all).mean()
    lines.append(
        f"| pooled | | {ev:.1f} | {c * k_ref / ev:.1f}x | {_bacc(y, np.concatenate(idx_all)):.3f} "
        f"| {ref_b:.3f} |"
    )
    for mm in metas:
        if "adaptive_evals_mean" in mm:
            lines.append(
                f"fold {mm['fold']}: train {mm['train_cpu_s']} CPU s; per cell naive "
                f"{mm['naive_cpu_s_per_cell']} CPU s, live adaptive {mm['adaptive_cpu_s_per_cell']} "
                f"CPU s ({mm['adaptive_wall_s_per_cell']} s wall) at {mm['adaptive_evals_mean']:.1f} "
                f"evaluations; load average {mm['load_avg'][0]:.1f}"
            )
    return lines


def anomaly_scores(e, e_train, y_train, t, t_range, n_trials=None):
    """Candidate anomaly scores (higher = more unlike the known classes) for one split.

    ``e`` (N, C + 1, K): errors under the C known classes and unconditionally (last);
    ``e_train`` the same for the training crops. Only trials with ``t`` in
    ``t_range`` (fraction of 1000 steps) are used, the first ``n_trials`` of them.
    """
    m = (t >= t_range[0] * 1000) & (t < t_range[1] * 1000)
    m[np.flatnonzero(m)[n_trials:] if n_trials else []] = False
    lg, lt = np.log(e[:, :, m]), np.log(e_train[:, :, m])
    cls, unc = lg[:, :-1], lg[:, -1]
    win = cls.mean(axis=2).argmin(axis=1)
    lw = cls[np.arange(len(cls)), win]  # (N, K') log error of the winning class
    own_tr = lt[np.arange(len(lt)), y_train]
    min_tr = lt[:, :-1].min(axis=1)
    mu, sd = own_tr.mean(axis=0), own_tr.std(axis=0) + 1e-9
    srt = np.sort(cls.mean(axis=2), axis=1)
    out = {
        "winner vs training median (current)": (lw - np.median(own_tr, axis=0)).mean(axis=1),
        "winner z-score per noise level": ((lw - mu) / sd).mean(axis=1),
        "min over classes, z vs training min": (
            (cls.min(axis=1) - min_tr.mean(axis=0)) / (min_tr.std(axis=0) + 1e-9)
        ).mean(axis=1),
        "winner / unconditional": (lw - unc).mean(axis=1),
        "winner / class average": (lw - cls.mean(axis=1)).mean(axis=1),
        "error gap to runner-up (negated)": -(srt[:, 1] - srt[:, 0]),
    }
    rel_tr = lt[np.arange(len(lt)), y_train] - lt[:, -1]  # training: own class vs unconditional
    rmu, rsd = rel_tr.mean(axis=0), rel_tr.std(axis=0) + 1e-9
    out["winner / unconditional, z per noise level"] = (((lw - unc) - rmu) / rsd).mean(axis=1)
    return out


def loco_tables(files, t_range, n_trials=None):
    """AUROC of every candidate anomaly score and of the CNN's entropy, per held-out class."""
    from napari_nucleus_ai.models.uncertainty import auroc

    rows, names = [], None
    for f in files:
        d = np.load(f)
        meta = json.loads(Path(f).with_suffix(".json").read_text())
        sc = anomaly_scores(d["errors"], d["train_errors"], d["train_y"], d["t"], t_range, n_trials)
        sc["CNN softmax entropy"] = d["cnn_entropy"]
        names = list(sc)
        rows.append((meta["held_out"], [float(auroc(v, d["unknown"])) for v in sc.values()]))
    lines = [
        f"Leave one class out, t in [{t_range[0]}, {t_range[1]}), first {n_trials or 'all'} "
        "trials; AUROC of held-out vs known",
        "",
        "| score | " + " | ".join(r[0] for r in rows) + " | mean |",
        "|---" * (len(rows) + 2) + "|",
    ]
    a = np.array([r[1] for r in rows])
    for j, n in enumerate(names):
        lines.append(
            f"| {n} | " + " | ".join(f"{v:.3f}" for v in a[:, j]) + f" | {a[:, j].mean():.3f} |"
        )
    return lines
