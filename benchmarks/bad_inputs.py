"""Run every bad command line we know of and print the table of docs/reliability.md.

Each row is one class of bad input for one command, run as a real process
(``python -m napari_nucleus_ai ...``) on small files made in a temporary folder
(the real data of ``../shared/data`` is used, read-only, when present). The table
gives the first line of stderr, the exit status and whether a Python traceback
reached the user (it must never). ``--fuzz`` also runs the reader fuzz cases of
``tests/test_fuzz_readers.py`` and prints their counts.

    python benchmarks/bad_inputs.py [--fuzz]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def make_files(tmp: Path) -> dict:
    from PIL import Image

    from _fuzz_files import huge_png, huge_tiff

    rng = np.random.default_rng(0)
    f = {}
    f["smear"] = tmp / "smear.png"
    Image.fromarray(rng.integers(150, 255, (128, 128, 3)).astype(np.uint8)).save(f["smear"])
    f["locs"] = tmp / "locs.csv"
    xy = rng.uniform(0, 8000, (2000, 2))
    f["locs"].write_text("x [nm],y [nm]\n" + "\n".join(f"{a:.1f},{b:.1f}" for a, b in xy) + "\n")
    f["big"] = tmp / "big_coord.csv"
    f["big"].write_text("x [nm],y [nm]\n1,2\n1e308,5\n3,4\n")
    f["huge_tif"] = huge_tiff(tmp / "huge.tif")
    f["huge_png"] = huge_png(tmp / "huge.png")
    f["junk"] = tmp / "junk.npz"
    f["junk"].write_bytes(rng.bytes(3000))
    data = tmp / "crops"
    for k, name in enumerate(["disc", "square"]):
        (data / name).mkdir(parents=True)
        for i in range(8):
            img = np.full((24, 24, 3), 230, np.uint8)
            c = slice(6, 18)
            if k == 0:
                yy, xx = np.mgrid[:24, :24]
                img[(yy - 12) ** 2 + (xx - 12) ** 2 < 30 + i] = (120, 40, 160)
            else:
                img[c, c] = (120, 40, 160)
            Image.fromarray(img).save(data / name / f"{i}.png")
    f["crops"] = data
    bad_data = tmp / "crops_bad"
    import shutil

    shutil.copytree(data, bad_data)
    (bad_data / "disc" / "corrupt.png").write_bytes(b"not an image")
    f["crops_bad"] = bad_data
    f["broken_png"] = tmp / "broken.png"
    f["broken_png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    f["folders_bad"] = bad_data
    return f


def cases(f: dict, tmp: Path) -> list[tuple[str, str, list]]:
    o = tmp / "out"
    m = tmp / "model.zip"
    crop = f["crops"] / "disc" / "0.png"
    return [
        ("segment", "--param not a number", ["segment", f["smear"], "--method", "wbc", "--param", "min_nucleus_um=abc", "--out", o]),
        ("segment", "--param NaN", ["segment", f["smear"], "--method", "wbc", "--param", "min_nucleus_um=nan", "--out", o]),
        ("segment", "--param negative", ["segment", f["smear"], "--method", "wbc", "--param", "min_nucleus_um=-5", "--out", o]),
        ("segment", "--param unknown name", ["segment", f["smear"], "--method", "nuclei", "--param", "size=4", "--out", o]),
        ("segment", "--tile too small", ["segment", f["smear"], "--tile", "5", "--out", o]),
        ("segment", "--out parent missing", ["segment", f["smear"], "--out", tmp / "no" / "such"]),
        ("segment", "huge-header TIFF", ["segment", f["huge_tif"], "--method", "nuclei", "--out", o]),
        ("segment", "huge-header PNG", ["segment", f["huge_png"], "--method", "wbc", "--out", o]),
        ("batch", "--param not a number", ["batch", f["smear"], "--param", "min_snr=abc", "--out", o]),
        ("render", "--sigma negative", ["render", f["locs"], "--sigma", "-3", "--out", tmp / "r.tif"]),
        ("render", "--pixel-size 0", ["render", f["locs"], "--pixel-size", "0", "--out", tmp / "r.tif"]),
        ("render", "--channel not in file", ["render", f["locs"], "--channel", "7", "--out", tmp / "r.tif"]),
        ("render", "--out wrong extension", ["render", f["locs"], "--out", tmp / "r.png"]),
        ("render", "coordinate 1e308", ["render", f["big"], "--out", tmp / "r.tif"]),
        ("info", "huge-header TIFF", ["info", f["huge_tif"]]),
        ("info", "missing file", ["info", tmp / "nope.csv"]),
        ("train", "data path missing", ["train", tmp / "nope", "--out", m]),
        ("train", "--epochs 0", ["train", f["crops"], "--out", m, "--epochs", "0"]),
        ("train", "--val-fraction 1.5", ["train", f["crops"], "--out", m, "--val-fraction", "1.5"]),
        ("train", "--lr nan", ["train", f["crops"], "--out", m, "--lr", "nan"]),
        ("train", "one corrupt image", ["train", f["crops_bad"], "--out", m, "--epochs", "1", "--crop-size", "24", "--arch", "smallcnn", "--quiet"]),
        ("predict", "--tta 3", ["predict", m, crop, "--out", tmp / "p.csv", "--tta", "3"]),
        ("predict", "--tta 0", ["predict", m, crop, "--out", tmp / "p.csv", "--tta", "0"]),
        ("predict", "--mc-dropout -2", ["predict", m, crop, "--out", tmp / "p.csv", "--mc-dropout", "-2"]),
        ("predict", "--out is a folder", ["predict", m, crop, "--out", tmp]),
        ("predict", "one unreadable crop", ["predict", m, crop, f["broken_png"], f["crops"] / "square" / "0.png", "--out", tmp / "p.csv", "--quiet"]),
        ("retrain", "--epochs -1", ["retrain", m, tmp / "c.sqlite", "--out", tmp / "m2.zip", "--epochs", "-1"]),
        ("import-dataset", "junk .npz", ["import-dataset", "bloodmnist", f["junk"], "--out", tmp / "ds"]),
        ("import-dataset", "one unreadable image", ["import-dataset", "folders", f["folders_bad"], "--out", tmp / "ds2", "--quiet"]),
        ("generate", "-n 0", ["generate", m, "--class", "disc", "-n", "0", "--out", tmp / "g"]),
        ("track", "--max-gap -1", ["track", f["smear"], "--max-gap", "-1", "--out", tmp / "t"]),
        ("export-zarr", "--pixel-size nan",
         ["export-zarr", f["smear"], "--out", tmp / "x.zarr", "--pixel-size", "nan"]),
        ("export-zarr", "--name with a /",
         ["export-zarr", f["smear"], "--out", tmp / "x.zarr", "--name", "../up"]),
        ("export-zarr", "--unit mm", ["export-zarr", f["smear"], "--out", tmp / "x.zarr", "--unit", "mm"]),
        ("export-geojson", "--object-type polygon",
         ["export-geojson", f["smear"], "--out", tmp / "c.geojson", "--object-type", "polygon"]),
    ]  # fmt: skip


def run_case(argv) -> tuple[int, str, bool, float]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "napari_nucleus_ai", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    err = proc.stderr
    lines = [ln for ln in err.splitlines() if ln.strip() and "elapsed" not in ln]
    first = next((ln for ln in lines if "error" in ln or "failed" in ln), lines[0] if lines else "")
    return proc.returncode, first, "Traceback" in err, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", action="store_true", help="also run the reader fuzz cases")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = make_files(tmp)
        train = [
            "train", files["crops"], "--out", tmp / "model.zip", "--epochs", "2",
            "--crop-size", "24", "--arch", "smallcnn", "--quiet",
        ]  # fmt: skip
        subprocess.run([sys.executable, "-m", "napari_nucleus_ai", *map(str, train)], check=True)
        rows = []
        for command, what, argv in cases(files, tmp):
            rc, line, tb, sec = run_case(argv)
            line = line.replace(str(tmp) + "/", "").replace(str(tmp), ".")
            rows.append((command, what, line, rc, tb))
            print(f"{command:15s} {what:25s} exit {rc}  {'TRACEBACK ' if tb else ''}{line}",
                  file=sys.stderr)  # fmt: skip
        print("| command | bad input | message (first line of stderr) | exit |")
        print("|---|---|---|---|")
        for command, what, line, rc, tb in rows:
            msg = line.replace("|", "\\|")
            print(f"| `{command}` | {what} | `{msg}` | {rc}{' **traceback**' if tb else ''} |")
        n_tb = sum(r[4] for r in rows)
        print(f"\n{len(rows)} bad commands, {n_tb} tracebacks")
        if args.fuzz:
            from test_fuzz_readers import run_fuzz

            fz = tmp / "fuzz"
            fz.mkdir()
            counts, failures, seconds = run_fuzz(fz)
            print(f"\nfuzz: {counts['cases']} cases in {seconds:.1f} s, {len(failures)} tracebacks")
            for key in sorted(counts):
                print(f"  {key}: {counts[key]}")
            n_tb += len(failures)
    return 1 if n_tb else 0


if __name__ == "__main__":
    sys.exit(main())
