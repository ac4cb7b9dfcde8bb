"""Does the diffusion classifier add to ``morph`` on PBC?

Both models see the same stratified 3-fold split of the 96 PBC crops (``folds_of`` with the
same seed as ``bench_diffusion.py cv``). The diffusion side is read from the error matrices
that ``bench_diffusion.py cv --name NAME`` saved (every class at every trial); the ``morph``
side is trained here on each fold's training crops. The combination rule is fixed before
looking at any result: per cell, the diffusion errors (mean over the trials in ``--t-range``)
become z-scores across classes, ``log softmax(-z)`` is added to ``log p_morph``; nothing is
tuned on the test crops.

    nice -n 10 .venv/bin/python benchmarks/bench_diffusion.py cv --fold F --size 32 --steps 3000 \
        --trials 32 --t-lo 0 --t-hi 0.9 --name ens --model-dir /tmp/dmodels     # F = 0, 1, 2
    nice -n 10 .venv/bin/python benchmarks/bench_ensemble.py --cv-name ens [--params '{"cnn": false}']
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_diffusion import OUT, PBC, folds_of  # noqa: E402


def _log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def diffusion_logp(errors, k=None):
    """``log softmax(-z)`` of the per-class mean errors of the first ``k`` trials."""
    e = np.nanmean(errors[:, :, :k], 2)
    z = (e - e.mean(1, keepdims=True)) / (e.std(1, keepdims=True) + 1e-12)
    return _log_softmax(-z)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cv-name", default="ens")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", default="morph")
    ap.add_argument("--params", default="")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trials", type=int, nargs="*", default=[8, 16, 32])
    args = ap.parse_args(argv)

    import torch

    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    torch.set_num_threads(args.threads)
    ts = load_class_folders(PBC)
    fold = folds_of(ts.labels, args.folds, args.seed)
    rows = {"morph": ([], [])}
    for k in args.trials:
        rows[f"diffusion-{k}"] = ([], [])
        rows[f"morph+diffusion-{k}"] = ([], [])
    for f in range(args.folds):
        d = np.load(OUT / f"{args.cv_name}_fold{f}.npz")
        test = ts.subset(np.flatnonzero(fold == f))
        assert np.array_equal(d["y"], test.labels), "fold assignment differs from the diffusion run"
        t0 = time.perf_counter()
        res = train(
            ts.subset(np.flatnonzero(fold != f)),
            None,
            arch=args.arch,
            epochs=args.epochs,
            seed=args.seed,
            threads=args.threads,
            params=json.loads(args.params) if args.params else None,
        )
        lp_m = np.log(np.clip(predict_items(res.package, test.samples).probs, 1e-9, 1))
        y = test.labels
        rows["morph"][0].append(y)
        rows["morph"][1].append(lp_m.argmax(1))
        for k in args.trials:
            lp_d = diffusion_logp(d["errors"], k)
            rows[f"diffusion-{k}"][0].append(y)
            rows[f"diffusion-{k}"][1].append(lp_d.argmax(1))
            rows[f"morph+diffusion-{k}"][0].append(y)
            rows[f"morph+diffusion-{k}"][1].append((lp_m + lp_d).argmax(1))
        print(f"fold {f}: morph trained in {time.perf_counter() - t0:.0f} s", flush=True)
    out = {}
    for name, (ys, ps) in rows.items():
        y, p = np.concatenate(ys), np.concatenate(ps)
        per_fold = [round(balanced_accuracy(a, b), 3) for a, b in zip(ys, ps, strict=True)]
        out[name] = {"balanced_accuracy": round(balanced_accuracy(y, p), 4), "per_fold": per_fold}
        k = len(ts.classes)
        cm = np.zeros((k, k), int)
        np.add.at(cm, (y, p), 1)
        out[name]["recall"] = {
            c: round(float(cm[i, i] / cm[i].sum()), 2) for i, c in enumerate(ts.classes)
        }
    out["params"] = {"arch": args.arch, "params": args.params, "epochs": args.epochs}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
