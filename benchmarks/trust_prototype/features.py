"""Features for the trust benchmark: the current pipeline and the canonical-frame one.

* current (``base``): the crop's centre ``field`` (``framing.auto_field`` of the training
  crops) resized to 192 px -> morphology descriptor; its centre 1/1.4 -> EfficientNet-Lite0.
* canonical (``canon``): :func:`trust_prototype.frame.canonical_frame` (128 px, cell = 0.5) ->
  optional stain normalisation -> descriptor on the frame, EfficientNet on the whole frame.

:func:`extract_all` caches every feature matrix the benchmark needs into one ``.npz``.
"""

from __future__ import annotations

import time

import numpy as np

DIHEDRAL = 8


def dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """View ``k`` (0-7) of the 8 rotations/flips of an (H, W, C) image."""
    v = np.rot90(img, k % 4)
    return np.ascontiguousarray(v[:, ::-1] if k >= 4 else v)


class Backbone:
    """Frozen EfficientNet-Lite0 (ImageNet) pooled features, one CPU thread."""

    def __init__(self):
        import torch
        from napari_nucleus_ai.models.imagenet import build_backbone, load_imagenet_weights

        torch.set_num_threads(1)
        self.net = build_backbone()
        load_imagenet_weights(self.net)

    def __call__(self, frames, view: float = 1.0) -> np.ndarray:
        """Features ``(N, 1280)`` of RGB frames ``(N, H, W, 3)`` in [0, 1] (same size)."""
        import torch
        from napari_nucleus_ai.models.imagenet import features

        x = torch.from_numpy(np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2))).float()
        with torch.no_grad():
            return np.concatenate([features(self.net, b, view).numpy() for b in x.split(32)])


def describe(frames) -> np.ndarray:
    """Morphology descriptors ``(N, F)`` of RGB frames."""
    from napari_nucleus_ai.models.morphology import describe_cell

    return np.stack([describe_cell(np.asarray(f, np.float32)) for f in frames])


def base_input(rgb: np.ndarray, field: float, size: int = 192) -> np.ndarray:
    """The current pipeline's crop: centre ``field`` of the crop, resized to ``size``."""
    from napari_nucleus_ai.crops import square_resize
    from napari_nucleus_ai.framing import centre_field

    return np.clip(square_resize(centre_field(rgb, field), size), 0, 1)


def base_features(bb: Backbone, crops, field: float, views=(0,)) -> dict:
    """Current pipeline: descriptor (1 per crop) and EfficientNet per dihedral view."""
    ins = [base_input(c, field) for c in crops]
    out = {"desc": describe(ins)}
    out["img"] = np.stack([bb([dihedral(i, k) for i in ins], 1 / 1.4) for k in views], 1)
    return out  # img: (N, V, 1280)


def canon_features(bb: Backbone, frames, views=(0,)) -> dict:
    """Canonical pipeline features of already-framed (and normalised) frames."""
    out = {"desc": describe(frames)}
    out["img"] = np.stack([bb([dihedral(f, k) for f in frames], 1.0) for k in views], 1)
    return out


def shift_subset(y: np.ndarray, per_class: int = 6) -> np.ndarray:
    """Indices of the first ``per_class`` crops of every class (the crops that get shifted)."""
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])


def make_sets(
    which=None,
    n_aug: int = 1,
    seed: int = 0,
    per_class: int = 6,
    bccd_n: int = 80,
    eye_csv: str | None = None,
):
    """Image sets of the benchmark.

    ``clean`` PBC crops; stain-augmented copies (``aug_hed``, ``aug_light``, ``n_aug``
    per crop, each in a random dihedral view); every simulated shift (``shift_<name>``)
    of the :func:`shift_subset` crops; ``bccd``: the white cells labelled by eye plus
    others up to ``bccd_n`` (a seeded choice). ``which`` limits the sets built.

    Returns ``(sets, meta)`` with meta ``y``, ``names``, ``shift_idx``, ``bccd_ids``.
    """
    import csv

    from . import shifts as S
    from . import stain as T
    from .data import load_bccd, load_pbc

    rng = np.random.default_rng(seed)
    crops, y, names = load_pbc()
    sub = shift_subset(y, per_class)
    bccd, ids = load_bccd()
    keep = []
    if eye_csv:
        for r in csv.DictReader(open(eye_csv)):
            keep.append(ids.index(r["image"].replace(".jpg", "") + ":" + r["box"]))
    rest = [i for i in np.random.default_rng(1).permutation(len(ids)) if i not in keep]
    keep = keep + rest[: max(0, bccd_n - len(keep))]
    meta = {
        "y": y,
        "names": np.array(names),
        "shift_idx": sub,
        "bccd_ids": np.array([ids[i] for i in keep]),
    }
    want = (lambda s: True) if which is None else (lambda s: s in which)
    sets = {}
    if want("clean"):
        sets["clean"] = crops
    if want("aug_hed"):
        sets["aug_hed"] = [
            dihedral(T.hed_jitter(c, rng), int(rng.integers(8)))
            for c in crops
            for _ in range(n_aug)
        ]
    if want("aug_light"):
        sets["aug_light"] = [
            dihedral(T.light_jitter(c, rng), int(rng.integers(8)))
            for c in crops
            for _ in range(n_aug)
        ]
    for name, f in S.SHIFTS.items():
        if want("shift_" + name):
            sets["shift_" + name] = [f(crops[i]) for i in sub]
    if want("bccd"):
        sets["bccd"] = [bccd[i] for i in keep]
    return sets, meta


