"""Benchmark: which training / input recipe of the default ``morph`` model transfers to
another microscope.

Every recipe is a way to turn a crop into the 192-px model input (the current crop
``field``; the canonical cell frame with or without a stain normalisation; a common low
resolution) plus a training augmentation (none; the product's stain jitter; a
"microscope" augmentation: framing, defocus, contrast compression, hue rotation of the
stain, background colour, JPEG). For each recipe the script measures, with the product's
own features (morphology descriptor + frozen EfficientNet-Lite0, one view) and closed-form
logistic heads (:func:`napari_nucleus_ai.models.nets.morph.fit_head`, logits summed):

* PBC 4-fold CV balanced accuracy on clean held-out crops;
* the same held-out crops under a harsh simulated "other microscope" shift family
  (:func:`harsh_shift`: paler haematoxylin in HED space, tight framing, smaller pixels,
  strong defocus, white balance, JPEG - implemented independently of the augmentation);
* BCCD white cells labelled by eye (``benchmarks/bccd_labels_by_eye.csv``): zero-shot, and
  with 5 cells per class added to training (repeated so the source counts like PBC), over
  several split seeds. A development check, not a tuning target.

Features are cached per recipe in ``--cache``. This is a research benchmark: the product
figures come from ``bench_fewshot_bccd.py`` and ``bench_trust.py`` through the CLI.

Run::

    PYTHONPATH=benchmarks OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python \\
        benchmarks/bench_transfer.py --recipes field,frame_twopoint_micro3

``--views 1,2,8`` also fits the ImageNet head on 1, 2 or 8 flips / rotations of every
training row (clean crops and copies; the product fits it on 8 views up to 500 crops),
features of the views cached per recipe (``NAME_views.npz``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
SIZE = 192
COUNTED = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")


# ----------------------------------------------------------------------------- data
def load_bccd_by_eye(margin: float = 0.15):
    """The by-eye labelled BCCD cells cut as ``bench_fewshot_bccd.py`` cuts them."""
    from trust_prototype.data import DATA, crop_box, read_rgb

    imgs, labels, cache = [], [], {}
    with open(HERE / "bccd_labels_by_eye.csv") as fh:
        for r in csv.DictReader(fh):
            if r["image"] not in cache:
                cache[r["image"]] = read_rgb(DATA / "bccd" / "JPEGImages" / r["image"])
            box = tuple(int(v) for v in r["box"].split(","))
            imgs.append(crop_box(cache[r["image"]], box, margin))
            labels.append(r["label"])
    return imgs, np.asarray(labels)


# ----------------------------------------------------------------------------- shifts
def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)).save(
        buf, "JPEG", quality=int(quality)
    )
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"), np.float32) / 255


def _cell_px(rgb: np.ndarray) -> float:
    from napari_nucleus_ai.models.framing import _found_cell

    return float(_found_cell(np.asarray(rgb, np.float32))["diameter"])


#: :func:`harsh_shift`'s ranges: haematoxylin and eosin factors (HED), box side in cell
#: diameters, pixel-size factor, defocus sigma as a fraction of the cell diameter, per-channel
#: white balance, JPEG quality (high end excluded).
HARSH = {
    "haem": (0.35, 0.75),
    "eosin": (0.8, 1.5),
    "box": (1.1, 1.6),
    "pixel": (1.2, 2.0),
    "defocus": (0.01, 0.04),
    "balance": (0.85, 1.12),
    "jpeg": (40, 81),
}


def harsh_shift(rgb: np.ndarray, rng: np.random.Generator, ranges: dict = HARSH) -> np.ndarray:
    """A random "other microscope" with ``ranges`` (:data:`HARSH`: haematoxylin x U(0.35,
    0.75), eosin x U(0.8, 1.5), tight box U(1.1, 1.6) cell diameters, pixel size x U(1.2, 2),
    defocus sigma U(1, 4) % of the cell diameter, random white balance, JPEG q U(40, 80))."""
    from scipy import ndimage as ndi
    from skimage.color import hed2rgb, rgb2hed
    from skimage.transform import rescale

    r = ranges
    x = np.clip(rgb, 1e-4, 1)
    hed = rgb2hed(x) * np.array([rng.uniform(*r["haem"]), rng.uniform(*r["eosin"]), 1.0])
    x = np.clip(hed2rgb(hed), 0, 1).astype(np.float32)
    d = _cell_px(rgb)
    s = x.shape[0]
    k = int(np.clip(rng.uniform(*r["box"]) * d, 0.25 * s, s))
    o = (s - k) // 2
    x = x[o : o + k, o : o + k]
    f = 1 / rng.uniform(*r["pixel"])
    x = np.clip(rescale(x, f, channel_axis=-1, anti_aliasing=True), 0, 1)
    sig = rng.uniform(*r["defocus"]) * d * f
    x = ndi.gaussian_filter(x, (sig, sig, 0))
    x = np.clip(x * rng.uniform(*r["balance"], 3), 0, 1)
    return _jpeg(x, rng.integers(*r["jpeg"]))


# ----------------------------------------------------------------------------- recipes
def microscope_augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation: :func:`napari_nucleus_ai.models.stain.microscope_jitter`."""
    from napari_nucleus_ai.models.stain import microscope_jitter

    return microscope_jitter(rgb, rng)


