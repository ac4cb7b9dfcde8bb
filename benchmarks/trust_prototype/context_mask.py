"""The fallback's canonical frame with the surroundings of the cell masked to plasma.

Through whole fields the fallback scores far lower on BCCD than on box crops of the same
cells (``bench_fields_bccd.py``), and on box crops cut wider its accuracy falls the more of
the neighbourhood (red cells, other white cells) the frame shows. This prototype measures,
on the fallback's cached inputs (``backbone_stats.build_inputs``: the canonical frame, the
two-point stain normalisation, 3 "other microscope" copies of every training crop), a frame
whose pixels farther than ``r_in`` cell radii from the centre fade into the reference
plasma colour by ``r_out`` (training inputs and test inputs alike), scored as
``backbone_stats`` scores (PBC 4-fold CV clean / harsh shift / another microscope; BCCD
zero-shot and + 5 per class) and on the BCCD cells cut 2.6 x their box (``bccd_wide``)
instead of 1.3 x: the context a field window gives.

Run::

    PYTHONPATH=benchmarks .venv/bin/python -m trust_prototype.context_mask \\
        --variants none,1.15-1.4,1.3-1.6,1.5-1.8
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parents[1]
SIZE = 192
FILL = 0.5


def wide_inputs(cache: Path, margin: float = 0.8) -> np.ndarray:
    """The by-eye labelled BCCD cells cut ``1 + 2 * margin`` times their box, framed as the
    fallback frames them (cached)."""
    path = cache / f"bccd_margin{margin:g}.npz"
    if path.exists():
        return np.load(path)["x"]
    from bench_transfer import Inputs, load_bccd_by_eye

    from trust_prototype.data import load_pbc

    pbc, _, _ = load_pbc()
    make = Inputs("frame", "two_point", pbc)
    bccd, _ = load_bccd_by_eye(margin=margin)
    x = np.stack([make(c) for c in bccd])
    np.savez(path, x=x, plasma=np.asarray(make.ref["plasma"], np.float32))
    return x


def reference_plasma(cache: Path) -> np.ndarray:
    return np.load(cache / "bccd_margin0.8.npz")["plasma"]


def mask_context(x: np.ndarray, plasma, r_in: float, r_out: float) -> np.ndarray:
    """Frames ``x`` (N, S, S, 3) with everything beyond ``r_in`` cell radii from the centre
    faded into ``plasma`` by ``r_out`` (the cell's radius is ``FILL * S / 2``)."""
    s = x.shape[1]
    yy, xx = np.mgrid[:s, :s]
    r = np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2) / (FILL * s / 2)
    alpha = np.clip((r_out - r) / (r_out - r_in), 0, 1).astype(np.float32)[..., None]
    return alpha * x + (1 - alpha) * np.asarray(plasma, np.float32)


def main(argv=None) -> None:
    import torch

    from napari_nucleus_ai.models.nets.imagenet import (
        build_backbone,
        inference_copy,
        load_imagenet_weights,
    )
    from napari_nucleus_ai.models.nets.morphology import describe_cells
    from trust_prototype.backbone_stats import (
        bccd,
        build_inputs,
        confidence,
        imagenet_features,
        pbc_cv,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="none,1.15-1.4,1.3-1.6,1.5-1.8")
    ap.add_argument("--cache", default="/tmp/backbone_stats")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "context_mask.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    D = build_inputs(cache)
    D["bccd_wide"] = wide_inputs(cache)
    plasma = reference_plasma(cache)
    net = build_backbone()
    load_imagenet_weights(net)
    net = inference_copy(net.eval())
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    conf = confidence()
    for v in args.variants.split(","):
        t = time.perf_counter()
        if v == "none":
            view = lambda a: a  # noqa: E731
        else:
            r_in, r_out = (float(p) for p in v.split("-"))
            view = lambda a, r_in=r_in, r_out=r_out: mask_context(a, plasma, r_in, r_out)  # noqa: E731

        def feats(a, view=view):
            a = view(a)
            return np.concatenate([describe_cells(a), imagenet_features(net, a)], 1)

        F = {k: feats(D[k]) for k in ("clean", "harsh", "another", "bccd", "bccd_wide")}
        F["aug"] = np.stack([feats(a) for a in D["aug"]])
        r = {**pbc_cv(lambda k, F=F: F, D["y"]), **bccd(F, D["y"], D["by"], conf)}
        wide = bccd({**F, "bccd": F["bccd_wide"]}, D["y"], D["by"], conf)
        r.update({f"wide_{k}": w for k, w in wide.items()})
        r["seconds"] = time.perf_counter() - t
        results[v] = r
        keep = ("pbc_cv", "harsh", "another", "bccd_zero_shot", "bccd_fewshot_mean",
                "wide_bccd_zero_shot", "wide_bccd_fewshot_mean")  # fmt: skip
        print(v, json.dumps({k: r[k] for k in keep}), flush=True)
        out_path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
