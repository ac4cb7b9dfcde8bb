"""Throughput of the default white-cell model (``morph`` + ImageNet features) for docs/performance.md.

Usage (the machine is shared: say its load with the figures)::

    .venv/bin/python benchmarks/bench_throughput.py predict [--cells 1000] [--workdir DIR]
    nice -n 5 .venv/bin/python benchmarks/bench_throughput.py cv [--out cv.json]

``predict``  ``napari-nucleus-ai train`` on the 96 real PBC crops (../shared/data/smear/pbc), then
             ``napari-nucleus-ai predict`` as a whole process (interpreter start, imports, reading
             included) on ``--cells`` crops made by resampling the PBC crops with jitter (random
             dihedral view, shift, scale, brightness; written as PNG into a temporary folder, never
             the repository). Reports cells/s at default settings, wall and CPU time (the worker
             processes' included), the worker processes ``predict`` uses, whether the backbone
             runs in ONNX Runtime (the ``[onnx]`` extra; exported to the cache on the first run),
             and the machine load before and after.
``cv``       ``bench_classifier.py pbc-cv``'s protocol (the same folds, options and metrics: balanced
             accuracy and uncertainty AUROC on held-out crops), also keeping every held-out
             prediction so two runs (code before / after a change) can be compared crop by crop
             with ``compare A.json B.json``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_classifier import PBC, pbc_cv  # noqa: E402

CLI = [sys.executable, "-m", "napari_nucleus_ai"]


def make_crops(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` PNG crops resampled from the PBC crops with jitter, into ``folder``."""
    import imageio.v3 as iio
    from scipy import ndimage as ndi

    from napari_nucleus_ai.classify.trainset import load_class_folders

    ts = load_class_folders(PBC)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.asarray(ts.samples[int(rng.integers(len(ts)))], np.float32)
        img = np.rot90(img, int(rng.integers(4)))
        img = img[:, ::-1] if rng.random() < 0.5 else img
        zoom = float(rng.uniform(0.9, 1.1))
        shift = rng.uniform(-0.04, 0.04, 2) * img.shape[0]
        out = np.stack(
            [
                ndi.affine_transform(
                    img[..., c],
                    np.eye(2) / zoom,
                    offset=(np.array(img.shape[:2]) / 2) * (1 - 1 / zoom) + shift,
                    order=1,
                    mode="reflect",
                )
                for c in range(3)
            ],
            -1,
        )
        out = np.clip(out * rng.uniform(0.95, 1.05), 0, 255).astype(np.uint8)
        p = folder / f"cell_{i:05d}.png"
        iio.imwrite(p, out)
        paths.append(p)
    return paths


def _timed(cmd: list[str]) -> dict:
    """Run ``cmd``; wall and CPU (user + system of the child) seconds."""
    r0 = os.times()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = os.times()
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