def mild_augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A milder microscope jitter: contrast g 0.75-1, hue +-12 degrees, mix 0-0.2, defocus
    0-2 % of the cell diameter."""
    from napari_nucleus_ai.models.stain import microscope_jitter

    return microscope_jitter(rgb, rng, contrast=0.75, hue_deg=12.0, mix=0.2, defocus=0.02)


def stain_augment(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from napari_nucleus_ai.models.stain import augment_crop

    return augment_crop(rgb, rng)


RECIPES = {
    # name: (input, normalisation, augmentation, copies)
    "field": ("field", None, None, 0),
    "frame_nucod_stain1": ("frame", "nucleus_od", "stain", 1),
    "frame_none_micro3": ("frame", None, "micro", 3),
    "frame_nucod_micro3": ("frame", "nucleus_od", "micro", 3),
    "frame_twopoint_micro3": ("frame", "two_point", "micro", 3),
    "frame_twopoint_low_micro3": ("frame_low", "two_point", "micro", 3),
    "frame_none_low_micro3": ("frame_low", None, "micro", 3),
    "frame_twopoint0": ("frame", "two_point", None, 0),
    "frame_scale_micro3": ("frame", "scale", "micro", 3),
    "frame_twopoint_mild3": ("frame", "two_point", "mild", 3),
    "field_micro3": ("field", None, "micro", 3),
    # the red cells as the ruler (the frame's ``cell_rbc``): cell size relative to them kept
    "frame_rbc_twopoint_micro3": ("frame_rbc", "two_point", "micro", 3),
}


class Inputs:
    """Model inputs of a recipe (fitted on the PBC crops)."""

    def __init__(self, kind: str, norm, pbc):
        from napari_nucleus_ai.models.framing import auto_field, fit_frame

        self.kind, self.norm = kind, norm
        if kind == "field":
            self.field = auto_field(pbc)
        else:
            self.card_frame, _ = fit_frame(pbc, SIZE, red_cells=kind == "frame_rbc")
            if norm in ("two_point", "scale"):
                from napari_nucleus_ai.models.stain import od_fit as two_point_fit

                self.ref = self._two_point_ref(pbc, two_point_fit)
            elif norm == "nucleus_od":
                self.ref = self.card_frame["stain"]

    def _two_point_ref(self, pbc, fit):
        from napari_nucleus_ai.models.cellframe import canonical_frame
        from napari_nucleus_ai.models.framing import _found_cell, frame_cell_px

        frames, plasmas = [], []
        for c in pbc:
            found = _found_cell(np.asarray(c, np.float32))
            cell_px = frame_cell_px(self.card_frame, found)
            f, info = canonical_frame(c, SIZE, 0.5, cell_px, found)
            frames.append(f)
            plasmas.append(info["plasma"])
        return fit(frames, plasmas)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from napari_nucleus_ai.models.crops import square_resize
        from napari_nucleus_ai.models.framing import _found_cell, centre_field

        rgb = np.asarray(rgb, np.float32)
        if self.kind == "field":
            return np.clip(square_resize(centre_field(rgb, self.field), SIZE), 0, 1)
        from napari_nucleus_ai.models.cellframe import canonical_frame, trim_padding
        from napari_nucleus_ai.models.framing import frame_cell_px

        rgb = trim_padding(rgb)
        found = _found_cell(rgb)
        img, info = canonical_frame(rgb, SIZE, 0.5, frame_cell_px(self.card_frame, found), found)
        if self.norm == "nucleus_od":
            from napari_nucleus_ai.models.stain import od_normalise

            img = od_normalise(img, info["plasma"], self.ref)
        elif self.norm == "two_point":
            from napari_nucleus_ai.models.stain import two_point_normalise

            img = two_point_normalise(img, info["plasma"], self.ref)
        elif self.norm == "scale":  # the two-point scale without its hue rotation
            img = scale_normalise(img, info["plasma"], self.ref)
        if self.kind == "frame_low":
            from skimage.transform import resize

            low = resize(img, (SIZE // 2, SIZE // 2), anti_aliasing=True)
            img = np.clip(resize(low, (SIZE, SIZE), order=1), 0, 1).astype(np.float32)
        return img


def scale_normalise(frame: np.ndarray, plasma, ref: dict) -> np.ndarray:
    """OD against the frame's plasma scaled by one number so the nucleus' OD norm is the
    reference's, on the reference plasma (no hue change)."""
    from napari_nucleus_ai.models.stain import SCALE_RANGE, _nucleus_od

    od, v = _nucleus_od(frame, plasma)
    r = np.asarray(ref["nucleus_od"], float)
    s = float(np.clip(np.linalg.norm(r) / max(np.linalg.norm(v), 1e-3), *SCALE_RANGE))
    return np.clip(np.asarray(ref["plasma"]) * np.exp(-od * s), 0, 1).astype(np.float32)


