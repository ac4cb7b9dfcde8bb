"""Benchmark: reading and rendering localizations against doing it by hand.

Figures of the localization readers and renderers:

* ``info`` on a 2 M-row ThunderSTORM CSV costs at most 1.3x ``pandas.read_csv`` by hand;
* ``render`` (default method: fixed Gaussian, 10 nm) costs at most 1.2x doing it by hand
  with ``pandas.read_csv`` + ``numpy.bincount`` + ``scipy.ndimage.gaussian_filter`` +
  ``tifffile.imwrite``;
* 10 M localizations render (default method) in under 1 s on 2 cores.

Run (the big files go to a temporary folder, never into the repository)::

    nice -n 10 .venv/bin/python benchmarks/bench_localizations.py [--repeat 5] [--workdir /tmp/x]

Every timing is wall-clock, in-process (interpreter start-up excluded for both sides),
repeated ``--repeat`` times alternating ours / by hand; the median and the minimum are
printed. The minimum is the least disturbed by other processes on a shared machine.

``--whole-process`` also times both sides as whole processes (interpreter start-up and
imports included, as a user meets them): ``napari-nucleus-ai info`` against a Python
process that reads the CSV with pandas and prints its row count and bounds, and
``napari-nucleus-ai render`` against :func:`by_hand_render` in its own process (the
function's source run as a script); the same two pairs on the file's first 100 rows
(start-up and imports only); bytecode cached for both sides as an installed package
has it (:func:`process_env`); alternating runs, median wall time, and the median CPU
time of each side (user + system, all threads), which the other processes of a shared
machine disturb less. On the lead's quiet machine, within 5 minutes::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_localizations.py \
        --only-whole-process --repeat 5 --workdir /tmp/bench_locs

``--peers PYTHON`` (an interpreter with ``picassosr`` installed, never a test dependency)
renders the same 2 M localizations with a Gaussian per localization of its own precision
in Picasso (``picasso.render.render(..., blur_method="gaussian")``) and in ours
(``render_localizations(..., method="precision")``), one process each, alternating::

    python3 -m venv /work/peers && /work/peers/bin/pip install picassosr
    nice -n 10 .venv/bin/python benchmarks/bench_localizations.py --whole-process \
        --peers /work/peers/bin/python --workdir /tmp/bench_locs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_csv(path: Path, n_per_nucleus: int = 500_000) -> int:
    """A ThunderSTORM CSV of 4 simulated nuclei (2 M rows) with ThunderSTORM's columns."""
    from napari_nucleus_ai.samples.storm import simulate_field

    df = simulate_field(
        n_nuclei=4,
        presets=("somatic", "pluripotent"),
        seed=0,
        field_nm=(40_000.0, 40_000.0),
        n_localizations=n_per_nucleus,
        background_per_um2=0.0,
    )
    n = len(df)
    rng = np.random.default_rng(0)
    out = pd.DataFrame(
        {
            "id": np.arange(1, n + 1).astype(float),
            "frame": df["frame"].astype(float),
            "x [nm]": df["x_nm"],
            "y [nm]": df["y_nm"],
            "sigma [nm]": rng.normal(130, 20, n),
            "intensity [photon]": df["photons"],
            "offset [photon]": rng.normal(100, 10, n),
            "bkgstd [photon]": rng.normal(8, 1, n),
            "chi2": rng.normal(1e6, 1e5, n),
            "uncertainty_xy [nm]": df["precision_nm"],
        }
    )
    out.to_csv(
        path, index=False, quoting=1, float_format="%.3f"
    )  # QUOTE_ALL header like ThunderSTORM
    return n


def by_hand_read(path):
    return pd.read_csv(path)


