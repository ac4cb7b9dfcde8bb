"""Segmentation figures: BCCD white-cell detection (plain and perturbed), speed, whole-slide MP/s.

Usage (from the repository root)::

    nice -n 10 .venv/bin/python benchmarks/bench_segment.py            # everything
    nice -n 10 .venv/bin/python benchmarks/bench_segment.py --only bccd --limit 50

Scoring (see ``napari_nucleus_ai.segment.evaluate``): WBC boxes of the BCCD
trainval split plus the ``wbc`` rows of ``wbc_extra.csv``; a box is found when
an object's centroid lies in it; an object is right when its centroid lies in a
WBC box and not counted when it lies only in an ``ignore`` box; a found box is
split when two or more objects have their centroid only in it.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_NUCLEUS_AI_SHARED_DATA", ROOT.parent / "shared" / "data"))
BCCD = DATA / "smear" / "bccd"


def load_bccd(limit: int | None = None, step: int = 1):
    """[(name, rgb uint8, wbc boxes, ignore boxes)] for the trainval split."""
    from skimage.io import imread

    from napari_nucleus_ai.segment.evaluate import read_voc_boxes

    names = (BCCD / "trainval.txt").read_text().split()[::step]
    if limit:
        names = names[:limit]
    extra: dict[str, dict[str, list]] = {}
    with open(BCCD / "wbc_extra.csv") as fh:
        for row in csv.DictReader(fh):
            box = tuple(float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
            extra.setdefault(row["image"], {"wbc": [], "ignore": []})[row["kind"]].append(box)
    out = []
    for n in names:
        rgb = imread(BCCD / "JPEGImages" / f"{n}.jpg")
        boxes = read_voc_boxes(BCCD / "Annotations" / f"{n}.xml")
        ex = extra.get(n, {"wbc": [], "ignore": []})
        out.append((n, rgb, boxes + ex["wbc"], ex["ignore"]))
    return out


# ---- perturbations: each maps (rgb, boxes, ignore, rng) -> (image, boxes, ignore)


def _scale_boxes(boxes, s):
    return [tuple(v * s for v in b) for b in boxes]


def p_scale(s):
    def f(rgb, boxes, ignore, rng):
        from skimage.transform import rescale

        img = rescale(rgb, s, channel_axis=-1, anti_aliasing=s < 1, preserve_range=True)
        return img.astype(np.uint8), _scale_boxes(boxes, s), _scale_boxes(ignore, s)

    f.__name__ = f"scale {s}x"
    return f


def p_rgba(rgb, boxes, ignore, rng):
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    return np.concatenate([rgb, alpha], axis=-1), boxes, ignore


def p_stain(rgb, boxes, ignore, rng):
    """Stain jitter in HED space (each stain's amount x0.7-1.3, shifted) + white balance + gamma."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(rgb)
    for c in range(3):
        hed[..., c] = hed[..., c] * rng.uniform(0.7, 1.3) + rng.uniform(-0.02, 0.02)
    img = np.clip(hed2rgb(hed), 0, 1)
    img = img * rng.uniform(0.85, 1.1, size=3)  # lamp colour / white balance
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)  # exposure / camera gamma
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), boxes, ignore


def p_colour(rgb, boxes, ignore, rng):
    """Hue / saturation / brightness jitter (another camera)."""
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(rgb)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.05, 0.05)) % 1.0
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.4), 0, 1)
    hsv[..., 2] = np.clip(hsv[..., 2] * rng.uniform(0.75, 1.15), 0, 1)
    img = hsv2rgb(hsv) + rng.normal(0, 0.01, rgb.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), boxes, ignore


def p_none(rgb, boxes, ignore, rng):
    return rgb, boxes, ignore


PERTURBATIONS = {
    "none": p_none,
    "stain jitter": p_stain,
    "colour jitter": p_colour,
    "RGBA": p_rgba,
    "scale 0.5x": p_scale(0.5),
    "scale 0.75x": p_scale(0.75),
    "scale 1.5x": p_scale(1.5),
    "scale 2x": p_scale(2.0),
}


def score_set(data, perturb=p_none, seed=0, params=None, pixel_size_um=None):
    from napari_nucleus_ai.segment.evaluate import Score, centroids_of, score_centroids
    from napari_nucleus_ai.segment.wbc import segment_wbc

    rng = np.random.default_rng(seed)
    total = Score()
    for name, rgb, boxes, ignore in data:
        img, b, ig = perturb(rgb, boxes, ignore, rng)
        labels = segment_wbc(img, pixel_size_um, **(params or {}))
        total = total + score_centroids(centroids_of(labels), b, ig, tag=name)
    return total


def empty_crops(data, min_side=160):
    """Crops of each field that touch no WBC / ignore box (largest free rectangle side strips)."""
    crops = []
    for name, rgb, boxes, ignore in data:
        h, w = rgb.shape[:2]
        occ = np.zeros((h, w), bool)
        for x0, y0, x1, y1 in boxes + ignore:
            occ[max(0, int(y0) - 8) : int(y1) + 8, max(0, int(x0) - 8) : int(x1) + 8] = True
        free_cols = ~occ.any(axis=0)
        free_rows = ~occ.any(axis=1)
        for free, axis in ((free_cols, 1), (free_rows, 0)):
            runs = _runs(free)
            for a, b in runs:
                if b - a >= min_side:
                    crop = rgb[:, a:b] if axis == 1 else rgb[a:b, :]
                    if min(crop.shape[:2]) >= min_side:
                        crops.append((name, crop))
    return crops


