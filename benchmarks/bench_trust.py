"""Trust figures of the default white-cell model: conformal sets, the domain-shift alarm, and
how it behaves on white cells from another microscope (docs/trust.md, docs/performance.md).

Sections (``--only pbc loco bccd``), each training the model ``train`` makes (``morph`` with
the ImageNet features where the ``[pretrained]`` extra is installed) on real PBC crops:

``pbc``
    k-fold CV on the 96 PBC crops: balanced accuracy, coverage and size of the conformal
    sets on the held-out fold, the fraction of held-out (in-domain) crops the alarm flags,
    and "certain and wrong" (not unidentified, a one-class set, wrong). With ``--shifts``,
    the same folds' held-out crops also go through every simulated shift of
    ``trust_prototype/shifts.py`` (another pixel size, framing, stain, white balance, blur,
    JPEG, "another microscope"): balanced accuracy per shift, and the share of wrong
    predictions that are ``unidentified`` or outside a one-class set ("caught").
``loco``
    Leave one class out: train on 3/4 of the other seven classes' crops, score the
    left-out class against the other classes' held-out quarter; AUROC of the ``ood``
    score (and of the entropy, for comparison), mean over the eight classes.
``bccd``
    Train on all 96 crops; predict the BCCD white cells (another microscope: boxes of the
    VOC annotations and ``wbc_extra.csv``, cut square with a 15 % margin): class mix,
    fraction flagged out of domain, and accuracy / certain-and-wrong on the cells labelled
    by eye in ``benchmarks/bccd_labels_by_eye.csv``.

The model is what ``train`` makes by default (no canonical cell frame); ``--frame on``
trains with it, ``--stain-augment N`` sets its augmented copies (default: ``train``'s, 3).
``--tag NAME`` stores the results under ``NAME`` (several configurations side by side);
``--loso`` prints the leave-one-shift-out choice over the stored tags: for every shift, the
configuration with the best mean balanced accuracy over the *other* shifts, and its score
on the left-out one.

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


TRAIN = {}  # --frame / --stain-augment as train options


def _train(ts, seed: int = 0, threads: int = 1):
    from napari_nucleus_ai.classify.train import train

    return train(ts, None, arch="auto", seed=seed, threads=threads, **TRAIN).package


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


def _shifted(crops) -> dict:
    """Every simulated shift of ``crops`` (``trust_prototype.shifts.SHIFTS``)."""
    import sys

    sys.path.insert(0, str(HERE))
    from trust_prototype.shifts import SHIFTS

    from napari_nucleus_ai.models.crops import to_float

    crops = [np.clip(to_float(c)[..., :3], 0, 1) for c in crops]
    return {name: [f(c) for c in crops] for name, f in SHIFTS.items()}


def _caught(p: dict, truth: np.ndarray) -> float:
    """Share of wrong predictions that are unidentified or outside a one-class set."""
    wrong = p["pred"] != truth
    if not wrong.any():
        return float("nan")
    flagged = (np.asarray(p["labels"]) == "unidentified") | (p["set_size"] != 1)
    return float(np.mean(flagged[wrong]))


def pbc(ts, folds: int, seed: int, shifts: bool = False, max_folds=None, save=None) -> dict:
    """k-fold CV (``max_folds``: stop after that many folds); ``save(partial)`` after each."""
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    rng = np.random.default_rng(seed)
    fold = np.empty(len(ts.labels), int)
    for c in np.unique(ts.labels):
        idx = rng.permutation(np.flatnonzero(ts.labels == c))
        fold[idx] = np.arange(len(idx)) % folds
    rows, per_shift = [], {}
    for k in range(min(folds, max_folds or folds)):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        package = _train(ts.subset(tr), seed)
        p = _predict(package, [ts.samples[i] for i in te])
        y = ts.labels[te]
        if shifts:
            for name, crops in _shifted([ts.samples[i] for i in te]).items():
                q = _predict(package, crops)
                per_shift.setdefault(name, []).append((y, q))
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
        if save is not None:
            save(_pbc_summary(rows, per_shift))
    return _pbc_summary(rows, per_shift)


def _pbc_summary(rows: list, per_shift: dict) -> dict:
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    out = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]} | {"folds": rows}
    if per_shift:
        out["shifts"] = {}
        for name, parts in per_shift.items():
            y = np.concatenate([a for a, _ in parts])
            q = {
                key: np.concatenate([np.asarray(b[key]) for _, b in parts])
                for key in ("pred", "labels", "set_size")
            }
            out["shifts"][name] = {
                "balanced_accuracy": balanced_accuracy(y, q["pred"]),
                "wrong_caught": _caught(q, y),
                "certain_and_wrong": _certain_wrong(q, y),
            }
            print(f"  shift {name}: {out['shifts'][name]}", flush=True)
    return out


def loco_held(labels: np.ndarray, c: int, rng) -> np.ndarray:
    """The held-out known crops when class ``c`` is left out: 3 of every other class. ``rng``
    draws 3 of every class, ``c``'s included and then dropped, so one generator gives
    :func:`loco`'s splits class after class."""
    held = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == k))[:3] for k in np.unique(labels)]
    )
    return held[labels[held] != c]


