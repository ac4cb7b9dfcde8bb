"""Classifier figures for docs/performance.md.

Usage (run niced: the machine is shared)::

    nice -n 19 .venv/bin/python benchmarks/bench_classifier.py pbc-cv [--folds 4] [--arch morph]
    nice -n 19 .venv/bin/python benchmarks/bench_classifier.py pbc-train [--threads 2]
    nice -n 10 .venv/bin/python benchmarks/bench_classifier.py storm [--train 30] [--test 20]
    nice -n 10 .venv/bin/python benchmarks/bench_classifier.py throughput

``pbc-cv``      stratified k-fold cross-validation of ``train`` on the 96 real PBC crops
                (../shared/data/smear/pbc): balanced accuracy on held-out crops, uncertainty
                AUROC (errors vs correct), per-class recall, confusion matrix (rows true,
                columns predicted), training time per fold. Every option (architecture,
                crop size, epochs, the descriptor's C grid) is fixed before the folds; the
                logistic head's C is chosen inside each training fold (nested).
``pbc-train``   ``napari-nucleus-ai train`` on all 96 crops, wall time (the < 5 min figure).
``storm``       nuclei simulated with chromatin clutches of 15 vs 45 nm (everything else equal),
                trained from localization files; test nuclei written as ThunderSTORM CSV and
                N-STORM TXT and classified with ``predict``.
``throughput``  cells/s of ``classify_cells`` on a synthetic smear, against the bare forward
                pass on the same number of pre-made tensors (pipeline overhead).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PBC = (
    Path(os.environ.get("NAPARI_NUCLEUS_AI_SHARED_DATA", ROOT.parent / "shared" / "data"))
    / "smear"
    / "pbc"
)
CLI = [sys.executable, "-m", "napari_nucleus_ai"]


def pbc_cv(args) -> dict:
    import torch

    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.models.uncertainty import auroc, balanced_accuracy

    torch.set_num_threads(args.threads)
    ts = load_class_folders(PBC)
    rng = np.random.default_rng(args.seed)
    fold = np.zeros(len(ts), int)
    for c in range(len(ts.classes)):
        idx = rng.permutation(np.flatnonzero(ts.labels == c))
        fold[idx] = np.arange(len(idx)) % args.folds
    true, pred, unc, secs, cpu, fields = [], [], [], [], [], []
    for f in range(args.folds):
        t0, c0 = time.perf_counter(), time.process_time()
        res = train(
            ts.subset(np.flatnonzero(fold != f)),
            None,
            arch=args.arch,
            epochs=args.epochs,
            crop_size=args.crop_size,
            members=args.members,
            seed=args.seed,
            threads=args.threads,
            params=json.loads(args.params) if args.params else None,
            field=args.field,
        )
        secs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        fields.append(float(res.package.card["input"].get("field", 1.0)))
        test = ts.subset(np.flatnonzero(fold == f))
        p = predict_items(res.package, test.samples)
        true += test.labels.tolist()
        pred += p.index.tolist()
        unc += p.uncertainty.tolist()
        print(
            f"fold {f}: balanced acc {balanced_accuracy(test.labels, p.index):.3f}, "
            f"train {secs[-1]:.0f} s",
            flush=True,
        )
    true, pred = np.array(true), np.array(pred)
    k = len(ts.classes)
    cm = np.zeros((k, k), int)
    np.add.at(cm, (true, pred), 1)
    return {
        "benchmark": "pbc-cv",
        "arch": args.arch,
        "folds": args.folds,
        "epochs": args.epochs,
        "crop_size": args.crop_size,
        "field_per_fold": fields,
        "members": args.members,
        "balanced_accuracy": round(balanced_accuracy(true, pred), 4),
        "accuracy": round(float((true == pred).mean()), 4),
        "uncertainty_auroc": round(auroc(np.array(unc), true != pred), 4),
        "train_seconds_per_fold": round(float(np.mean(secs)), 1),
        "train_cpu_seconds_per_fold": round(float(np.mean(cpu)), 1),
        "recall": {c: round(float(cm[i, i] / cm[i].sum()), 3) for i, c in enumerate(ts.classes)},
        "confusion": cm.tolist(),
        "params": args.params,
        "loadavg_end": os.getloadavg()[0],
    }


def pbc_train(args) -> dict:
    import resource

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = subprocess.run(
            [
                *CLI,
                "train",
                str(PBC),
                "--out",
                f"{tmp}/pbc.zip",
                "--arch",
                args.arch,
                "--epochs",
                str(args.epochs),
                "--crop-size",
                str(args.crop_size),
                "--members",
                str(args.members),
                "--threads",
                str(args.threads),
                "--quiet",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - t0
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "benchmark": "pbc-train",
        "arch": args.arch,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu.ru_utime + cpu.ru_stime, 1),
        **summary,
    }


def storm(args) -> dict:
    from napari_nucleus_ai.localizations.nstorm import write_nstorm_txt
    from napari_nucleus_ai.localizations.thunderstorm import write_thunderstorm_csv
    from napari_nucleus_ai.samples.storm import simulate_nucleus

    sizes = {"clutch15": 15.0, "clutch45": 45.0}
    sim = {"radius_nm": args.radius, "n_localizations": args.locs}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for cls, size in sizes.items():
            (tmp / "train" / cls).mkdir(parents=True)
            for i in range(args.train):
                df = simulate_nucleus("default", seed=i, clutch_size_nm=size, **sim)
                write_thunderstorm_csv(df, tmp / "train" / cls / f"n{i:03d}.csv")
        test, truth = [], []
        (tmp / "test").mkdir()
        for cls, size in sizes.items():
            for i in range(args.test):
                df = simulate_nucleus("default", seed=10_000 + i, clutch_size_nm=size, **sim)
                if i % 2:
                    p = tmp / "test" / f"{cls}_{i:03d}.txt"
                    write_nstorm_txt(df, p)
                else:
                    p = tmp / "test" / f"{cls}_{i:03d}.csv"
                    write_thunderstorm_csv(df, p)
                test.append(str(p))
                truth.append(cls)
        t0 = time.perf_counter()
        subprocess.run(
            [
                *CLI,
                "train",
                str(tmp / "train"),
                "--out",
                str(tmp / "storm.zip"),
                "--epochs",
                str(args.epochs),
                "--threads",
                str(args.threads),
                "--quiet",
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run(
            [*CLI, "predict", str(tmp / "storm.zip"), *test, "--out", str(tmp / "p.csv")],
            check=True,
            capture_output=True,
            text=True,
        )
        t_pred = time.perf_counter() - t0
        import pandas as pd

        df = pd.read_csv(tmp / "p.csv")
    pred = df["predicted"].to_numpy()
    truth = np.array(truth)
    fmt = np.array(["nstorm" if p.endswith(".txt") else "thunderstorm" for p in df["path"]])
    return {
        "benchmark": "storm",
        "train_per_class": args.train,
        "test_per_class": args.test,
        "accuracy": round(float((pred == truth).mean()), 4),
        "accuracy_thunderstorm": round(float((pred == truth)[fmt == "thunderstorm"].mean()), 4),
        "accuracy_nstorm": round(float((pred == truth)[fmt == "nstorm"].mean()), 4),
        "train_seconds": round(t_train, 1),
        "predict_seconds": round(t_pred, 1),
    }


def throughput(args) -> dict:
    import torch

    from napari_nucleus_ai.classify.cells import classify_cells
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import TrainingSet
    from napari_nucleus_ai.models.engine import logits_batched
    from napari_nucleus_ai.samples.smear import simulate_smear

    torch.set_num_threads(args.threads)
    sim = simulate_smear(seed=1, shape=(1500, 1500), n_wbc=args.cells)
    crops = [np.zeros((96, 96, 3), np.uint8) + i for i in range(4)]
    pkg = train(
        TrainingSet(crops, [0, 1, 0, 1], ["a", "b"], "brightfield_rgb"),
        None,
        epochs=1,
        val_fraction=0,
        arch=args.arch,
        crop_size=args.crop_size,
        params=json.loads(args.params) if args.params else None,
    ).package
    n = int(sim.table.shape[0])
    res = {
        "benchmark": "throughput",
        "arch": args.arch,
        "params": pkg.card["architecture"]["params"],
        "cells": n,
        "threads": torch.get_num_threads(),
    }
    for tta in (1, 4):
        t0 = time.perf_counter()
        classify_cells(
            pkg, sim.image, sim.cells, scale=sim.pixel_size_um, unit="um", tta=tta, device="cpu"
        )
        full = time.perf_counter() - t0
        x = (
            np.random.default_rng(0)
            .normal(size=(n * tta, 3, args.crop_size, args.crop_size))
            .astype(np.float32)
        )
        t0 = time.perf_counter()
        logits_batched(pkg.modules[0], x, torch.device("cpu"), 64)
        bare = time.perf_counter() - t0
        res[f"tta{tta}_cells_per_s"] = round(n / full, 1)
        res[f"tta{tta}_forward_only_cells_per_s"] = round(n / bare, 1)
        res[f"tta{tta}_overhead_pct"] = round(100 * (full - bare) / bare, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("what", choices=("pbc-cv", "pbc-train", "storm", "throughput"))
    ap.add_argument("--arch", default="morph")
    ap.add_argument("--params", help="architecture parameters as JSON, e.g. '{\"cnn\": false}'")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--crop-size", type=int, default=192)
    ap.add_argument("--field", help="crop field (default: train's, auto for morph)")
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train", type=int, default=30)
    ap.add_argument("--test", type=int, default=20)
    ap.add_argument("--radius", type=float, default=3000.0)
    ap.add_argument("--locs", type=int, default=30_000)
    ap.add_argument("--cells", type=int, default=60)
    args = ap.parse_args()
    fn = {"pbc-cv": pbc_cv, "pbc-train": pbc_train, "storm": storm, "throughput": throughput}[
        args.what
    ]
    print(json.dumps(fn(args)))


if __name__ == "__main__":
    main()