class Features:
    """Descriptor + ImageNet (one view) features of model inputs."""

    def __init__(self):
        import torch

        from napari_nucleus_ai.models.nets.imagenet import (
            build_backbone,
            inference_copy,
            load_imagenet_weights,
        )

        torch.set_num_threads(1)
        net = build_backbone()
        load_imagenet_weights(net)
        self.net = inference_copy(net.eval())

    def __call__(self, imgs) -> np.ndarray:
        import torch

        from napari_nucleus_ai.models.nets.imagenet import features
        from napari_nucleus_ai.models.nets.morphology import describe_cells

        x = np.stack(imgs).astype(np.float32)
        d = describe_cells(x)
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        with torch.inference_mode():
            f = np.concatenate([features(self.net, b, 1 / 1.4).numpy() for b in t.split(32)])
        return np.concatenate([d, f], 1).astype(np.float32)


def extract(name: str, pbc, y_pbc, bccd, cache: Path, shifts: int = 1) -> dict:
    """Features of a recipe (cached): PBC clean, PBC augmented copies, PBC harsh-shifted,
    BCCD."""
    path = cache / f"{name}.npz"
    if path.exists():
        return dict(np.load(path))
    kind, norm, aug, copies = RECIPES[name]
    t0 = time.perf_counter()
    make = Inputs(kind, norm, pbc)
    feat = Features()
    out = {"clean": feat([make(c) for c in pbc])}
    fn = {"micro": microscope_augment, "mild": mild_augment, "stain": stain_augment}.get(aug)
    rng = np.random.default_rng(0)
    if copies:
        out["aug"] = np.stack([feat([make(fn(c, rng)) for c in pbc]) for _ in range(copies)])
    srng = np.random.default_rng(123)  # the same shifted crops for every recipe
    shifted = [[harsh_shift(c, srng) for c in pbc] for _ in range(shifts)]
    out["shift"] = np.stack([feat([make(c) for c in s]) for s in shifted])
    out["bccd"] = feat([make(c) for c in bccd])
    out["seconds"] = np.float64(time.perf_counter() - t0)
    np.savez(path, **out)
    return out


