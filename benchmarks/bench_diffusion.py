"""Diffusion classifier figures on the shared PBC crops (issue 8).

Three steps, each bounded so it runs on 2 shared CPU cores (run with nice):

    # cross-validated classification: naive vs adaptive protocol (one process per fold)
    nice -n 10 .venv/bin/python benchmarks/bench_diffusion.py cv --fold 0 [--folds 3 --size 32 --steps 600 --trials 64]
    # anomaly, leave one class out, diffusion vs the issue-6 CNN's softmax entropy
    nice -n 10 .venv/bin/python benchmarks/bench_diffusion.py loco --classes 0,1 [--size 24 --steps 300 --trials 32]
    # tables from the saved error matrices (protocols are simulated exactly, see classify.simulate)
    .venv/bin/python benchmarks/bench_diffusion.py report

``cv`` computes, for every test crop, the denoising error of every class at every
trial (the naive protocol) once, then replays the adaptive protocol on that
matrix: :func:`~napari_nucleus_ai.models.diffusion.classify.simulate` makes
exactly the decisions the live protocol makes (a test checks this), so both
protocols are compared on identical noise. It also times the live adaptive
protocol (wall and CPU seconds per cell). Results go to ``benchmarks/results/diffusion/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PBC = (
    Path(os.environ.get("NAPARI_NUCLEUS_AI_SHARED_DATA", ROOT.parent / "shared" / "data"))
    / "smear"
    / "pbc"
)
OUT = ROOT / "benchmarks" / "results" / "diffusion"


def folds_of(y, k, seed=0):
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % k
    return fold


def _train(x, y, names, args):
    from napari_nucleus_ai.models.diffusion.train import train_diffusion
    from napari_nucleus_ai.progress import run_sync

    t0 = time.perf_counter()
    c0 = time.process_time()
    model = run_sync(
        train_diffusion(
            x,
            y,
            names,
            steps=args.steps,
            seed=args.seed,
            lr=2e-3,
            protocol={"max_trials": args.trials},
            calibrate_after=False,
        )
    )
    return model, time.perf_counter() - t0, time.process_time() - c0


def cv(args):
    import torch

    from napari_nucleus_ai.models.diffusion.classify import (
        calibrate,
        classify_crops,
        true_class_errors,
    )
    from napari_nucleus_ai.models.diffusion.data import load_crop_folder
    from napari_nucleus_ai.progress import run_sync

    torch.set_num_threads(args.threads)
    x, y, names, _ = load_crop_folder(PBC, args.size)
    fold = folds_of(y, args.folds, args.seed)
    f = args.fold
    tr, te = fold != f, fold == f
    model, wall, cpu = _train(x[tr], y[tr], names, args)
    print(
        f"fold {f}: trained {args.steps} steps in {wall:.0f} s wall / {cpu:.0f} s CPU", flush=True
    )
    if (
        args.calibrate
    ):  # confidence temperature / anomaly reference (not needed for the protocol figures)
        calibrate(model, x[tr], y[tr])
    t0, c0 = time.perf_counter(), time.process_time()
    naive = run_sync(classify_crops(model, x[te], exhaustive=True))
    naive_wall, naive_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    live = run_sync(classify_crops(model, x[te]))
    live_wall, live_cpu = time.perf_counter() - t0, time.process_time() - c0
    n = int(te.sum())
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT / f"cv_fold{f}.npz",
        errors=naive["errors"],
        y=y[te],
        classes=np.array(names),
        tau=model.config.get("calibration", {}).get("tau", np.nan),
        live_index=live["index"],
        live_evals=live["evaluations"],
    )
    meta = {
        "fold": f,
        "folds": args.folds,
        "size": args.size,
        "steps": args.steps,
        "trials": args.trials,
        "n_test": n,
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "naive_wall_s_per_cell": round(naive_wall / n, 3),
        "naive_cpu_s_per_cell": round(naive_cpu / n, 3),
        "adaptive_wall_s_per_cell": round(live_wall / n, 3),
        "adaptive_cpu_s_per_cell": round(live_cpu / n, 3),
        "adaptive_evals_mean": float(live["evaluations"].mean()),
        "protocol": model.protocol,
        "threads": args.threads,
        "load_avg": os.getloadavg(),
    }
    (OUT / f"cv_fold{f}.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta), flush=True)
    del true_class_errors


def loco(args):
    import torch

    from napari_nucleus_ai.models.diffusion.classify import (
        calibrate,
        classify_crops,
        true_class_errors,
    )
    from napari_nucleus_ai.models.diffusion.data import load_crop_folder
    from napari_nucleus_ai.progress import run_sync
    from napari_nucleus_ai.train import train
    from napari_nucleus_ai.trainset import load_class_folders

    torch.set_num_threads(args.threads)
    x, y, names, paths = load_crop_folder(PBC, args.size)
    ts = load_class_folders(PBC)
    assert [str(p) for p in ts.sources] == paths or len(ts.sources) == len(paths)
    fold = folds_of(y, 3, args.seed)
    for h in [int(c) for c in args.classes.split(",")]:
        known = y != h
        tr = known & (fold != 0)
        te = (fold == 0) & known | ~known
        keep = [c for c in range(len(names)) if c != h]
        remap = {c: i for i, c in enumerate(keep)}
        ytr = np.array([remap[c] for c in y[tr]])
        kn = [names[c] for c in keep]
        model, wall, cpu = _train(x[tr], ytr, kn, args)
        calibrate(model, x[tr], ytr)
        naive = run_sync(classify_crops(model, x[te], exhaustive=True))
        # the issue-6 CNN on the same split (its default benchmark architecture)
        t0 = time.perf_counter()
        sub = ts.subset(np.flatnonzero(tr))
        sub.classes = kn
        sub.labels = ytr
        res = train(
            sub,
            None,
            arch=args.cnn_arch,
            epochs=args.cnn_epochs,
            crop_size=64,
            seed=args.seed,
            threads=args.threads,
        )
        cnn_wall = time.perf_counter() - t0
        pred = res.package.predict([ts.samples[i] for i in np.flatnonzero(te)])
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            OUT / f"loco_{h}.npz",
            errors=naive["errors"],
            unknown=~known[te],
            y=y[te],
            tau=model.config["calibration"]["tau"],
            ref=np.array(model.config["calibration"]["ref"]),
            cnn_entropy=pred.entropy,
            cnn_probs=pred.probs,
        )
        meta = {
            "held_out": names[h],
            "size": args.size,
            "steps": args.steps,
            "trials": args.trials,
            "train_wall_s": round(wall, 1),
            "cnn_arch": args.cnn_arch,
            "cnn_epochs": args.cnn_epochs,
            "cnn_wall_s": round(cnn_wall, 1),
            "load_avg": os.getloadavg(),
        }
        (OUT / f"loco_{h}.json").write_text(json.dumps(meta, indent=1))
        print(json.dumps(meta), flush=True)
    del true_class_errors


PROTOCOLS = [  # (check_every, alpha, stable_checks)
    (4, 0.01, 0),
    (2, 0.05, 0),
    (2, 0.01, 0),
    (1, 0.05, 0),
    (4, 0.01, 2),
    (4, 0.05, 2),
    (2, 0.05, 2),
    (2, 0.05, 3),
    (2, 0.05, 4),
    (2, 0.1, 3),
    (1, 0.05, 3),
    (1, 0.05, 4),
    (1, 0.1, 4),
]


def report(args):
    from napari_nucleus_ai.models.diffusion.classify import decide, simulate
    from napari_nucleus_ai.uncertainty import auroc, balanced_accuracy

    lines = []
    cv_files = sorted(OUT.glob("cv_fold*.npz"))
    if cv_files:
        data = [np.load(f) for f in cv_files]
        metas = [json.loads(f.with_suffix(".json").read_text()) for f in cv_files]
        y = np.concatenate([d["y"] for d in data])
        kmax = data[0]["errors"].shape[2]
        c = data[0]["errors"].shape[1]
        lines.append(
            f"PBC, {len(cv_files)}-fold CV, {len(y)} crops, {metas[0]['size']} px, "
            f"{metas[0]['steps']} training steps"
        )
        lines.append(
            "| protocol | trials | network evaluations / cell | fewer than naive | balanced accuracy |"
        )
        lines.append("|---|---|---|---|---|")
        ref_naive = None
        for k in sorted({8, 16, 32, kmax}):
            if k > kmax:
                continue
            idx = np.concatenate(
                [
                    decide(d["errors"][:, :, :k], np.ones(d["errors"][:, :, :k].shape, bool))[
                        "index"
                    ]
                    for d in data
                ]
            )
            b = balanced_accuracy(y, idx)
            if k == kmax:
                ref_naive = b
            lines.append(f"| naive | {k} | {c * k} | {kmax / k:.1f}x fewer | {b:.3f} |")
        for ce, a, st in PROTOCOLS:
            idx, ev = [], []
            for d in data:
                e = simulate(d["errors"], ce, a, stable_checks=st)
                idx.append(decide(d["errors"], e)["index"])
                ev.append(e.sum((1, 2)))
            idx, ev = np.concatenate(idx), np.concatenate(ev)
            lines.append(
                f"| adaptive (check every {ce}, alpha {a}, stop after {st or '-'} stable checks) | <= {kmax} "
                f"| {ev.mean():.1f} | {c * kmax / ev.mean():.1f}x fewer | {balanced_accuracy(y, idx):.3f} |"
            )
        lines.append(f"naive {kmax}-trial balanced accuracy: {ref_naive:.3f}")
        for m in metas:
            lines.append(
                f"fold {m['fold']}: train {m['train_wall_s']} s wall / {m['train_cpu_s']} s CPU; per cell "
                f"naive {m['naive_wall_s_per_cell']} s wall ({m['naive_cpu_s_per_cell']} s CPU), adaptive "
                f"{m['adaptive_wall_s_per_cell']} s wall ({m['adaptive_cpu_s_per_cell']} s CPU) at "
                f"{m['adaptive_evals_mean']:.0f} evaluations; load average {m['load_avg'][0]:.1f}"
            )
    loco_files = sorted(OUT.glob("loco_*.npz"))
    if loco_files:
        lines.append("")
        lines.append(
            "| held-out class | diffusion anomaly AUROC | diffusion 1-confidence AUROC | CNN entropy AUROC |"
        )
        lines.append("|---|---|---|---|")
        rows = []
        for f in loco_files:
            d = np.load(f)
            m = json.loads(f.with_suffix(".json").read_text())
            ev = np.ones(d["errors"].shape, bool)
            out = decide(d["errors"], ev, tau=float(d["tau"]), ref=d["ref"])
            r = (
                auroc(out["anomaly"], d["unknown"]),
                auroc(1 - out["confidence"], d["unknown"]),
                auroc(d["cnn_entropy"], d["unknown"]),
            )
            rows.append(r)
            lines.append(f"| {m['held_out']} | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} |")
        r = np.nanmean(np.array(rows), axis=0)
        lines.append(f"| mean | {r[0]:.3f} | {r[1]:.3f} | {r[2]:.3f} |")
    text = "\n".join(lines)
    print(text)
    return text


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("what", choices=("cv", "loco", "report"))
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cnn-arch", default="hybrid")
    ap.add_argument("--cnn-epochs", type=int, default=30)
    ap.add_argument("--calibrate", action="store_true", help="cv: also calibrate (slower)")
    args = ap.parse_args(argv)
    {"cv": cv, "loco": loco, "report": report}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
