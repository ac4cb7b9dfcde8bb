"""The fallback recipe's frozen backbone with other input statistics: grey input, or its
batch-norm statistics re-estimated on each batch (AdaBN, Li et al. 2016).

The fallback's inputs (the canonical frame, two-point stain normalisation, 3 "other
microscope" copies of every training crop: ``bench_transfer.py``'s ``frame_twopoint_micro3``)
are made once and cached (``--cache``/inputs.npz). For each variant, the features
(descriptor + EfficientNet-Lite0, one view) go through ``bench_transfer.fit_predict`` (the
product's closed-form heads), scored as ``bench_transfer.evaluate`` scores (:func:`pbc_cv`, :func:`bccd`):

* PBC 4-fold CV (split seed 0) on clean held-out crops, under ``harsh_shift`` and under
  ``shifts.another_microscope``;
* BCCD zero-shot (all 96 PBC crops) and with 5 by-eye labelled cells per class (split seeds
  0-2), balanced accuracy over the four counted classes; also on the cells labelled with high
  confidence (3 classes: no monocyte is) and with high or medium confidence.

Variants (``--variants``):

* ``imagenet``: the product (ImageNet batch-norm statistics);
* ``grey``: the backbone sees the luminance (descriptor unchanged);
* ``taps:4-7-10``: the pooled output of those blocks beside the product's features (one
  ImageNet head on all of them);
* ``adabn:K``: the batch-norm statistics of the stem and the first ``K`` blocks (``all``:
  every one) re-estimated on the clean PBC inputs for training, and on each test batch
  (a held-out fold under one shift, the BCCD cells) for it;
* ``adabn_all:K``: the same, the training statistics from the clean inputs and their copies.

Run::

    PYTHONPATH=benchmarks .venv/bin/python -m trust_prototype.backbone_stats \\
        --variants imagenet,adabn:all,adabn:4,adabn:8,adabn_all:all,grey
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parents[1]


def build_inputs(cache: Path) -> dict:
    """Model inputs of the fallback recipe (cached): PBC clean, 3 copies, harsh-shifted,
    another microscope; BCCD by-eye cells; labels."""
    path = cache / "inputs.npz"
    if path.exists():
        return dict(np.load(path))
    from bench_transfer import Inputs, harsh_shift, load_bccd_by_eye, microscope_augment

    from trust_prototype import shifts
    from trust_prototype.data import CLASSES, load_pbc

    pbc, y, _ = load_pbc()
    bccd, by = load_bccd_by_eye()
    make = Inputs("frame", "two_point", pbc)
    rng = np.random.default_rng(0)  # the same copies as bench_transfer's
    out = {"y": y, "by": np.array([list(CLASSES).index(c) for c in by])}
    out["clean"] = np.stack([make(c) for c in pbc])
    out["aug"] = np.stack(
        [np.stack([make(microscope_augment(c, rng)) for c in pbc]) for _ in range(3)]
    )
    srng = np.random.default_rng(123)
    out["harsh"] = np.stack([make(harsh_shift(c, srng)) for c in pbc])
    out["another"] = np.stack([make(shifts.another_microscope(c)) for c in pbc])
    out["bccd"] = np.stack([make(c) for c in bccd])
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def confidence() -> np.ndarray:
    """The by-eye labels' confidence, in ``bccd_labels_by_eye.csv``'s order."""
    with open(HERE / "bccd_labels_by_eye.csv") as fh:
        return np.array([r["confidence"] for r in csv.DictReader(fh)])


def _bn_layers(net, upto):
    mods = [net._bn0]
    for i, b in enumerate(net._blocks):
        if upto is not None and i >= upto:
            break
        mods += [getattr(b, n) for n in ("_bn0", "_bn1", "_bn2") if hasattr(b, n)]
    if upto is None:
        mods.append(net._bn1)
    return mods


def _tensor(imgs):
    import torch

    return torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)))


def reestimated(net, imgs, upto):
    """A copy of ``net`` whose batch-norm statistics (stem and the first ``upto`` blocks)
    are the averages over ``imgs``."""
    import torch

    from napari_nucleus_ai.models.nets.imagenet import features, inference_copy

    n = copy.deepcopy(net)
    mods = _bn_layers(n, upto)
    for m in mods:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    n.eval()
    for m in mods:
        m.train()
    with torch.no_grad():
        for b in _tensor(imgs).split(64):
            features(n, b, 1 / 1.4)
    return inference_copy(n.eval())


def imagenet_features(net, imgs, taps=()) -> np.ndarray:
    """Pooled features of ``net`` (as the product computes them), followed by the spatial
    mean of the output of each block in ``taps``."""
    import torch

    from napari_nucleus_ai.models.nets.imagenet import features

    pooled = []
    hooks = [
        net._blocks[j].register_forward_hook(lambda m, i, o: pooled.append(o.mean((2, 3))))
        for j in taps
    ]
    out = []
    try:
        with torch.inference_mode():
            for b in _tensor(imgs).split(32):
                pooled.clear()
                out.append(torch.cat([features(net, b, 1 / 1.4), *pooled], 1).numpy())
    finally:
        for h in hooks:
            h.remove()
    return np.concatenate(out)


def pbc_cv(fold_features, y) -> dict:
    """PBC 4-fold CV (split seed 0) on clean held-out crops and under both shifts;
    ``fold_features(k)`` gives the feature set for fold ``k`` (``clean``, ``aug``,
    ``harsh``, ``another``)."""
    from bench_transfer import bacc, fit_predict, pbc_folds, train_rows

    from trust_prototype.data import CLASSES

    fold = pbc_folds(y)
    yt, pc, ph, pa = [], [], [], []
    for k in range(4):
        F = fold_features(k)
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        f, yy, g = train_rows(F, tr, y)
        tests = [F["clean"][te], F["harsh"][te], F["another"][te]]
        p = fit_predict(f, yy, g, tests, len(CLASSES))
        yt.append(y[te])
        for out, q in zip((pc, ph, pa), p, strict=True):
            out.append(q.argmax(1))
    yt = np.concatenate(yt)
    return {
        "pbc_cv": bacc(yt, np.concatenate(pc)),
        "harsh": bacc(yt, np.concatenate(ph)),
        "another": bacc(yt, np.concatenate(pa)),
    }


def bccd(F: dict, y, by, conf) -> dict:
    """BCCD zero-shot (heads on all 96 PBC crops) and with 5 by-eye cells per class (split
    seeds 0-2), on all counted cells and by the labels' confidence."""
    from bench_transfer import COUNTED, bacc, fewshot_mask, fit_predict, train_rows

    from trust_prototype.data import CLASSES

    n_cls = len(CLASSES)
    counted = [list(CLASSES).index(c) for c in COUNTED]
    levels = {"high": ("high",), "high_medium": ("high", "medium")}
    f, yy, g = train_rows(F, np.arange(len(y)), y)
    (pb,) = fit_predict(f, yy, g, [F["bccd"]], n_cls)
    r = {"bccd_zero_shot": bacc(by, pb.argmax(1), counted)}
    for name, lv in levels.items():
        sel = np.isin(conf, lv)
        r[f"bccd_zero_shot_{name}"] = bacc(by[sel], pb.argmax(1)[sel], counted)
    few = {"all": [], "high": [], "high_medium": []}
    for seed in (0, 1, 2):
        mask = fewshot_mask(by, seed)
        ci = np.repeat(np.flatnonzero(mask), max(1, round(len(y) / mask.sum())))
        (pf,) = fit_predict(
            np.concatenate([f, F["bccd"][ci]]),
            np.concatenate([yy, by[ci]]),
            np.concatenate([g, len(y) + ci]),
            [F["bccd"][~mask]],
            n_cls,
        )
        am, bt = pf.argmax(1), by[~mask]
        few["all"].append(bacc(bt, am, counted))
        for name, lv in levels.items():
            sel = np.isin(conf[~mask], lv)
            few[name].append(bacc(bt[sel], am[sel], counted))
    r["bccd_fewshot"] = few
    r["bccd_fewshot_mean"] = {k: float(np.mean(v)) for k, v in few.items()}
    return r


