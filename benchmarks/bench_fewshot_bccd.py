"""Benchmark: learning a real second microscope (BCCD) from 5 corrected cells per class.

The done-when of the trust issue: after 5 corrected cells per class of another microscope,
>= 0.90 balanced accuracy on its other cells. The shared BCCD white cells (another camera,
stain and magnification than the PBC training crops) were labelled by eye
(``benchmarks/bccd_labels_by_eye.csv``; 295 cells). This script, end to end through the CLI
as a user would run it:

1. cuts every labelled BCCD cell as a square crop around its box (15 % margin per side);
2. per split seed, takes 5 cells per class as the "corrections" (2 of the 3 basophils) and
   keeps the others as the test set;
3. trains ``train PBC --out base.zip`` once and ``train PBC CORRECTIONS --out fewshot.zip``
   (``--source-weights auto``) per seed, and predicts the test cells with both;
4. reports balanced accuracy of the argmax over the classes with >= 5 test cells, the share of
   certain (one-class set, not unidentified) and wrong predictions, and the flagged share;
   the same on the test cells whose by-eye label was given with high confidence, and with
   high or medium confidence (``by_confidence``: no monocyte was labelled with high
   confidence, so the first counts 3 classes);
   with ``--adapt both``, each model predicts twice, ``--adapt auto`` (the default: the
   package's fallback adapted to the routed cells as one batch) and ``--adapt off``, with the
   CPU seconds of each ``predict`` and the share of ``adapted`` cells.

Caveat: BCCD holds some fields twice (the same cell in two images), so a test cell can have a
near-copy among the corrections; the figure is an upper bound for truly new cells.

Run::

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/bench_fewshot_bccd.py [--seeds 0,1]
        [--adapt auto|off|both] [--out RESULTS.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
DATA = Path(os.environ.get("TRUST_DATA", HERE.parents[1] / "shared" / "data" / "smear"))
EXE = str(Path(sys.executable).with_name("napari-nucleus-ai"))


def crops(out: Path) -> pd.DataFrame:
    """Every by-eye labelled BCCD cell as ``out/<class>/<n>.png``; the table of them."""
    from PIL import Image

    rows = []
    with open(HERE / "bccd_labels_by_eye.csv") as fh:
        for k, r in enumerate(csv.DictReader(fh)):
            x0, y0, x1, y1 = (int(v) for v in r["box"].split(","))
            with Image.open(DATA / "bccd" / "JPEGImages" / r["image"]) as im:
                im = im.convert("RGB")
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                h = max(x1 - x0, y1 - y0) * (1 + 2 * 0.15) / 2
                box = tuple(int(round(v)) for v in (cx - h, cy - h, cx + h, cy + h))
                path = out / r["label"] / f"{k:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                im.crop(box).save(path)  # PIL pads outside the field with black
            rows.append(
                {
                    "path": str(path),
                    "label": r["label"],
                    "image": r["image"],
                    "confidence": r["confidence"],
                }
            )
    return pd.DataFrame(rows)


def split(table: pd.DataFrame, seed: int, per_class: int = 5) -> np.ndarray:
    """Boolean mask of the corrections: ``per_class`` cells per class (all but one of a
    class with fewer)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(table), bool)
    for _, idx in table.groupby("label").indices.items():
        k = min(per_class, len(idx) - 1)
        mask[rng.choice(idx, k, replace=False)] = True
    return mask