def extract_base(sets, out_path: str) -> None:
    """Current-pipeline features of every set but the augmented ones -> ``base/<set>/...``."""
    from napari_nucleus_ai.framing import auto_field

    t0 = time.time()
    from .data import load_pbc

    field = auto_field(sets["clean"] if "clean" in sets else load_pbc()[0])
    bb = Backbone()
    res = {"field": np.array(field)}
    for sname, imgs in sets.items():
        if sname.startswith("aug"):
            continue
        views = tuple(range(DIHEDRAL)) if sname == "clean" else (0,)
        fb = base_features(bb, imgs, field, views)  # field: auto_field of the clean PBC crops
        res[f"base/{sname}/desc"], res[f"base/{sname}/img"] = fb["desc"], fb["img"]
        print(f"base {sname}: {len(imgs)} crops, {time.time() - t0:.0f}s", flush=True)
        np.savez(out_path, **res)


def extract_canon(sets, out_path: str, norms=("none", "plasma", "reinhard"), **frame_kw) -> None:
    """Canonical-frame features of every set for each stain normalisation ->
    ``canon/<norm>/<set>/...`` and ``frameinfo/<set>`` (see :func:`trust_prototype.ood.frame_measurements`)."""
    from . import stain as T
    from .frame import canonical_frame
    from .ood import frame_measurements

    t0 = time.time()
    bb = Backbone()
    res, ref = {}, None
    for sname, imgs in sets.items():
        fr = [canonical_frame(c, return_info=True, **frame_kw) for c in imgs]
        frames = [f for f, _ in fr]
        res[f"frameinfo/{sname}"] = np.array(
            [frame_measurements(c, i) for c, (_, i) in zip(imgs, fr)]
        )
        if ref is None:  # references from the clean PBC frames (recomputed when absent)
            from .data import load_pbc

            cl = frames if sname == "clean" else None
            if cl is None:
                fc_ = [canonical_frame(c, return_info=True, **frame_kw) for c in load_pbc()[0]]
                cl, pl = [f for f, _ in fc_], [i["plasma"] for _, i in fc_]
            else:
                pl = [i["plasma"] for _, i in fr]
            ref = T.reinhard_fit(cl) if "reinhard" in norms else {}
            oref = T.od_fit(cl, pl)
            res["od_ref"] = np.array(oref["nucleus_od"] + oref["plasma"])
        for norm in norms:
            if norm == "none":
                nf = frames
            elif norm == "nucod":
                nf = [T.od_normalise(f, i["plasma"], oref) for f, (_, i) in zip(frames, fr)]
            elif norm == "smooth":
                from .frame import smooth_frame

                nf = [smooth_frame(f, 1.0) for f in frames]
            elif norm == "plasma":
                nf = [T.plasma_balance(f, i["plasma"]) for f, (_, i) in zip(frames, fr)]
            else:
                nf = [T.reinhard(f, ref) for f in frames]
            fc = canon_features(bb, nf, (0, 1, 2, 3) if sname == "clean" else (0,))
            res[f"canon/{norm}/{sname}/desc"], res[f"canon/{norm}/{sname}/img"] = (
                fc["desc"],
                fc["img"],
            )
        print(f"canon {sname}: {len(imgs)} crops, {time.time() - t0:.0f}s", flush=True)
        np.savez(out_path, **res)


def main(argv=None) -> None:
    """``python -m trust_prototype.features --what canon|base --sets a,b --out file.npz``."""
    import argparse

    from .shifts import SHIFTS

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--what", default="canon")
    ap.add_argument(
        "--sets", default="clean,aug_hed,aug_light,bccd," + ",".join("shift_" + s for s in SHIFTS)
    )
    ap.add_argument("--norms", default="none")
    ap.add_argument("--eye", default="trust/bccd_labels_by_eye.csv")
    ap.add_argument("--context", type=float, default=None, help="canonical_frame context")
    a = ap.parse_args(argv)
    t0 = time.time()
    sets, meta = make_sets(a.sets.split(","), eye_csv=a.eye)
    np.savez(a.out.replace(".npz", "_meta.npz"), **meta)
    print(f"sets ready {time.time() - t0:.0f}s", flush=True)
    if a.what == "canon":
        extract_canon(sets, a.out, tuple(a.norms.split(",")), context=a.context)
    else:
        extract_base(sets, a.out)
    print("done", flush=True)


if __name__ == "__main__":
    main()
