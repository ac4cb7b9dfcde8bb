"""Does learning from corrections help? Two benchmarks.

Run::

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_retrain.py microscope [--seeds 3]
    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_retrain.py simulated

``microscope`` (issue 18, a new microscope from a few corrections): every PBC crop
(8 classes x 12) is also seen through a simulated other microscope
(``trust_prototype.shifts.another_microscope``: tight box, 0.6x pixels, paler
haematoxylin, bluish white balance, blur, JPEG). Per class, 5 shifted crops play the
annotator's corrections and the other 7 are the test set (56 cells). Scored there
(balanced accuracy):

* ``pbc only``: the default model (``train pbc``, arch ``morph``);
* ``pbc + 5/class unweighted``: ``train pbc corrections --source-weights 1,1``;
* ``pbc + 5/class weighted``: ``train pbc corrections`` (``--source-weights auto``);
* ``pbc + 5/class x5``: ``--source-weights 1,5``;
* ``retrain``: ``retrain`` of the PBC-only model on the corrections (it holds 1 of the 5
  per class out to score before/after, so it learns from 4), replaying PBC.

Caveat: the test cells' unshifted originals are in the PBC training data (the same
96 cells seen through both microscopes), which favours the PBC-only model.

``simulated``: a base model trained on simulated white-cell crops, fine-tuned on the real
PBC crops of the five classes they share (``retrain`` holds 25 % out per class).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")
PBC = Path(__file__).resolve().parents[2] / "shared/data/smear/pbc"


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def _balanced(package, items, truth) -> float:
    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.models.uncertainty import BALANCED_ACCURACY, accuracy_scores

    pred = predict_items(package, items, device="cpu").predicted
    classes = sorted(set(truth) | set(pred))
    t = np.array([classes.index(c) for c in truth])
    p = np.array([classes.index(c) for c in pred])
    return float(accuracy_scores(t, p)[BALANCED_ACCURACY])


def _shifted(data: Path, out: Path) -> dict:
    """Every crop of ``data`` through the simulated other microscope, as ``out/class/*.png``."""
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent))
    from trust_prototype.shifts import another_microscope

    from napari_nucleus_ai.models.crops import read_crop

    files = {}
    for d in sorted(p for p in data.iterdir() if p.is_dir()):
        (out / d.name).mkdir(parents=True)
        files[d.name] = []
        for f in sorted(d.iterdir()):
            rgb = np.asarray(read_crop(f), np.float32) / 255
            x = (np.clip(another_microscope(rgb), 0, 1) * 255 + 0.5).astype(np.uint8)
            files[d.name].append(out / d.name / (f.stem + ".png"))
            Image.fromarray(x).save(files[d.name][-1])
    return files


def microscope(args) -> None:
    from napari_nucleus_ai.classify.predict import as_package
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import Sources
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.crops import read_crop
    from napari_nucleus_ai.review.retrain import retrain_gen

    tmp = Path(tempfile.mkdtemp(prefix="bench-microscope-"))
    if args.shifted:  # crops shifted by an earlier run (the shift is deterministic)
        root = Path(args.shifted)
        shifted = {d.name: sorted(d.iterdir()) for d in sorted(root.iterdir()) if d.is_dir()}
    else:
        shifted = _shifted(Path(args.data), tmp / "shifted")
    common = dict(seed=0, threads=args.threads, arch="morph")
    if args.base:
        base = type("Base", (), {"path": args.base, "package": as_package(args.base)})
    else:
        t = time.perf_counter()
        base = train(args.data, tmp / "pbc-only", **common)
        print(f"pbc only: trained in {time.perf_counter() - t:.0f} s ({_load()})", flush=True)
    variants = {
        "unweighted": (f"pbc + {args.per_class}/class unweighted", "1,1"),
        "auto": (f"pbc + {args.per_class}/class weighted (auto)", "auto"),
        "x5": (f"pbc + {args.per_class}/class x5", "1,5"),
    }
    chosen = args.variants.split(",")
    rows: dict[str, list] = {}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rng = np.random.default_rng(seed)
        corr, test, truth = tmp / f"corr-{seed}", [], []
        for c, files in shifted.items():
            order = rng.permutation(len(files))
            (corr / c).mkdir(parents=True)
            for i in order[: args.per_class]:
                shutil.copy(files[i], corr / c / files[i].name)
            test += [read_crop(files[i]) for i in order[args.per_class :]]
            truth += [c] * (len(files) - args.per_class)
        scores = {"pbc only": _balanced(base.package, test, truth)}
        for name, weights in (variants[v] for v in chosen if v in variants):
            t = time.perf_counter()
            res = train(Sources([args.data, corr], weights), None, **common)
            scores[name] = _balanced(res.package, test, truth)
            print(
                f"  seed {seed} {name}: {scores[name]:.3f} "
                f"(train {time.perf_counter() - t:.0f} s, {_load()})",
                flush=True,
            )
        if "retrain" not in chosen:
            for k, v in scores.items():
                rows.setdefault(k, []).append(v)
            continue
        t = time.perf_counter()
        res = run_sync(
            retrain_gen(
                base.path,
                corr,
                tmp / f"retrained-{seed}",
                base_data=args.data,
                seed=seed,
                threads=args.threads,
            )
        )
        wall = time.perf_counter() - t
        scores["retrain from corrections"] = _balanced(as_package(res["out"]), test, truth)
        print(
            f"  seed {seed} retrain: {scores['retrain from corrections']:.3f} on the "
            f"{len(test)} other cells; its own held-out corrections ({res['n_test']} cells) "
            f"{res['before']:.3f} -> {res['after']:.3f}; {wall:.0f} s ({_load()})",
            flush=True,
        )
        for k, v in scores.items():
            rows.setdefault(k, []).append(v)
    print(
        f"\nbalanced accuracy on the other microscope's {len(test)} other cells, mean over "
        f"{args.seeds} splits (min-max):"
    )
    for k, v in rows.items():
        print(f"  {k:38s} {np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})")
    shutil.rmtree(tmp, ignore_errors=True)


def simulated(args) -> None:
    from PIL import Image

    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.review.retrain import retrain_gen
    from napari_nucleus_ai.samples.smear import simulate_wbc_crop

    tmp = Path(tempfile.mkdtemp(prefix="bench-retrain-"))
    for c in CLASSES:
        (tmp / "sim" / c).mkdir(parents=True)
        for s in range(16):
            Image.fromarray(simulate_wbc_crop(c, seed=s, size=360)).save(
                tmp / "sim" / c / f"{s}.png"
            )
        shutil.copytree(Path(args.data) / c, tmp / "real" / c)
    t = time.perf_counter()
    base = train(tmp / "sim", tmp / "base", epochs=15, crop_size=64, seed=0, threads=2, tta=1)
    print(
        f"base model on simulated crops: {time.perf_counter() - t:.0f} s, "
        f"validation balanced accuracy {base.metrics.get('val_balanced_accuracy', float('nan')):.3f}"
    )
    before, after = [], []
    for seed in range(args.seeds):
        res = run_sync(
            retrain_gen(
                base.path,
                tmp / "real",
                tmp / f"v2-{seed}",
                base_data=tmp / "sim",
                epochs=args.epochs,
                lr=1e-3,
                seed=seed,
                threads=2,
            )
        )
        before.append(res["before"])
        after.append(res["after"])
        print(
            f"seed {seed}: learnt from {res['n_learn']} real crops (+{res['n_replay']} replayed), "
            f"held out {res['n_test']}: balanced accuracy {res['before']:.3f} -> {res['after']:.3f} "
            f"({res['seconds']:.0f} s)"
        )
    print(f"mean over {args.seeds} splits: {np.mean(before):.3f} -> {np.mean(after):.3f}")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("microscope", "simulated"), nargs="?", default="microscope")
    ap.add_argument("--data", default=str(PBC))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="microscope: first split seed")
    ap.add_argument("--epochs", type=int, default=10, help="simulated: fine-tuning epochs")
    ap.add_argument("--per-class", type=int, default=5, help="microscope: corrections per class")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--variants",
        default="unweighted,auto,x5,retrain",
        help="microscope: which models to score besides the PBC-only one",
    )
    ap.add_argument("--base", help="microscope: an already trained PBC-only model")
    ap.add_argument("--shifted", help="microscope: the shifted crops of an earlier run")
    args = ap.parse_args()
    (microscope if args.what == "microscope" else simulated)(args)


if __name__ == "__main__":
    main()
