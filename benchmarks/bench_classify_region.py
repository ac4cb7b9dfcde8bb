"""``classify`` of a big synthetic slide region with ~2,000 white cells, as a whole process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_classify_region.py \
        [--side 40000] [--cells 2000] [--model PATH] [--workdir DIR]

Builds a ``side`` x ``side`` RGB region at 0.25 um/px (the slide background, with simulated
smear fields of 12 white cells each, from ``samples.smear.simulate_smear``, spread over it on
a grid) and its label image (the simulator's own cell masks: the "segmented cells"), writes
both as tiled zlib TIFFs, then runs

    napari-nucleus-ai classify MODEL region.tif --labels region_labels.tif \
        --out DIR --pixel-size 0.25 --device cpu --quiet

and reports wall time, CPU time (user + system of the child), peak resident memory, cells per
second and the load average before and after (written to
``benchmarks/results/bench_classify_region.json``). The default model is the shipped demo
smear model (``src/napari_nucleus_ai/demo/models/smear-wbc.zip``).

What is timed is the ``classify`` process alone, from its start to its exit: reading the
model, finding and measuring the cells in the label TIFF, cutting each cell's window from
the image TIFF, the model, and writing ``cells.csv``, ``classes.tif`` and
``uncertainty.tif``. Building the region (simulating the fields, writing the TIFFs) is not
timed (``build_s``). A TIFF larger than ``images.tiff.LAZY_REGION_BYTES`` is read lazily: labels
band by band, the image only in the tiles under cells, the class and uncertainty TIFFs
written tile by tile, so the peak memory follows the cells, not the region.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "src" / "napari_nucleus_ai" / "demo" / "models" / "smear-wbc.zip"
PIXEL_UM = 0.25
FIELD = (480, 640)
CELLS_PER_FIELD = 12
TILE = 512  # tile side of the region TIFFs


def mem_available() -> int:
    """``MemAvailable`` of /proc/meminfo in bytes (0 when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _layout(side: int, n_cells: int) -> tuple[int, int, int]:
    """(fields, rows, cols) of the grid of smear fields holding ``n_cells`` cells."""
    n_fields = -(-n_cells // CELLS_PER_FIELD)
    rows = int(np.ceil(np.sqrt(n_fields)))
    cols = -(-n_fields // rows)
    fh, fw = FIELD
    if rows * fh > side or cols * fw > side:
        raise SystemExit(f"{n_cells} cells do not fit in a {side} px region")
    return n_fields, rows, cols


def make_region(folder: Path, side: int, n_cells: int, seed: int = 0) -> tuple[Path, Path, int]:
    """A ``side`` x ``side`` region with about ``n_cells`` white cells; returns (image, labels, n).

    The fields are simulated first (a few hundred MB); the region itself is written tile by
    tile, so a 40k x 40k region is never held in memory.
    """
    import tifffile

    from napari_nucleus_ai.samples.smear import simulate_smear

    folder.mkdir(parents=True, exist_ok=True)
    img_p, lab_p = folder / f"region{side}.tif", folder / f"region{side}_labels.tif"
    meta = folder / f"region{side}.json"
    if img_p.exists() and lab_p.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("cells_asked") == n_cells and info.get("tiled_build"):
            return img_p, lab_p, int(info["cells"])
    n_fields, rows, cols = _layout(side, n_cells)
    fh, fw = FIELD
    fields = []  # (y, x, image, labels) of each field in the region
    background = None
    next_id, k = 1, 0
    for r in range(rows):
        for c in range(cols):
            if k >= n_fields or next_id > n_cells:
                break
            sim = simulate_smear(
                seed=seed + k, shape=FIELD, pixel_size_um=PIXEL_UM, n_wbc=CELLS_PER_FIELD
            )
            if background is None:
                background = np.median(sim.image.reshape(-1, 3), 0).astype(np.uint8)
            y = int((r + 0.5) * side / rows - fh / 2)
            x = int((c + 0.5) * side / cols - fw / 2)
            cells = sim.cells.astype(np.uint32)
            take = min(int(cells.max()), n_cells - next_id + 1)
            cells[cells > take] = 0
            fields.append((y, x, sim.image, np.where(cells > 0, cells + next_id - 1, 0)))
            next_id += take
            k += 1

    def tiles(which: int, fill):
        for ty in range(0, side, TILE):
            for tx in range(0, side, TILE):
                tile = np.empty((TILE, TILE, *np.shape(fill)), np.asarray(fill).dtype)
                tile[:] = fill
                for y, x, *data in fields:
                    y0, y1 = max(y, ty), min(y + fh, ty + TILE)
                    x0, x1 = max(x, tx), min(x + fw, tx + TILE)
                    if y0 < y1 and x0 < x1:
                        tile[y0 - ty : y1 - ty, x0 - tx : x1 - tx] = data[which][
                            y0 - y : y1 - y, x0 - x : x1 - x
                        ]
                yield tile

    res = {"resolution": (1e4 / PIXEL_UM, 1e4 / PIXEL_UM), "resolutionunit": "CENTIMETER"}
    opts = {"tile": (TILE, TILE), "compression": "zlib", "compressionargs": {"level": 1}}
    big = side * side * 4 > 2**31
    tifffile.imwrite(img_p, tiles(0, background), shape=(side, side, 3), dtype=np.uint8,
                     photometric="rgb", bigtiff=big, **opts, **res)  # fmt: skip
    tifffile.imwrite(lab_p, tiles(1, np.uint32(0)), shape=(side, side), dtype=np.uint32,
                     bigtiff=big, **opts, **res)  # fmt: skip
    meta.write_text(
        json.dumps({"cells": next_id - 1, "cells_asked": n_cells, "side": side, "tiled_build": 1})
    )
    return img_p, lab_p, next_id - 1


def run_classify(model: Path, image: Path, labels: Path, out: Path) -> dict:
    """``napari-nucleus-ai classify`` as a child process: wall, CPU, peak RSS, load."""
    exe = str(Path(sys.executable).with_name("napari-nucleus-ai"))
    cmd = [exe, "classify", str(model), str(image), "--labels", str(labels), "--out", str(out),
           "--pixel-size", str(PIXEL_UM), "--device", "cpu", "--quiet"]  # fmt: skip
    load0 = os.getloadavg()[0]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    import pandas as pd

    n = len(pd.read_csv(out / "cells.csv"))
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {
        "command": " ".join(cmd),
        "cells": n,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cells_per_s": round(n / wall, 2),
        "cpu_s_per_cell": round(cpu / max(n, 1), 4),
        "peak_rss_gib": round(r1.ru_maxrss / 2**20, 2),  # ru_maxrss is KiB on Linux
        "load_before": round(load0, 1),
        "load_after": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--side", type=int, default=40000, help="region side in pixels")
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--model", type=Path, default=DEMO_MODEL)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_classify_region"))
    a = ap.parse_args()
    result = {
        "side": a.side,
        "pixels": a.side**2,
        "model": str(a.model),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cores": os.cpu_count(),
        "available_gib": round(mem_available() / 2**30, 1),
    }
    t0 = time.perf_counter()
    image, labels, n = make_region(a.workdir, a.side, a.cells)
    result["build_s"] = round(time.perf_counter() - t0, 1)
    out = a.workdir / f"out{a.side}"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    result.update(run_classify(a.model, image, labels, out))
    result["status"] = "ok"
    print(json.dumps(result, indent=1))
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(exist_ok=True)
    path = res_dir / "bench_classify_region.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(result)
    path.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
