"""Diffusion classifier with the morphology proposer vs the naive protocol.

The proposer (:mod:`napari_nucleus_ai.models.diffusion.proposer`) short-lists the 2 most
probable classes of a cell from the morphology descriptor; the adaptive protocol then runs
its paired trials on those 2 only (package default: at most 6 trials, t-tests every 2).

``offline`` replays that protocol on the full error matrices ``bench_diffusion.py cv --name
scan`` saved (every class at every one of 128 shared noise levels, same 3 folds), with the
proposer fitted here on each fold's training crops exactly as ``train --arch diffusion``
fits it. Trials are those with t in [0, 0.9) in their low-discrepancy order, as in
``bench_diffusion.py report --t-range 0,0.9``. Nothing is tuned on the test crops: the
protocol is the package default, fixed before this benchmark ran.

``live`` trains (or ``--reuse``-s) the fold-0 diffusion model and times the live
classification of its test crops: proposer (descriptor) + short-listed trials, against the
naive protocol at 16 levels.

    nice -n 10 .venv/bin/python benchmarks/bench_proposer.py offline [--cv-name scan1 --seed 1]
    nice -n 10 .venv/bin/python benchmarks/bench_proposer.py live --model-dir /tmp/dmodels
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


def _proposals(ts, fold, f, seed=0):
    from napari_nucleus_ai.models.diffusion.proposer import fit_proposer, proposer_probs

    tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
    prop = fit_proposer([ts.samples[i] for i in tr], ts.labels[tr], len(ts.classes), seed=seed)
    c0 = time.process_time()
    p = proposer_probs(prop, [ts.samples[i] for i in te])
    return prop, p, (time.process_time() - c0) / len(te)


def offline(args) -> dict:
    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.models.diffusion.classify import decide
    from napari_nucleus_ai.models.diffusion.model import PROTOCOL_DEFAULTS
    from napari_nucleus_ai.models.diffusion.proposer import candidates
    from napari_nucleus_ai.models.diffusion.protocol import simulate
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy as bacc

    ts = load_class_folders(PBC)
    fold = folds_of(ts.labels, 3, args.seed)  # the seed of the bench_diffusion.py cv run
    P, E, Y, cpu, fields = [], [], [], [], []
    for f in range(3):
        d = np.load(OUT / f"{args.cv_name}_fold{f}.npz")
        if not np.array_equal(d["y"], ts.labels[fold == f]):
            raise SystemExit(f"fold {f}: saved labels do not match the crops")
        keep = d["t"] < 900
        prop, p, c = _proposals(ts, fold, f, args.seed)
        P.append(p), E.append(d["errors"][:, :, keep]), Y.append(d["y"])
        cpu.append(c), fields.append(prop["field"])
        proto = {**PROTOCOL_DEFAULTS, **prop["protocol"]}
        print(f"fold {f}: proposer fitted (field {prop['field']})", flush=True)
    n_min = min(e.shape[2] for e in E)
    P, Y = np.concatenate(P), np.concatenate(Y)
    E = np.concatenate([e[:, :, :n_min] for e in E])
    n_cls = E.shape[1]
    top = int(prop["top"])
    cand = candidates(P, top)
    naive = {
        int(k): round(float(bacc(Y, E[:, :, :k].mean(2).argmin(1))), 4)
        for k in (1, 2, 4, 8, 16, 32, 64, n_min)
    }
    k_sat = 16  # where the naive curve saturates (bench_diffusion report)
    ev = simulate(E, proto, candidates=cand)
    r = decide(E, ev, score=proto["score"])
    acc = float(bacc(Y, r["index"]))
    grid = {}
    for trials in (2, 4, 6, 8, 16):
        g = decide(E, simulate(E, {**proto, "max_trials": trials}, candidates=cand))
        grid[trials] = [
            round(float(bacc(Y, g["index"])), 4),
            round(float(g["evaluations"].mean()), 2),
        ]
    top1 = P.argmax(1)
    flips = r["index"] != top1
    ins = cand[np.arange(len(Y)), Y]
    return {
        "benchmark": "proposer-offline",
        "cv_name": args.cv_name,
        "fold_seed": args.seed,
        "n_cells": int(len(Y)),
        "protocol": proto,
        "proposer_fields": fields,
        "naive_balanced_accuracy_by_levels": naive,
        "naive_saturated": {"levels": k_sat, "evaluations": k_sat * n_cls, "acc": naive[k_sat]},
        "naive_paper_style": {"levels": n_min, "evaluations": n_min * n_cls, "acc": naive[n_min]},
        "proposer_top_recall": round(float(ins.mean()), 4),
        "proposer_alone_balanced_accuracy": round(float(bacc(Y, top1)), 4),
        "cascade_balanced_accuracy": round(acc, 4),
        "cascade_evaluations_mean": round(float(r["evaluations"].mean()), 2),
        "cascade_evaluations_max": int(r["evaluations"].max()),
        "fewer_than_naive_saturated": round(k_sat * n_cls / float(r["evaluations"].mean()), 1),
        "fewer_than_naive_paper_style": round(n_min * n_cls / float(r["evaluations"].mean()), 1),
        "diffusion_changed_the_proposers_label": int(flips.sum()),
        "of_which_now_right": int((r["index"][flips] == Y[flips]).sum()),
        "of_which_were_right": int((top1[flips] == Y[flips]).sum()),
        "two_way_accuracy_diffusion": round(float((r["index"][ins] == Y[ins]).mean()), 4),
        "two_way_accuracy_proposer": round(float((top1[ins] == Y[ins]).mean()), 4),
        "trials_grid": grid,
        "proposer_cpu_s_per_cell": round(float(np.mean(cpu)), 4),
    }


def live(args) -> dict:
    import torch
    from bench_diffusion import _train

    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.classify import classify_crops
    from napari_nucleus_ai.models.diffusion.data import load_crop_folder
    from napari_nucleus_ai.models.diffusion.model import PROTOCOL_DEFAULTS
    from napari_nucleus_ai.models.diffusion.proposer import candidates

    torch.set_num_threads(args.threads)
    x, y, names, _ = load_crop_folder(PBC, 32)
    ts = load_class_folders(PBC)
    if not np.array_equal(y, ts.labels):
        raise SystemExit("crop order differs between the loaders")
    fold = folds_of(y, 3, 0)
    te = fold == 0
    targs = argparse.Namespace(
        model_dir=args.model_dir, reuse=args.reuse, base=16, steps=3000, seed=0,
        trials=PROTOCOL_DEFAULTS["max_trials"], t_lo=0.0, t_hi=0.9,
    )  # fmt: skip
    model, wall, cpu = _train(x[fold != 0], y[fold != 0], names, targs, "cv32_0")
    print(f"fold 0: model ready ({cpu:.0f} CPU s of training)", flush=True)
    n = int(te.sum())
    from napari_nucleus_ai.models.diffusion.proposer import fit_proposer, proposer_probs

    tr_idx = np.flatnonzero(fold != 0)
    prop = fit_proposer([ts.samples[i] for i in tr_idx], ts.labels[tr_idx], len(names))
    c0, t0 = time.process_time(), time.perf_counter()  # the proposer is fitted: time inference
    cand = candidates(
        proposer_probs(prop, [ts.samples[i] for i in np.flatnonzero(te)]), prop["top"]
    )
    res = run_sync(classify_crops(model, x[te], candidates=cand, **prop["protocol"]))
    cas_cpu, cas_wall = (time.process_time() - c0) / n, (time.perf_counter() - t0) / n
    c0, t0 = time.process_time(), time.perf_counter()
    nv = run_sync(classify_crops(model, x[te], exhaustive=True, max_trials=16))
    nv_cpu, nv_wall = (time.process_time() - c0) / n, (time.perf_counter() - t0) / n
    import os

    return {
        "benchmark": "proposer-live",
        "fold": 0,
        "n_cells": n,
        "threads": args.threads,
        "cascade_cpu_s_per_cell": round(cas_cpu, 4),
        "cascade_wall_s_per_cell": round(cas_wall, 4),
        "cascade_evaluations_mean": round(float(res["evaluations"].mean()), 2),
        "cascade_accuracy": round(float((res["index"] == y[te]).mean()), 4),
        "naive16_cpu_s_per_cell": round(nv_cpu, 4),
        "naive16_wall_s_per_cell": round(nv_wall, 4),
        "naive16_evaluations_mean": round(float(nv["evaluations"].mean()), 2),
        "naive16_accuracy": round(float((nv["index"] == y[te]).mean()), 4),
        "load_avg": os.getloadavg(),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("offline", "live"))
    ap.add_argument("--cv-name", default="scan")
    ap.add_argument("--model-dir", default="/tmp/dmodels")
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="offline: fold seed of the cv run")
    args = ap.parse_args(argv)
    out = offline(args) if args.what == "offline" else live(args)
    OUT.mkdir(parents=True, exist_ok=True)
    tag = args.what if args.what == "live" else f"offline_{args.cv_name}"
    (OUT / f"proposer_{tag}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
