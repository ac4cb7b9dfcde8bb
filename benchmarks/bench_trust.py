"""Trust figures of the default white-cell model: conformal sets, the domain-shift alarm, and
how it behaves on white cells from another microscope (docs/trust.md, docs/performance.md).

Sections (``--only pbc loco bccd``), each training the model ``train`` makes (``morph`` with
the ImageNet features where the ``[pretrained]`` extra is installed) on real PBC crops:

``pbc``
    k-fold CV on the 96 PBC crops: balanced accuracy, coverage and size of the conformal
    sets on the held-out fold, the fraction of held-out (in-domain) crops the alarm flags,
    and "certain and wrong" (not unidentified, a one-class set, wrong).
``loco``
    Leave one class out: train on 3/4 of the other seven classes' crops, score the
    left-out class against the other classes' held-out quarter; AUROC of the ``ood``
    score (and of the entropy, for comparison), mean over the eight classes.
``bccd``
    Train on all 96 crops; predict the BCCD white cells (another microscope: boxes of the
    VOC annotations and ``wbc_extra.csv``, cut square with a 15 % margin): class mix,
    fraction flagged out of domain, and accuracy / certain-and-wrong on the cells labelled
    by eye in ``benchmarks/bccd_labels_by_eye.csv``.

Run: ``.venv/bin/python benchmarks/bench_trust.py --data ../shared/data [--only pbc]``;
results are printed and written to ``benchmarks/results/bench_trust.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def _train(ts, seed: int = 0, threads: int = 1):
    from napari_nucleus_ai.classify.train import train

    return train(ts, None, arch="auto", seed=seed, threads=threads).package


def _predict(package, items) -> dict:
    from napari_nucleus_ai.classify.predict import predict_items

    pred = predict_items(package, items)
    out = {
        "pred": np.asarray(pred.index),
        "labels": pred.labels,
        "entropy": np.asarray(pred.entropy),
        "ood": np.asarray(pred.extra.get("ood", np.full(len(items), np.nan))),
        "flag": np.asarray(pred.extra.get("out_of_domain", np.zeros(len(items), bool))),
        "set_size": np.asarray(pred.extra.get("set_size", np.ones(len(items), int))),
        "set": pred.extra.get("set", [""] * len(items)),
        "classes": list(pred.classes),
    }
    return out


def _certain_wrong(p: dict, truth: np.ndarray) -> float:
    certain = (np.asarray(p["labels"]) != "unidentified") & (p["set_size"] <= 1)
    return float(np.mean(certain & (p["pred"] != truth)))


def pbc(ts, folds: int, seed: int) -> dict:
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    rng = np.random.default_rng(seed)
    fold = np.empty(len(ts.labels), int)
    for c in np.unique(ts.labels):
        idx = rng.permutation(np.flatnonzero(ts.labels == c))
        fold[idx] = np.arange(len(idx)) % folds
    rows = []
    for k in range(folds):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        package = _train(ts.subset(tr), seed)
        p = _predict(package, [ts.samples[i] for i in te])
        y = ts.labels[te]
        covered = [ts.classes[t] in s.split("|") for s, t in zip(p["set"], y, strict=True)]
        rows.append(
            {
                "balanced_accuracy": balanced_accuracy(y, p["pred"]),
                "coverage": float(np.mean(covered)),
                "set_size": float(np.mean(p["set_size"])),
                "flagged_in_domain": float(np.mean(p["flag"])),
                "certain_and_wrong": _certain_wrong(p, y),
            }
        )
        print(f"  fold {k}: {rows[-1]}", flush=True)
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]} | {"folds": rows}


def loco(ts, seed: int) -> dict:
    from napari_nucleus_ai.models.uncertainty import auroc

    rng = np.random.default_rng(seed)
    out = {}
    for c, name in enumerate(ts.classes):
        keep = np.flatnonzero(ts.labels != c)
        held = np.concatenate(
            [rng.permutation(np.flatnonzero(ts.labels == k))[:3] for k in np.unique(ts.labels)]
        )
        held = held[ts.labels[held] != c]
        tr = np.setdiff1d(keep, held)
        sub = ts.subset(tr)
        classes = [k for k in ts.classes if k != name]
        sub.labels = np.array([classes.index(ts.classes[i]) for i in ts.labels[tr]])
        sub.classes = classes
        package = _train(sub, seed)
        unseen = np.flatnonzero(ts.labels == c)
        items = [ts.samples[i] for i in np.concatenate([held, unseen])]
        p = _predict(package, items)
        positive = np.r_[np.zeros(len(held), bool), np.ones(len(unseen), bool)]
        out[name] = {"ood": auroc(p["ood"], positive), "entropy": auroc(p["entropy"], positive)}
        print(f"  {name}: {out[name]}", flush=True)
    mean = {k: float(np.nanmean([v[k] for v in out.values()])) for k in ("ood", "entropy")}
    return {"mean": mean, "per_class": out}


def _bccd_cells(root: Path, margin: float = 0.15):
    from PIL import Image

    boxes = []
    for xml in sorted((root / "Annotations").glob("*.xml")):
        t = ET.parse(xml).getroot()
        name = Path(t.findtext("filename")).stem
        for o in t.iter("object"):
            if o.findtext("name") == "WBC":
                b = o.find("bndbox")
                boxes.append(
                    (
                        name,
                        tuple(int(float(b.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax")),
                    )
                )
    with open(root / "wbc_extra.csv") as fh:
        for r in csv.DictReader(fh):
            if r["kind"] == "wbc":
                boxes.append(
                    (r["image"], tuple(int(float(r[k])) for k in ("xmin", "ymin", "xmax", "ymax")))
                )
    cells, ids, cache = [], [], {}
    for name, (x0, y0, x1, y1) in boxes:
        if name not in cache:
            cache[name] = np.asarray(Image.open(root / "JPEGImages" / f"{name}.jpg").convert("RGB"))
        im = cache[name]
        if min(x1 - x0, y1 - y0) < 40 or x0 <= 2 or y0 <= 2:
            continue
        if x1 >= im.shape[1] - 2 or y1 >= im.shape[0] - 2:
            continue  # cut by the border: half a cell
        h = int(round(max(x1 - x0, y1 - y0) * (1 + 2 * margin) / 2))
        cy, cx = int(round((y0 + y1) / 2)), int(round((x0 + x1) / 2))
        pad = np.pad(im, ((h + 2, h + 2), (h + 2, h + 2), (0, 0)), mode="reflect")
        cells.append(pad[cy + 2 : cy + 2 * h + 2, cx + 2 : cx + 2 * h + 2])
        ids.append(f"{name}.jpg:{x0},{y0},{x1},{y1}")
    return cells, ids


def bccd(ts, data: Path, seed: int) -> dict:
    cells, ids = _bccd_cells(data / "smear" / "bccd")
    package = _train(ts, seed)
    p = _predict(package, cells)
    names = [p["classes"][i] for i in p["pred"]]
    mix = {c: int(n) for c, n in zip(*np.unique(names, return_counts=True), strict=True)}
    out = {
        "cells": len(cells),
        "predicted_mix": mix,
        "flagged_out_of_domain": float(np.mean(p["flag"])),
        "unidentified": float(np.mean(np.asarray(p["labels"]) == "unidentified")),
    }
    by_eye = {}
    with open(HERE / "bccd_labels_by_eye.csv") as fh:
        for r in csv.DictReader(fh):
            by_eye[f"{r['image']}:{r['box']}"] = r["label"]
    idx = [i for i, k in enumerate(ids) if k in by_eye]
    if idx:
        truth = np.array([p["classes"].index(by_eye[ids[i]]) for i in idx])
        sub = {
            k: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx])
            for k, v in p.items()
            if k != "classes"
        }
        from napari_nucleus_ai.models.uncertainty import balanced_accuracy

        out["by_eye"] = {
            "cells": len(idx),
            "balanced_accuracy": balanced_accuracy(truth, sub["pred"]),
            "accuracy": float(np.mean(truth == sub["pred"])),
            "certain_and_wrong": _certain_wrong(sub, truth),
            "flagged": float(np.mean(sub["flag"])),
        }
    print(f"  {out}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--only", nargs="*", default=["pbc", "loco", "bccd"])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_trust.json"))
    args = ap.parse_args()
    import torch

    from napari_nucleus_ai.classify.trainset import load_class_folders

    torch.set_num_threads(1)
    data = Path(args.data)
    ts = load_class_folders(data / "smear" / "pbc")
    results = {}
    for section in args.only:
        t0 = time.perf_counter()
        print(f"{section}:", flush=True)
        if section == "pbc":
            results["pbc"] = pbc(ts, args.folds, args.seed)
        elif section == "loco":
            results["loco"] = loco(ts, args.seed)
        elif section == "bccd":
            results["bccd"] = bccd(ts, data, args.seed)
        results.setdefault("seconds", {})[section] = round(time.perf_counter() - t0, 1)
    old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    Path(args.out).write_text(json.dumps({**old, **results}, indent=2, default=float))
    print(json.dumps({k: v for k, v in results.items() if k != "pbc"}, indent=2, default=float))


if __name__ == "__main__":
    main()
