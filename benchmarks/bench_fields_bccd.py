"""Benchmark: whole BCCD fields of another microscope through ``batch``, as a user runs it.

The trust issue is judged on labelled white cells of microscopes we do not have, also as
whole fields. ``bench_fewshot_bccd.py`` cuts each labelled cell out of its field; this
script gives the fields themselves to the product, end to end:

1. every BCCD field with a by-eye labelled white cell (``benchmarks/bccd_labels_by_eye.csv``)
   goes to ``napari-nucleus-ai batch FIELDS --model PACKAGE --adapt MODE`` (``wbc``
   segmentation, then classification of each segmented cell; no pixel size: BCCD records
   none);
2. each labelled box is matched to the segmented cell whose centroid lies in it (the largest
   when several do);
3. reported per mode: balanced accuracy of the argmax over the classes with >= 5 matched cells,
   recall per class, certain (one-class set, not ``unidentified``) and wrong, ``unidentified``,
   ``routed`` and ``adapted`` shares, labelled boxes without a cell, the class mix of every
   segmented cell (also those without a label), the platelet share and the batch's CPU time.

With ``--fewshot SEED=PACKAGE`` (a package ``bench_fewshot_bccd.py`` trained from PBC and the
5-per-class corrections of split seed SEED), that package is also run on the fields and scored
on the labelled cells that were not its corrections.

Run::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_fields_bccd.py \
        [--model pbc.zip] [--adapt folder,auto,off] [--fewshot 0=fewshot_0.zip] [--out RESULTS.json]

Without ``--model``, ``train ../shared/data/smear/pbc --out WORK/pbc.zip`` is run first.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from bench_fewshot_bccd import DATA, by_confidence, run, split  # noqa: E402 - one home

LABELS = HERE / "bccd_labels_by_eye.csv"


def labelled() -> pd.DataFrame:
    """The by-eye labels, one row per box (in the file's order, as ``bench_fewshot_bccd``)."""
    with open(LABELS) as fh:
        rows = list(csv.DictReader(fh))
    table = pd.DataFrame(rows)
    box = np.array([[int(v) for v in b.split(",")] for b in table["box"]])
    table[["x0", "y0", "x1", "y1"]] = box
    return table


def match(table: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Each labelled box with the row of the segmented cell whose centroid lies in it."""
    found = []
    cells: dict[str, pd.DataFrame] = {}
    for _, r in table.iterrows():
        stem = Path(r["image"]).stem
        if stem not in cells:
            path = out / f"{stem}_cells.csv"
            cells[stem] = pd.read_csv(path) if path.exists() else pd.DataFrame()
        df = cells[stem]
        hit = pd.DataFrame()
        if len(df):
            inside = (
                (df["centroid_x"] >= r["x0"])
                & (df["centroid_x"] <= r["x1"])
                & (df["centroid_y"] >= r["y0"])
                & (df["centroid_y"] <= r["y1"])
            )
            hit = df[inside]
        found.append(hit.loc[hit["area"].idxmax()].to_dict() if len(hit) else None)
    return found, cells


def score(table: pd.DataFrame, found: list, cells: dict, test: np.ndarray) -> dict:
    """The figures of one batch run on the labelled cells ``test`` (a mask of ``table``)."""
    rows = [(t, f) for t, f, keep in zip(table.itertuples(), found, test, strict=True) if keep]
    matched = [(t, f) for t, f in rows if f is not None]
    p_cols = sorted(c for c in matched[0][1] if c.startswith("p_")) if matched else []
    classes = np.array([c[2:] for c in p_cols])
    truth = np.array([t.label for t, _ in matched])
    argmax = np.array([classes[np.argmax([f[c] for c in p_cols])] for _, f in matched])
    shown = np.array([str(f["class"]) for _, f in matched])
    set_size = np.array([f.get("set_size", 1) for _, f in matched], float)
    certain = (shown != "unidentified") & (set_size == 1)
    counted = [c for c in np.unique(truth) if (truth == c).sum() >= 5]
    recall = {c: float((argmax[truth == c] == c).mean()) for c in np.unique(truth)}
    allcells = pd.concat([d for d in cells.values() if len(d)], ignore_index=True)
    mix = allcells["predicted"].value_counts().to_dict() if len(allcells) else {}

    def share(key):
        if not any(key in f for _, f in matched):
            return None
        values = [f.get(key) for _, f in matched]
        return float(np.mean([v is not None and v == v and bool(v) for v in values]))

    conf = np.array([t.confidence for t, _ in matched])
    return {
        "labelled": len(rows),
        "matched": len(matched),
        "missed": len(rows) - len(matched),
        "classes_counted": counted,
        "balanced_accuracy": float(np.mean([recall[c] for c in counted])),
        "recall": recall,
        "certain_and_wrong": float((certain & (argmax != truth)).mean()),
        "unidentified": float((shown == "unidentified").mean()),
        "routed": share("routed"),
        "adapted": share("adapted"),
        "segmented_cells": int(len(allcells)),
        "argmax_mix_all_cells": {str(k): int(v) for k, v in mix.items()},
        "platelet_share_all_cells": float(mix.get("platelet", 0) / max(1, len(allcells))),
        "by_confidence": by_confidence(truth, argmax, conf, certain),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="package to run (default: train one on PBC)")
    ap.add_argument("--adapt", default="auto,off", help="batch --adapt modes, comma-separated")
    ap.add_argument("--fewshot", action="append", default=[], help="SEED=PACKAGE")
    ap.add_argument("--workers", default="1")
    ap.add_argument("--work", default=None)
    ap.add_argument("--out", default=str(HERE / "results" / "bench_fields_bccd.json"))
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="fields_bccd_"))
    work.mkdir(parents=True, exist_ok=True)
    table = labelled()
    images = sorted({str(DATA / "bccd" / "JPEGImages" / i) for i in table["image"]})
    print(f"{len(table)} labelled cells on {len(images)} fields", flush=True)
    results = {"load_start": os.getloadavg()[0], "fields": len(images), "runs": []}
    model = Path(args.model) if args.model else work / "pbc.zip"
    if not model.exists():
        results["train_cpu_s"] = run("train", DATA / "pbc", "--out", model, "--quiet")
    jobs = [("base", None, str(model), m) for m in args.adapt.split(",")]
    for spec in args.fewshot:
        seed, path = spec.split("=", 1)
        jobs += [("fewshot", int(seed), path, m) for m in args.adapt.split(",")]
    for name, seed, path, mode in jobs:
        out = work / f"batch_{name}{'' if seed is None else seed}_{mode}"
        t = time.perf_counter()
        cpu = run("batch", *images, "--out", out, "--model", path, "--adapt", mode,
                  "--workers", args.workers, "--quiet", "--no-resume")  # fmt: skip
        wall = time.perf_counter() - t
        found, cells = match(table, out)
        test = np.ones(len(table), bool) if seed is None else ~split(table, seed)
        row = {"model": name, "seed": seed, "package": path, "adapt": mode,
               **score(table, found, cells, test), "batch_cpu_s": cpu, "batch_wall_s": wall,
               "load": os.getloadavg()[0]}  # fmt: skip
        print(json.dumps(row, indent=1), flush=True)
        results["runs"].append(row)
        results["load_end"] = os.getloadavg()[0]
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