def loco(ts, seed: int) -> dict:
    from napari_nucleus_ai.models.uncertainty import auroc

    rng = np.random.default_rng(seed)
    out = {}
    for c, name in enumerate(ts.classes):
        keep = np.flatnonzero(ts.labels != c)
        held = loco_held(ts.labels, c, rng)
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
        "platelet_share": mix.get("platelet", 0) / max(len(cells), 1),
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


def _store(args, results: dict) -> None:
    """Merge ``results`` into ``args.out`` (under ``args.tag`` when given)."""
    old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    if args.tag:
        results = {args.tag: {**old.get(args.tag, {}), **results, "train": TRAIN}}
    Path(args.out).write_text(json.dumps({**old, **results}, indent=2, default=float))


def loso(stored: dict) -> dict:
    """Leave one shift out: for every shift, the tag whose mean balanced accuracy over the
    other shifts is best, and that tag's balanced accuracy on the left-out shift."""
    tags = {
        t: v["pbc"]["shifts"]
        for t, v in stored.items()
        if isinstance(v, dict) and "shifts" in v.get("pbc", {})
    }
    if not tags:
        return {}
    names = sorted(next(iter(tags.values())))
    out = {}
    for s in names:
        rest = {
            t: np.mean([sh[n]["balanced_accuracy"] for n in names if n != s])
            for t, sh in tags.items()
        }
        best = max(rest, key=rest.get)
        out[s] = {"chosen": best, "balanced_accuracy": tags[best][s]["balanced_accuracy"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--only", nargs="*", default=["pbc", "loco", "bccd"])
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_trust.json"))
    ap.add_argument("--shifts", action="store_true", help="pbc: also every simulated shift")
    ap.add_argument("--frame", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--stain-augment", type=int, default=None)
    ap.add_argument("--tag", default=None, help="store the results under this name")
    ap.add_argument("--max-folds", type=int, default=None, help="pbc: stop after N folds")
    ap.add_argument("--loso", action="store_true", help="leave-one-shift-out over stored tags")
    args = ap.parse_args()
    if args.loso:
        print(json.dumps(loso(json.loads(Path(args.out).read_text())), indent=2))
        return
    TRAIN["frame"] = {"auto": None, "on": True, "off": False}[args.frame]
    TRAIN["stain_augment"] = args.stain_augment
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
            results["pbc"] = pbc(
                ts,
                args.folds,
                args.seed,
                args.shifts,
                args.max_folds,
                lambda part: _store(args, {"pbc": part}),
            )
        elif section == "loco":
            results["loco"] = loco(ts, args.seed)
        elif section == "bccd":
            results["bccd"] = bccd(ts, data, args.seed)
        results.setdefault("seconds", {})[section] = round(time.perf_counter() - t0, 1)
    _store(args, results)
    print(json.dumps({k: v for k, v in results.items() if k != "pbc"}, indent=2, default=float))


if __name__ == "__main__":
    main()