_RAISED_LIMIT = (
    "import sys; import napari_nucleus_ai.models.package as p; p.MAX_CARD_BYTES = 64 << 20; "
    "from napari_nucleus_ai.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _card_bytes(model: Path) -> int:
    import zipfile

    if model.suffix == ".zip":
        with zipfile.ZipFile(model) as zf:
            return zf.getinfo("card.json").file_size
    return (model / "card.json").stat().st_size if model.is_dir() else 0


def _max_card_bytes() -> int:
    from napari_nucleus_ai.models.package import MAX_CARD_BYTES

    return MAX_CARD_BYTES


def _inference_setup(n: int) -> dict:
    """The worker processes ``predict`` uses for ``n`` crops and whether the backbone runs in
    ONNX Runtime (empty for code without either, as in before / after comparisons)."""
    try:
        from napari_nucleus_ai.classify.predict import cpu_workers
        from napari_nucleus_ai.models.nets.onnx_backbone import available
    except ImportError:
        return {}
    return {"workers": cpu_workers(n), "onnx_runtime": available()}


def predict(args) -> dict:
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_throughput_"))
    model = Path(args.model) if args.model else work / "pbc.zip"
    load0 = os.getloadavg()
    if not model.exists():
        train = CLI + ["train", str(PBC), "--out", str(model), "--epochs", "30"]
        _timed(train + ["--threads", "2", "--quiet"])
    crops = work / "crops"
    paths = sorted(crops.glob("*.png")) if crops.is_dir() else []
    if len(paths) != args.cells:
        paths = make_crops(crops, args.cells, args.seed)
    out = work / "pred.csv"
    cli = CLI
    if _card_bytes(model) > _max_card_bytes():
        # a card that trust's domain-shift components push over the loader's limit (a known
        # problem of that feature, not of this benchmark): the limit raised in the same process
        cli = [sys.executable, "-c", _RAISED_LIMIT]
    cmd = cli + ["predict", str(model), str(crops), "--out", str(out), "--quiet"]
    if args.tta:
        cmd += ["--tta", str(args.tta)]
    runs = [_timed(cmd) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["wall_s"])
    import pandas as pd

    df = pd.read_csv(out)
    return {
        "benchmark": "predict-throughput",
        "cells": len(df),
        "cells_per_s": round(len(df) / best["wall_s"], 2),
        "cpu_s_per_cell": round(best["cpu_s"] / len(df), 4),
        "runs": runs,
        "tta": args.tta or "card default",
        "labels": df["label"].value_counts().to_dict(),
        "card_limit_raised": cli is not CLI,
        **_inference_setup(len(df)),
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "workdir": str(work),
    }


def cv(args) -> dict:
    """``pbc-cv`` of bench_classifier, keeping every held-out prediction."""
    import napari_nucleus_ai.classify.predict as P

    kept = []
    original = P.predict_items

    def keeping(model, items, **options):
        pred = original(model, items, **options)
        kept.append({"index": pred.index.tolist(), "uncertainty": pred.uncertainty.tolist()})
        return pred

    P.predict_items = keeping
    ns = argparse.Namespace(
        arch="morph",
        params=None,
        epochs=30,
        crop_size=192,
        field=None,
        members=1,
        folds=args.folds,
        seed=args.seed,
        threads=args.threads,
    )
    t0 = time.perf_counter()
    res = pbc_cv(ns)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["predictions"] = kept
    res["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if args.out:
        Path(args.out).write_text(json.dumps(res))
    return {k: v for k, v in res.items() if k != "predictions"}


def compare(args) -> dict:
    a, b = (json.loads(Path(p).read_text()) for p in args.files)
    pa = np.concatenate([f["index"] for f in a["predictions"]])
    pb = np.concatenate([f["index"] for f in b["predictions"]])
    ua = np.concatenate([f["uncertainty"] for f in a["predictions"]])
    ub = np.concatenate([f["uncertainty"] for f in b["predictions"]])
    return {
        "crops": len(pa),
        "predictions_changed": int((pa != pb).sum()),
        "max_uncertainty_change": round(float(np.abs(ua - ub).max()), 4),
        "balanced_accuracy": [a["balanced_accuracy"], b["balanced_accuracy"]],
        "uncertainty_auroc": [a["uncertainty_auroc"], b["uncertainty_auroc"]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("what", choices=("predict", "cv", "compare"))
    ap.add_argument("files", nargs="*", help="compare: two cv --out files")
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--workdir", help="temporary folder (default: a new one under $TMPDIR)")
    ap.add_argument("--model", help="a trained package (default: train one from the PBC crops)")
    ap.add_argument("--tta", type=int, help="override the card's test-time views")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="cv: write the result with every prediction here")
    args = ap.parse_args()
    if args.what == "predict" and not PBC.is_dir():
        sys.exit(f"the PBC crops are not at {PBC}")
    print(json.dumps({"predict": predict, "cv": cv, "compare": compare}[args.what](args)))


if __name__ == "__main__":
    main()
