"""Benchmark: nanoscale quantification against Picasso and Locan (peers as oracles).

* NeNA on the shared Picasso and ColiCoords files: ours (default three-term model, and
  with Picasso's and Locan's definitions) vs Picasso ``postprocess.nena`` and Locan
  ``LocalizationPrecision`` (goal: within 5 %);
* NeNA of each model on simulations of known precision from sparse to dense frames
  (goal: within 10 %);
* adjusted Rand index of DBSCAN, HDBSCAN and OPTICS (with and without the density floor)
  against the simulated clusters (goal: >= 0.9);
* DBSCAN labels identical to scikit-learn's on the same coordinates;
* merged count vs Picasso ``link`` with the same radius and dark time (goal: within 2 %);
* speed on 2 M simulated localizations (merge, NeNA, DBSCAN eps 20 nm) beside Picasso's;
  FRC of a 40 um field at 10 nm (goal: < 5 s).

The peers live in their own environment (never a test dependency)::

    python3 -m venv /work/peers && /work/peers/bin/pip install picassosr locan
    nice -n 10 .venv/bin/python benchmarks/bench_quantify.py [--peers /work/peers/bin/python]
        [--n 2000000] [--workdir /tmp/x] [--out benchmarks/results/bench_quantify.json]

Peers run in a subprocess on the same arrays (positions converted to camera pixels for
Picasso with the file's pixel size); timings are wall-clock inside each process (start-up
and imports excluded; Picasso's numba functions are compiled on a small warm-up first).
Locan's NeNA loops over frames in Python; it runs on files of up to ``--locan-max`` rows.
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

DATA = Path("/work/shared/data/smlm")
FILES = [
    DATA / "picasso" / "testdata_locs.hdf5",
    DATA / "picasso" / "raw_movie_locs.hdf5",
    *sorted((DATA / "colicoords").glob("0*_storm.csv")),
]
RADIUS_NM = 50.0
DARK = 1

PEER = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
args = json.loads(sys.argv[1])
z = np.load(args["npz"])
px = float(args["px"])
out = {}
locs = pd.DataFrame({
    "frame": z["frame"].astype(np.uint32), "x": (z["x"] / px).astype(np.float32),
    "y": (z["y"] / px).astype(np.float32), "photons": z["photons"].astype(np.float32),
    "sx": np.ones(len(z["x"]), np.float32), "sy": np.ones(len(z["x"]), np.float32),
    "bg": np.zeros(len(z["x"]), np.float32),
    "lpx": (z["prec"] / px).astype(np.float32), "lpy": (z["prec"] / px).astype(np.float32),
})
info = [{"Pixelsize": px, "Frames": int(locs["frame"].max()) + 1, "Width": 512, "Height": 512}]
try:
    from picasso import postprocess, clusterer
    small = locs.iloc[:2000].copy()
    postprocess.link(small, info, r_max=args["radius"] / px, max_dark_time=args["dark"])
    try:
        postprocess.nena(small.copy(), info)
    except Exception:
        pass
    t = time.perf_counter(); res, s = postprocess.nena(locs.copy(), info)
    out["picasso_nena_nm"] = float(s) * px; out["picasso_nena_s"] = time.perf_counter() - t
    t = time.perf_counter()
    linked = postprocess.link(locs.copy(), info, r_max=args["radius"] / px, max_dark_time=args["dark"])
    out["picasso_link_s"] = time.perf_counter() - t; out["picasso_link_n"] = int(len(linked))
    if args.get("dbscan"):
        t = time.perf_counter()
        clusterer.dbscan(locs.copy(), args["eps"] / px, args["min"], min_locs=0, pixelsize=px)
        out["picasso_dbscan_s"] = time.perf_counter() - t
except Exception as e:
    out["picasso_error"] = f"{type(e).__name__}: {e}"[:300]
if len(locs) <= args["locan_max"]:
    try:
        import locan
        locan.configuration.TQDM_DISABLE = True
        import locan.analysis.localization_precision as lpm
        lpm.TQDM_DISABLE = True
        ld = locan.LocData.from_dataframe(pd.DataFrame(
            {"position_x": z["x"], "position_y": z["y"], "frame": z["frame"].astype(np.int64)}))
        t = time.perf_counter()
        lp = locan.LocalizationPrecision(radius=150).compute(ld)
        lp.fit_distributions(loc_property="position_distance")
        sig = lp.distribution_statistics.parameter_dict()["position_distance_sigma"]
        out["locan_nena_nm"] = float(sig) / np.sqrt(2)
        out["locan_nena_s"] = time.perf_counter() - t
    except Exception as e:
        out["locan_error"] = f"{type(e).__name__}: {e}"[:300]
print("PEER" + json.dumps(out))
"""


