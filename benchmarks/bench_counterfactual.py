"""Do counterfactual maps point at the deciding pixels? A check on synthetic cells.

Two classes of synthetic white cells that differ **only** in one localised feature with a
known pixel mask, drawn with the smear simulator (:mod:`napari_nucleus_ai.samples.smear`):

* ``plain``: a monocyte among red cells and platelets (kidney-shaped nucleus, grey-blue
  cytoplasm with vacuoles), as ``simulate_smear`` draws it, with a patch of stain
  precipitate (30 um^2 of the simulator's coarse dark granules) on the background just
  outside the cell, towards a random corner;
* ``granular``: the same, plus those granules (1.5 per um^2, drawn by the simulator's
  granule function) in a 120-degree sector of the cytoplasm at a random angle. The
  **deciding mask** is that sector of the cytoplasm (about 7 % of the crop at 32 px).

The precipitate is in both classes: it is as hard to denoise as the granules, so a map that
only finds hard-to-denoise texture finds it too, and a map that finds what decides does not.
Every cell has its own simulator seed (cell size, nucleus, vacuoles, red cells, platelets),
a random pixel size (0.18-0.22 um), a random position in the crop (+-12 px of 128) and HED
stain and light jitter (:mod:`napari_nucleus_ai.models.stain`). Granules are added by
Beer-Lambert (the field times ``10**-OD``), so a ``granular`` cell and its ``plain`` twin
(same seed) differ only inside the granule sector.

``train`` trains the project's pixel diffusion classifier on 400 cells per class through
``train`` (the ``train --arch diffusion`` entry point: 32 px crops, 3,000 optimiser steps,
no proposer since two classes leave it nothing to short-list):

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_counterfactual.py train \
        --out /tmp/B12/cf.zip [--per-class 400] [--epochs 75]

``evaluate`` checks the model's balanced accuracy on held-out cells of both classes (package
defaults, ``predict_items``), then for held-out ``granular`` cells computes
``generate.counterfactual`` towards ``plain`` (the dock's map: per-pixel denoising error as
``plain`` minus as ``granular``, averaged over the package's 32 shared noise trials, smoothed
by ``MAP_SMOOTH`` grid pixels; and the same with ``smooth=0``) and its IoU with the deciding
mask (resized to 32 px as the crop is, area >= 0.5).

**The binarisation rule, fixed before any IoU was seen:** the top-k pixels of the map, k =
the mask's area at 32 px. Baselines, binarised by the same rule: a disc of the same area at
the crop centre, and the cell's plain denoising error as ``granular`` (no difference) over
the same trials, smoothed alike and per pixel. Threshold-free figures beside them: AUROC for
mask vs other pixels, and how often the map's maximum falls in the mask. ``--first-seed
300000`` maps the development cells (where the smoothing was chosen), not the test cells.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_counterfactual.py evaluate \
        --model /tmp/B12/cf.zip [--cells 60] [--held-out 100] \
        --figure /tmp/B12/counterfactual.png --docs-figure docs/images/counterfactual-check.png \
        --json benchmarks/results/bench_counterfactual.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

CLASSES = ["granular", "plain"]
FEATURE = "granular"
FIELD = 160  # simulated field (px), the crop window is cut from it
CROP = 128  # crop side in source pixels
SHIFT = 12  # +- px of the cell's position in the crop
SIZE = 32  # the model's input side
SECTOR = np.pi / 3  # half-angle of the granule sector (120 degrees in all)
GRANULES_PER_UM2 = 1.5
PRECIPITATE_UM2 = 30.0  # stain precipitate beside every cell: a distractor of the same texture
TRAIN_SEED, TEST_SEED = 0, 100_000  # simulator seeds: training cells, held-out cells
DEV_SEED = 300_000  # cells for choices made while developing the map, never the test cells


def _granule_od(region, rng, um: float) -> np.ndarray:
    """Optical density (Y, X, 3) of the simulator's coarse dark granules scattered in ``region``."""
    from napari_nucleus_ai.samples import smear

    g = smear._granules(region, rng, GRANULES_PER_UM2 * um * um, 0.32 / um, region.shape)
    return g[..., None] * np.asarray(smear._CELL["basophil"][2], np.float32)


def _precipitate(cell, rng, um: float) -> np.ndarray:
    """A disc of :data:`PRECIPITATE_UM2` just outside the cell, towards a random crop corner."""
    r = np.sqrt(cell.sum() / np.pi)
    rho = np.sqrt(PRECIPITATE_UM2 / np.pi) / um
    th = np.pi / 4 + rng.integers(4) * np.pi / 2 + rng.uniform(-0.3, 0.3)
    cy, cx = FIELD / 2 + (r + rho + 2) * np.sin(th), FIELD / 2 + (r + rho + 2) * np.cos(th)
    yy, xx = np.mgrid[:FIELD, :FIELD]
    return (np.hypot(yy - cy, xx - cx) < rho) & ~cell