def by_hand_render(path, out, px=10.0):
    """What a user would write: read, bin, blur with the median precision, save."""
    import tifffile
    from scipy.ndimage import gaussian_filter

    df = pd.read_csv(path)
    x = df["x [nm]"].to_numpy()
    y = df["y [nm]"].to_numpy()
    sigma = float(np.median(df["uncertainty_xy [nm]"])) / px
    x0, y0 = np.floor(x.min() / px) * px, np.floor(y.min() / px) * px
    nx = int((x.max() - x0) // px) + 1
    ny = int((y.max() - y0) // px) + 1
    ix = ((x - x0) / px).astype(np.intp)
    iy = ((y - y0) / px).astype(np.intp)
    img = np.bincount(iy * nx + ix, minlength=nx * ny).reshape(ny, nx).astype(np.float32)
    img = gaussian_filter(img, sigma, mode="constant")
    tifffile.imwrite(
        out, img, imagej=True, resolution=(1000 / px, 1000 / px), metadata={"unit": "micron"}
    )
    return img


def ours_info(path):
    from napari_nucleus_ai.io import describe

    return describe(path)


def ours_render(path, out):
    from napari_nucleus_ai.cli import main

    with open(os.devnull, "w") as devnull:
        old, sys.stdout = sys.stdout, devnull
        try:
            assert main(["render", str(path), "--out", str(out)]) == 0
        finally:
            sys.stdout = old


HAND_INFO = """
import sys
import pandas as pd
df = pd.read_csv(sys.argv[1])
x, y = df["x [nm]"], df["y [nm]"]
print(len(df), x.min(), x.max(), y.min(), y.max())
"""


def hand_render_script() -> str:
    """:func:`by_hand_render` as a self-contained script (no import of this module, whose
    own imports the by-hand process would otherwise pay for)."""
    import inspect

    return (
        "import sys\nimport numpy as np\nimport pandas as pd\n\n"
        + inspect.getsource(by_hand_render)
        + "\nby_hand_render(sys.argv[1], sys.argv[2])\n"
    )


# a Gaussian per localization of its own precision (Picasso >= 0.9: a DataFrame in camera
# pixels of 100 nm, metadata with the pixel size, output pixels of `px` nm)
PICASSO_RENDER = """
import sys, time
import numpy as np
import pandas as pd
t = time.perf_counter()
from picasso import render
z = np.load(sys.argv[1])
px, cam = float(sys.argv[2]), 100.0
n = len(z["x"])
locs = pd.DataFrame({
    "frame": np.zeros(n, np.uint32), "x": z["x"] / cam, "y": z["y"] / cam,
    "lpx": z["p"] / cam, "lpy": z["p"] / cam, "photons": np.ones(n, np.float32),
})
h, w = int(z["y"].max() / cam) + 1, int(z["x"].max() / cam) + 1
info = [{"Height": h, "Width": w, "Pixelsize": cam}]
n_drawn, img = render.render(locs, info, disp_px_size=px, blur_method="gaussian")
print(img.shape, float(img.sum()), time.perf_counter() - t)
"""

OURS_PRECISION = """
import sys, time
import numpy as np
t = time.perf_counter()
from napari_nucleus_ai.localizations.render import render_localizations
z = np.load(sys.argv[1])
px = float(sys.argv[2])
r = render_localizations(
    {"x_nm": z["x"], "y_nm": z["y"], "precision_nm": z["p"]}, px, "precision",
    bounds_nm={"x": [0.0, float(z["x"].max())], "y": [0.0, float(z["y"].max())]},
)
print(r.image.shape, float(r.image.sum()), time.perf_counter() - t)
"""


def process_env(work: Path) -> dict:
    """The environment of the timed processes: bytecode cached (in ``work``, never in the
    repository) as an installed package has it, even where ``PYTHONDONTWRITEBYTECODE`` is
    set; otherwise every run of ours would compile the plugin's modules from source while
    the by-hand side loads the libraries' cached bytecode."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def process_time(cmd, env=None) -> tuple[float, float]:
    """(wall, CPU) seconds of one whole process (output discarded; a failure raises).

    CPU is the child's user + system time, all threads: other processes on a shared
    machine disturb it far less than the wall time.
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def compare_processes(name, ours_cmd, hand_cmd, repeat, env=None) -> dict:
    """Alternating whole-process runs of two commands; medians and their ratio."""
    process_time(ours_cmd, env), process_time(hand_cmd, env)  # warm the file cache and .pyc
    a, b = [], []
    load = [os.getloadavg()[0]]
    for _ in range(repeat):
        a.append(process_time(ours_cmd, env))
        b.append(process_time(hand_cmd, env))
        load.append(os.getloadavg()[0])
    wa, wb = [w for w, _ in a], [w for w, _ in b]
    ca, cb = [c for _, c in a], [c for _, c in b]
    ma, mb = statistics.median(wa), statistics.median(wb)
    print(
        f"{name:<44} ours {ma:.2f} s, other {mb:.2f} s (median of {repeat}); "
        f"ratio {ma / mb:.2f} (min {min(wa) / min(wb):.2f}); CPU ours "
        f"{statistics.median(ca):.2f} s, other {statistics.median(cb):.2f} s, ratio "
        f"{statistics.median(ca) / statistics.median(cb):.2f}; load {min(load):.1f}-{max(load):.1f}",
        flush=True,
    )
    return {
        "what": name,
        "ours_median_s": ma,
        "other_median_s": mb,
        "ratio_median": ma / mb,
        "ratio_min": min(wa) / min(wb),
        "ours_cpu_median_s": statistics.median(ca),
        "other_cpu_median_s": statistics.median(cb),
        "ratio_cpu_median": statistics.median(ca) / statistics.median(cb),
        "load": [min(load), max(load)],
    }


def whole_process_rows(csv: Path, work: Path, repeat: int, peers: str | None) -> list:
    """``info`` / ``render`` as whole processes against by-hand processes, and the precision
    render against Picasso's when a peer interpreter is given."""
    py = sys.executable
    exe = str(Path(py).with_name("napari-nucleus-ai"))
    env = process_env(work)
    rows = [
        compare_processes(
            "info (whole process) vs pandas by hand",
            [exe, "info", str(csv)],
            [py, "-c", HAND_INFO, str(csv)],
            repeat,
            env,
        ),
        compare_processes(
            "render (whole process) vs by hand",
            [exe, "render", str(csv), "--out", str(work / "ours_wp.tif")],
            [py, "-c", hand_render_script(), str(csv), str(work / "hand_wp.tif")],
            repeat,
            env,
        ),
    ]
    # the same commands on the file's first 100 rows: start-up and imports only
    small = work / "thunderstorm_100.csv"
    with open(csv) as src, open(small, "w") as dst:
        dst.writelines(next(src) for _ in range(101))
    rows += [
        compare_processes(
            "info, 100 rows (whole process) vs by hand",
            [exe, "info", str(small)],
            [py, "-c", HAND_INFO, str(small)],
            repeat,
            env,
        ),
        compare_processes(
            "render, 100 rows (whole process) vs by hand",
            [exe, "render", str(small), "--out", str(work / "ours_100.tif")],
            [py, "-c", hand_render_script(), str(small), str(work / "hand_100.tif")],
            repeat,
            env,
        ),
    ]
    if peers:
        df = pd.read_csv(csv, usecols=["x [nm]", "y [nm]", "uncertainty_xy [nm]"])
        npz = work / "precision_2M.npz"
        x, y = df["x [nm]"].to_numpy(), df["y [nm]"].to_numpy()
        np.savez(
            npz,
            x=x - x.min(),
            y=y - y.min(),
            p=df["uncertainty_xy [nm]"].to_numpy(np.float32),
        )
        for cmd in (
            [py, "-c", OURS_PRECISION, str(npz), "10"],
            [peers, "-c", PICASSO_RENDER, str(npz), "10"],
        ):
            out = subprocess.run(
                cmd, check=True, capture_output=True, text=True, env=env
            ).stdout.strip()
            print(f"  {Path(cmd[0]).parent.parent.name}: shape, sum, in-process s: {out}")
        rows.append(
            compare_processes(
                "precision render (whole process) vs Picasso",
                [py, "-c", OURS_PRECISION, str(npz), "10"],
                [peers, "-c", PICASSO_RENDER, str(npz), "10"],
                repeat,
                env,
            )
        )
    return rows


def timed(fn, *args):
    """(wall, cpu) seconds; cpu = this process's CPU time (all threads), which other
    processes on a shared machine disturb far less than wall time."""
    c = time.process_time()
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t, time.process_time() - c


def compare(name, ours, hand, repeat):
    a, b = [], []
    for _ in range(repeat):
        a.append(ours())
        b.append(hand())
    row = {"what": name}
    for key, i in (("wall", 0), ("cpu", 1)):
        oa, hb = [x[i] for x in a], [x[i] for x in b]
        row[f"ours_{key}_min_s"], row[f"ours_{key}_median_s"] = min(oa), statistics.median(oa)
        row[f"hand_{key}_min_s"], row[f"hand_{key}_median_s"] = min(hb), statistics.median(hb)
        row[f"ratio_{key}_min"] = min(oa) / min(hb)
        row[f"ratio_{key}_median"] = statistics.median(oa) / statistics.median(hb)
        print(
            f"{name:<38} {key:<4} ours {min(oa):.3f}/{statistics.median(oa):.3f} s  "
            f"by hand {min(hb):.3f}/{statistics.median(hb):.3f} s (min/median)  "
            f"ratio {row[f'ratio_{key}_min']:.2f} / {row[f'ratio_{key}_median']:.2f}",
            flush=True,
        )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workdir", default=None, help="where the big files go (default: a temp dir)")
    ap.add_argument("--n10m", type=int, default=10_000_000)
    ap.add_argument("--whole-process", action="store_true", help="also time whole processes")
    ap.add_argument("--only-whole-process", action="store_true", help="only the whole processes")
    ap.add_argument("--peers", default=None, help="a Python with picassosr, for the Picasso render")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_locs_"))
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "thunderstorm_2M.csv"
    if not csv.exists():
        t = time.perf_counter()
        n = make_csv(csv)
        print(
            f"wrote {csv} ({n} rows, {csv.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s"
        )
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()}")
    rows = []
    if args.whole_process or args.only_whole_process:
        rows += whole_process_rows(csv, work, args.repeat, args.peers)
        if args.only_whole_process:
            print(json.dumps(rows))
            return 0
    info = ours_info(csv)
    assert info["count"] == len(by_hand_read(csv))
    rows.append(
        compare(
            "info (describe) vs read_csv",
            lambda: timed(ours_info, csv),
            lambda: timed(by_hand_read, csv),
            args.repeat,
        )
    )
    out_a, out_b = work / "ours.tif", work / "hand.tif"
    print(f"load average now: {os.getloadavg()}")
    rows.append(
        compare(
            "render (CLI, gaussian 10 nm) vs hand",
            lambda: timed(ours_render, csv, out_a),
            lambda: timed(by_hand_render, csv, out_b),
            args.repeat,
        )
    )
    import tifffile

    a, b = tifffile.imread(out_a), tifffile.imread(out_b)
    print(f"  images: ours {a.shape}, by hand {b.shape}, max abs diff {np.abs(a - b).max():.2e}")

    # CLI wall time including interpreter start-up (for reference)
    exe = Path(sys.executable).with_name("napari-nucleus-ai")
    if exe.exists():
        t = time.perf_counter()
        subprocess.run([str(exe), "info", str(csv), "--json"], check=True, capture_output=True)
        print(f"napari-nucleus-ai info --json (whole process): {time.perf_counter() - t:.2f} s")

    # 10 M localizations, default method, in memory
    from napari_nucleus_ai.localizations.render import render_localizations

    rng = np.random.default_rng(1)
    n = args.n10m
    big = pd.DataFrame(
        {
            "x_nm": rng.uniform(0, 40_000, n),
            "y_nm": rng.uniform(0, 40_000, n),
            "precision_nm": rng.uniform(5, 25, n).astype(np.float32),
        }
    )
    render_localizations(big, pixel_size_nm=10.0)  # warm-up: first touch of the big buffers
    for method in ("gaussian", "histogram"):
        ts = [timed(render_localizations, big, 10.0, method) for _ in range(args.repeat)]
        wall, cpu = [t[0] for t in ts], [t[1] for t in ts]
        print(
            f"render {n / 1e6:.0f} M locs {method:<9} (4000 x 4000): wall min {min(wall):.3f} s, "
            f"median {statistics.median(wall):.3f} s; cpu (all threads) min {min(cpu):.3f} s, "
            f"median {statistics.median(cpu):.3f} s",
            flush=True,
        )
        rows.append(
            {
                "what": f"render {n} {method}",
                "wall_min_s": min(wall),
                "wall_median_s": statistics.median(wall),
                "cpu_min_s": min(cpu),
                "cpu_median_s": statistics.median(cpu),
            }
        )
    print(f"load average at the end: {os.getloadavg()}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
