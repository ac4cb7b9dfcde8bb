"""Does fine-tuning on corrections help? Base model on simulated crops, corrections on real PBC crops.

Run: ``nice .venv/bin/python benchmarks/bench_retrain.py [--data ../shared/data/smear/pbc]``

A base model is trained on simulated white-cell crops (the smear simulator) for the
five classes it shares with the real PBC crops (basophil, eosinophil,
lymphocyte, monocyte, neutrophil). The real PBC crops of those classes play the
annotators' corrections; ``retrain_gen`` holds out 25 % of them per class,
scores the base model on them (before), fine-tunes on the rest and scores the
new version on the same held-out crops (after). Repeated over a few seeds.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/smear/pbc")
    )
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
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


if __name__ == "__main__":
    main()