def view_features(name: str, pbc, cache: Path) -> dict:
    """ImageNet features (cached) of the 8 flips and rotations of a recipe's training
    inputs, in the order ``Morph._fit_imagenet`` takes them: ``clean`` ``(8, N, F)`` and
    ``aug`` ``(copies, 8, N, F)`` (the same augmented crops as :func:`extract`)."""
    import torch

    path = cache / f"{name}_views.npz"
    if path.exists():
        return dict(np.load(path))
    from napari_nucleus_ai.models.nets.imagenet import features

    kind, norm, aug, copies = RECIPES[name]
    t0 = time.perf_counter()
    make, net = Inputs(kind, norm, pbc), Features().net
    fn = {"micro": microscope_augment, "mild": mild_augment, "stain": stain_augment}.get(aug)

    def dihedral(imgs):
        t = torch.from_numpy(np.ascontiguousarray(np.stack(imgs).transpose(0, 3, 1, 2)))
        out = []
        for k in range(8):
            v = torch.rot90(t, k % 4, (-2, -1))
            v = v.flip(-1) if k >= 4 else v
            with torch.inference_mode():
                out.append(np.concatenate([features(net, b, 1 / 1.4).numpy() for b in v.split(32)]))
        return np.stack(out)

    out = {"clean": dihedral([make(c) for c in pbc])}
    rng = np.random.default_rng(0)  # as in extract: the same augmented crops
    if copies:
        out["aug"] = np.stack([dihedral([make(fn(c, rng)) for c in pbc]) for _ in range(copies)])
    out["seconds"] = np.float64(time.perf_counter() - t0)
    np.savez(path, **out)
    return out


def evaluate_views(F: dict, V: dict, y: np.ndarray, classes, views: int) -> dict:
    """PBC CV and harsh shift with the ImageNet head fitted on ``views`` flips / rotations
    of every training row (clean crops and copies); the test crops in one view."""
    import torch

    from napari_nucleus_ai.models.nets.morph import fit_head
    from napari_nucleus_ai.models.nets.morph_params import DEFAULTS
    from napari_nucleus_ai.models.nets.morphology import N_FEATURES

    n_cls, fold = len(classes), pbc_folds(y)
    imgs = [V["clean"]] + (list(V["aug"]) if "aug" in V else [])  # each (8, N, F)
    pc, ps, ys_ = [], [], []
    for k in range(4):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        f, yy, g = train_rows(F, tr, y)
        hd = fit_head(f[:, :N_FEATURES], yy, n_cls, DEFAULTS["c_grid"], 4, 0, g)
        fi = np.concatenate([np.concatenate([a[v][tr] for a in imgs]) for v in range(views)])
        hi = fit_head(
            fi, np.tile(yy, views), n_cls, DEFAULTS["imagenet_c_grid"], 4, 0, np.tile(g, views)
        )
        preds = []
        for t in [F["clean"][te]] + [s[te] for s in F["shift"]]:
            z = 0.0
            for h, sl in ((hd, slice(0, N_FEATURES)), (hi, slice(N_FEATURES, None))):
                x = torch.as_tensor((t[:, sl] - h["mean"]) / h["std"], dtype=torch.float32)
                z = z + (x @ h["weight"].T + h["bias"]).numpy()
            preds.append(z.argmax(1))
        pc.append(preds[0])
        ps.append(np.stack(preds[1:]))
        ys_.append(y[te])
    yt = np.concatenate(ys_)
    return {
        "pbc_cv": bacc(yt, np.concatenate(pc)),
        "pbc_harsh_shift": bacc(np.tile(yt, len(F["shift"])), np.concatenate(ps, 1).reshape(-1)),
    }


def size_features(name: str, pbc, bccd, cache: Path) -> dict:
    """The central cell's diameter in red-cell diameters (:func:`.cellframe.find_cell`'s
    ``diameter / red_cell``, log) of every crop :func:`extract` frames, cached: ``clean``,
    ``aug``, ``shift``, ``bccd`` as ``(..., 2)`` arrays of (log ratio, red cells seen); the
    log ratio is NaN where the crop shows no whole red cell."""
    path = cache / f"{name}_size.npz"
    if path.exists():
        return dict(np.load(path))
    from napari_nucleus_ai.models.cellframe import trim_padding
    from napari_nucleus_ai.models.framing import _found_cell

    _, _, aug, copies = RECIPES[name]
    fn = {"micro": microscope_augment, "mild": mild_augment, "stain": stain_augment}.get(aug)

    def ratio(imgs):
        out = []
        for c in imgs:
            f = _found_cell(trim_padding(np.asarray(c, np.float32)))
            r = f["diameter"] / f["red_cell"] if f.get("red_cell") else np.nan
            out.append((np.log(r), np.isfinite(r)))
        return np.asarray(out, np.float64)

    out = {"clean": ratio(pbc)}
    rng = np.random.default_rng(0)  # as in extract: the same augmented and shifted crops
    if copies:
        out["aug"] = np.stack([ratio([fn(c, rng) for c in pbc]) for _ in range(copies)])
    srng = np.random.default_rng(123)
    out["shift"] = np.stack([ratio([harsh_shift(c, srng) for c in pbc])])
    out["bccd"] = ratio(bccd)
    np.savez(path, **out)
    return out


