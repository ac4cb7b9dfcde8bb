"""Speed of the morphology descriptor (``describe_cells``) on 192-px crops, one thread.

Usage (the machine is shared: say its load with the figures)::

    .venv/bin/python benchmarks/bench_descriptor.py [--cells 64] [--size 192] [--runs 5]
    .venv/bin/python benchmarks/bench_descriptor.py --profile [--cells 64]

The crops are the real PBC crops (../shared/data/smear/pbc) resized to ``--size`` when they are
there, synthetic stained cells otherwise. torch is imported and held to one thread, as in a
``classify`` worker (the Gabor FFTs run in torch when it is loaded). Prints the median, minimum
and maximum wall milliseconds per crop over ``--runs`` timed runs after one warm-up run, the
median CPU milliseconds per crop (steadier than wall time on a busy machine) and the machine
load; ``--profile`` prints cProfile's top functions of one run instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

PBC = Path(__file__).resolve().parents[2] / "shared" / "data" / "smear" / "pbc"


def synthetic_crops(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` synthetic stained cells ``(n, size, size, 3)`` in [0, 1]: pale background, a
    cytoplasm disc, 1-4 dark nucleus lobes, two red cells at the border, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    out = np.empty((n, size, size, 3), np.float32)
    for k in range(n):
        img = out[k]
        img[:] = (0.96, 0.88, 0.8)
        for a in rng.uniform(0, 2 * np.pi, 2):
            ry, rx = 0.38 * size * np.sin(a), 0.38 * size * np.cos(a)
            img[np.hypot(yy - ry, xx - rx) < 0.09 * size] = (0.88, 0.67, 0.67)
        img[np.hypot(yy, xx) < 0.2 * size] = (0.78, 0.67, 0.86)
        lobes = 1 + k % 4
        for a in rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(lobes) / lobes:
            off = 0.0 if lobes == 1 else 0.08 * size
            r = (0.12 if lobes == 1 else 0.055) * size
            img[np.hypot(yy - off * np.sin(a), xx - off * np.cos(a)) < r] = (0.35, 0.16, 0.5)
    return np.clip(out + rng.normal(0, 0.02, out.shape), 0, 1).astype(np.float32)


def pbc_crops(n: int, size: int) -> np.ndarray | None:
    """``n`` real PBC crops resized to ``size`` (cycling over the folder), or None."""
    if not PBC.is_dir():
        return None
    from skimage.transform import resize

    from napari_nucleus_ai.classify.trainset import load_class_folders

    ts = load_class_folders(PBC)
    if not len(ts):
        return None
    idx = np.arange(n) % len(ts)
    crops = [resize(np.asarray(ts.samples[i], np.float32) / 255, (size, size)) for i in idx]
    return np.stack(crops).astype(np.float32)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile one run instead of timing")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from napari_nucleus_ai.models.nets.morphology import describe_cells

    crops = pbc_crops(args.cells, args.size)
    source = "PBC" if crops is not None else "synthetic"
    if crops is None:
        crops = synthetic_crops(args.cells, args.size)
    print(f"{len(crops)} {source} crops of {args.size} px; load {os.getloadavg()[0]:.2f}")
    describe_cells(crops)  # warm-up: imports, cached filter banks
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(describe_cells, crops)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    ms, cpu = [], []
    for _ in range(args.runs):
        t0, c0 = time.perf_counter(), time.process_time()
        describe_cells(crops)
        ms.append((time.perf_counter() - t0) * 1e3 / len(crops))
        cpu.append((time.process_time() - c0) * 1e3 / len(crops))
    print(
        f"describe_cells: {np.median(ms):.1f} ms per crop (median of {args.runs}; "
        f"min {min(ms):.1f}, max {max(ms):.1f}; CPU {np.median(cpu):.1f} ms per crop); "
        f"load {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
