"""Leave one class out through the package ``train`` makes, with and without its fallback.

Research code (not part of the package). ``bench_trust.py --only loco`` scores the package's
``ood``, where a cell the first model routes carries the fallback's score. This script uses
the same split (split seed 0) and prints, per left-out class, the AUROC of the package's
``ood``, of its first model's own ``ood`` (``package.fallback`` removed before predicting),
and the share of held-out known and unseen cells routed.

``--first-params JSON`` / ``--fallback-params JSON`` add architecture parameters to the
first model or to the fallback alone (e.g. ``{"domain_layers": false}`` with
``domain_layers.patch`` applied).

Run (from the repository root)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trust_prototype/loco_routing.py \\
        --classes 0,1,2,3,4,5,6,7
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

PBC = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "smear" / "pbc"


def main(argv=None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench_trust import loco_held

    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.models.uncertainty import auroc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(PBC))
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7")
    ap.add_argument("--first-params", default=None)
    ap.add_argument("--fallback-params", default=None)
    a = ap.parse_args(argv)
    train_mod = importlib.import_module("napari_nucleus_ai.classify.train")
    if a.fallback_params:
        extra = json.loads(a.fallback_params)
        real = train_mod._train_fallback

        def fallback(ts, card, data_desc, o):
            o = replace(o, params={**(o.params or {}), **extra})
            return (yield from real(ts, card, data_desc, o))

        train_mod._train_fallback = fallback
    params = json.loads(a.first_params) if a.first_params else None
    wanted = [int(c) for c in a.classes.split(",")]
    ts = load_class_folders(a.data)
    rng = np.random.default_rng(0)  # bench_trust.loco's split, seed 0
    rows = []
    for c, name in enumerate(ts.classes):
        held = loco_held(ts.labels, c, rng)
        if c not in wanted:
            continue
        tr = np.setdiff1d(np.flatnonzero(ts.labels != c), held)
        sub = ts.subset(tr)
        sub.classes = [k for k in ts.classes if k != name]
        sub.labels = np.array([sub.classes.index(ts.classes[i]) for i in ts.labels[tr]])
        pkg = train_mod.train(sub, None, arch="auto", seed=0, threads=1, params=params).package
        unseen = np.flatnonzero(ts.labels == c)
        items = [ts.samples[i] for i in np.concatenate([held, unseen])]
        pos = np.r_[np.zeros(len(held), bool), np.ones(len(unseen), bool)]
        both = predict_items(pkg, items)
        routed = np.asarray(both.extra.get("routed", np.zeros(len(items), bool)), bool)
        fb, pkg.fallback = pkg.fallback, None
        first = predict_items(pkg, items)
        pkg.fallback = fb
        row = (
            auroc(np.asarray(both.extra["ood"]), pos),
            auroc(np.asarray(first.extra["ood"]), pos),
        )
        rows.append(row)
        print(
            f"{name}: package {row[0]:.3f}, first model alone {row[1]:.3f}; routed: known "
            f"{routed[~pos].mean():.2f}, unseen {routed[pos].mean():.2f}",
            flush=True,
        )
    m = np.mean(rows, 0)
    print(f"mean: package {m[0]:.3f}, first model alone {m[1]:.3f}")


if __name__ == "__main__":
    main()