def _runs(mask):
    out, start = [], None
    for i, v in enumerate(list(mask) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    return out


def bench_bccd(limit, step, only_perturb=None):
    data = load_bccd(limit, step)
    print(f"BCCD trainval: {len(data)} fields, {sum(len(d[2]) for d in data)} WBC boxes")
    rows = []
    for key, fn in PERTURBATIONS.items():
        if only_perturb and key not in only_perturb:
            continue
        t = time.perf_counter()
        s = score_set(data, fn)
        dt = time.perf_counter() - t
        rows.append((key, s))
        print(f"  {key:<14} {s.summary()}   ({dt:.1f} s)", flush=True)
        if key == "none":
            for m in s.missed[:10]:
                print("     missed", m)
            for w in s.wrong[:10]:
                print("     wrong ", w)
    if not only_perturb or "empty crops" in only_perturb:
        from napari_nucleus_ai.segment.wbc import segment_wbc

        crops = empty_crops(data)
        found = [int(segment_wbc(c).max()) for _, c in crops]
        bad = sum(1 for f in found if f)
        print(
            f"  {'empty crops':<14} {len(crops)} crops without white cells: "
            f"{bad} with any object ({sum(found)} objects)"
        )
    return rows


def bench_pbc():
    """Another microscope: PBC (CellaVision) crops, one centred cell each."""
    from skimage.io import imread

    from napari_nucleus_ai.segment.evaluate import centroids_of
    from napari_nucleus_ai.segment.wbc import segment_wbc

    root = DATA / "smear" / "pbc"
    print("PBC crops (CellaVision DM96): objects whose centre is in the middle half")
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        n = one = split = other = 0
        for path in sorted(folder.glob("*.png")):
            labels = segment_wbc(imread(path))
            h, w = labels.shape
            c = centroids_of(labels)
            central = sum(1 for y, x in c if abs(y - h / 2) < h / 4 and abs(x - w / 2) < w / 4)
            n += 1
            one += central == 1
            split += central > 1
            other += len(c) - central
        print(
            f"  {folder.name:<22} {n} crops: one central object {one}, central cell split {split}, "
            f"objects off centre {other}"
        )


def bench_speed(n=30):
    """Wall and CPU time per 640 x 480 field (CPU time is what a quiet machine's wall time is)."""
    from napari_nucleus_ai.segment.wbc import segment_wbc

    data = load_bccd(n, 9)
    segment_wbc(data[0][1])  # warm-up: imports, caches
    wall, cpu = [], []
    for _, rgb, _, _ in data:
        t, c = time.perf_counter(), time.process_time()
        segment_wbc(rgb)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    wall, cpu = np.array(wall) * 1000, np.array(cpu) * 1000
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"640x480 field (wbc), {len(wall)} fields: wall median {np.median(wall):.1f} ms "
        f"(95th percentile {np.percentile(wall, 95):.1f}); CPU median {np.median(cpu):.1f} ms "
        f"(95th percentile {np.percentile(cpu, 95):.1f}, max {cpu.max():.1f})"
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="bccd pbc speed slide")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--perturb", nargs="*", default=None)
    args = ap.parse_args(argv)
    if not BCCD.is_dir():
        print(f"no BCCD data at {BCCD}", file=sys.stderr)
        return 1
    todo = args.only or ["bccd", "pbc", "speed", "slide"]
    if "bccd" in todo:
        bench_bccd(args.limit, args.step, args.perturb)
    if "pbc" in todo:
        bench_pbc()
    if "speed" in todo:
        bench_speed()
    if "slide" in todo:
        bench_slide()
    return 0


def bench_slide(size=8192, tile=2048):
    """Whole-slide throughput: a mosaic of BCCD fields segmented tile-wise with dask."""
    try:
        from napari_nucleus_ai.segment.tiles import segment_tiled
    except ImportError:
        print("whole slide: segment.tiles not available")
        return
    from napari_nucleus_ai.core.progress import run_sync

    data = load_bccd(16, 18)
    fields = [d[1] for d in data]
    rows = []
    rng = np.random.default_rng(0)
    for _ in range(size // 480 + 1):
        row = np.concatenate(
            [fields[i] for i in rng.integers(0, len(fields), size // 640 + 1)], axis=1
        )
        rows.append(row[:, :size])
    slide = np.concatenate(rows, axis=0)[:size]
    t, c = time.perf_counter(), time.process_time()
    labels = run_sync(segment_tiled(slide, "wbc", tile=tile, pixel_size_um=None))
    dt, dc = time.perf_counter() - t, time.process_time() - c
    mp = slide.shape[0] * slide.shape[1] / 1e6
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"whole slide {slide.shape[1]}x{slide.shape[0]} ({mp:.0f} MP), tiles {tile}: "
        f"wall {dt:.1f} s = {mp / dt:.1f} MP/s (CPU {dc:.1f} s over 2 threads), "
        f"{int(labels.max())} white cells"
    )


if __name__ == "__main__":
    sys.exit(main())
