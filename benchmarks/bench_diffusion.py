"""Diffusion classifier figures on the shared PBC crops.

Three steps (run with ``nice -n 19``; models are saved outside the repo in ``--model-dir``):

    # per fold: train (or --reuse) and save every test crop's error under every class at
    # 128 shared noise levels over the whole schedule; --live also times the live protocol
    nice -n 19 .venv/bin/python benchmarks/bench_diffusion.py cv --fold F --size 32 --steps 3000 \
        --trials 128 --t-lo 0 --t-hi 1 --name scan
    # anomaly, leave one class out, diffusion vs the CNN's softmax entropy
    nice -n 19 .venv/bin/python benchmarks/bench_diffusion.py loco --classes 0,1 --size 32 \
        --steps 1000 --trials 24 --t-lo 0 --t-hi 1 --reuse-cnn
    # tables: naive accuracy vs noise levels, protocols, nested choice, anomaly AUROCs
    nice -n 19 .venv/bin/python benchmarks/bench_diffusion.py report --cv-name scan --t-range 0,0.9
    # the package as users make it: `train` on a fold's crops, `predict` on the others
    # (the package's own protocol and proposer); one process per fold, then the summary
    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python benchmarks/bench_diffusion.py package-cv \
        --fold F --folds 4 --name l128 --train-args "--arch latent-diffusion --crop-size 128 ..."
    .venv/bin/python benchmarks/bench_diffusion.py package-cv-report --folds 4 --name l128
    # packages trained without the proposer prior: the decision with it
    .venv/bin/python benchmarks/bench_diffusion.py package-cv-prior --folds 4 --name l128
    # a fold package's naive protocol on its test crops and on its own training crops
    .venv/bin/python benchmarks/bench_diffusion.py package-naive --fold 0 --name l128 --trials 32

Protocols are compared offline: :func:`~napari_nucleus_ai.models.diffusion.protocol.simulate`
replays the adaptive protocol on a saved full error matrix and makes exactly the decisions
the live protocol makes (a test checks this), so all protocols see identical noise
(``diffusion_report.py``). Results go to ``benchmarks/results/diffusion/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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


def _train(x, y, names, args, tag=None):
    """Train (or, with ``--reuse``, load the model saved under ``--model-dir/tag``)."""
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.train import train_diffusion

    path = Path(args.model_dir) / tag if tag else None
    if path is not None and args.reuse and (path / "config.json").exists():
        model = _load(path)
        tr = model.config["training"]
        return _with(model, args), tr.get("wall_s", np.nan), tr.get("cpu_s", np.nan)
    t0 = time.perf_counter()
    c0 = time.process_time()
    model = run_sync(
        train_diffusion(
            x,
            y,
            names,
            arch={"base": args.base},
            steps=args.steps,
            seed=args.seed,
            lr=2e-3,
            protocol=_protocol(args),
            calibrate_after=False,
        )
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    model.config["training"].update(wall_s=round(wall, 1), cpu_s=round(cpu, 1))
    if path is not None:
        _save(model, path)
    return model, wall, cpu


def _protocol(args):
    return {"max_trials": args.trials, "t_lo": args.t_lo, "t_hi": args.t_hi}


def _with(model, args):
    model.config["protocol"] = {**model.config.get("protocol", {}), **_protocol(args)}
    return model


def _save(model, path):
    """Weights (safetensors) and config (JSON) of a benchmark model, outside the repository."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, path / "net.st")
    (path / "config.json").write_text(json.dumps(model.config))


def _load(path):
    from safetensors.torch import load_file

    from napari_nucleus_ai.models.diffusion.model import DiffusionClassifier, build_net

    config = json.loads((path / "config.json").read_text())
    net = build_net(config)
    net.load_state_dict(load_file(path / "net.st"))
    return DiffusionClassifier(net, config)


