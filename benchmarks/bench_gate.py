"""Benchmark: a gated pair of ``morph`` recipes - the ``field`` model where its domain score
says a cell is in its training domain, the ``frame_twopoint_micro3`` model where it is not.

Both models are the ones of ``bench_transfer.py`` (its cached features, its closed-form
heads :func:`bench_transfer.fit_predict`, its split and shift). Each model gets the
product's domain-shift score (:func:`napari_nucleus_ai.models.trust.fit_domain` on its
descriptor + ImageNet features, ``descriptor`` = the descriptor's columns) fitted as
training fits it: the reference is a stratified 80 % of the training cells
(:func:`napari_nucleus_ai.classify.trainset.stratified_split`, seed 0), calibrated on the
other 20 % with the probabilities of heads fitted on the 80 %. The classifying heads are
fitted on all training cells (so the ungated rows are ``bench_transfer.py``'s figures).
Everything is fitted inside the training fold only.

A gate turns the field model's score ``s`` into the frame model's weight ``w`` and the pair
predicts ``(1 - w) p_field + w p_frame``:

* ``hard_qXX``: ``w = s > q`` with ``q`` the ``XX``-th percentile of the calibration cells'
  scores (``hard_q95`` is the card's own threshold);
* ``sigmoid_tauT``: ``w = 1 / (1 + exp(-(s - threshold) / T))``;
* ``ramp_q50_q95``: ``w`` rises linearly from 0 at the calibration median to 1 at the
  threshold; ``ramp_q95_up``: from 0 at the threshold to 1 one such span above it;
* ``field``, ``frame``, ``blend_0.5``: the fixed references.

The rule is chosen on PBC only, before any BCCD figure is computed (:func:`choose`): among
the rules whose PBC 4-fold CV balanced accuracy is at most one held-out cell's worth
(0.011) below the ``field`` model's, the one with the best harsh-shift accuracy (ties: the
higher PBC CV, then the earlier rule in :data:`RULES`).

With ``--moderate`` the held-out PBC crops are also scored under a milder simulated shift
(:func:`moderate_shift`), a check of partial routing that does not take part in the choice.

For every setting (PBC CV, harsh shift, BCCD zero-shot, BCCD + 5 cells per class over
seeds) and rule: balanced accuracy, the share routed to the frame model (``w >= 0.5``), and
the alarm: of the cells that stay wrong, the share the frame model's own score flags
(``wrong_flagged_frame``), and the share the pair's alarm flags (``wrong_flagged_pair``:
the score of the model with the larger weight), with the overall flag rates and the share
of all cells that are wrong and not flagged by the frame score.

Run::

    PYTHONPATH=benchmarks OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python \\
        benchmarks/bench_gate.py --moderate

``--fallback RECIPE`` pairs the ``field`` model with another frame recipe of
``bench_transfer.py`` (e.g. ``frame_rbc_twopoint_micro3``, the red cells as the ruler).
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
    fit_predict,
    pbc_folds,
    train_rows,
)

PAIR = ("field", "frame_twopoint_micro3")
CAL_FRACTION = 0.2
#: One held-out PBC cell's worth of balanced accuracy (8 classes of 12 cells) and a margin.
PBC_TOLERANCE = 0.011


def _hard(q):
    def rule(s, g):
        return (s > np.quantile(g["cal"], q)).astype(float)

    return rule


def _sigmoid(tau):
    def rule(s, g):
        return 1.0 / (1.0 + np.exp(-(s - g["threshold"]) / tau))

    return rule


def _ramp(lo_q, up):
    def rule(s, g):
        med = float(np.median(g["cal"]))
        span = max(g["threshold"] - med, 1e-6)
        lo = g["threshold"] if up else float(np.quantile(g["cal"], lo_q))
        return np.clip((s - lo) / span, 0.0, 1.0)

    return rule


RULES = {
    "field": lambda s, g: np.zeros_like(s),
    "frame": lambda s, g: np.ones_like(s),
    "blend_0.5": lambda s, g: np.full_like(s, 0.5),
    "hard_q95": _hard(0.95),
    "hard_q90": _hard(0.90),
    "hard_q80": _hard(0.80),
    "hard_q50": _hard(0.50),
    "hard_q99": _hard(0.99),
    "sigmoid_tau1": _sigmoid(1.0),
    "sigmoid_tau2": _sigmoid(2.0),
    "sigmoid_tau4": _sigmoid(4.0),
    "ramp_q50_q95": _ramp(0.5, False),
    "ramp_q95_up": _ramp(0.5, True),
}


# ----------------------------------------------------------------------------- members
def member(F, y, train, tests, n_cls, extra=None):
    """One model of the pair fitted on PBC cells ``train`` (and ``extra`` target cells).

    Parameters
    ----------
    F : dict
        A recipe's cached features (``bench_transfer.extract``).
    y : array
        PBC labels.
    train : int array
        PBC training cells.
    tests : list of arrays
        Features to predict.
    n_cls : int
    extra : tuple or None
        ``(features, labels, repeat)`` of target cells learnt besides PBC (few-shot).

    Returns
    -------
    dict
        ``probs`` and ``scores`` (one per test array), ``threshold``, ``cal`` (the
        calibration cells' scores).
    """
    from napari_nucleus_ai.classify.trainset import stratified_split
    from napari_nucleus_ai.models.nets.morphology import N_FEATURES
    from napari_nucleus_ai.models.trust import domain_scores, fit_domain

    def rows(idx, ex):
        f, yy, g = train_rows(F, idx, y)
        if ex is not None and len(ex[1]):
            fx, yx, rep = ex
            ci = np.repeat(np.arange(len(yx)), rep)
            f = np.concatenate([f, fx[ci]])
            yy = np.concatenate([yy, yx[ci]])
            g = np.concatenate([g, len(y) + ci])
        return f, yy, g

    probs = fit_predict(*rows(train, extra), tests, n_cls)
    kept, held = stratified_split(y[train], CAL_FRACTION, 0)
    ref, cal = train[kept], train[held]
    f_ref, y_ref = F["clean"][ref], y[ref]
    f_cal, ex_ref = F["clean"][cal], None
    if extra is not None:
        fx, yx, _ = extra
        kx, hx = stratified_split(yx, CAL_FRACTION, 0)
        rep = max(1, round(len(ref) / max(len(kx), 1)))
        ex_ref = (fx[kx], yx[kx], rep)
        f_ref = np.concatenate([f_ref, fx[kx]])
        y_ref = np.concatenate([y_ref, yx[kx]])
        f_cal = np.concatenate([f_cal, fx[hx]])
    (p_cal,) = fit_predict(*rows(ref, ex_ref), [f_cal], n_cls)
    dom = fit_domain(f_ref, y_ref, f_cal, p_cal, descriptor=N_FEATURES, seed=0)
    scores = [domain_scores(f, p, dom) for f, p in zip(tests, probs, strict=True)]
    return {
        "probs": probs,
        "scores": scores,
        "threshold": float(dom["threshold"]),
        "cal": domain_scores(f_cal, p_cal, dom),
    }


# ----------------------------------------------------------------------------- gating
def gate_parts(a: dict, b: dict, i: int) -> dict:
    """The pieces a rule and the alarm need for test array ``i`` (``a`` field, ``b`` frame)."""
    return {
        "s": a["scores"][i],
        "g": {"threshold": a["threshold"], "cal": a["cal"]},
        "pa": a["probs"][i],
        "pb": b["probs"][i],
        "flag_a": a["scores"][i] > a["threshold"],
        "flag_b": b["scores"][i] > b["threshold"],
    }


def apply_rules(parts: list[dict]) -> dict:
    """Per rule: predictions, weights and flags concatenated over ``parts``."""
    out = {}
    for name, rule in RULES.items():
        pred, w, fa, fb = [], [], [], []
        for p in parts:
            wi = rule(p["s"], p["g"])
            pred.append(((1 - wi)[:, None] * p["pa"] + wi[:, None] * p["pb"]).argmax(1))
            w.append(wi)
            fa.append(p["flag_a"])
            fb.append(p["flag_b"])
        out[name] = {k: np.concatenate(v) for k, v in zip("pwab", (pred, w, fa, fb), strict=True)}
    return out


def summarise(r: dict, y: np.ndarray, classes=None) -> dict:
    """Balanced accuracy, routed share and the alarm figures of one rule's predictions."""
    wrong = r["p"] != y
    routed = r["w"] >= 0.5
    pair_flag = np.where(routed, r["b"], r["a"])
    nw = max(int(wrong.sum()), 1)
    return {
        "bacc": bacc(y, r["p"], classes),
        "routed": float(routed.mean()),
        "mean_weight": float(r["w"].mean()),
        "n_wrong": int(wrong.sum()),
        "wrong_flagged_frame": float((wrong & r["b"]).sum() / nw),
        "wrong_flagged_pair": float((wrong & pair_flag).sum() / nw),
        "flagged_frame": float(r["b"].mean()),
        "flagged_pair": float(pair_flag.mean()),
        "wrong_unflagged_frame": float((wrong & ~r["b"]).mean()),
    }


#: A milder "other microscope" than :data:`bench_transfer.HARSH`, through the same steps.
MODERATE = {
    "haem": (0.7, 0.95),
    "eosin": (0.9, 1.2),
    "box": (1.6, 2.2),
    "pixel": (1.0, 1.3),
    "defocus": (0.0, 0.015),
    "balance": (0.94, 1.06),
    "jpeg": (70, 96),
}


def moderate_shift(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """:func:`bench_transfer.harsh_shift` with the :data:`MODERATE` ranges."""
    from bench_transfer import harsh_shift

    return harsh_shift(rgb, rng, MODERATE)


def moderate_features(name: str, pbc, cache: Path) -> np.ndarray:
    """Features of recipe ``name`` on the moderately shifted PBC crops (cached; the same
    shifted crops for every recipe)."""
    path = cache / f"{name}_moderate.npz"
    if path.exists():
        return np.load(path)["shift"]
    from bench_transfer import RECIPES, Features, Inputs

    kind, norm, _, _ = RECIPES[name]
    make, feat = Inputs(kind, norm, pbc), Features()
    rng = np.random.default_rng(321)
    out = feat([make(moderate_shift(c, rng)) for c in pbc])
    np.savez(path, shift=out)
    return out


def pbc_stage(Fa, Fb, y, n_cls) -> dict:
    """PBC 4-fold CV of every rule: clean held-out crops, and the same crops harsh-shifted
    (and moderately shifted where ``F`` has ``moderate``)."""
    sets = {"pbc_cv": "clean", "pbc_harsh_shift": "shift", "pbc_moderate_shift": "moderate"}
    sets = {k: v for k, v in sets.items() if v in Fa and v in Fb}
    fold = pbc_folds(y)
    parts, ys = {k: [] for k in sets}, []
    for k in range(4):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)

        def tests(F, te=te):
            return [F[v][0][te] if v == "shift" else F[v][te] for v in sets.values()]

        a = member(Fa, y, tr, tests(Fa), n_cls)
        b = member(Fb, y, tr, tests(Fb), n_cls)
        for i, key in enumerate(sets):
            parts[key].append(gate_parts(a, b, i))
        ys.append(y[te])
    yt = np.concatenate(ys)
    ruled = {key: apply_rules(p) for key, p in parts.items()}
    return {n: {key: summarise(ruled[key][n], yt) for key in sets} for n in RULES}


def choose(pbc: dict) -> str:
    """The rule fixed before BCCD: PBC CV within :data:`PBC_TOLERANCE` of ``field``'s, then
    the best harsh shift, then the best PBC CV, then the order of :data:`RULES`."""
    floor = pbc["field"]["pbc_cv"]["bacc"] - PBC_TOLERANCE
    ok = [n for n in RULES if pbc[n]["pbc_cv"]["bacc"] >= floor]
    return max(
        ok,
        key=lambda n: (
            round(pbc[n]["pbc_harsh_shift"]["bacc"], 9),
            round(pbc[n]["pbc_cv"]["bacc"], 9),
            -list(RULES).index(n),
        ),
    )


def bccd_stage(Fa, Fb, y, by, classes, seeds) -> dict:
    """BCCD zero-shot and with 5 cells per class learnt (the masks of
    ``bench_transfer.evaluate``) of every rule."""
    n_cls = len(classes)
    counted = [list(classes).index(c) for c in COUNTED]
    allpbc = np.arange(len(y))
    a = member(Fa, y, allpbc, [Fa["bccd"]], n_cls)
    b = member(Fb, y, allpbc, [Fb["bccd"]], n_cls)
    r0 = apply_rules([gate_parts(a, b, 0)])
    out = {n: {"bccd_zero_shot": summarise(r0[n], by, counted), "bccd_fewshot": []} for n in RULES}
    for seed in seeds:
        mask = fewshot_mask(by, seed)
        rep = max(1, round(len(y) / mask.sum()))
        te = ~mask
        a = member(Fa, y, allpbc, [Fa["bccd"][te]], n_cls, (Fa["bccd"][mask], by[mask], rep))
        b = member(Fb, y, allpbc, [Fb["bccd"][te]], n_cls, (Fb["bccd"][mask], by[mask], rep))
        rf = apply_rules([gate_parts(a, b, 0)])
        for n in RULES:
            s = summarise(rf[n], by[te], counted)
            s["seed"] = seed
            out[n]["bccd_fewshot"].append(s)
    for n in RULES:
        few = out[n]["bccd_fewshot"]
        out[n]["bccd_fewshot_mean"] = {
            k: float(np.mean([f[k] for f in few]))
            for k in ("bacc", "routed", "wrong_flagged_frame", "wrong_flagged_pair")
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default="/tmp/bench_transfer")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--moderate",
        action="store_true",
        help="also a milder simulated shift of the PBC held-out crops (not used to choose)",
    )
    ap.add_argument("--out", default=str(HERE / "results" / "bench_gate.json"))
    ap.add_argument(
        "--fallback",
        default=PAIR[1],
        help=f"the frame model's recipe (a name of bench_transfer.RECIPES; default {PAIR[1]})",
    )
    args = ap.parse_args(argv)
    pair = (PAIR[0], args.fallback)
    from bench_transfer import load_bccd_by_eye
    from trust_prototype.data import CLASSES, load_pbc

    t0 = time.perf_counter()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    pbc, y, _ = load_pbc()
    bccd, bccd_names = load_bccd_by_eye()
    by = np.array([list(CLASSES).index(c) for c in bccd_names])
    Fa, Fb = ({**extract(name, pbc, y, bccd, cache)} for name in pair)
    if args.moderate:
        Fa["moderate"], Fb["moderate"] = (moderate_features(n, pbc, cache) for n in pair)
    seeds = tuple(int(s) for s in args.seeds.split(","))

    pbc_res = pbc_stage(Fa, Fb, y, len(CLASSES))
    chosen = choose(pbc_res)
    print("chosen on PBC:", chosen, flush=True)
    for n in RULES:
        line = " | ".join(
            f"{k} {v['bacc']:.3f} routed {v['routed']:.2f}" for k, v in pbc_res[n].items()
        )
        print(f"{n:14s} {line}", flush=True)
    bccd_res = bccd_stage(Fa, Fb, y, by, CLASSES, seeds)
    rules = {n: {**pbc_res[n], **bccd_res[n]} for n in RULES}
    for n in RULES:
        z, f = rules[n]["bccd_zero_shot"], rules[n]["bccd_fewshot_mean"]
        print(
            f"{n:14s} BCCD 0-shot {z['bacc']:.3f} routed {z['routed']:.2f} "
            f"wrong flagged {z['wrong_flagged_frame']:.2f} | 5/class {f['bacc']:.3f} "
            f"routed {f['routed']:.2f} wrong flagged {f['wrong_flagged_frame']:.2f}",
            flush=True,
        )
    out = {
        "pair": list(pair),
        "chosen": chosen,
        "choice": f"PBC CV >= field - {PBC_TOLERANCE}, then best harsh shift (fixed before BCCD)",
        "rules": rules,
        "seeds": list(seeds),
        "command": "PYTHONPATH=benchmarks OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python "
        "benchmarks/bench_gate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seconds": time.perf_counter() - t0,
        "load": os.getloadavg()[0],
    }
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
