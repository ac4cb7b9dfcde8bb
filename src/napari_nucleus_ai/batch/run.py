"""Run a batch on Dask distributed: a ``LocalCluster`` or an existing scheduler.

:func:`run_batch_gen` is a core generator (yields
:class:`~napari_nucleus_ai.core.progress.Progress`, returns a :class:`BatchResult`):
the CLI drives it with a terminal bar, the Batch dock with a napari progress bar.

One task per input (:func:`.tasks.process_input`); an image larger than
``tile_above`` pixels becomes one planning task, one task per tile
(:func:`.tasks.segment_tile`), stitching here in row-major order with the
segmentation core's own paste rule, and one finishing task; so a single whole
slide also spreads over the cluster, and gives the same labels as ``segment``.
A worker that dies has its tasks rerun elsewhere by the scheduler; a task that
kills workers repeatedly ends as a ``failed`` row, never a stopped run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_nucleus_ai.batch.inputs import assign_stems, find_inputs, finished_row, state_dir
from napari_nucleus_ai.batch.tasks import (
    Settings,
    finish_tiled,
    plan_tiles,
    process_input,
    segment_tile,
)
from napari_nucleus_ai.core.errors import InputError, one_line
from napari_nucleus_ai.core.progress import Progress

TILE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".scn", ".bif")


@dataclass
class BatchResult:
    """What a batch run returns."""

    out: Path
    summary: pd.DataFrame
    summary_path: Path
    report_path: Path
    dashboard: str | None
    seconds: float
    workers: int

    @property
    def n_ok(self) -> int:
        return int((self.summary["status"] == "ok").sum())

    @property
    def n_failed(self) -> int:
        return int((self.summary["status"] == "failed").sum())


def connect(client=None, scheduler: str | None = None, workers: int | None = None):
    """A Dask client: the one given, one connected to ``scheduler``, or a new LocalCluster.

    Returns ``(client, close)`` where ``close()`` shuts down what this call started.
    """
    from distributed import Client, LocalCluster

    if client is not None:
        return client, lambda: None
    if scheduler:
        try:
            c = Client(scheduler, timeout="30s")
        except OSError as e:
            raise InputError(None, f"cannot reach Dask scheduler {scheduler} ({e})") from None
        return c, c.close
    n = int(workers or os.cpu_count() or 1)
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    c = Client(cluster)

    def close():
        c.close()
        cluster.close()

    return c, close


def _big_image(path: Path, tile_above: int) -> bool:
    """Cheap check (TIFF header only) for images that are worth cutting into tile tasks."""
    if path.suffix.lower() not in TILE_SUFFIXES:
        return False
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            shape = tf.series[0].levels[0].shape
            axes = tf.series[0].levels[0].axes
    except Exception:  # noqa: BLE001 - a bad file is process_input's to report
        return False
    dims = dict(zip(axes, shape, strict=False))
    return "T" not in dims and dims.get("Y", 0) * dims.get("X", 0) > tile_above


def run_batch_gen(
    inputs,
    out,
    *,
    method: str = "auto",
    model: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    client=None,
    pixel_size_um: float | None = None,
    pixel_size_nm: float = 100.0,
    tile: int | None = None,
    params: dict | None = None,
    device: str | None = None,
    batch_size: int = 64,
    tta: int | None = None,
    threshold: float | None = None,
    tile_above: int | None = None,
    resume: bool = True,
) -> Generator[Progress, None, BatchResult]:
    """Segment (and classify) every input on a Dask cluster; see the module docstring.

    Parameters
    ----------
    inputs : list of paths
        Files, or folders searched recursively for any format the readers know.
    out : path
        Output folder: ``<stem>_labels.tif``, ``<stem>_cells.csv`` per input,
        ``summary.csv`` and ``report.html``; run state in ``out/.batch``.
    method : {"auto", "wbc", "nuclei", "storm-nuclei"}
        ``auto`` picks per input: localization tables -> storm-nuclei, colour -> wbc,
        grey -> nuclei.
    model : path, optional
        A model package: cells get class, probabilities and uncertainty.
    workers, scheduler, client
        ``workers`` local worker processes (default: cores), or the address of
        an existing scheduler, or a ``distributed.Client``.
    tile_above : int, optional
        Images with more pixels are split into tile tasks (default: the
        segmentation core's own threshold, 12 Mpx).
    resume : bool
        Skip inputs finished by an earlier run with the same settings.
    Other parameters are those of the ``segment`` and ``classify`` commands.
    """
    from distributed import as_completed

    from napari_nucleus_ai.segment.run import TILE_ABOVE_PIXELS

    t_start = time.perf_counter()
    if method not in ("auto", "wbc", "nuclei", "storm-nuclei"):
        raise InputError(
            None, f"--segment must be auto, wbc, nuclei or storm-nuclei, not {method!r}"
        )
    if model and not Path(model).exists():
        raise InputError(model, "no such model package")
    settings = Settings(
        method, os.fspath(Path(model).absolute()) if model else None, pixel_size_um,
        pixel_size_nm, tile, dict(params or {}), device, batch_size, tta, threshold,
    )  # fmt: skip
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    state_dir(out).mkdir(exist_ok=True)
    paths = find_inputs(inputs, out)
    stems = assign_stems(paths)
    n = len(paths)
    path_of = {s: str(p) for p, s in zip(paths, stems, strict=True)}
    rows: dict[str, dict] = {}
    todo = []
    for p, s in zip(paths, stems, strict=True):
        row = finished_row(p, s, out, settings) if resume else None
        if row is not None:
            rows[s] = {**row, "resumed": True}
        else:
            todo.append((p, s))
    n_resumed = len(rows)
    yield Progress(n_resumed, n, f"{n} inputs, {n_resumed} already done; starting Dask")
    client, close = connect(client, scheduler, workers)
    dashboard = getattr(client, "dashboard_link", None)
    try:
        n_workers = len(client.scheduler_info().get("workers", {}))
        yield Progress(n_resumed, n, f"{n_workers} Dask workers; dashboard {dashboard}")
        threshold_px = int(tile_above or TILE_ABOVE_PIXELS)
        futures = {}
        for p, s in todo:
            if p.is_file() and method in ("auto", "wbc", "nuclei") and _big_image(p, threshold_px):
                f = client.submit(plan_tiles, str(p), s, settings, None if method == "auto" else method,
                                  key=f"plan-{s}-{settings.key()}", pure=False)  # fmt: skip
                futures[f] = ("plan", s, None)
            else:
                f = client.submit(process_input, str(p), str(out), s, settings,
                                  key=f"input-{s}-{settings.key()}", pure=False)  # fmt: skip
                futures[f] = ("input", s, None)
        slides: dict[
            str, dict
        ] = {}  # stem -> {"plan", "labels", "results", "next", "next_id", "t0"}
        ac = as_completed(list(futures))
        done = n_resumed
        t_run = time.perf_counter()
        for fut in ac:
            kind, stem, index = futures.pop(fut)
            path = path_of[stem]
            try:
                result = fut.result()
                error = None
            except Exception as e:  # noqa: BLE001 - killed workers, cancelled tasks, bugs
                result, error = None, one_line(e, path)
            finally:
                fut.release()
            if kind == "input":
                rows[stem] = result if error is None else _failed(path, stem, error)
            elif kind == "plan":
                if error is not None:
                    rows[stem] = _failed(path, stem, error)
                else:
                    plan = result
                    slides[stem] = {
                        "plan": plan, "labels": np.zeros(plan.shape, np.int32), "results": {},
                        "next": 0, "next_id": 1, "t0": time.perf_counter(),
                    }  # fmt: skip
                    pf = client.scatter(plan)
                    for i in range(len(plan.tiles)):
                        tf = client.submit(segment_tile, pf, i, key=f"tile-{stem}-{i}-{settings.key()}",
                                           pure=False)  # fmt: skip
                        futures[tf] = ("tile", stem, i)
                        ac.add(tf)
                    yield Progress(done, n, f"{Path(path).name}: {len(plan.tiles)} tile tasks")
                    continue
            elif kind == "tile":
                sl = slides.get(stem)
                if sl is None:
                    continue  # the slide already failed
                if error is not None:
                    rows[stem] = _failed(path, stem, error)
                    slides.pop(stem)
                    continue
                sl["results"][index] = result
                _stitch(sl)
                ntile = len(sl["plan"].tiles)
                if sl["next"] < ntile:
                    yield Progress(done, n, f"{Path(path).name}: tile {sl['next']}/{ntile}")
                    continue
                labels_f = client.scatter(sl["labels"])  # not embedded in the task graph
                ff = client.submit(finish_tiled, sl["plan"], labels_f, str(out), settings,
                                   sl["t0"], key=f"finish-{stem}-{settings.key()}", pure=False)  # fmt: skip
                slides.pop(stem)
                futures[ff] = ("finish", stem, None)
                ac.add(ff)
                continue
            elif kind == "finish":
                rows[stem] = result if error is None else _failed(path, stem, error)
            done += 1
            rate = (done - n_resumed) / max(time.perf_counter() - t_run, 1e-9)
            eta = (n - done) / rate if rate > 0 else float("nan")
            failed = sum(r.get("status") == "failed" for r in rows.values())
            yield Progress(done, n, f"{done}/{n} inputs, {failed} failed, ETA {_hms(eta)}")
    finally:
        close()
    summary = pd.DataFrame([rows[s] for s in stems if s in rows])
    summary = _order_columns(summary)
    from napari_nucleus_ai.batch.report import write_report, write_summary

    seconds = time.perf_counter() - t_start
    summary_path = write_summary(summary, out)
    report_path = write_report(summary, out, settings, seconds, dashboard, n_workers)
    return BatchResult(out, summary, summary_path, report_path, dashboard, seconds, n_workers)


def _stitch(sl: dict) -> None:
    """Paste finished tiles in row-major order (the order ``segment_tiled`` pastes them)."""
    from scipy import ndimage as ndi

    from napari_nucleus_ai.segment.tiles import _paste

    plan = sl["plan"]
    while sl["next"] in sl["results"]:
        i = sl["next"]
        lab = sl["results"].pop(i)
        core, ext = plan.tiles[i]
        sl["next_id"] = _paste(
            sl["labels"], lab, core, ext, (0, 0), plan.shape, sl["next_id"], None, ndi
        )
        sl["next"] += 1


def _failed(path: str, stem: str, error: str) -> dict:
    return {"path": path, "stem": stem, "status": "failed", "error": error, "n_cells": 0}


def _order_columns(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return pd.DataFrame(columns=["path", "status", "error", "n_cells"])
    first = ["path", "status", "error", "n_cells"]
    counts = sorted(c for c in df.columns if c.startswith("n_") and c != "n_cells")
    rest = [c for c in df.columns if c not in first and c not in counts]
    df = df[first + counts + rest].copy()
    for c in counts:
        df[c] = df[c].fillna(0).astype(int)
    if "resumed" in df.columns:
        df["resumed"] = df["resumed"].fillna(False).astype(bool)
    df["error"] = df["error"].fillna("")
    return df


def _hms(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_batch(inputs, out, **options) -> BatchResult:
    """Plain-function form of :func:`run_batch_gen`."""
    from napari_nucleus_ai.core.progress import run_sync

    return run_sync(run_batch_gen(inputs, out, **options))