def with_size(F: dict, S: dict) -> dict:
    """``F`` with the size features of :func:`size_features` after the descriptor (the
    missing log ratio is the median of the clean PBC crops': a typical cell)."""
    from napari_nucleus_ai.models.nets.morphology import N_FEATURES

    fill = float(np.nanmedian(S["clean"][..., 0]))
    out = {}
    for k in ("clean", "aug", "shift", "bccd"):
        if k in F:
            s = np.nan_to_num(S[k], nan=fill)
            out[k] = np.concatenate([F[k][..., :N_FEATURES], s, F[k][..., N_FEATURES:]], -1)
    return out


# ----------------------------------------------------------------------------- heads
def fit_predict(f_tr, y_tr, groups, f_te_list, n_classes: int, seed: int = 0, n_desc=None):
    """Descriptor head + ImageNet head (summed logits) fitted on ``f_tr``; probabilities of
    every array in ``f_te_list`` (the first ``n_desc`` columns are the descriptor's:
    ``N_FEATURES`` by default)."""
    import torch

    from napari_nucleus_ai.models.nets.morph import fit_head
    from napari_nucleus_ai.models.nets.morph_params import DEFAULTS
    from napari_nucleus_ai.models.nets.morphology import N_FEATURES

    n_desc = N_FEATURES if n_desc is None else n_desc
    parts = [
        (slice(0, n_desc), DEFAULTS["c_grid"]),
        (slice(n_desc, None), DEFAULTS["imagenet_c_grid"]),
    ]
    logits = [0.0] * len(f_te_list)
    for sl, grid in parts:
        h = fit_head(f_tr[:, sl], y_tr, n_classes, grid, 4, seed, groups)
        for i, f in enumerate(f_te_list):
            z = torch.as_tensor((f[:, sl] - h["mean"]) / h["std"], dtype=torch.float32)
            logits[i] = logits[i] + (z @ h["weight"].T + h["bias"]).numpy()
    out = []
    for z in logits:
        p = np.exp(z - z.max(1, keepdims=True))
        out.append(p / p.sum(1, keepdims=True))
    return out


def bacc(y, pred, classes=None) -> float:
    cls = np.unique(y) if classes is None else classes
    return float(np.mean([(pred[y == c] == c).mean() for c in cls if (y == c).any()]))


def train_rows(F: dict, idx: np.ndarray, y: np.ndarray):
    """Training rows of PBC crops ``idx``: the clean crops and their augmented copies."""
    rows, ys, groups = [F["clean"][idx]], [y[idx]], [idx]
    if "aug" in F:
        for a in F["aug"]:
            rows.append(a[idx])
            ys.append(y[idx])
            groups.append(idx)
    return np.concatenate(rows), np.concatenate(ys), np.concatenate(groups)


def fewshot_mask(by: np.ndarray, seed: int, per_class: int = 5) -> np.ndarray:
    """The BCCD cells taken as corrections for split seed ``seed``: ``per_class`` per class
    (all but one of a class with fewer)."""
    r = np.random.default_rng(seed)
    mask = np.zeros(len(by), bool)
    for c in np.unique(by):
        idx = np.flatnonzero(by == c)
        mask[r.choice(idx, min(per_class, len(idx) - 1), replace=False)] = True
    return mask


def pbc_folds(y: np.ndarray, k: int = 4, seed: int = 0) -> np.ndarray:
    """Stratified fold number of every PBC crop (split seed ``seed``)."""
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(y), int)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = np.arange(len(idx)) % k
    return fold