def draw_cell(seed: int, granular: bool):
    """One synthetic crop and its deciding mask.

    Both classes: a monocyte among red cells and platelets, with a patch of stain
    precipitate (the same dark granules) on the background beside it. ``granular`` cells
    also hold those granules in a sector of their cytoplasm (the deciding mask).

    Returns
    -------
    rgb : (CROP, CROP, 3) uint8
    mask : (CROP, CROP) bool
        The granule sector of the cytoplasm (drawn into ``rgb`` only when ``granular``).
    """
    from napari_nucleus_ai.models.stain import hed_jitter, light_jitter
    from napari_nucleus_ai.samples.smear import simulate_smear

    rng = np.random.default_rng([seed, 7])
    um = rng.uniform(0.18, 0.22)
    sim = simulate_smear(
        seed=seed,
        shape=(FIELD, FIELD),
        pixel_size_um=um,
        n_wbc=1,
        classes=("monocyte",),
        centre_wbc=True,
        n_platelets=int(FIELD * FIELD * um * um / 300.0),  # simulate_wbc_crop's density
    )
    cell = sim.cells == 1
    yy, xx = np.mgrid[:FIELD, :FIELD] - FIELD / 2
    angle = np.angle(np.exp(1j * (np.arctan2(yy, xx) - rng.uniform(0, 2 * np.pi))))
    mask = cell & (sim.nuclei == 0) & (np.abs(angle) < SECTOR)
    y0, x0 = (FIELD - CROP) // 2 + rng.integers(-SHIFT, SHIFT + 1, 2)
    od = _granule_od(_precipitate(cell, rng, um), rng, um)  # both classes, drawn first
    if granular:  # so a granular cell and its plain twin (same seed) differ only in the mask
        od = od + _granule_od(mask, rng, um) * cell[..., None]
    img = sim.image.astype(np.float32) / 255.0 * np.power(10.0, -od)  # Beer-Lambert
    stain = np.random.default_rng([seed, 11])  # the same stain for a cell and its twin
    img = light_jitter(hed_jitter(img, stain, bias=0.005), stain)
    win = (slice(y0, y0 + CROP), slice(x0, x0 + CROP))
    rgb = np.clip(np.round(img[win] * 255), 0, 255).astype(np.uint8)
    return rgb, mask[win]


def model_mask(mask: np.ndarray) -> np.ndarray:
    """The deciding mask as the model sees the crop: resized like it, area >= 0.5."""
    from napari_nucleus_ai.models.crops import square_resize

    return square_resize(mask.astype(np.float32), SIZE)[..., 0] >= 0.5


def cells(first_seed: int, n: int, cls: str):
    """``n`` crops of class ``cls`` from consecutive simulator seeds, with their masks."""
    out = [draw_cell(first_seed + i, cls == FEATURE) for i in range(n)]
    return [c for c, _ in out], [m for _, m in out]


def train_set(per_class: int):
    """The training cells: ``per_class`` per class, every cell its own seed."""
    from napari_nucleus_ai.classify.trainset import TrainingSet

    samples, labels = [], []
    for k, cls in enumerate(CLASSES):
        crops, _ = cells(TRAIN_SEED + k * per_class, per_class, cls)
        samples += crops
        labels += [k] * per_class
    return TrainingSet(samples, np.asarray(labels), list(CLASSES), "brightfield_rgb")


def run_train(args) -> None:
    from napari_nucleus_ai.classify.train import train

    c0, t0 = time.process_time(), time.perf_counter()
    ts = train_set(args.per_class)
    c1 = time.process_time()
    print(f"{len(ts)} training cells drawn in {c1 - c0:.1f} CPU s", flush=True)

    def show(p):
        if p.message and ("epoch" not in p.message or p.done % 400 == 0):
            print(f"  {p.message}", flush=True)

    res = train(
        ts,
        args.out,
        on_progress=show,
        arch="diffusion",
        epochs=args.epochs,
        crop_size=SIZE,
        threads=1,
        seed=0,
        params={"proposer": False},
    )
    log = {
        "model": res.path,
        "per_class": args.per_class,
        "epochs": args.epochs,
        "steps": 40 * args.epochs,
        "cpu_s_draw": round(c1 - c0, 1),
        "cpu_s_train": round(time.process_time() - c1, 1),
        "wall_s": round(time.perf_counter() - t0, 1),
        "load_end": round(os.getloadavg()[0], 2),
        "val_metrics": res.metrics,
    }
    Path(args.out).with_suffix(".train.json").write_text(json.dumps(log, indent=1))
    print(json.dumps(log, indent=1))