def main(argv=None) -> None:
    import torch

    from napari_nucleus_ai.models.nets.imagenet import (
        build_backbone,
        inference_copy,
        load_imagenet_weights,
    )
    from napari_nucleus_ai.models.nets.morphology import describe_cells

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="imagenet,adabn:all,adabn:4,adabn:8,adabn_all:all,grey")
    ap.add_argument("--cache", default="/tmp/backbone_stats")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "backbone_stats.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    D = build_inputs(Path(args.cache))
    keys = ("clean", "harsh", "another", "bccd")
    desc = {k: describe_cells(D[k]) for k in keys}
    desc["aug"] = np.stack([describe_cells(a) for a in D["aug"]])
    base = build_backbone()
    load_imagenet_weights(base)
    base.eval()
    grey = np.array([0.299, 0.587, 0.114], np.float32)
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for v in args.variants.split(","):
        t = time.perf_counter()
        view = lambda a: a  # noqa: E731
        taps = ()
        if v.startswith("taps:"):  # e.g. taps:4-7-10: those blocks' pooled output too
            taps = tuple(int(j) for j in v.split(":")[1].split("-"))
        if v in ("imagenet", "grey") or taps:
            fixed = inference_copy(base)
            src, tgt = fixed, lambda imgs, fixed=fixed: fixed
            if v == "grey":
                view = lambda a: np.repeat((a * grey).sum(-1, keepdims=True), 3, -1)  # noqa: E731
        else:
            kind, k = v.split(":")
            upto = None if k == "all" else int(k)
            ref = D["clean"] if kind == "adabn" else np.concatenate([D["clean"], *D["aug"]])
            src = reestimated(base, ref, upto)
            tgt = lambda imgs, upto=upto: reestimated(base, imgs, upto)  # noqa: E731
        F = {
            "clean": np.concatenate(
                [desc["clean"], imagenet_features(src, view(D["clean"]), taps)], 1
            ),
            "aug": np.stack(
                [
                    np.concatenate([desc["aug"][i], imagenet_features(src, view(a), taps)], 1)
                    for i, a in enumerate(D["aug"])
                ]
            ),
        }
        fold = None
        for key in ("harsh", "another", "bccd"):
            if key == "bccd" or v in ("imagenet", "grey") or taps:
                f = imagenet_features(tgt(D[key]), view(D[key]), taps)
                F[key] = np.concatenate([desc[key], f], 1)
            else:  # each held-out fold under the shift is one batch
                from bench_transfer import pbc_folds

                fold = pbc_folds(D["y"]) if fold is None else fold
                f = np.zeros((len(D[key]), desc[key].shape[1] + 1280), np.float32)
                for j in range(4):
                    te = fold == j
                    f[te] = np.concatenate(
                        [desc[key][te], imagenet_features(tgt(D[key][te]), view(D[key][te]))], 1
                    )
                F[key] = f
        r = {**pbc_cv(lambda k, F=F: F, D["y"]), **bccd(F, D["y"], D["by"], confidence())}
        r["seconds"] = time.perf_counter() - t
        results[v] = r
        print(v, json.dumps(r), flush=True)
        out_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
