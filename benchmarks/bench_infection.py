"""Figures of tracking, infection and lysis on the synthetic Hoechst time-lapse.

Usage (numbers go to docs/performance.md and docs/infection.md)::

    nice -n 10 .venv/bin/python benchmarks/bench_infection.py --model MODEL [--big] [--gui]
        [--frames 100 --size 1024 --cancel-after 20]

- linking accuracy (correct links / true links), precision and divisions found,
  on held-out simulated movies (seeds 401-403, 72 frames, 512 x 512);
- per-nucleus infection accuracy of MODEL (a classifier package trained with
  ``train_infection_model``; without ``--model`` one is trained first);
- lytic prediction accuracy and median lead time with the shipped lytic model;
- runtime per frame (tracking; infection scoring) at 512 x 512;
- ``--big``: the whole workflow on a 100-frame 1024 x 1024 stack (seconds per frame);
- ``--gui``: the same stack in the Infection dock under napari (threaded worker),
  measuring the event-loop stalls while it runs (each over 100 ms listed with its
  phase and any garbage-collector pass under it) and that cancel stops it.
  ``--frames`` / ``--size`` take a smaller stack for quick checks.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def _model(path):
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.infection.score import train_infection_model
    from napari_nucleus_ai.models.package import load_model

    if path is None:
        path = "/tmp/bench-infection-model"
        t0 = time.perf_counter()
        run_sync(train_infection_model(path, epochs=20, threads=1))
        print(f"trained infection model in {time.perf_counter() - t0:.0f} s -> {path}")
    return load_model(path)


def accuracy_figures(model, seeds=(401, 402, 403), n_frames=72, shape=(512, 512)) -> dict:
    from napari_nucleus_ai.infection.evaluate import (
        infection_accuracy,
        lytic_accuracy,
        run_pipeline,
    )
    from napari_nucleus_ai.infection.lytic import LyticModel, default_model_path
    from napari_nucleus_ai.infection.track import link_accuracy
    from napari_nucleus_ai.samples.timelapse import simulate_timelapse

    lytic = LyticModel.load(default_model_path())
    out = {
        "links": [],
        "infection": [],
        "lytic": [],
        "track_s_per_frame": [],
        "infection_s_per_frame": [],
    }
    for s in seeds:
        tl = simulate_timelapse(n_frames, shape, seed=s)
        t0 = time.perf_counter()
        o = run_pipeline(tl, model, lytic_model=lytic)
        total = time.perf_counter() - t0
        res, tracks = o["result"], o["tracks"]
        out["track_s_per_frame"].append(res.seconds_per_frame)
        out["infection_s_per_frame"].append(total / n_frames - res.seconds_per_frame)
        out["links"].append(link_accuracy(res.tracks, res.labels, tl))
        out["infection"].append(infection_accuracy(tl, tracks, res.labels))
        out["lytic"].append(lytic_accuracy(tl, tracks, res.labels, o["table"]))
        print(f"seed {s}: links {out['links'][-1]['accuracy']:.3f}, infection "
              f"{out['infection'][-1]['accuracy']:.3f}, lytic {out['lytic'][-1]['accuracy']:.3f} "
              f"({out['lytic'][-1]['tracks']} tracks), lead {out['lytic'][-1]['median_lead_time_h']} h", flush=True)  # fmt: skip
    L = out["links"]
    lead = [x for r in out["lytic"] for x in r["lead_times_h"]]
    n_lyt = sum(r["tracks"] for r in out["lytic"])
    summary = {
        "movies": f"{len(seeds)} x {n_frames} frames {shape[0]}x{shape[1]} (seeds {list(seeds)})",
        "link_accuracy": sum(r["correct_links"] for r in L) / sum(r["true_links"] for r in L),
        "true_links": sum(r["true_links"] for r in L),
        "link_precision": sum(r["correct_links"] for r in L) / sum(r["predicted_links"] for r in L),
        "divisions_found": f"{sum(r['divisions_found'] for r in L)}/{sum(r['true_divisions'] for r in L)}",
        "infection_accuracy": float(np.average([r["accuracy"] for r in out["infection"]], weights=[r["nuclei"] for r in out["infection"]])),
        "infection_accuracy_visible": float(np.mean([r["accuracy_visible"] for r in out["infection"]])),
        "infection_balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in out["infection"]])),
        "nuclei": sum(r["nuclei"] for r in out["infection"]),
        "lytic_accuracy": float(sum(r["accuracy"] * r["tracks"] for r in out["lytic"]) / max(n_lyt, 1)),
        "lytic_tracks": n_lyt,
        "median_lead_time_h": float(np.median(lead)) if lead else float("nan"),
        "lead_time_range_h": [float(min(lead)), float(max(lead))] if lead else [],
        "track_s_per_frame": float(np.mean(out["track_s_per_frame"])),
        "infection_s_per_frame": float(np.mean(out["infection_s_per_frame"])),
    }  # fmt: skip
    return summary


def big_stack(model, n_frames=100, shape=(1024, 1024)) -> dict:
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.infection.lytic import default_model_path
    from napari_nucleus_ai.infection.score import analyse_timelapse
    from napari_nucleus_ai.samples.timelapse import simulate_timelapse

    t0 = time.perf_counter()
    tl = simulate_timelapse(n_frames, shape, seed=500)
    sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = [0]
    r = run_sync(
        analyse_timelapse(
            tl.image,
            tl.pixel_size_um,
            model=model,
            lytic=default_model_path(),
            frame_interval_h=0.5,
        ),
        lambda p: n.__setitem__(0, n[0] + 1),
    )
    total = time.perf_counter() - t0
    return {
        "stack": f"{n_frames} x {shape[0]} x {shape[1]}",
        "simulate_s": sim,
        "workflow_s": total,
        "s_per_frame": total / n_frames,
        "track_s_per_frame": r.tracking.seconds_per_frame,
        "progress_reports": n[0],
        "tracks": int(r.tracks["track_id"].nunique()),
        "nuclei_per_frame": float(len(r.tracks) / n_frames),
    }


def gui_responsiveness(model_path, n_frames=100, shape=(1024, 1024), cancel_after_s=20.0) -> dict:
    """The Infection dock on the big stack in napari: cancel a first run, then a full run.

    A 20 ms QTimer records how long the event loop goes without servicing it
    (the longest "freeze" a user would feel) while the threaded worker runs. Every gap
    over 100 ms is listed with what was going on: the worker's last progress message,
    whether the result had been handed over, and the garbage-collector passes
    (``gc.callbacks``) that overlapped it - a full collection stops every thread.
    """
    import gc

    import napari
    from qtpy.QtCore import QElapsedTimer, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_nucleus_ai.samples.timelapse import simulate_timelapse
    from napari_nucleus_ai.widgets.infection import InfectionWidget

    tl = simulate_timelapse(n_frames, shape, seed=500)
    viewer = napari.Viewer(show=True)
    layer = viewer.add_image(tl.image, scale=tl.scale, metadata={"frame_interval_h": 0.5})
    dock = InfectionWidget(viewer)
    viewer.window.add_dock_widget(dock, name="Infection")
    dock.layer.value = layer
    dock.demo_model.value = False
    dock.model.value = model_path
    app = QApplication.instance()

    def run(cancel_after):
        gaps, clock = [], QElapsedTimer()
        clock.start()
        last = [clock.elapsed()]

        finished_at = [None]  # clock time when the worker handed over its result

        def tick():
            now = clock.elapsed()
            gaps.append(now - last[0])
            stamps.append(now)
            last[0] = now
            if finished_at[0] is None and dock.run_btn.enabled:
                finished_at[0] = now

        stamps = []
        msgs = []  # (clock ms, worker progress message)
        gcs = []  # (start ms, end ms, generation) of garbage-collector passes
        gc_start = {}

        def on_gc(phase, info):
            now = clock.nsecsElapsed() / 1e6
            if phase == "start":
                gc_start["t"] = now
            elif "t" in gc_start:
                gcs.append((gc_start.pop("t"), now, info["generation"]))

        gc.callbacks.append(on_gc)
        timer = QTimer()
        timer.timeout.connect(tick)
        timer.start(20)
        t0 = time.perf_counter()
        dock._run()
        dock._worker.yielded.connect(lambda p: msgs.append((clock.elapsed(), p.message)))
        cancelled_at = None
        while not dock.run_btn.enabled:  # re-enabled by the dock when the worker has finished
            app.processEvents()
            time.sleep(0.005)
            if cancel_after and cancelled_at is None and time.perf_counter() - t0 > cancel_after:
                dock._cancel()
                cancelled_at = time.perf_counter() - t0
        stop = time.perf_counter() - t0
        # the dock adds its layers one per event-loop turn after the worker is done
        settle = time.perf_counter()
        while time.perf_counter() - settle < (10 if not cancel_after else 0.2):
            app.processEvents()
            time.sleep(0.01)
            if "tracks" in str(dock.status.value) and time.perf_counter() - settle > 0.5:
                break
        timer.stop()
        gc.callbacks.remove(on_gc)
        g, when = np.asarray(gaps, float), np.asarray(stamps, float)
        end = finished_at[0] if finished_at[0] is not None else when[-1]
        during = g[when < end - 5]  # the analysis (not the hand-over of its result)
        long_gaps = []
        for gap, at in zip(g, when, strict=True):
            if gap <= 100:
                continue
            start = at - gap
            before = [m for t, m in msgs if t <= start]
            in_gc = [(round(b - a), k) for a, b, k in gcs if a < at and b > start]
            long_gaps.append({"at_s": round(at / 1000, 2), "gap_ms": int(gap),
                              "phase": "hand-over" if at > end else (before[-1] if before else "start"),
                              "gc_ms_gen": in_gc})  # fmt: skip
        full = [b - a for a, b, k in gcs if k == 2]
        return {
            "run_s": stop,
            "s_per_frame": stop / n_frames,
            "max_ui_stall_ms": float(max(gaps)),
            "p99_ui_stall_ms": float(np.percentile(gaps, 99)),
            "max_ui_stall_during_analysis_ms": float(during.max()) if len(during) else None,
            "p99_ui_stall_during_analysis_ms": (
                float(np.percentile(during, 99)) if len(during) else None
            ),
            "stalls_over_200ms_during_analysis": int((during > 200).sum()),
            "ticks": len(gaps),
            "gaps_over_100ms": long_gaps,
            "full_gc_passes": len(full),
            "full_gc_max_ms": float(max(full)) if full else 0.0,
            "full_gc_total_ms": float(sum(full)),
            "cancel_requested_s": cancelled_at,
            "stopped_after_cancel_s": None if cancelled_at is None else stop - cancelled_at,
            "status": dock.status.value,
            "layers": [ly.name for ly in viewer.layers],
        }

    out = {
        "stack": f"{n_frames} x {shape[0]} x {shape[1]}",
        "cancel": run(cancel_after_s),
        "full": run(None),
    }
    out["tracks"] = None if dock.result is None else int(dock.result.tracks["track_id"].nunique())
    viewer.close()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="infection model package (default: train one)")
    ap.add_argument("--big", action="store_true", help="also the 100 x 1024 x 1024 workflow")
    ap.add_argument(
        "--gui", action="store_true", help="also UI responsiveness and cancel in napari"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[401, 402, 403], help="held-out movies")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--frames", type=int, default=100, help="frames of the --big/--gui stack")
    ap.add_argument("--size", type=int, default=1024, help="side of the --big/--gui stack (px)")
    ap.add_argument("--cancel-after", type=float, default=20.0, help="--gui: s before Cancel")
    ap.add_argument("--out", default="/tmp/bench_infection.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    model = _model(args.model)
    res = {}
    if not args.skip_accuracy:
        res["accuracy"] = accuracy_figures(model, seeds=tuple(args.seeds))
        print(json.dumps(res["accuracy"], indent=1), flush=True)
    if args.big:
        res["big"] = big_stack(model, args.frames, (args.size, args.size))
        print(json.dumps(res["big"], indent=1), flush=True)
    if args.gui:
        res["gui"] = gui_responsiveness(
            model.path, args.frames, (args.size, args.size), args.cancel_after
        )
        print(json.dumps(res["gui"], indent=1), flush=True)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
