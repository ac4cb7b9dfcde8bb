"""Run a batch on Dask distributed: a ``LocalCluster`` or an existing scheduler.

:func:`run_batch_gen` is a core generator (yields
:class:`~napari_nucleus_ai.core.progress.Progress`, returns a :class:`BatchResult`):
the CLI drives it with a terminal bar, the Batch dock with a napari progress bar.

One task per input (:func:`.tasks.process_input`); an image larger than
``tile_above`` pixels becomes one planning task, one task per tile
(:func:`.tasks.segment_tile`: it keeps its objects by the segmentation core's own
stitching rule and measures them), stitching here in row-major order (the tiles' cell
tables joined end to end, not the slide measured again), and one finishing task that
writes the labels; so a single whole slide also spreads over the cluster, and gives the
same labels and cell table as ``segment``.
With a model, an input with more than ``cells_per_task`` cells (a big field, a
stitched slide) is classified by cell-chunk tasks: the segmenting task leaves its
outputs staged and returns a :class:`.tasks.Segmented`; one task per chunk of
``cells_per_task`` rows of the cell table (:func:`.tasks.classify_chunk`) cuts its
cells' windows and runs the classify core on them; a merging task
(:func:`.tasks.merge_chunks`) joins the chunks in cell-table order and writes the
outputs, the same files as classifying the input in one task.
A worker that dies has its tasks rerun elsewhere by the scheduler; a task that
kills workers repeatedly ends as a ``failed`` row, never a stopped run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_nucleus_ai.batch.adapt import MODES, adapt_groups
from napari_nucleus_ai.batch.inputs import assign_stems, find_inputs, finished_row, state_dir
from napari_nucleus_ai.batch.tasks import (
    Segmented,
    Settings,
    classify_chunk,
    finish_tiled,
    merge_chunks,
    plan_tiles,
    process_input,
    segment_tile,
    warm,
)
from napari_nucleus_ai.core.errors import InputError, one_line
from napari_nucleus_ai.core.progress import Progress

TILE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".scn", ".bif")
CELLS_PER_TASK = 250  # with a model: inputs with more cells are classified in chunks of this many


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
    #: One line per group of inputs the fallback model was adapted to (:mod:`.adapt`).
    notes: list = field(default_factory=list)

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
    import dask

    n = int(workers or os.cpu_count() or 1)
    with dask.config.set({**LOCAL_QUIET, **_start_method()}):
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


#: the local cluster's background work, which runs for the whole wall time of a run: no
#: statistical profiler sampling each worker's stack every 10 ms, and a 2 s resource monitor
#: (an idle 2-worker cluster: about half the CPU of distributed's defaults); and work
#: stealing every 100 ms, not every second: the scheduler hands out tile and cell-chunk
#: tasks ahead, and a worker that runs out (one that loaded no model, a shorter tile) takes
#: over the others' waiting tasks within a tenth of a second, not after idling for one
LOCAL_QUIET = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.scheduler.work-stealing-interval": "100ms",
}


def _start_method() -> dict:
    """Local worker processes forked from a server process where the platform has one.

    ``forkserver`` (not Windows): a worker process ends without the interpreter's clean-up,
    which after torch and a model are loaded takes about a second per worker, so closing a
    local cluster after a run with a model takes a tenth of a second instead of one to three;
    the server process, started once per process that starts clusters, stays for the next.
    """
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        return {"distributed.worker.multiprocessing-method": "forkserver"}
    return {}


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


@dataclass
class BatchOptions:
    """How :func:`run_batch_gen` runs (its keyword arguments).

    Attributes
    ----------
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
    cells_per_task : int, optional
        With a model, inputs with more cells are classified in chunks of this many
        cells, one task each, spread over the workers (``None``: 250; ``0``: one
        task per input).
    resume : bool
        Skip inputs finished by an earlier run with the same settings.
    output : {"tiff", "zarr"}
        Labels as ``<stem>_labels.tif``, or the input image + labels + cell table as one
        OME-Zarr store ``<stem>.zarr`` (what ``export-zarr`` writes). The cell table is
        written as ``<stem>_cells.csv`` either way.
    adapt : {"auto", "folder", "off"}
        Test-time adaptation of a package's fallback model: ``auto`` adapts it to each
        input's routed cells as one batch; ``folder`` to the routed cells of each group of
        inputs of one folder, method and image size (many small fields of one microscope,
        :mod:`.adapt`); ``off`` never.
    pixel_size_um, pixel_size_nm, tile, params, device, batch_size, tta, threshold
        Those of the ``segment`` and ``classify`` commands.
    """

    method: str = "auto"
    model: str | None = None
    workers: int | None = None
    scheduler: str | None = None
    client: object = None
    pixel_size_um: float | None = None
    pixel_size_nm: float = 100.0
    tile: int | None = None
    params: dict | None = None
    device: str | None = None
    batch_size: int = 64
    tta: int | None = None
    threshold: float | None = None
    tile_above: int | None = None
    cells_per_task: int | None = None
    resume: bool = True
    output: str = "tiff"
    adapt: str = "auto"

    def settings(self) -> Settings:
        """What every input gets done to (checked: the method and that the model exists)."""
        if self.method not in ("auto", "wbc", "nuclei", "storm-nuclei"):
            raise InputError(
                None, f"--segment must be auto, wbc, nuclei or storm-nuclei, not {self.method!r}"
            )
        if self.model and not Path(self.model).exists():
            raise InputError(self.model, "no such model package")
        if self.output not in ("tiff", "zarr"):
            raise InputError(None, f"--format must be tiff or zarr, not {self.output!r}")
        if self.cells_per_task is not None and self.cells_per_task < 0:
            raise InputError(None, f"--cells-per-task must be >= 0, not {self.cells_per_task}")
        if self.adapt not in MODES:
            raise InputError(None, f"--adapt must be auto, folder or off, not {self.adapt!r}")
        model = os.fspath(Path(self.model).absolute()) if self.model else None
        return Settings(
            self.method, model, self.pixel_size_um, self.pixel_size_nm, self.tile,
            dict(self.params or {}), self.device, self.batch_size, self.tta, self.threshold,
            self.output, self.adapt,
        )  # fmt: skip


def run_batch_gen(inputs, out, **options) -> Generator[Progress, None, BatchResult]:
    """Segment (and classify) every input on a Dask cluster; see the module docstring.

    Parameters
    ----------
    inputs : list of paths
        Files, or folders searched recursively for any format the readers know.
    out : path
        Output folder: ``<stem>_labels.tif`` (or ``<stem>.zarr``), ``<stem>_cells.csv`` per input,
        ``summary.csv`` and ``report.html``; run state in ``out/.batch``.
    **options
        The fields of :class:`BatchOptions`; an unknown one raises ``TypeError`` when
        the generator starts.
    """
    # a generator function itself, so napari's thread_worker runs it as a generator
    return (yield from _run_batch(inputs, out, BatchOptions(**options)))


def _run_batch(inputs, out, o: BatchOptions):
    """:func:`run_batch_gen` with its options checked."""
    from napari_nucleus_ai.batch.report import write_report, write_summary

    t_start = time.perf_counter()
    settings = o.settings()
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    state_dir(out).mkdir(exist_ok=True)
    paths = find_inputs(inputs, out)
    stems = assign_stems(paths)
    rows, todo = _resumed(paths, stems, out, settings, o.resume)
    n, n_resumed = len(paths), len(rows)
    yield Progress(n_resumed, n, f"{n} inputs, {n_resumed} already done; starting Dask")
    client, close = connect(o.client, o.scheduler, o.workers)
    dashboard = getattr(client, "dashboard_link", None)
    try:
        n_workers = len(client.scheduler_info().get("workers", {}))
        yield Progress(n_resumed, n, f"{n_workers} Dask workers; dashboard {dashboard}")
        run = _Run(
            client, out, settings, rows, {s: str(p) for p, s in zip(paths, stems, strict=True)}
        )
        run.cells_per_task = CELLS_PER_TASK if o.cells_per_task is None else o.cells_per_task
        run.submit_inputs(todo, o.method, o.tile_above)
        yield from run.collect(n, n_resumed)
    finally:
        close()
    notes: list[str] = []
    if settings.model and settings.adapt == "folder":
        try:
            yield from adapt_groups(out, rows, settings, notes)
        except Exception as e:  # noqa: BLE001 - the inputs' unadapted outputs stand
            notes.append(f"not adapted across inputs: {one_line(e, settings.model)}")
    summary = _order_columns(pd.DataFrame([rows[s] for s in stems if s in rows]))
    seconds = time.perf_counter() - t_start
    summary_path = write_summary(summary, out)
    report_path = write_report(summary, out, settings, seconds, dashboard, n_workers)
    return BatchResult(
        out, summary, summary_path, report_path, dashboard, seconds, n_workers, notes
    )


def _resumed(paths, stems, out: Path, settings: Settings, resume: bool):
    """``(rows of inputs an earlier run finished, [(path, stem) still to do])``."""
    rows: dict[str, dict] = {}
    todo = []
    for p, s in zip(paths, stems, strict=True):
        row = finished_row(p, s, out, settings) if resume else None
        if row is not None:
            rows[s] = {**row, "resumed": True}
        else:
            todo.append((p, s))
    return rows, todo


class _Run:
    """The tasks of one batch on the cluster and the summary rows they come back as.

    Each future maps to ``(kind, stem, index)``; ``kind`` is ``input`` (a whole
    input), ``plan`` (a big image's tiling), ``tile`` or ``finish`` (the tiled image's
    cells), ``chunk`` (a chunk of a big input's cells, ``index`` its number) or
    ``merge``. ``slides`` holds the tiled images being stitched, ``cells`` the inputs
    whose cell chunks are out.
    """

    cells_per_task: int | None = None

    def __init__(self, client, out: Path, settings: Settings, rows: dict, path_of: dict):
        self.client, self.out, self.settings = client, out, settings
        self.rows, self.path_of = rows, path_of
        self.futures: dict = {}
        self.slides: dict[str, dict] = {}  # stem -> plan, labels, results, next, next_id, t0
        self.cells: dict[str, dict] = {}  # stem -> segmented, parts (chunk index -> result)
        self.warmers: list = []  # the warm-up tasks (held, never waited for)
        self.warmed: dict = {}  # worker address -> warm-up tasks pinned to it
        self.threads: dict = {}  # worker address -> threads
        self.n_slots = self.slots()
        self.warm_left = self.n_slots  # warm-up tasks still allowed
        self.ac = None

    def submit(self, kind: str, stem: str, index, fn, *args, key: str, **where):
        """Submit one task; ``where``: more options of ``client.submit`` (``priority``)."""
        f = self.client.submit(fn, *args, key=f"{key}-{self.settings.key()}", pure=False, **where)
        self.futures[f] = (kind, stem, index)
        if self.ac is not None:
            self.ac.add(f)

    def slots(self) -> int:
        """The cluster's worker threads (tasks it runs at once); ``threads`` per worker."""
        workers = self.client.scheduler_info().get("workers", {})
        self.threads = {a: int(w.get("nthreads", 1)) for a, w in workers.items()}
        return max(1, sum(self.threads.values()))

    def warm_idle(self) -> None:
        """Warm-up tasks (:func:`.tasks.warm`) for worker threads that would idle.

        Until the first cell-chunk tasks are out, while a run with a model has fewer
        segmenting tasks out (``input``, ``tile``, ``finish``) than worker threads, the idle
        threads load the model (one task each, at most one per thread of the cluster in
        all), pinned to a worker that has not loaded it yet, one with an idle thread first;
        for a whole slide, the image too. Loading is then done beside the segmentation (a slide's
        last tiles, the stitching, its finishing task), not at the head of each worker's
        first classification. Not beside a planning task: it is not placed yet when the
        warm-up would be, which could then wait behind it. The run does not wait for these
        tasks: a model that cannot be loaded fails the tasks that use it, which say why.
        """
        if not self.settings.model or self.warm_left <= 0:
            return
        out = list(self.futures.values())
        if not out or any(k not in ("input", "tile", "finish") for k, _, _ in out):
            return
        n = min(self.n_slots - len(out), self.warm_left)
        if n <= 0:
            return
        stems = {stem for _, stem, _ in out}
        slide = len(stems) == 1 and out[0][0] != "input"  # one slide: its image is read ahead
        path = self.path_of[out[0][1]] if slide else None
        for addr in self._idle_workers(n):
            self.warm_left -= 1
            key = f"warm-{self.warm_left}-{self.settings.key()}"
            where = {"workers": [addr], "allow_other_workers": False} if addr else {}
            self.warmed[addr] = self.warmed.get(addr, 0) + 1
            self.warmers.append(
                self.client.submit(
                    warm, self.settings, path, key=key, pure=False, priority=-1, **where
                )  # fmt: skip
            )

    def _idle_workers(self, n: int) -> list:
        """``n`` worker addresses for warm-up tasks, one per thread that has not loaded the
        model: idle threads first (the scheduler's view), then busy ones (the warm-up waits
        behind their task), then ``None`` (any worker)."""
        free = self._free_threads()
        idle, later = [], []
        for addr, nthreads in self.threads.items():
            left = max(0, nthreads - self.warmed.get(addr, 0))
            k = min(left, max(0, free.get(addr, 0)))
            idle += [addr] * k
            later += [addr] * (left - k)
        return (idle + later + [None] * n)[:n]

    def _free_threads(self) -> dict:
        """Worker address -> its threads running no task (the scheduler's view; ``{}``
        when the scheduler does not say)."""
        try:
            busy = self.client.processing()
        except Exception:  # noqa: BLE001 - a scheduler without it: let Dask place tasks
            return {}
        return {a: n - len(busy.get(a, ())) for a, n in self.threads.items()}

    def submit_inputs(self, todo, method: str, tile_above: int | None) -> None:
        """One task per input; images above ``tile_above`` pixels first get tiled."""
        from napari_nucleus_ai.segment.run import TILE_ABOVE_PIXELS

        threshold_px = int(tile_above or TILE_ABOVE_PIXELS)
        for p, s in todo:
            if p.is_file() and method in ("auto", "wbc", "nuclei") and _big_image(p, threshold_px):
                forced = None if method == "auto" else method
                self.submit("plan", s, None, plan_tiles, str(p), s, self.settings, forced,
                            key=f"plan-{s}")  # fmt: skip
            else:
                self.submit("input", s, None, process_input, str(p), str(self.out), s,
                            self.settings, self.cells_per_task, key=f"input-{s}")  # fmt: skip
        self.warm_idle()

    def collect(self, n: int, n_resumed: int):
        """Take the tasks' results as they finish; yields progress with an ETA."""
        from distributed import as_completed

        self.ac = as_completed(list(self.futures))
        done, t_run = n_resumed, time.perf_counter()
        handlers = {"input": self._row, "plan": self._planned, "tile": self._tiled,
                    "finish": self._row, "chunk": self._chunked, "merge": self._row}  # fmt: skip
        for fut in self.ac:
            kind, stem, index = self.futures.pop(fut)
            path = self.path_of[stem]
            try:
                result, error = fut.result(), None
            except Exception as e:  # noqa: BLE001 - killed workers, cancelled tasks, bugs
                result, error = None, one_line(e, path)
            finally:
                fut.release()
            note = handlers[kind](stem, index, result, error)
            self.warm_idle()
            if note is _PENDING:
                continue
            if note is not _FINISHED:
                yield Progress(done, n, f"{Path(path).name}: {note}")
                continue
            done += 1
            rate = (done - n_resumed) / max(time.perf_counter() - t_run, 1e-9)
            eta = (n - done) / rate if rate > 0 else float("nan")
            failed = sum(r.get("status") == "failed" for r in self.rows.values())
            yield Progress(done, n, f"{done}/{n} inputs, {failed} failed, ETA {_hms(eta)}")
        for f in self.warmers:
            f.release()
        self.warmers = []

    def _row(self, stem: str, _index, result, error):
        """A whole input (or a tiled image's finishing task) is done, or segmented for chunks."""
        if error is None and isinstance(result, Segmented):
            return self._split_cells(stem, result)
        self.rows[stem] = result if error is None else _failed(self.path_of[stem], stem, error)
        return _FINISHED

    def _split_cells(self, stem: str, seg: Segmented):
        """A segmented big input: one task per chunk of its cell table."""
        self.warm_left = 0  # classification has begun: the workers load the model as they go
        chunks = seg.chunks(int(self.cells_per_task or len(seg.table) or 1), self.slots())
        self.cells[stem] = {"seg": seg, "parts": {}, "n": len(chunks)}
        # the cell table goes to every worker once: no worker is preferred for holding it
        sf = self.client.scatter(seg, broadcast=True)
        for i, (a, b) in enumerate(chunks):
            self.submit("chunk", stem, i, classify_chunk, sf, a, b, self.settings,
                        key=f"cells-{stem}-{i}")  # fmt: skip
        return f"{len(seg.table)} cells in {len(chunks)} classification tasks"

    def _chunked(self, stem: str, index: int, result, error):
        """A chunk's predictions; the last one submits the merging task."""
        job = self.cells.get(stem)
        if job is None:
            return _PENDING  # the input already failed
        if error is not None:
            self.rows[stem] = _failed(self.path_of[stem], stem, error)
            self.cells.pop(stem)
            return _FINISHED
        job["parts"][index] = result
        if len(job["parts"]) < job["n"]:
            return f"classification task {len(job['parts'])}/{job['n']}"
        parts = [job["parts"][i] for i in range(job["n"])]  # cell-table order
        self.submit("merge", stem, None, merge_chunks, job["seg"], parts, str(self.out),
                    self.settings, key=f"merge-{stem}")  # fmt: skip
        self.cells.pop(stem)
        return _PENDING

    def _planned(self, stem: str, _index, plan, error):
        """A big image's tiling: one task per tile."""
        if error is not None:
            return self._row(stem, None, None, error)
        self.slides[stem] = {
            "plan": plan, "labels": np.zeros(plan.shape, np.int32), "results": {},
            "next": 0, "next_id": 1, "t0": time.time(), "tables": [], "seams": [],
        }  # fmt: skip
        # to every worker: the tiles go to whichever is free, not to the one holding the plan
        pf = self.client.scatter(plan, broadcast=True)
        n = len(plan.tiles)
        for i in range(n):  # in row-major order, the order they are stitched in as they come
            self.submit("tile", stem, i, segment_tile, pf, i, key=f"tile-{stem}-{i}",
                        priority=n - i)  # fmt: skip
        return f"{n} tile tasks"

    def _tiled(self, stem: str, index: int, labels, error):
        """A tile's labels: stitched in order; the last one submits the finishing task."""
        sl = self.slides.get(stem)
        if sl is None:
            return _PENDING  # the slide already failed
        if error is not None:
            self.rows[stem] = _failed(self.path_of[stem], stem, error)
            self.slides.pop(stem)
            return _FINISHED
        sl["results"][index] = labels
        _stitch(sl)
        ntile = len(sl["plan"].tiles)
        if sl["next"] < ntile:
            return f"tile {sl['next']}/{ntile}"
        # not embedded in the task graph; on an idle worker, where the finishing task then
        # runs at once (not behind a warm-up task on the worker that holds the labels)
        idle = [a for a, k in self._free_threads().items() if k > 0]
        labels_f = self.client.scatter(sl["labels"], workers=idle or None)
        self.submit("finish", stem, None, finish_tiled, sl["plan"], labels_f, _table(sl),
                    sl["seams"], str(self.out), self.settings, sl["t0"], self.cells_per_task,
                    key=f"finish-{stem}")  # fmt: skip
        self.slides.pop(stem)
        return _PENDING


_FINISHED = object()  # an input is done (its summary row is in)
_PENDING = object()  # nothing to report yet


def _stitch(sl: dict) -> None:
    """Paste finished tiles in row-major order (the order ``segment_tiled`` pastes them).

    Each tile (:func:`.tasks.segment_tile`) brings its kept objects numbered ``1..k`` and
    their cell table; they get the ids after those of the tiles before.
    """
    plan = sl["plan"]
    while sl["next"] in sl["results"]:
        i = sl["next"]
        kept, table = sl["results"].pop(i)
        offset = sl["next_id"] - 1
        sl["seams"] += _place(sl["labels"], kept, plan.tiles[i][1], offset)
        sl["tables"].append(table.assign(label=table["label"] + offset))
        sl["next_id"] += int(table["label"].max()) if len(table) else 0
        sl["next"] += 1


def _table(sl: dict) -> pd.DataFrame:
    """The stitched slide's cell table: its tiles' tables end to end (label order)."""
    tables = [t for t in sl["tables"] if len(t)] or sl["tables"][:1]
    return pd.concat(tables, ignore_index=True)


def _place(labels: np.ndarray, kept: np.ndarray, ext, offset: int) -> list[int]:
    """Paste a tile's kept objects (``1..k`` on the extended tile ``ext``) as ``offset + 1..k``
    (:func:`.segment.tiles.place`); returns the ids of the objects that lost pixels to an
    earlier tile's: their tile's measurement no longer holds."""
    from napari_nucleus_ai.segment.tiles import place

    return [int(v) for v in place(labels, kept, ext, offset=offset)]


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
    if "adapted_cells" in df.columns:  # inputs outside an adapted group: none adapted
        df["adapted_cells"] = df["adapted_cells"].fillna(0).astype(int)
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