def evaluate(
    F: dict, y: np.ndarray, classes, bccd_y: np.ndarray, seeds=(0, 1, 2), n_desc=None
) -> dict:
    n_cls = len(classes)
    fold = pbc_folds(y)
    pc, ps, ys_ = [], [], []
    for k in range(4):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        f, yy, g = train_rows(F, tr, y)
        tests = [F["clean"][te]] + [s[te] for s in F["shift"]]
        p_clean, *p_sh = fit_predict(f, yy, g, tests, n_cls, n_desc=n_desc)
        pc.append(p_clean.argmax(1))
        ps.append(np.stack([p.argmax(1) for p in p_sh]))
        ys_.append(y[te])
    yt = np.concatenate(ys_)
    out = {
        "pbc_cv": bacc(yt, np.concatenate(pc)),
        "pbc_harsh_shift": bacc(np.tile(yt, len(F["shift"])), np.concatenate(ps, 1).reshape(-1)),
    }
    pred = np.concatenate(pc)
    out["pbc_recall"] = {classes[c]: float((pred[yt == c] == c).mean()) for c in np.unique(yt)}
    # BCCD zero-shot
    names = np.asarray(classes)
    by = np.array([list(classes).index(c) for c in bccd_y])
    f, yy, g = train_rows(F, np.arange(len(y)), y)
    (pb,) = fit_predict(f, yy, g, [F["bccd"]], n_cls, n_desc=n_desc)
    counted = [list(classes).index(c) for c in COUNTED]
    am = pb.argmax(1)
    out["bccd_zero_shot"] = bacc(by, am, counted)
    out["bccd_recall"] = {names[c]: float((am[by == c] == c).mean()) for c in counted}
    vals, cnt = np.unique(names[am], return_counts=True)
    out["bccd_mix"] = dict(zip(vals.tolist(), cnt.tolist(), strict=True))
    # few-shot: 5 per class (all but one basophil), repeated to count like PBC
    few = []
    for seed in seeds:
        mask = fewshot_mask(by, seed)
        rep = max(1, round(len(y) / mask.sum()))
        ci = np.repeat(np.flatnonzero(mask), rep)
        f2 = np.concatenate([f, F["bccd"][ci]])
        y2 = np.concatenate([yy, by[ci]])
        g2 = np.concatenate([g, len(y) + ci])
        (pf,) = fit_predict(f2, y2, g2, [F["bccd"][~mask]], n_cls, n_desc=n_desc)
        few.append(bacc(by[~mask], pf.argmax(1), counted))
    out["bccd_fewshot"] = few
    out["bccd_fewshot_mean"] = float(np.mean(few))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--cache", default="/tmp/bench_transfer")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_transfer.json"))
    ap.add_argument(
        "--size",
        action="store_true",
        help="also each recipe with the cell's diameter in red cells after the descriptor "
        "(stored as NAME+size)",
    )
    ap.add_argument(
        "--views",
        default="",
        help="also fit the ImageNet head on these numbers of flips / rotations of every "
        "training row (e.g. 1,2,8; PBC CV and harsh shift only)",
    )
    args = ap.parse_args(argv)
    from trust_prototype.data import CLASSES, load_pbc

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    pbc, y, _ = load_pbc()
    bccd, by = load_bccd_by_eye()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    out_path = Path(args.out)
    stored = json.loads(out_path.read_text()) if out_path.exists() else {}
    results = stored.setdefault("recipes", {})
    for name in args.recipes.split(","):
        t = time.perf_counter()
        F = extract(name, pbc, y, bccd, cache)
        r = evaluate(F, y, CLASSES, by, seeds)
        r.update(
            recipe=list(RECIPES[name]),
            feature_s=float(F["seconds"]),
            eval_s=time.perf_counter() - t,
            load=os.getloadavg()[0],
        )
        if args.views:
            V = view_features(name, pbc, cache)
            r["views"] = {
                v: evaluate_views(F, V, y, CLASSES, int(v)) for v in args.views.split(",")
            }
            r["views_feature_s"] = float(V["seconds"])
        results[name] = r
        print(name, json.dumps({k: v for k, v in r.items() if k != "bccd_recall"}), flush=True)
        if args.size:
            from napari_nucleus_ai.models.nets.morphology import N_FEATURES

            S = size_features(name, pbc, bccd, cache)
            r2 = evaluate(with_size(F, S), y, CLASSES, by, seeds, n_desc=N_FEATURES + 2)
            r2.update(recipe=[*RECIPES[name], "size"], load=os.getloadavg()[0])
            r2["red_cells_seen"] = {k: float(S[k][..., 1].mean()) for k in S}
            results[name + "+size"] = r2
            print(name + "+size", json.dumps(r2), flush=True)
        out_path.write_text(json.dumps(stored, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
