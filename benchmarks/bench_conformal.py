"""Benchmark: conformal coverage of the default model's sets on held-out PBC crops.

On cached features of ``bench_transfer.py`` (recipe ``field``: the default model's morphology
descriptor + frozen EfficientNet-Lite0, one view; its summed closed-form logistic heads), for
split seeds 0..S-1 and 4 folds of the 96 PBC crops: the 72 training crops are split 5 ways
(~20 % validation, as ``train`` does), and the sets of the 24 held-out crops are scored with

* ``val`` - the product's calibration (:func:`napari_nucleus_ai.models.trust.fit_conformal`)
  on the validation crops of one split;
* ``val_plain`` - the plain APS score on the same crops (the top class counted as possibly
  missed, although a set always holds it);
* ``oof`` - the product's score on out-of-fold probabilities of all 72 training crops
  (5 models), the sets made by the first split's model.

Each reports coverage, mean set size and the share of held-out crops whose set is one class
and wrong (a confident wrong answer before the domain-shift alarm).

Run::

    PYTHONPATH=benchmarks OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python \\
        benchmarks/bench_conformal.py --cache /tmp/bench_transfer --seeds 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def plain_aps(probs, labels, coverage: float, seed: int) -> dict:
    """APS ``qhat`` with the plain score (no credit for the top class)."""
    from napari_nucleus_ai.models.trust import _aps_scores

    n = len(labels)
    s = _aps_scores(probs, np.random.default_rng(seed).random(n))[np.arange(n), labels]
    return {"qhat": float(np.sort(s)[int(np.ceil((n + 1) * coverage)) - 1])}


def run(F: np.ndarray, y: np.ndarray, n_classes: int, seeds: int, coverage: float) -> dict:
    from bench_transfer import fit_predict, pbc_folds

    from napari_nucleus_ai.models.trust import conformal_sets, coverage_of, fit_conformal

    out = {k: {"coverage": [], "size": [], "one_wrong": []} for k in ("val", "val_plain", "oof")}

    def score(key, conf, p, yt):
        s = conformal_sets(p, conf)
        out[key]["coverage"].append(coverage_of(s, yt))
        out[key]["size"].append(float(np.mean([len(a) for a in s])))
        wrong = [len(a) == 1 and a[0] != t for a, t in zip(s, yt, strict=True)]
        out[key]["one_wrong"].append(float(np.mean(wrong)))  # a set of one, and wrong

    for seed in range(seeds):
        fold = pbc_folds(y, 4, seed)
        for k in range(4):
            tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            inner = pbc_folds(y[tr], 5, seed + 10)
            oof, test_p = np.zeros((len(tr), n_classes)), None
            for j in range(5):
                fit, va = tr[inner != j], tr[inner == j]
                pv, pt = fit_predict(F[fit], y[fit], fit, [F[va], F[te]], n_classes, seed)
                oof[inner == j] = pv
                if j == 0:
                    test_p = pt
                    score("val", fit_conformal(pv, y[va], coverage, seed), pt, y[te])
                    score("val_plain", plain_aps(pv, y[va], coverage, seed), pt, y[te])
            score("oof", fit_conformal(oof, y[tr], coverage, seed), test_p, y[te])
            print(seed, k, {key: round(v["coverage"][-1], 3) for key, v in out.items()}, flush=True)
    return {
        key: {
            "coverage": round(float(np.mean(v["coverage"])), 4),
            "mean_set_size": round(float(np.mean(v["size"])), 3),
            "one_class_and_wrong": round(float(np.mean(v["one_wrong"])), 4),
            "held_out": 24 * len(v["coverage"]),
        }
        for key, v in out.items()
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default="/tmp/bench_transfer", help="bench_transfer.py's cache")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--coverage", type=float, default=0.9)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_conformal.json"))
    a = ap.parse_args(argv)
    from trust_prototype.data import CLASSES, load_pbc

    F = np.load(Path(a.cache) / "field.npz")["clean"]
    _, y, _ = load_pbc()
    res = run(F, np.asarray(y), len(CLASSES), a.seeds, a.coverage)
    res["nominal"] = a.coverage
    print(json.dumps(res, indent=1))
    Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