def _framed(train_idx, args):
    """All crops cut to their centre ``--field`` (``auto``: sized on the training crops)."""
    from napari_nucleus_ai.models.diffusion.data import (
        list_class_folders,
        read_crop,
        to_model_input,
    )
    from napari_nucleus_ai.models.framing import auto_field, centre_field

    _, items = list_class_folders(PBC)
    raw = [read_crop(p) for p, _ in items]
    field = auto_field([raw[i] for i in train_idx]) if args.field == "auto" else float(args.field)
    x = np.stack([to_model_input(centre_field(a, field), args.size) for a in raw])
    return x, field


def cv(args):
    import torch

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.classify import calibrate, classify_crops, trial_plan
    from napari_nucleus_ai.models.diffusion.data import load_crop_folder

    torch.set_num_threads(args.threads)
    x, y, names, _ = load_crop_folder(PBC, args.size)
    fold = folds_of(y, args.folds, args.seed)
    f = args.fold
    tr, te = fold != f, fold == f
    field = 1.0
    if args.field:  # frame the crops as a package with input.field would (framing.py)
        x, field = _framed(np.flatnonzero(tr), args)
    tag = f"cv{args.size}_{f}" + (f"_field{field:.2f}" if field < 1 else "")
    model, wall, cpu = _train(x[tr], y[tr], names, args, tag)
    print(
        f"fold {f}: trained {args.steps} steps in {wall:.0f} s wall / {cpu:.0f} s CPU", flush=True
    )
    if args.calibrate:  # confidence temperature / anomaly reference (not needed for protocols)
        calibrate(model, x[tr], y[tr])
    t0, c0 = time.perf_counter(), time.process_time()
    naive = run_sync(classify_crops(model, x[te], exhaustive=True))
    naive_wall, naive_cpu = time.perf_counter() - t0, time.process_time() - c0
    n = int(te.sum())
    live = None
    if args.live:  # the live adaptive protocol (package defaults), timed
        t0, c0 = time.perf_counter(), time.process_time()
        live = run_sync(classify_crops(model, x[te], **json.loads(args.live_protocol or "{}")))
        live_wall, live_cpu = time.perf_counter() - t0, time.process_time() - c0
    t_plan, _ = trial_plan(model)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT / f"{args.name}_fold{f}.npz",
        errors=naive["errors"],
        t=t_plan,
        y=y[te],
        classes=np.array(names),
        live_index=live["index"] if live else [],
        live_evals=live["evaluations"] if live else [],
    )
    meta = {
        "fold": f,
        "folds": args.folds,
        "size": args.size,
        "base": args.base,
        "steps": args.steps,
        "trials": args.trials,
        "n_test": n,
        "field": field,
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "naive_wall_s_per_cell": round(naive_wall / n, 3),
        "naive_cpu_s_per_cell": round(naive_cpu / n, 3),
        "protocol": model.protocol,
        "threads": args.threads,
        "load_avg": os.getloadavg(),
    }
    if live:
        meta.update(
            live_protocol=json.loads(args.live_protocol or "{}"),
            adaptive_wall_s_per_cell=round(live_wall / n, 4),
            adaptive_cpu_s_per_cell=round(live_cpu / n, 4),
            adaptive_evals_mean=float(live["evaluations"].mean()),
        )
    (OUT / f"{args.name}_fold{f}.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta), flush=True)


def _fold_folder(items, names, keep, folder):
    """A class-per-folder copy of the crops ``keep`` (symbolic links) under ``folder``."""
    import shutil

    if folder.exists():
        shutil.rmtree(folder)
    for i in np.flatnonzero(keep):
        path, c = items[i]
        (folder / names[c]).mkdir(parents=True, exist_ok=True)
        (folder / names[c] / path.name).symlink_to(path.resolve())
    return folder


def _run(cmd):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{' '.join(cmd[:4])} ... failed:\n{out.stderr[-2000:]}")
    return time.perf_counter() - t0, out


def package_cv(args):
    """One fold of the package as users make and run it: ``train`` on the fold's training
    crops with ``--train-args``, ``predict`` on its test crops (the package's protocol)."""
    import csv
    import resource
    import shlex

    from napari_nucleus_ai.models.diffusion.data import list_class_folders

    names, items = list_class_folders(PBC)
    y = np.array([c for _, c in items])
    fold = folds_of(y, args.folds, args.seed)
    f = args.fold
    work = Path(args.model_dir) / f"{args.name}_fold{f}"
    work.mkdir(parents=True, exist_ok=True)
    model = work / "model.zip"
    record = OUT / f"pkgcv_{args.name}_fold{f}.json"
    before = json.loads(record.read_text()) if args.reuse and record.exists() else {}
    cli = [sys.executable, "-m", "napari_nucleus_ai"]
    train_wall = None
    if not (args.reuse and model.exists()):
        train_dir = _fold_folder(items, names, fold != f, work / "train")
        train_wall, _ = _run(
            [
                *cli,
                "train",
                str(train_dir),
                "--out",
                str(model),
                "--quiet",
                "--seed",
                str(args.seed),
                *shlex.split(args.train_args),
            ]
        )
    test_dir = _fold_folder(items, names, fold == f, work / "test")
    train_cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    predict_args = [*cli, "predict", str(model), str(test_dir), "--out", str(work / "pred.csv")]
    pred_wall, _ = _run([*predict_args, "--quiet", *shlex.split(args.predict_args)])
    with open(work / "pred.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    parts = _decided_apart(model, [r["path"] for r in rows], names)
    meta = {
        "fold": f,
        "folds": args.folds,
        "seed": args.seed,
        "train_args": args.train_args or before.get("train_args", ""),
        "predict_args": args.predict_args,
        "n_test": len(rows),
        "train_wall_s": before.get("train_wall_s") if train_wall is None else round(train_wall, 1),
        "train_cpu_s": before.get("train_cpu_s") if train_wall is None else round(train_cpu, 1),
        "predict_wall_s": round(pred_wall, 1),
        "classes": names,
        "true": [names.index(Path(r["path"]).parent.name) for r in rows],  # class folders
        "label": [r["label"] for r in rows],
        # the most probable class (the figure of `bench_classifier.py pbc-cv`)
        "index": [int(np.argmax([float(r[f"p_{c}"]) for c in names])) for r in rows],
        **parts,
        "evaluations": [int(float(r["evaluations"])) for r in rows if r.get("evaluations")],
        "uncertainty": [float(r["uncertainty"]) for r in rows],
        "load_avg": os.getloadavg(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(meta, indent=1))
    print(json.dumps({k: v for k, v in meta.items() if not isinstance(v, list)}), flush=True)


def _decided_apart(model_path, paths, names) -> dict:
    """The two halves of a proposer package's decision on the crops ``paths``: the
    proposer's top class alone, and the denoising errors' winner alone (``prior`` off; the
    winner does not depend on the temperature). Empty for packages without a proposer."""
    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.models.diffusion.data import read_crop
    from napari_nucleus_ai.models.diffusion.proposer import proposer_probs
    from napari_nucleus_ai.models.package import load_model

    pkg = load_model(model_path, cache=False)
    prop = (pkg.card.get("diffusion") or {}).get("proposer")
    if not prop or [c["name"] for c in pkg.card["classes"]] != names:
        return {}
    items = [read_crop(p) for p in paths]
    prop["prior"] = False
    return {
        "proposer_index": proposer_probs(prop, items).argmax(1).tolist(),
        "errors_index": np.asarray(predict_items(pkg, items).index).tolist(),
    }


def package_cv_prior(args):
    """For fold packages trained without ``proposer.prior``: the decision with it, the
    temperature fitted with the prior on the package's own validation crops (the split
    ``train`` made with its default validation fraction and the seed), as ``train`` fits it."""
    from napari_nucleus_ai.classify.train import TrainOptions
    from napari_nucleus_ai.classify.trainset import load_class_folders, stratified_split
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.classify import (
        classify_crops,
        decide,
        fit_temperature,
    )
    from napari_nucleus_ai.models.diffusion.kind import as_classifier, proposal
    from napari_nucleus_ai.models.inputs import prepare
    from napari_nucleus_ai.models.package import load_model
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    true, pred = [], []
    for f in range(args.folds):
        work = Path(args.model_dir) / f"{args.name}_fold{f}"
        pkg = load_model(work / "model.zip", cache=False)
        pkg.card["diffusion"]["proposer"]["prior"] = True
        model = as_classifier(pkg)
        score = model.protocol["score"]

        def errors(samples, pkg=pkg, model=model):
            cand, over, pp = proposal(pkg.card, samples)  # the package's own rule
            x, _ = prepare(samples, pkg.card)
            res = run_sync(classify_crops(model, x, candidates=cand, **over))
            return np.nan_to_num(res["errors"]), ~np.isnan(res["errors"]), pp

        tr = load_class_folders(work / "train")
        _, va = stratified_split(tr.labels, TrainOptions.val_fraction, args.seed)
        e, ev, pp = errors([tr.samples[i] for i in va])
        tau = fit_temperature(e, ev, tr.labels[va], score=score, prior=pp)
        same = fit_temperature(e, ev, tr.labels[va], score=score)  # the card's: the same split
        te = load_class_folders(work / "test")
        e, ev, pp = errors(te.samples)
        idx = decide(e, ev, tau=tau, score=score, prior=pp)["index"]
        true += te.labels.tolist()
        pred += idx.tolist()
        print(
            f"fold {f}: tau {tau:.4g} with the prior (without: {same:.4g}, card "
            f"{pkg.card['diffusion']['calibration']['tau']:.4g}), balanced accuracy "
            f"{balanced_accuracy(te.labels, idx):.3f}",
            flush=True,
        )
    print(f"with the prior: {balanced_accuracy(np.array(true), np.array(pred)):.4f}")


def package_naive(args):
    """Does a fold package's class carry to unseen crops? The naive protocol (every class
    at ``--trials`` shared trials) on the fold's test crops and on a third of its training
    crops, with the balanced accuracy per quarter of the noise levels."""
    from napari_nucleus_ai.classify.trainset import load_class_folders
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.classify import classify_crops, decide, trial_plan
    from napari_nucleus_ai.models.diffusion.kind import as_classifier
    from napari_nucleus_ai.models.inputs import prepare
    from napari_nucleus_ai.models.package import load_model
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    work = Path(args.model_dir) / f"{args.name}_fold{args.fold}"
    pkg = load_model(work / "model.zip", cache=False)
    model, k = as_classifier(pkg), args.trials
    t = trial_plan(model, k)[0]
    for part, step in (("test", 1), ("train", 3)):
        ts = load_class_folders(work / part)
        idx = np.arange(0, len(ts), step)
        x, _ = prepare([ts.samples[i] for i in idx], pkg.card)
        e = run_sync(classify_crops(model, x, exhaustive=True, max_trials=k))["errors"]
        y = ts.labels[idx]

        def acc(sel, e=e, y=y):
            return balanced_accuracy(y, decide(e[:, :, sel], ~np.isnan(e[:, :, sel]))["index"])

        quarters = np.array_split(np.argsort(t), 4)
        print(
            f"{part} ({len(idx)} crops): {k} trials {acc(np.arange(k)):.3f}; by noise level "
            + ", ".join(f"t {t[q].min()}-{t[q].max()}: {acc(q):.3f}" for q in quarters),
            flush=True,
        )


def package_cv_report(args):
    """Balanced accuracy, evaluations per cell and uncertainty AUROC over the saved folds."""
    from napari_nucleus_ai.models.uncertainty import auroc, balanced_accuracy

    folds = [
        json.loads((OUT / f"pkgcv_{args.name}_fold{f}.json").read_text()) for f in range(args.folds)
    ]
    names = folds[0]["classes"]
    true = np.concatenate([m["true"] for m in folds])
    pred = np.concatenate([m["index"] for m in folds])
    unidentified = np.concatenate([[v not in names for v in m["label"]] for m in folds])
    unc = np.concatenate([m["uncertainty"] for m in folds])
    evals = np.concatenate([m["evaluations"] for m in folds])
    k = len(names)
    cm = np.zeros((k, k), int)
    np.add.at(cm, (true, pred), 1)
    out = {
        "name": args.name,
        "folds": args.folds,
        "balanced_accuracy": round(balanced_accuracy(true, pred), 4),
        "per_fold": [round(balanced_accuracy(m["true"], m["index"]), 3) for m in folds],
        # a proposer package's decision taken apart: each half alone
        **{
            f"{part}_alone": round(
                balanced_accuracy(true, np.concatenate([m[f"{part}_index"] for m in folds])), 4
            )
            for part in ("proposer", "errors")
            if all(f"{part}_index" in m for m in folds)
        },
        "unidentified_share": round(float(unidentified.mean()), 3),
        "uncertainty_auroc": round(auroc(unc, true != pred), 4),
        "evaluations_mean": round(float(evals.mean()), 2) if evals.size else None,
        "evaluations_max": int(evals.max()) if evals.size else None,
        "train_cpu_s": [m["train_cpu_s"] for m in folds],
        "train_wall_s": [m["train_wall_s"] for m in folds],
        "recall": {c: round(float(cm[i, i] / cm[i].sum()), 3) for i, c in enumerate(names)},
        "confusion": cm.tolist(),
    }
    print(json.dumps(out, indent=1))
    return out


def _all_errors(model, x, trials):
    """Errors (N, C + 1, K) of every crop under every class and unconditionally (last column)."""
    import torch

    from napari_nucleus_ai.models.diffusion.classify import _eval_pairs, trial_plan

    t_plan, eps_plan = trial_plan(model, trials)
    n, c = len(x), len(model.class_names) + 1
    bi, ci, ki = (a.ravel() for a in np.meshgrid(range(n), range(c), range(trials), indexing="ij"))
    xt = torch.as_tensor(np.asarray(x, np.float32))
    return _eval_pairs(model, xt, bi, ci, ki, t_plan, eps_plan, 256).reshape(n, c, trials), t_plan


def _cnn_entropy(args, h, names, tr, te, kn, ytr, unknown, y_te):
    """The CNN's softmax entropy on the split; reused from an earlier run when saved."""
    from napari_nucleus_ai.classify.train import train
    from napari_nucleus_ai.classify.trainset import load_class_folders

    if args.no_cnn:
        return np.full(int(te.sum()), np.nan), np.full((int(te.sum()), len(kn)), np.nan), {}
    old = OUT / f"loco_{h}.npz"
    if args.reuse_cnn and old.exists():
        d = np.load(old)
        if np.array_equal(d["unknown"], unknown) and np.array_equal(d["y"], y_te):
            meta = json.loads(old.with_suffix(".json").read_text())
            return (
                d["cnn_entropy"],
                d["cnn_probs"],
                {k: meta.get(k) for k in ("cnn_arch", "cnn_epochs", "cnn_wall_s")},
            )
    ts = load_class_folders(PBC)
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
    from napari_nucleus_ai.classify.predict import predict_items

    pred = predict_items(res.package, [ts.samples[i] for i in np.flatnonzero(te)])
    info = {
        "cnn_arch": args.cnn_arch,
        "cnn_epochs": args.cnn_epochs,
        "cnn_wall_s": round(time.perf_counter() - t0, 1),
    }
    return pred.entropy, pred.probs, info


def loco(args):
    """Leave one class out: train on 7 classes, score the held-out class as anomalous.

    Saves, per held-out class, every test crop's and every training crop's error
    under every known class and unconditionally at ``--trials`` shared trials
    over ``[--t-lo, --t-hi)`` (the report picks the noise range and compares
    anomaly scores offline), and the CNN's softmax entropy on the same split.
    """
    import torch

    from napari_nucleus_ai.models.diffusion.data import load_crop_folder

    torch.set_num_threads(args.threads)
    x, y, names, _ = load_crop_folder(PBC, args.size)
    fold = folds_of(y, 3, args.seed)
    for h in [int(c) for c in args.classes.split(",")]:
        known = y != h
        tr = known & (fold != 0)
        te = (fold == 0) & known | ~known
        keep = [c for c in range(len(names)) if c != h]
        remap = {c: i for i, c in enumerate(keep)}
        ytr = np.array([remap[c] for c in y[tr]])
        kn = [names[c] for c in keep]
        ent, probs, cnn = _cnn_entropy(args, h, names, tr, te, kn, ytr, ~known[te], y[te])
        model, wall, cpu = _train(x[tr], ytr, kn, args, f"loco{args.size}_{h}")
        e_te, t_plan = _all_errors(model, x[te], args.trials)
        e_tr, _ = _all_errors(model, x[tr], args.trials)
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            OUT / f"{args.name}_{h}.npz",
            errors=e_te,
            train_errors=e_tr,
            train_y=ytr,
            t=t_plan,
            unknown=~known[te],
            y=y[te],
            cnn_entropy=ent,
            cnn_probs=probs,
        )
        meta = {
            "held_out": names[h],
            "seed": args.seed,
            "size": args.size,
            "base": args.base,
            "steps": args.steps,
            "trials": args.trials,
            "t_range": [args.t_lo, args.t_hi],
            "train_wall_s": round(wall, 1),
            "train_cpu_s": round(cpu, 1),
            **cnn,
            "load_avg": os.getloadavg(),
        }
        (OUT / f"{args.name}_{h}.json").write_text(json.dumps(meta, indent=1))
        print(json.dumps(meta), flush=True)


def report(args):
    """Tables from the saved error matrices (see ``diffusion_report.py``)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import diffusion_report as rep

    t_range = tuple(float(v) for v in args.t_range.split(","))
    lines = []
    cv_files = sorted(OUT.glob(f"{args.cv_name}_fold*.npz"))
    if cv_files:
        lines += rep.cv_tables(cv_files, args.score, args.naive_trials, args.tolerance, t_range)
    loco_files = [f for f in sorted(OUT.glob("loco_*.npz")) if "train_errors" in np.load(f)]
    if loco_files:
        lines += [""] + rep.loco_tables(loco_files, t_range, args.anomaly_trials)
    text = "\n".join(lines)
    print(text)
    return text


COMMANDS = {
    "cv": cv,
    "loco": loco,
    "report": report,
    "package-cv": package_cv,
    "package-cv-report": package_cv_report,
    "package-cv-prior": package_cv_prior,
    "package-naive": package_naive,
}


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("what", choices=tuple(COMMANDS))
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--base", type=int, default=16, help="UNet width")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--trials", type=int, default=128, help="naive protocol: trials per cell")
    ap.add_argument("--t-lo", type=float, default=0.05)
    ap.add_argument("--t-hi", type=float, default=0.75)
    ap.add_argument("--name", default="", help="results file prefix (default: cv / loco)")
    ap.add_argument(
        "--model-dir", default="/tmp/d8_models", help="trained models (not in the repo)"
    )
    ap.add_argument("--reuse", action="store_true", help="load models saved in --model-dir")
    ap.add_argument("--live", action="store_true", help="cv: also time the live adaptive protocol")
    ap.add_argument("--live-protocol", default="", help="cv: JSON protocol overrides for --live")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--field", default="", help="cv: crop field (a fraction or auto)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cnn-arch", default="hybrid")
    ap.add_argument("--cnn-epochs", type=int, default=30)
    ap.add_argument("--cv-name", default="scan", help="report: prefix of the CV matrices")
    ap.add_argument("--score", default="error", choices=("error", "log"), help="report")
    ap.add_argument("--t-range", default="0,0.9", help="report: noise levels used (fractions)")
    ap.add_argument("--naive-trials", type=int, default=None, help="report: naive reference")
    ap.add_argument("--tolerance", type=float, default=0.01, help="report: nested choice")
    ap.add_argument("--anomaly-trials", type=int, default=None, help="report: trials scored")
    ap.add_argument("--reuse-cnn", action="store_true", help="loco: reuse saved CNN entropies")
    ap.add_argument("--no-cnn", action="store_true", help="loco: no CNN (its entropies NaN)")
    ap.add_argument("--calibrate", action="store_true", help="cv: also calibrate (slower)")
    ap.add_argument("--train-args", default="", help="package-cv: options of `train`")
    ap.add_argument("--predict-args", default="", help="package-cv: options of `predict`")
    args = ap.parse_args(argv)
    args.name = args.name or args.what
    COMMANDS[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
