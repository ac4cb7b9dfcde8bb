"""Batch on Dask: throughput with 1 and 2 local workers, scaling on paper, and fault tolerance.

    nice -n 10 .venv/bin/python benchmarks/bench_batch.py [--fields 16] [--size 720x960]

Prints (and writes benchmarks/results/bench_batch.json):

1. throughput (fields/s and megapixels/s) of ``run_batch`` on synthetic smear fields with
   1 and 2 local worker processes (wbc segmentation, the default pipeline);
2. the per-task cost (median task seconds) and the scheduler's per-task overhead (no-op
   tasks), and what they predict for 100 workers:
   ``throughput(W) = min(W / task_cost, 1 / overhead)``;
3. killing one worker process mid-run (SIGKILL): the run still finishes with every input ok;
4. killing the whole ``batch`` command mid-run and starting it again: it finishes, and files
   finished before the kill are not rewritten (same mtime_ns);
5. (part ``cells``) cells per second of ``batch --model`` on one big region (``--cells-side``,
   default 4096 px at 0.25 um/px, ~480 white cells, the region of
   ``bench_classify_region.py``): tile tasks for segmentation, then cell-chunk tasks (of 100
   cells) for classification, with 1 and 2 local workers, and with 2 workers but one
   classification task (``--cells-runs WORKERS:CELLS_PER_TASK ...``, default
   ``1:100 2:100 2:0``); cells per second of the whole run (cluster start to cluster
   close) and of the classification phase (first cell-chunk task start to last end, from
   the scheduler's task stream), the wall time of each kind of task, the serial stretches
   (no tile or chunk task running: before the first tile, between the last tile and the
   first chunk, after the last chunk) and the idle worker-seconds, CPU time of all
   processes (client, scheduler, workers) and the load average beside each figure.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_batch.py --skip throughput overhead \
        killworker slide killrun   # only part 5
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tifffile


def make_fields(folder: Path, n: int, shape) -> list[Path]:
    from napari_nucleus_ai.samples.smear import simulate_smear

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"field{i:03d}.tif"
        if not p.exists():
            sim = simulate_smear(seed=100 + i, shape=shape, n_wbc=4)
            tifffile.imwrite(p, sim.image)
        out.append(p)
    return out


def throughput(inputs: Path, out: Path, workers: int) -> dict:
    from napari_nucleus_ai.batch import run_batch

    t0 = time.perf_counter()
    res = run_batch([inputs], out, workers=workers, resume=False, method="wbc")
    wall = time.perf_counter() - t0
    s = res.summary
    mpx = float((s["height"] * s["width"]).sum()) / 1e6
    return {
        "workers": workers,
        "fields": len(s),
        "ok": res.n_ok,
        "wall_s": round(wall, 2),
        "run_s": round(res.seconds, 2),
        "fields_per_s": round(len(s) / wall, 3),
        "megapixels_per_s": round(mpx / wall, 3),
        "median_task_s": round(float(s["seconds"].median()), 3),
    }


def scheduler_overhead(n: int = 500) -> float:
    from distributed import Client, LocalCluster, wait

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cl, Client(cl) as c:  # fmt: skip
        wait(c.map(lambda x: x, range(20), pure=False))  # warm up
        t0 = time.perf_counter()
        wait(c.map(lambda x: x, range(n), pure=False))
        return (time.perf_counter() - t0) / n


def kill_worker_mid_run(inputs: Path, out: Path) -> dict:
    from distributed import Client, LocalCluster

    from napari_nucleus_ai.batch import run_batch_gen
    from napari_nucleus_ai.core.progress import run_sync

    cl = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR)  # fmt: skip
    c = Client(cl)
    pids = c.run(os.getpid)
    killed = {}

    def on_progress(p):
        if not killed and p.total and p.done >= 2:  # two inputs done: kill a worker
            pid = next(iter(pids.values()))
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid
            killed["at"] = p.done

    res = run_sync(run_batch_gen([inputs], out, client=c, resume=False, method="wbc"), on_progress)
    c.close()
    cl.close()
    return {"killed_worker_pid": killed.get("pid"), "killed_after_inputs": killed.get("at"),
            "inputs": len(res.summary), "ok": res.n_ok, "failed": res.n_failed}  # fmt: skip


def kill_run_and_restart(inputs: Path, out: Path) -> dict:
    exe = Path(sys.executable).with_name("napari-nucleus-ai")
    cmd = [str(exe), "batch", str(inputs), "--out", str(out), "--workers", "2", "--segment", "wbc",
           "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True)
    state = out / ".batch"
    while proc.poll() is None:
        done = list(state.glob("*.json")) if state.exists() else []
        if len(done) >= 3:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run: client, scheduler and workers
    proc.wait()
    time.sleep(1.0)
    finished = {p.stem for p in state.glob("*.json")}
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*_labels.tif")}
    before_finished = {k: v for k, v in before.items() if k[: -len("_labels.tif")] in finished}
    code = subprocess.call(cmd)
    import pandas as pd

    s = pd.read_csv(out / "summary.csv")
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*_labels.tif")}
    untouched = all(after.get(k) == v for k, v in before_finished.items())
    return {
        "finished_before_kill": len(finished),
        "restart_exit_code": code,
        "inputs": len(s),
        "ok": int((s["status"] == "ok").sum()),
        "resumed": int(s["resumed"].sum()),
        "finished_files_not_rewritten": bool(untouched),
    }


def whole_slide(root: Path, side: int = 4096) -> dict:
    """One synthetic SVS bigger than the tile threshold: tile tasks vs ``segment`` alone."""
    from napari_nucleus_ai.samples.slide import write_slide
    from napari_nucleus_ai.samples.smear import simulate_smear

    slide = root / "slide" / "smear.svs"
    slide.parent.mkdir(parents=True, exist_ok=True)
    sim = simulate_smear(seed=5, shape=(side, side), pixel_size_um=0.25, n_wbc=60)
    write_slide(slide, sim.image, mpp=0.25, magnification=40, flavour="svs")
    exe = str(Path(sys.executable).with_name("napari-nucleus-ai"))
    t0 = time.perf_counter()
    subprocess.check_call([exe, "segment", str(slide), "--method", "wbc", "--out",
                           str(root / "slide_alone"), "--quiet"])  # fmt: skip
    t_alone = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.check_call([exe, "batch", str(slide), "--out", str(root / "slide_batch"),
                           "--workers", "2", "--segment", "wbc", "--quiet"])  # fmt: skip
    t_batch = time.perf_counter() - t0
    import pandas as pd

    a = tifffile.imread(root / "slide_alone" / "smear_labels.tif")
    b = tifffile.imread(root / "slide_batch" / "smear_labels.tif")
    s = pd.read_csv(root / "slide_batch" / "summary.csv").iloc[0]
    return {
        "shape": [side, side],
        "tiles": int(s["tiles"]),
        "cells": int(s["n_cells"]),
        "segment_alone_s": round(t_alone, 1),
        "batch_2_workers_s": round(t_batch, 1),
        "labels_identical": bool(a.shape == b.shape and (a == b).all()),
    }


def _count(row, name: str) -> int:
    """An integer column of a summary row; 0 when absent or empty."""
    v = row.get(name)
    return 0 if v is None or v != v else int(v)


def _phases(tasks: list) -> dict:
    """Wall seconds of each kind of task in a run's task stream: from the first start of
    that kind to the last stop (worker clocks), and the CPU-busy seconds summed over tasks.

    Kinds are the key prefixes: ``warm`` (loading the model), ``plan``, ``tile``,
    ``finish``, ``cells`` (the cell-chunk tasks: the classification phase), ``merge``.
    """
    spans: dict[str, list] = {}
    for t in tasks:
        kind = t["key"].split("-", 1)[0]
        for s in t["startstops"]:
            if s["action"] == "compute":
                spans.setdefault(kind, []).append((s["start"], s["stop"]))
    return {
        k: {
            "wall_s": round(max(b for _, b in v) - min(a for a, _ in v), 2),
            "busy_s": round(sum(b - a for a, b in v), 2),
            "tasks": len(v),
        }
        for k, v in spans.items()
    }


def _timeline(tasks: list, w0: float) -> list:
    """``[kind, worker, start, stop]`` of every task's compute, in seconds from the run's start
    (cluster start included), sorted by start: where each worker spent the run."""
    workers = sorted({t.get("worker", "") for t in tasks})
    rows = [
        [t["key"].split("-", 1)[0], workers.index(t.get("worker", "")),
         round(s["start"] - w0, 2), round(s["stop"] - w0, 2)]
        for t in tasks for s in t["startstops"] if s["action"] == "compute"
    ]  # fmt: skip
    return sorted(rows, key=lambda r: r[2])


def _stop_fork_server() -> None:
    """Stop multiprocessing's fork server (``batch.run`` starts local workers from it), so
    that every run starts it as a new ``napari-nucleus-ai batch`` process does, not only
    the first (a private API, used by CPython's own tests: benchmark only)."""
    import multiprocessing.forkserver as fs

    stop = getattr(fs._forkserver, "_stop", None)
    if stop is not None:
        stop()


def _serial(tasks: list, w0: float, w1: float, workers: int) -> dict:
    """The serial stretches of a run (seconds, wall clock): no tile or cell-chunk task runs.

    ``before_tiles``: cluster start to the first tile (starting the cluster, planning);
    ``tiles_to_cells``: the last tile's end to the first chunk's start (stitching the last
    tile, the finishing task, handing the cells out); ``after_cells``: the last chunk's end
    to the cluster closed (merge, summary and report, fetching the task stream, closing;
    the run's ``stream_fetch_s`` and ``cluster_close_s`` split the last two). ``idle_s``: worker-seconds
    in which a worker ran no task at all (wall x workers - busy).
    """
    spans: dict[str, list] = {}
    busy = 0.0
    for t in tasks:
        for s in t["startstops"]:
            if s["action"] == "compute":
                spans.setdefault(t["key"].split("-", 1)[0], []).append((s["start"], s["stop"]))
                busy += s["stop"] - s["start"]
    out = {"idle_s": round((w1 - w0) * workers - busy, 2)}
    if "tile" in spans and "cells" in spans:
        t0, t1 = min(a for a, _ in spans["tile"]), max(b for _, b in spans["tile"])
        c0, c1 = min(a for a, _ in spans["cells"]), max(b for _, b in spans["cells"])
        out.update(before_tiles=round(t0 - w0, 2), tiles_to_cells=round(c0 - t1, 2),
                   after_cells=round(w1 - c1, 2))  # fmt: skip
    return out


def cells_throughput(root: Path, side: int, n_cells: int, configs, model: Path) -> list:
    """``batch --model`` on one big region, for each ``(workers, cells_per_task)`` of ``configs``.

    Whole run: starting the local cluster (the product's own ``connect``), the run and
    closing the cluster, as ``napari-nucleus-ai batch`` does them. Classification phase:
    from the start of the first cell-chunk task to the end of the last one (the task
    stream of the scheduler), the cells classified per second of it.
    """
    import resource

    from distributed import get_task_stream

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_classify_region import PIXEL_UM, make_region

    from napari_nucleus_ai.batch import connect, run_batch

    image, _, _ = make_region(root / "region", side, n_cells)
    runs = []
    for workers, cpt in configs:
        load0 = os.getloadavg()[0]
        r0 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        t0, w0 = time.perf_counter(), time.time()
        client, close = connect(workers=workers)
        t_start = time.perf_counter() - t0
        try:
            with get_task_stream(client) as stream:
                res = run_batch([image], root / f"cells_out{workers}_{cpt}", client=client,
                                resume=False, method="wbc", model=str(model), device="cpu",
                                pixel_size_um=PIXEL_UM, cells_per_task=cpt)  # fmt: skip
                t_ran = time.perf_counter()
            t_stream = time.perf_counter() - t_ran  # fetching the task stream (benchmark only)
        finally:
            t_close = time.perf_counter()
            close()
        wall, w1 = time.perf_counter() - t0, time.time()
        t_close = time.perf_counter() - t_close
        _stop_fork_server()
        r1 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        cpu = sum(
            (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime)
            for a, b in zip(r0, r1, strict=True)
        )
        cpu_main = (r1[0].ru_utime - r0[0].ru_utime) + (r1[0].ru_stime - r0[0].ru_stime)
        row = res.summary.iloc[0]
        n = int(row["n_cells"])
        phases = _phases(stream.data)
        cls = phases.get("cells") or phases.get("finish") or {"wall_s": float("nan")}
        runs.append({
            "model": str(model), "side": side, "workers": workers, "cells_per_task": cpt,
            "status": row["status"],
            "error": row["error"], "cells": n, "tiles": int(row.get("tiles", 0) or 0),
            "cell_tasks": int(row.get("cell_tasks", 0) or 0) if "cell_tasks" in row else 0,
            "wall_s": round(wall, 1), "cluster_start_s": round(t_start, 2),
            "stream_fetch_s": round(t_stream, 2), "cluster_close_s": round(t_close, 2),
            "cpu_s": round(cpu, 1), "cpu_main_s": round(cpu_main, 2),
            "cells_per_s": round(n / wall, 2),
            "classify_phase_s": cls["wall_s"],
            "classify_phase_cells_per_s": round(n / cls["wall_s"], 2),
            "phases": phases, "serial": _serial(stream.data, w0, w1, workers),
            "timeline": _timeline(stream.data, w0),
            "load_before": round(load0, 1),
            "load_after": round(os.getloadavg()[0], 1),
        })  # fmt: skip
        print(json.dumps(runs[-1]), flush=True)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fields", type=int, default=16)
    ap.add_argument("--size", default="720x960")
    ap.add_argument(
        "--skip", nargs="*", default=[], help="throughput overhead killworker slide killrun cells"
    )
    ap.add_argument("--cells-side", type=int, default=4096, help="part cells: region side (px)")
    ap.add_argument("--cells", type=int, default=480, help="part cells: white cells in the region")
    ap.add_argument(
        "--cells-runs",
        nargs="+",
        default=["1:100", "2:100", "2:0"],
        metavar="WORKERS:CELLS_PER_TASK",
        help="part cells: the runs, in order (default 1:100 2:100 2:0)",
    )
    ap.add_argument(
        "--model",
        type=Path,
        default=Path(__file__).resolve().parents[1]
        / "src/napari_nucleus_ai/demo/models/smear-wbc.zip",
        help="part cells: the model package",
    )
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        run_parts(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_parts(args, root: Path) -> None:
    """The parts of :func:`main` not in ``args.skip``, in ``root`` (a scratch folder)."""
    h, w = (int(v) for v in args.size.split("x"))
    inputs = root / "in"
    make_fields(inputs, args.fields, (h, w))
    results: dict = {"fields": args.fields, "shape": [h, w], "cpus": os.cpu_count(),
                     "load_avg": os.getloadavg()}  # fmt: skip
    if "throughput" not in args.skip:
        results["throughput"] = [throughput(inputs, root / f"out{n}", n) for n in (1, 2)]
        for r in results["throughput"]:
            print(json.dumps(r))
    if "overhead" not in args.skip:
        o = scheduler_overhead()
        results["scheduler_overhead_s"] = round(o, 5)
        if "throughput" in results:
            c = results["throughput"][0]["median_task_s"]
            results["predicted_fields_per_s"] = {
                str(W): round(min(W / c, 1 / o), 2) for W in (1, 2, 10, 100)
            }
        print("scheduler overhead per task", round(o * 1e3, 2), "ms;",
              results.get("predicted_fields_per_s"))  # fmt: skip
    if "killworker" not in args.skip:
        results["kill_worker"] = kill_worker_mid_run(inputs, root / "outk")
        print("kill a worker:", results["kill_worker"])
    if "slide" not in args.skip:
        results["whole_slide"] = whole_slide(root)
        print("whole slide:", results["whole_slide"])
    if "killrun" not in args.skip:
        results["kill_run"] = kill_run_and_restart(inputs, root / "outr")
        print("kill the run and restart:", results["kill_run"])
    if "cells" not in args.skip:
        configs = [tuple(int(v) for v in r.split(":")) for r in args.cells_runs]
        results["cells"] = cells_throughput(root, args.cells_side, args.cells, configs, args.model)
    dest = Path(__file__).with_name("results")
    dest.mkdir(exist_ok=True)
    path = dest / "bench_batch.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    if "cells" in results:  # runs of part cells accumulate (alternating orders, loads)
        results["cells"] = earlier.get("cells", []) + results["cells"]
    field_parts = {"throughput", "scheduler_overhead_s", "kill_worker", "whole_slide", "kill_run"}
    if not field_parts & set(results):
        for k in ("fields", "shape", "cpus", "load_avg"):  # they describe the fields' parts
            results.pop(k, None)
    # parts not run this time keep their earlier figures
    path.write_text(json.dumps({**earlier, **results}, indent=2, default=str))
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
