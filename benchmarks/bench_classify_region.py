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

``classify`` holds the whole region in memory (image, labels, and per-pixel work arrays of
the classify core), so before building a region the script estimates the classify process's
peak from ``--bytes-per-px`` (measure it: the JSON's ``peak_rss_bytes_per_px`` of a smaller
``--side``) and refuses a region that does not fit in the memory available now, saying so,
rather than pushing a shared machine into swapping or the OOM killer.
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


def mem_available() -> int:
    """``MemAvailable`` of /proc/meminfo in bytes (0 when unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def make_region(folder: Path, side: int, n_cells: int, seed: int = 0) -> tuple[Path, Path, int]:
    """A ``side`` x ``side`` region with about ``n_cells`` white cells; returns (image, labels, n)."""
    import tifffile

    from napari_nucleus_ai.samples.smear import simulate_smear

    folder.mkdir(parents=True, exist_ok=True)
    img_p, lab_p = folder / f"region{side}.tif", folder / f"region{side}_labels.tif"
    meta = folder / f"region{side}.json"
    if img_p.exists() and lab_p.exists() and meta.exists():
        info = json.loads(meta.read_text())
        if info.get("cells_asked") == n_cells:
            return img_p, lab_p, int(info["cells"])
    n_fields = -(-n_cells // CELLS_PER_FIELD)
    rows = int(np.ceil(np.sqrt(n_fields)))
    cols = -(-n_fields // rows)
    fh, fw = FIELD
    if rows * fh > side or cols * fw > side:
        raise SystemExit(f"{n_cells} cells do not fit in a {side} px region")
    image = np.empty((side, side, 3), np.uint8)
    labels = np.zeros((side, side), np.uint32)
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
                image[:] = background
            y = int((r + 0.5) * side / rows - fh / 2)
            x = int((c + 0.5) * side / cols - fw / 2)
            image[y : y + fh, x : x + fw] = sim.image
            cells = sim.cells.astype(np.uint32)
            take = min(int(cells.max()), n_cells - next_id + 1)
            cells[cells > take] = 0
            labels[y : y + fh, x : x + fw] = np.where(cells > 0, cells + next_id - 1, 0)
            next_id += take
            k += 1
    res = {"resolution": (1e4 / PIXEL_UM, 1e4 / PIXEL_UM), "resolutionunit": "CENTIMETER"}
    opts = {"tile": (512, 512), "compression": "zlib", "compressionargs": {"level": 1}}
    tifffile.imwrite(img_p, image, photometric="rgb", bigtiff=image.nbytes > 2**31, **opts, **res)
    del image
    tifffile.imwrite(lab_p, labels, bigtiff=labels.nbytes > 2**31, **opts, **res)
    meta.write_text(json.dumps({"cells": next_id - 1, "cells_asked": n_cells, "side": side}))
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
    ap.add_argument(
        "--bytes-per-px",
        type=float,
        default=47.0,
        help="classify's peak memory per region pixel, to refuse regions that cannot fit "
        "(default: 46.7 measured with --side 10000)",
    )
    a = ap.parse_args()
    need = a.bytes_per_px * a.side**2
    avail = mem_available()
    result = {
        "side": a.side,
        "pixels": a.side**2,
        "model": str(a.model),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cores": os.cpu_count(),
        "estimated_peak_gib": round(need / 2**30, 1),
        "available_gib": round(avail / 2**30, 1),
    }
    if avail and need > avail:
        result["status"] = (
            f"not run: classify would need about {need / 2**30:.0f} GiB "
            f"({a.bytes_per_px:g} bytes per pixel) and {avail / 2**30:.0f} GiB are available"
        )
    else:
        t0 = time.perf_counter()
        image, labels, n = make_region(a.workdir, a.side, a.cells)
        result["build_s"] = round(time.perf_counter() - t0, 1)
        out = a.workdir / f"out{a.side}"
        result.update(run_classify(a.model, image, labels, out))
        result["peak_rss_bytes_per_px"] = round(result["peak_rss_gib"] * 2**30 / a.side**2, 1)
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