def top_k(a: np.ndarray, k: int) -> np.ndarray:
    """Boolean image of the ``k`` largest values of ``a``."""
    out = np.zeros(a.size, bool)
    out[np.argsort(-a.ravel(), kind="stable")[:k]] = True
    return out.reshape(a.shape)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def auroc(score: np.ndarray, mask: np.ndarray) -> float:
    """Probability that a mask pixel scores above a pixel outside it (ties count half)."""
    from scipy.stats import rankdata

    r = rankdata(score.ravel())
    m = mask.ravel()
    n1, n0 = int(m.sum()), int((~m).sum())
    return float((r[m].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def centre_blob(k: int) -> np.ndarray:
    """The ``k`` pixels nearest the crop centre."""
    yy, xx = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    return top_k(-np.hypot(yy, xx), k)


def plain_error_map(clf, x0: np.ndarray, cls: str, trials: int) -> np.ndarray:
    """Mean per-pixel denoising error of ``x0`` as ``cls`` over the same shared trials
    the counterfactual map uses (the baseline: an error, not a difference)."""
    import torch

    from napari_nucleus_ai.models.diffusion.classify import trial_plan

    t_plan, eps_plan = trial_plan(clf, trials)
    x = clf.encode(x0[None]).to(clf.device)
    eps = eps_plan[:trials].to(clf.device)
    t = torch.as_tensor(t_plan[:trials], device=clf.device)
    y = torch.full((trials,), clf.class_names.index(cls), device=clf.device, dtype=torch.long)
    with torch.inference_mode():
        xt = clf.noisy(x.expand(trials, -1, -1, -1), t, eps)
        err = ((clf.eps(xt, t, y) - eps) ** 2).mean(dim=1).mean(0)
    return err.float().cpu().numpy()


def accuracy(package, n: int) -> dict:
    """Balanced accuracy on ``n`` held-out cells per class (package defaults)."""
    from napari_nucleus_ai.classify.predict import predict_items
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    items, true = [], []
    for k, cls in enumerate(CLASSES):
        crops, _ = cells(TEST_SEED + 50_000 + k * n, n, cls)
        items += crops
        true += [k] * n
    c0 = time.process_time()
    pred = predict_items(package, items, workers=1)
    true = np.asarray(true)
    return {
        "cells_per_class": n,
        "balanced_accuracy": round(float(balanced_accuracy(true, pred.index)), 4),
        "recall": {
            c: round(float((pred.index[true == k] == k).mean()), 4) for k, c in enumerate(CLASSES)
        },
        "evaluations_per_cell": round(float(np.mean(pred.extra["evaluations"])), 1),
        "cpu_s": round(time.process_time() - c0, 1),
    }


def _scores(name: str, a: np.ndarray, m: np.ndarray, k: int) -> dict:
    return {f"iou_{name}": round(iou(top_k(a, k), m), 4), f"auroc_{name}": round(auroc(a, m), 4)}


def evaluate_maps(package, clf, n: int, trials: int | None, first_seed: int = TEST_SEED):
    """Counterfactual and baseline maps of ``n`` held-out granular cells, with their IoUs.

    ``map``: the package's counterfactual map (smoothed by ``MAP_SMOOTH`` grid pixels);
    ``map_per_pixel``: the same with ``smooth=0``; ``plain_error``: the cell's denoising
    error as ``granular``, smoothed alike; ``plain_error_per_pixel``: not smoothed.
    """
    from scipy.ndimage import gaussian_filter

    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.diffusion.generate import MAP_SMOOTH, counterfactual
    from napari_nucleus_ai.models.inputs import prepare

    k_trials = int(trials or clf.protocol["max_trials"])
    crops, masks = cells(first_seed, n, FEATURE)
    rows, shown = [], []
    for i, (crop, mask) in enumerate(zip(crops, masks, strict=True)):
        m = model_mask(mask)
        k = int(m.sum())
        x0 = prepare([crop], package.card)[0][0]
        args = {"source": FEATURE, "target": "plain", "trials": k_trials}
        cf = run_sync(counterfactual(clf, x0, **args))
        raw = run_sync(counterfactual(clf, x0, smooth=0, **args))["map"]
        err = plain_error_map(clf, x0, FEATURE, k_trials)
        err_s = gaussian_filter(err, MAP_SMOOTH, mode="nearest")
        rows.append(
            {
                "seed": first_seed + i,
                "mask_px": k,
                "p_granular": round(float(cf["p"][CLASSES.index(FEATURE)]), 4),
                **_scores("map", cf["map"], m, k),
                **_scores("map_per_pixel", raw, m, k),
                **_scores("plain_error", err_s, m, k),
                **_scores("plain_error_per_pixel", err, m, k),
                "iou_centre_blob": round(iou(centre_blob(k), m), 4),
                "max_in_mask": bool(m.ravel()[int(np.argmax(cf["map"]))]),
            }
        )
        shown.append((crop, m, raw, cf["map"], err_s))
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{n} cells", flush=True)
    return rows, shown, k_trials


def summary(rows: list[dict]) -> dict:
    out = {}
    for key in rows[0]:
        if key.startswith(("iou_", "auroc_")):
            v = np.asarray([r[key] for r in rows])
            out[key] = {"mean": round(float(v.mean()), 4), "median": round(float(np.median(v)), 4)}
    frac = np.asarray([r["mask_px"] for r in rows]) / SIZE**2
    p = frac  # k random pixels: expected precision = k / N, IoU = p / (2 - p)
    out["iou_random_pixels"] = round(float(np.mean(p / (2 - p))), 4)
    out["mask_fraction_of_crop"] = round(float(frac.mean()), 4)
    out["max_in_mask"] = round(float(np.mean([r["max_in_mask"] for r in rows])), 4)
    out["cells_at_or_above_0.5"] = int(sum(r["iou_map"] >= 0.5 for r in rows))
    out["classified_granular"] = int(sum(r["p_granular"] > 0.5 for r in rows))
    return out


def figure(shown, path: str, n: int = 6) -> None:
    """Cells with the mask outline, their maps and the plain error, one column per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_nucleus_ai.models.crops import square_resize

    names = [
        "granular cell, 32 px",
        "map per pixel",
        "counterfactual map\n(green: granular)",
        "plain error, smoothed\n(baseline)",
    ]
    fig, axes = plt.subplots(len(names), n, figsize=(1.9 * n, 2.0 * len(names)))
    for j, (crop, m, raw, cmap, err) in enumerate(shown[:n]):
        panels = [(np.clip(square_resize(crop, SIZE), 0, 1), {})]
        for a in (raw, cmap):
            lim = float(np.abs(a).max()) or 1.0
            panels.append((a, {"cmap": "PiYG", "vmin": -lim, "vmax": lim}))
        panels.append((err, {"cmap": "magma"}))
        for i, (img, kw) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, interpolation="nearest", **kw)
            ax.contour(m, levels=[0.5], colors="cyan", linewidths=1.2)
            ax.set_xticks([])
            ax.set_yticks([])
    for i, name in enumerate(names):
        axes[i, 0].set_ylabel(name, fontsize=9)
    fig.suptitle("Deciding mask (cyan) vs the counterfactual map towards 'plain'", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_evaluate(args) -> None:
    import torch

    from napari_nucleus_ai.models.diffusion.tasks import load_diffusion

    torch.set_num_threads(1)
    load0 = os.getloadavg()[0]
    package, clf = load_diffusion(args.model, "cpu")
    acc = accuracy(package, args.held_out)
    print(json.dumps(acc), flush=True)
    c0, t0 = time.process_time(), time.perf_counter()
    rows, shown, k_trials = evaluate_maps(package, clf, args.cells, args.trials, args.first_seed)
    result = {
        "model": str(args.model),
        "classes": CLASSES,
        "rule": "top-k pixels of the map, k = the mask's area at 32 px (fixed in advance)",
        "trials": k_trials,
        "first_seed": args.first_seed,
        "accuracy": acc,
        "cells": len(rows),
        "summary": summary(rows),
        "cpu_s_maps": round(time.process_time() - c0, 1),
        "wall_s_maps": round(time.perf_counter() - t0, 1),
        "load_start": round(load0, 2),
        "load_end": round(os.getloadavg()[0], 2),
        "per_cell": rows,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "per_cell"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    for path in (args.figure, args.docs_figure):
        if path:
            figure(shown, path)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train the diffusion classifier on synthetic cells")
    tr.add_argument("--out", required=True, help="model package (.zip)")
    tr.add_argument("--per-class", type=int, default=400)
    tr.add_argument("--epochs", type=int, default=75, help="x 40 optimiser steps")
    ev = sub.add_parser("evaluate", help="accuracy, counterfactual IoU and baselines")
    ev.add_argument("--model", required=True)
    ev.add_argument("--cells", type=int, default=60, help="held-out granular cells mapped")
    ev.add_argument("--held-out", type=int, default=100, help="cells per class for accuracy")
    ev.add_argument("--trials", type=int, default=None, help="default: the package's max_trials")
    ev.add_argument(
        "--first-seed",
        type=int,
        default=TEST_SEED,
        help=f"seed of the first mapped cell (test cells: {TEST_SEED}; {DEV_SEED}: development)",
    )
    ev.add_argument("--figure", default=None)
    ev.add_argument("--docs-figure", default=None)
    ev.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    {"train": run_train, "evaluate": run_evaluate}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