def run(*argv) -> float:
    """Run the CLI; returns the CPU seconds (user + system) it took."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([EXE, *map(str, argv)], check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def by_confidence(truth, argmax, confidence, certain) -> dict:
    """Balanced accuracy (classes with >= 5 cells) and the certain-and-wrong share on the
    cells labelled with high confidence (``high``) and with high or medium (``high_medium``)."""
    truth, argmax, confidence = (np.asarray(a) for a in (truth, argmax, confidence))
    out = {}
    for name, levels in (("high", ("high",)), ("high_medium", ("high", "medium"))):
        sel = np.isin(confidence, levels)
        t_sel, a_sel = truth[sel], argmax[sel]
        kept = [c for c in np.unique(t_sel) if (t_sel == c).sum() >= 5]
        out[name] = {
            "n_test": int(sel.sum()),
            "classes_counted": kept,
            "balanced_accuracy": float(np.mean([(a_sel[t_sel == c] == c).mean() for c in kept])),
            "certain_and_wrong": float((np.asarray(certain)[sel] & (a_sel != t_sel)).mean()),
        }
    return out


def score(pred_csv: Path, test: pd.DataFrame) -> dict:
    """Figures of one ``predict`` CSV on the test cells, also by the by-eye labels'
    confidence."""
    df = pd.read_csv(pred_csv)
    key = next(c for c in ("input", "path", "file", "source") if c in df.columns)
    df = df.set_index(df[key].astype(str))
    p_cols = [c for c in df.columns if c.startswith("p_")]
    classes = [c[2:] for c in p_cols]
    got = df.loc[test["path"]]
    argmax = np.array(classes)[got[p_cols].to_numpy().argmax(1)]
    truth = test["label"].to_numpy()
    counted = [c for c in np.unique(truth) if (truth == c).sum() >= 5]
    recall = {c: float((argmax[truth == c] == c).mean()) for c in np.unique(truth)}
    shown = got["label"].astype(str).to_numpy()  # what the user is shown (or unidentified)
    one = got["set_size"].to_numpy() == 1 if "set_size" in got else np.ones(len(got), bool)
    certain = (shown != "unidentified") & one
    return {
        "n_test": int(len(test)),
        "balanced_accuracy": float(np.mean([recall[c] for c in counted])),
        "classes_counted": counted,
        "recall": recall,
        "certain_and_wrong": float((certain & (argmax != truth)).mean()),
        "unidentified": float((shown == "unidentified").mean()),
        # a package with a fallback: the share of cells its canonical-frame model classified
        "routed": float(got["routed"].astype(bool).mean()) if "routed" in got else None,
        # test-time adaptation: the share of cells whose probabilities it replaced
        "adapted": float(got["adapted"].astype(bool).mean()) if "adapted" in got else None,
        "argmax_mix": pd.Series(argmax).value_counts().to_dict(),
        "by_confidence": by_confidence(truth, argmax, test["confidence"], certain),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--work", default=None)
    ap.add_argument("--train-args", default="", help="extra train options, e.g. '--frame on'")
    ap.add_argument("--out", default=str(HERE / "results" / "bench_fewshot_bccd.json"))
    ap.add_argument(
        "--adapt",
        default="auto",
        choices=("auto", "off", "both"),
        help="predict's --adapt; both: each model predicts with auto and with off",
    )
    args = ap.parse_args(argv)
    modes = ("auto", "off") if args.adapt == "both" else (args.adapt,)
    work = Path(args.work or tempfile.mkdtemp(prefix="fewshot_bccd_"))
    extra = args.train_args.split()
    table = crops(work / "all")
    print(f"{len(table)} BCCD cells: {table['label'].value_counts().to_dict()}", flush=True)
    pbc = DATA / "pbc"
    results = {
        "load_start": os.getloadavg()[0],
        "train_args": extra,
        "adapt": list(modes),
        "runs": [],
    }
    t = time.perf_counter()
    if not (work / "base.zip").exists():  # a --work folder is reused
        results["train_base_cpu_s"] = run(
            "train", pbc, "--out", work / "base.zip", "--quiet", *extra
        )
    base_s = time.perf_counter() - t
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = {}

    def save(row) -> None:
        print(json.dumps(row, indent=1), flush=True)
        results["runs"] = [rows[s] for s in seeds if s in rows]
        results["load_end"] = os.getloadavg()[0]
        Path(args.out).write_text(json.dumps(results, indent=1))  # after every step

    def predict(row, name: str, key: str, test) -> None:
        for mode in modes:
            out = work / f"pred_{name}_{row['seed']}_{mode}.csv"
            args_ = ("--out", out, "--quiet", "--adapt", mode)
            cpu = run("predict", work / f"{name}.zip", *test["path"], *args_)
            got = {**score(out, test), "predict_cpu_s": cpu, "load": os.getloadavg()[0]}
            row[key if mode == modes[0] else f"{key}_adapt_{mode}"] = got

    # the PBC-only model on every seed's test cells first, then one few-shot model per seed
    for seed in seeds:
        mask = split(table, seed)
        row = rows[seed] = {"seed": seed, "n_corrections": int(mask.sum())}
        row["train_base_s"] = base_s
        predict(row, "base", "base", table[~mask])
        save(row)
    for seed in seeds:
        mask = split(table, seed)
        corr, test = table[mask], table[~mask]
        cdir = work / f"corrections_{seed}"
        for _, r in corr.iterrows():
            dst = cdir / r["label"] / Path(r["path"]).name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(Path(r["path"]).read_bytes())
        listing = work / f"test_{seed}.txt"
        listing.write_text("\n".join(test["path"]) + "\n")
        t = time.perf_counter()
        row = rows[seed]
        row["train_fewshot_cpu_s"] = None
        if not (work / f"fewshot_{seed}.zip").exists():
            few = work / f"fewshot_{seed}.zip"
            row["train_fewshot_cpu_s"] = run("train", pbc, cdir, "--out", few, "--quiet", *extra)
        row["train_fewshot_s"] = time.perf_counter() - t
        predict(row, f"fewshot_{seed}", "fewshot", test)
        save(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