def run_peer(peers, npz, px, locan_max, dbscan=False, timeout=1800):
    if not peers or not Path(peers).exists():
        return {"peer_error": f"no peer interpreter at {peers}"}
    arg = dict(
        npz=str(npz), px=px, radius=RADIUS_NM, dark=DARK, eps=20.0, min=5, locan_max=locan_max,
        dbscan=dbscan,
    )  # fmt: skip
    try:
        p = subprocess.run(
            [peers, "-c", PEER, json.dumps(arg)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    except subprocess.TimeoutExpired:
        return {"peer_error": f"timed out after {timeout} s"}
    for line in p.stdout.splitlines():
        if line.startswith("PEER"):
            return json.loads(line[4:])
    return {"peer_error": p.stderr.strip().splitlines()[-1:] or "no output"}


def save(df, path):
    prec = df["precision_nm"].to_numpy(np.float64)
    prec = np.where(np.isfinite(prec) & (prec > 0), prec, np.nanmedian(prec))
    phot = df["photons"].to_numpy(np.float64) if "photons" in df else np.ones(len(df))
    np.savez(
        path,
        x=df["x_nm"].to_numpy(np.float64),
        y=df["y_nm"].to_numpy(np.float64),
        frame=df["frame"].to_numpy(np.int64) - int(df["frame"].min()),
        photons=np.nan_to_num(phot, nan=1.0),
        prec=prec,
    )


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def real_files(peers, work, locan_max):
    from sklearn.cluster import DBSCAN

    from napari_nucleus_ai.localizations import read_localizations
    from napari_nucleus_ai.localizations.analysis import cluster_localizations, merge_blinks, nena

    rows = []
    for path in FILES:
        if not path.exists():
            continue
        table = read_localizations(path)
        df = table.data
        px = float(table.metadata.get("pixel_size_nm") or 100.0)
        row = {"file": str(path), "n": len(df)}
        row["nena_nm"] = nena(df).precision_nm
        # Picasso's definition: pairs within one camera pixel, two-term fit, d_max/1000 bins
        row["nena_picasso_model_nm"] = nena(df, d_max_nm=px, model="picasso").precision_nm
        # Locan's definition with the radius the peer gets (150 nm)
        row["nena_locan_model_nm"] = nena(df, d_max_nm=150, model="locan").precision_nm
        m = merge_blinks(df, radius_nm=RADIUS_NM, max_dark_frames=DARK)
        row["merged_n"] = m.n_after
        xy = df[["x_nm", "y_nm"]].to_numpy(np.float64)
        ours = cluster_localizations(df, "dbscan", eps_nm=20, min_samples=5, hull=False).labels
        row["dbscan_identical"] = bool(
            np.array_equal(ours, DBSCAN(eps=20, min_samples=5).fit_predict(xy))
        )
        npz = work / (path.stem + ".npz")
        save(df, npz)
        row.update(run_peer(peers, npz, px, locan_max))
        for peer in ("picasso_nena_nm", "locan_nena_nm"):
            if peer in row:
                row[peer.replace("_nm", "_diff_pct")] = 100 * (row["nena_nm"] / row[peer] - 1)
        if "locan_nena_nm" in row:
            row["locan_model_diff_pct"] = 100 * (
                row["nena_locan_model_nm"] / row["locan_nena_nm"] - 1
            )
        if "picasso_nena_nm" in row:
            row["picasso_model_diff_pct"] = 100 * (
                row["nena_picasso_model_nm"] / row["picasso_nena_nm"] - 1
            )
        if "picasso_link_n" in row:
            row["merge_diff_pct"] = 100 * (row["merged_n"] / row["picasso_link_n"] - 1)
        print(json.dumps(row, default=float), flush=True)
        rows.append(row)
    return rows


def nena_simulations():
    """Each NeNA model on blinking emitters of known precision, sparse to dense frames."""
    from napari_nucleus_ai.localizations.analysis import nena
    from napari_nucleus_ai.samples.storm import simulate_blinking

    rows = []
    for clustered in (0.0, 0.5):
        for sigma in (10.0, 20.0):
            for n_frames in (20_000, 2000, 500, 200):
                df = simulate_blinking(
                    n_emitters=20_000, field_nm=(10_000, 10_000) if clustered else (5000, 5000),
                    clustered_fraction=clustered, emitters_per_cluster=40, cluster_sd_nm=25,
                    precision_nm=sigma, n_frames=n_frames, flicker=0.1, on_frames_mean=3, seed=1,
                )  # fmt: skip
                area = 100.0 if clustered else 25.0
                row = {
                    "clustered_fraction": clustered, "precision_nm": sigma, "n": len(df),
                    "per_um2_per_frame": len(df) / df["frame"].nunique() / area,
                }  # fmt: skip
                for name, model, d_max in (
                    ("endesfelder_150", "endesfelder", 150.0),
                    ("picasso_100", "picasso", 100.0),
                    ("picasso_150", "picasso", 150.0),
                    ("locan_50", "locan", 50.0),
                    ("locan_150", "locan", 150.0),
                ):
                    try:
                        row[name] = nena(df, model=model, d_max_nm=d_max).precision_nm
                    except Exception as e:  # noqa: BLE001 - a failed fit is a result here
                        row[name] = f"{type(e).__name__}: {e}"
                print(json.dumps(row, default=float), flush=True)
                rows.append(row)
    return rows


def cluster_ari():
    """ARI of each method against the simulated clusters (all localizations, noise too)."""
    from sklearn.metrics import adjusted_rand_score

    from napari_nucleus_ai.localizations.analysis import cluster_localizations
    from napari_nucleus_ai.samples.storm import simulate_blinking

    rows = []
    for seed, frac, per in ((2, 0.6, 40), (3, 0.6, 40), (4, 0.3, 40), (5, 0.6, 20)):
        df = simulate_blinking(
            n_emitters=3000, field_nm=(8000, 8000), precision_nm=8, seed=seed,
            clustered_fraction=frac, cluster_sd_nm=25, emitters_per_cluster=per,
            bursts_mean=1.5, on_frames_mean=1.5,
        )  # fmt: skip
        truth = df["cluster"].to_numpy()
        row = {"seed": seed, "clustered_fraction": frac, "emitters_per_cluster": per}
        row.update(n=len(df), true_clusters=int(df.attrs["n_clusters"]))
        for name, method, kw in (
            ("dbscan", "dbscan", dict(eps_nm=50, min_samples=15)),
            ("hdbscan_no_floor", "hdbscan", dict(min_samples=15, density_factor=0)),
            ("hdbscan", "hdbscan", dict(min_samples=15)),
            ("optics_no_floor", "optics", dict(eps_nm=50, min_samples=15, density_factor=0)),
            ("optics", "optics", dict(eps_nm=50, min_samples=15)),
        ):
            if method == "optics" and seed != 2:
                continue  # scikit-learn's OPTICS takes 15-25 s here: one simulation
            c, t = timed(lambda d=df, m=method, k=kw: cluster_localizations(d, m, hull=False, **k))
            row[f"{name}_ari"] = adjusted_rand_score(truth, c.labels)
            row[f"{name}_clusters"] = c.n_clusters
            row[f"{name}_s"] = t
        print(json.dumps(row, default=float), flush=True)
        rows.append(row)
    return rows


def speed(peers, work, n_target):
    from napari_nucleus_ai.localizations.analysis import (
        cluster_localizations,
        frc,
        merge_blinks,
        nena,
    )
    from napari_nucleus_ai.samples.storm import simulate_blinking

    n_em = int(n_target / 4.0)  # about 4 localizations per emitter
    df, t_sim = timed(
        lambda: simulate_blinking(
            n_emitters=n_em, field_nm=(40_000, 40_000), clustered_fraction=0.5,
            emitters_per_cluster=40, precision_nm=10.0, n_frames=50_000, seed=0,
        )
    )  # fmt: skip
    out = {"n": len(df), "simulate_s": t_sim, "true_bursts": df.attrs["n_bursts"]}
    small = df.iloc[:20_000]  # warm-up on a small part, as the peers' numba code gets
    merge_blinks(small, radius_nm=RADIUS_NM, max_dark_frames=DARK)
    nena(small)
    m, out["merge_s"] = timed(lambda: merge_blinks(df, radius_nm=RADIUS_NM, max_dark_frames=DARK))
    out["merged_n"] = m.n_after
    r, out["nena_s"] = timed(lambda: nena(df))
    out["nena_nm"] = r.precision_nm
    c, out["dbscan_s"] = timed(
        lambda: cluster_localizations(df, "dbscan", eps_nm=20, min_samples=5, hull=False)
    )
    out["dbscan_clusters"] = c.n_clusters
    _, out["cluster_stats_with_hulls_s"] = timed(
        lambda: cluster_localizations(df, "dbscan", eps_nm=20, min_samples=5)
    )
    f, out["frc_s"] = timed(lambda: frc(df, pixel_size_nm=10.0))  # default: 5 splits
    out["frc_splits"] = int(f.curves.shape[0])
    out["frc_nm"] = f.resolution_nm
    out["frc_image"] = [int(40_000 / 10)] * 2
    print(json.dumps(out, default=float), flush=True)
    npz = work / "sim2m.npz"
    save(df, npz)
    out.update(run_peer(peers, npz, 130.0, 0, dbscan=True, timeout=3600))
    print(json.dumps(out, default=float), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", default="/work/peers/bin/python")
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--locan-max", type=int, default=40_000)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-simulations", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    result = {
        "command": "nice -n 10 .venv/bin/python benchmarks/bench_quantify.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{os.cpu_count()} shared cores",
        "load_average_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        work = Path(tmp)
        result["real_files"] = real_files(a.peers, work, a.locan_max)
        if not a.skip_simulations:
            result["nena_simulations"] = nena_simulations()
            result["cluster_ari"] = cluster_ari()
        if not a.skip_speed:
            result["speed"] = speed(a.peers, work, a.n)
    result["load_average_end"] = os.getloadavg()
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
