"""The work a Dask worker does: one input, one tile of a whole slide, or one chunk of cells.

Everything here is a plain function of picklable arguments that returns a plain
``dict`` (one row of ``summary.csv``), an array, a table or a :class:`Segmented`
(an input whose cells are left to cell-chunk tasks), so any Dask deployment can run
it. Results are produced by the same code paths as the ``segment`` and
``classify`` commands (:func:`napari_nucleus_ai.segment.file.segment_file` and
:func:`napari_nucleus_ai.classify.cells.classify_cells_gen`), which is what makes a
batch run give the same files as running those commands on each input alone.

Outputs are assembled in ``DIR/.batch/work/<stem>/`` and moved into ``DIR`` by
``os.replace`` (atomic on one file system); the input's status record
``DIR/.batch/<stem>.json`` is written last, so an input counts as finished only
when all its files are in place.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

STATE = ".batch"


def task(fn):
    """A function a worker runs as a task: the dask arrays it computes (a slide read lazily,
    its labels) are computed in the task's own thread.

    Inside a worker, ``.compute()`` otherwise sends the array's graph to the cluster as new
    tasks; the graph of a lazily read file holds its open file handle, which cannot be
    sent, and those tasks would wait behind the ones already queued.
    """

    @functools.wraps(fn)
    def run(*args, **kwargs):
        import dask

        with dask.config.set(scheduler="synchronous"):
            return fn(*args, **kwargs)

    return run


@dataclass(frozen=True)
class Settings:
    """What a batch run does to every input (hashed to decide whether to resume)."""

    method: str = "auto"  # auto | wbc | nuclei | storm-nuclei
    model: str | None = None
    pixel_size_um: float | None = None
    pixel_size_nm: float = 100.0
    tile: int | None = None
    params: dict = field(default_factory=dict)
    device: str | None = "cpu"
    batch_size: int = 64
    tta: int | None = None
    threshold: float | None = None
    output: str = "tiff"  # tiff: <stem>_labels.tif | zarr: <stem>.zarr (image + labels + table)
    adapt: str = "auto"  # auto: each input's cells | folder: a group of inputs (batch.adapt) | off

    def key(self) -> str:
        import hashlib

        d = asdict(self)
        d.pop("device")  # the device does not change results we promise to reproduce
        d.pop("batch_size")
        for name, default in (("output", "tiff"), ("adapt", "auto")):
            if d[name] == default:
                d.pop(name)  # keys of runs from before the option stay valid
        if self.model:
            try:
                st = os.stat(self.model)
                d["model_stat"] = [st.st_size, int(st.st_mtime)]
            except OSError:
                pass
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_stamp(path: str | os.PathLike) -> dict:
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def state_path(out_dir, stem: str) -> Path:
    return Path(out_dir) / STATE / f"{stem}.json"


def output_paths(out_dir, stem: str, output: str = "tiff") -> dict[str, Path]:
    """The files an input leaves in ``out_dir``: its labels (TIFF or OME-Zarr) and cell table."""
    out = Path(out_dir)
    labels = out / (f"{stem}.zarr" if output == "zarr" else f"{stem}_labels.tif")
    return {"labels": labels, "cells": out / f"{stem}_cells.csv"}


def _stage_zarr(work: Path, stem: str, path: str, seg, table, staged: dict) -> None:
    """``--format zarr``: the input image + labels + cell table as ``<stem>.zarr`` (replaces the TIFF)."""
    from napari_nucleus_ai.io.ngff import write_cells_zarr

    store = work / f"{stem}.zarr"
    write_cells_zarr(
        store, path, seg.labels, table, scale=tuple(seg.scale[-2:]), unit=seg.unit,
        origin=tuple(seg.translate[-2:]),
    )  # fmt: skip
    staged["labels"].unlink(missing_ok=True)
    staged["labels"] = store


def resolve_method(path, method: str) -> str:
    """``auto``: localization tables -> storm-nuclei, colour images -> wbc, grey -> nuclei."""
    if method != "auto":
        return method
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.files import check_readable
    from napari_nucleus_ai.io import family_for

    check_readable(path)
    fam = family_for(path)
    if fam is None:
        raise InputError(path, "not a format napari-nucleus-ai can read")
    if fam.__name__.endswith("localizations"):
        return "storm-nuclei"
    from napari_nucleus_ai.images import read_image

    return "wbc" if read_image(path).rgb else "nuclei"


def _limit_threads(n: int = 1) -> None:
    """One torch thread per task: Dask already runs one task per worker thread.

    Only touches torch when it is loaded (segmentation alone never imports it).
    """
    import sys

    if "torch" not in sys.modules:
        return
    try:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
    except Exception:  # noqa: BLE001 - torch missing or already initialised elsewhere
        pass


def _read_for_classify(path: str):
    """The image exactly as the ``classify`` command reads it (a big TIFF region lazily)."""
    import tifffile

    from napari_nucleus_ai.images.tiff import read_region_lazy
    from napari_nucleus_ai.models.crops import read_crop

    lazy = read_region_lazy(path)
    if lazy is not None:
        return lazy
    return tifffile.imread(path) if path.lower().endswith((".tif", ".tiff")) else read_crop(path)


_CACHE = threading.local()  # per worker thread: the last model, image and labels read


def _cached(name: str, key, load):
    """``load()`` once per worker thread for the same ``key`` (keeps only the last one)."""
    held = getattr(_CACHE, name, None)
    if held is None or held[0] != key:
        held = None  # drop the old value before loading the new one
        setattr(_CACHE, name, None)
        held = (key, load())
        setattr(_CACHE, name, held)
    return held[1]


def _file_key(path: str) -> tuple:
    st = os.stat(path)
    return (os.fspath(path), st.st_size, st.st_mtime_ns)


def _model(settings: Settings):
    """The run's model package, loaded once per worker thread (imports torch)."""
    from napari_nucleus_ai.classify.predict import as_package

    return _cached("model", _file_key(settings.model), lambda: as_package(settings.model))


@task
def warm(settings: Settings, path: str | None = None) -> float:
    """Ready this worker thread to classify: torch, the classify code and the model loaded;
    with ``path``, the input read as its cell-chunk tasks read it.

    Submitted for idle worker threads of a run with a model, so that loading is done
    beside the segmentation, not at the head of every worker's first classification.
    Returns the seconds it took.
    """
    t0 = time.perf_counter()
    import napari_nucleus_ai.classify.cells  # noqa: F401 - the import is the work

    package = _model(settings)
    _limit_threads()
    if path is not None and os.path.exists(path):
        _source(package, path, cached=True)
    return time.perf_counter() - t0


def _source(package, path: str, cached: bool) -> tuple:
    """``(image, localizations)`` of ``path`` for classification (one of them ``None``);
    ``cached``: kept on the worker thread for the next task on the same file."""
    from napari_nucleus_ai.models.crops import is_image_file

    def get(name, load):
        return _cached(name, _file_key(path), load) if cached else load()

    if package.modality == "storm" and not is_image_file(path):
        from napari_nucleus_ai.localizations import read_localizations

        return None, get("locs", lambda: read_localizations(path))
    return get("image", lambda: _read_for_classify(path)), None


def classify_result(
    settings: Settings, path: str, seg, cached: bool = False, features: list | None = None
) -> tuple:
    """Classify the cells of ``seg.table`` (a :class:`~napari_nucleus_ai.segment.run.Segmentation`).

    ``seg.table`` may be a slice of the cell table (a cell-chunk task): only its
    cells are classified; windows are cut from the whole image as ``classify`` cuts them.
    The model stays loaded on the worker thread for the next task; ``cached``: the image
    too (the next chunk of the same input). ``features`` (a list, for a chunk): its cells
    are not adapted to here; the list receives the fallback model's features of the cells
    routed to it, for :func:`merge_chunks` to adapt the whole input's as one batch.
    """
    from napari_nucleus_ai.classify.cells import classify_cells_gen
    from napari_nucleus_ai.core.progress import run_sync

    package = _model(settings)
    _limit_threads()
    image, localizations = _source(package, path, cached)
    res = run_sync(
        classify_cells_gen(
            package,
            image,
            seg.labels,
            seg.table,
            scale=seg.scale[-1],
            unit=seg.unit,
            translate=tuple(seg.translate[-2:]),
            localizations=localizations,
            device=settings.device,
            batch_size=settings.batch_size,
            tta=settings.tta,
            threshold=settings.threshold,
            images=False,  # a task returns the table; the class image is not written
            adapt="off" if features is not None or settings.adapt == "off" else "auto",
            routed_features=features,
        )
    )
    return res.table, res.counts()


def kept_paths(out_dir, stem: str) -> tuple[Path, Path]:
    """The unadapted cell table and the routed cells' features an input keeps in the run
    state (``DIR/.batch/<stem>.unadapted.csv``, ``DIR/.batch/<stem>.routed.npy``)."""
    base = Path(out_dir) / STATE
    return base / f"{stem}.unadapted.csv", base / f"{stem}.routed.npy"


def keep_unadapted(out_dir, stem: str, table, features) -> None:
    """Keep an input's unadapted cell table and its routed cells' fallback features for
    :func:`~napari_nucleus_ai.batch.adapt.adapt_groups` (``adapt="folder"``); remove an
    earlier run's when none of its cells was routed.

    Parameters
    ----------
    out_dir : path-like
        The run's output folder.
    stem : str
        The input's stem.
    table : DataFrame
        Its cell table, classified with ``adapt="off"``.
    features : list of arrays or None
        The ``routed_features`` the classification filled (one array per call, in table
        order; ``None`` for a call that routed nothing).
    """
    from napari_nucleus_ai.cells import write_cell_table
    from napari_nucleus_ai.core.files import atomic_write

    csv_path, npy_path = kept_paths(out_dir, stem)
    parts = [np.asarray(f) for f in (features or []) if f is not None and len(f)]
    if not parts or "routed" not in table.columns:
        csv_path.unlink(missing_ok=True)
        npy_path.unlink(missing_ok=True)
        return
    with atomic_write(npy_path, "wb") as fh:
        np.save(fh, np.concatenate(parts), allow_pickle=False)
    write_cell_table(table, csv_path)


def _classify_kept(settings: Settings, out_dir, stem: str, path: str, seg) -> tuple:
    """:func:`classify_result` of a whole input. With ``adapt="folder"`` the cells are not
    adapted here: the unadapted table and the routed cells' features are kept for the
    run's adaptation across inputs (:mod:`napari_nucleus_ai.batch.adapt`)."""
    if settings.adapt != "folder":
        return classify_result(settings, path, seg)
    features: list = []
    table, counts = classify_result(settings, path, seg, features=features)
    keep_unadapted(out_dir, stem, table, features)
    return table, counts


# -- big inputs: classification split into cell-chunk tasks -------------------------------------


@dataclass
class Segmented:
    """An input segmented by one task whose cells are classified by several (cell-chunk tasks).

    The staged outputs stay in ``work`` (``labels`` is the label TIFF the chunk tasks
    read) until :func:`merge_chunks` moves them into place.
    """

    path: str
    stem: str
    row: dict
    work: str
    staged: dict  # name -> staged file path (str)
    labels: str  # the staged label TIFF
    table: object  # the measured cell table (pandas)
    scale: tuple
    translate: tuple
    unit: str
    method: str
    t0: float  # wall clock (``time.time()``) at which the input's first task started

    def chunks(self, cells_per_task: int, slots: int = 1) -> list[tuple[int, int]]:
        """``(start, stop)`` row ranges of the cell table: at most ``cells_per_task`` rows
        each, as many chunks as a multiple of ``slots`` (the cluster's worker threads),
        of equal sizes (within a row), so that the last round of tasks keeps every
        worker busy."""
        n = len(self.table)
        k = -(-n // max(1, cells_per_task))
        slots = max(1, int(slots))
        k = min(n, -(-k // slots) * slots) if k > 1 else k
        edges = [round(i * n / k) for i in range(k + 1)] if k else [0]
        return list(zip(edges[:-1], edges[1:], strict=True))


def _split(cells_per_task: int | None, seg, settings: Settings) -> bool:
    """Whether this input's cells go to cell-chunk tasks (a model, 2D labels, many cells)."""
    return bool(
        settings.model
        and cells_per_task
        and np.ndim(seg.labels) == 2
        and len(seg.table) > cells_per_task
    )


def _seg_of(s: Segmented, table):
    """The :class:`~napari_nucleus_ai.segment.run.Segmentation` of ``s`` (labels read back)."""
    from napari_nucleus_ai.segment.run import Segmentation

    def load():
        import tifffile

        from napari_nucleus_ai.images.tiff import read_region_lazy

        lazy = read_region_lazy(s.labels)  # a big region: each chunk reads its cells' boxes
        if lazy is not None:
            return lazy
        return np.asarray(tifffile.imread(s.labels)).reshape(s.row["height"], s.row["width"])

    labels = _cached("labels", _file_key(s.labels), load)
    return Segmentation(labels, table, s.scale, s.translate, s.unit, s.method, {})


@task
def classify_chunk(s: Segmented, start: int, stop: int, settings: Settings) -> tuple:
    """Classify rows ``start:stop`` of the cell table: ``(table rows with predictions, counts,
    the fallback's features of the rows routed to it or None)``; not adapted (the input's
    cells are adapted to as one batch by :func:`merge_chunks`)."""
    table = s.table.iloc[start:stop]
    features: list = []
    rows, counts = classify_result(settings, s.path, _seg_of(s, table), True, features)
    return rows, counts, (features[0] if features else None)


@task
def merge_chunks(s: Segmented, parts: list, out_dir: str, settings: Settings) -> dict:
    """Join the cell-chunk tasks' tables (in cell-table order), write the outputs, return the row."""
    import pandas as pd

    from napari_nucleus_ai.cells import write_cell_table
    from napari_nucleus_ai.core.errors import one_line

    row = dict(s.row)
    work = Path(s.work)
    try:
        table = pd.concat([t for t, _, _ in parts]) if parts else s.table
        counts: dict[str, int] = {}
        for _, c, _ in parts:
            for k, v in c.items():
                counts[k] = counts.get(k, 0) + int(v)
        features = [f for _, _, f in parts]
        if settings.adapt == "auto" and any(f is not None for f in features):
            table, counts = _adapted(settings, table, features, counts)
        elif settings.adapt == "folder":
            keep_unadapted(out_dir, s.stem, table, features)
        staged = {k: Path(v) for k, v in s.staged.items()}
        write_cell_table(table, staged["cells"])
        row.update({f"n_{k}": int(v) for k, v in counts.items()})
        row["cell_tasks"] = len(parts)
        if settings.output == "zarr":
            _stage_zarr(work, s.stem, s.path, _seg_of(s, table), table, staged)
        row["n_cells"] = int(len(table))
        row["status"] = "ok"
        row["seconds"] = round(time.time() - s.t0, 3)
        row["settings"] = settings.key()
        return _finish(out_dir, s.stem, staged, row, settings.output)
    except Exception as e:  # noqa: BLE001 - every failure becomes a 'failed' row
        row["status"] = "failed"
        row["error"] = one_line(e, s.path)
        row["seconds"] = round(time.time() - s.t0, 3)
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _adapted(settings: Settings, table, features: list, counts: dict) -> tuple:
    """The chunks' joined table with the cells routed to the fallback model adapted to as one
    batch (:func:`~napari_nucleus_ai.classify.predict.adapt_table`), and its class counts."""
    from napari_nucleus_ai.classify.cells import class_counts
    from napari_nucleus_ai.classify.predict import adapt_table

    package = _model(settings)
    out = adapt_table(package, table, features, settings.threshold)
    if out is table:
        return table, counts
    return out, class_counts(out, package.classes)


def _finish(out_dir, stem, staged: dict[str, Path], row: dict, output: str = "tiff") -> dict:
    """Move staged outputs into place, then write the status record (last)."""
    from napari_nucleus_ai.core.files import atomic_write

    finals = output_paths(out_dir, stem, output)
    for name, src in staged.items():
        dst = finals.get(name, Path(out_dir) / f"{stem}_{name}{src.suffix}")
        if src.is_dir() and dst.is_dir():  # an earlier run's store (replaced, as files are)
            shutil.rmtree(dst)
        os.replace(src, dst)
        row[f"{name}_file"] = dst.name
    with atomic_write(state_path(out_dir, stem), "w") as fh:
        json.dump(row, fh, default=str)
    return row


@task
def process_input(
    path: str, out_dir: str, stem: str, settings: Settings, cells_per_task: int | None = None
) -> dict | Segmented:
    """Segment (and classify) one input; return its summary row. Never raises for bad input.

    With a model and more than ``cells_per_task`` cells, the cells are left to
    cell-chunk tasks: returns a :class:`Segmented` (outputs staged, not yet in place).
    """
    from napari_nucleus_ai.core.errors import one_line

    t0 = time.perf_counter()
    handed_off = False
    row = {"path": path, "stem": stem, "status": "failed", "error": "", "n_cells": 0}
    work = Path(out_dir) / STATE / "work" / stem
    try:
        from napari_nucleus_ai.core.files import check_readable

        _limit_threads()
        check_readable(path)
        row.update(input_stamp(path))
        method = resolve_method(path, settings.method)
        row["method"] = method
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        from napari_nucleus_ai.segment.file import segment_file

        seg, lab, cells = segment_file(
            path,
            method,
            work,
            settings.pixel_size_um,
            settings.pixel_size_nm,
            settings.tile,
            dict(settings.params),
        )
        staged = {"labels": Path(lab), "cells": Path(cells)}
        extra = Path(work) / f"{Path(path).stem}_localizations.csv"
        if extra.exists():
            staged["localizations"] = extra
        row["height"], row["width"] = (int(v) for v in seg.labels.shape[-2:])
        table = seg.table
        if _split(cells_per_task, seg, settings):
            handed_off = True
            t0_wall = time.time() - (time.perf_counter() - t0)
            return _hand_off(path, stem, row, work, staged, lab, seg, method, t0_wall)
        if settings.model:
            from napari_nucleus_ai.cells import write_cell_table

            table, counts = _classify_kept(settings, out_dir, stem, path, seg)
            write_cell_table(table, cells)
            row.update({f"n_{k}": int(v) for k, v in counts.items()})
        if settings.output == "zarr":
            _stage_zarr(work, stem, path, seg, table, staged)
        row["n_cells"] = int(len(table))
        row["status"] = "ok"
        row["seconds"] = round(time.perf_counter() - t0, 3)
        row["settings"] = settings.key()
        return _finish(out_dir, stem, staged, row, settings.output)
    except Exception as e:  # noqa: BLE001 - every failure becomes a 'failed' row
        row["error"] = one_line(e, path)
        row["seconds"] = round(time.perf_counter() - t0, 3)
        return row
    finally:
        if not handed_off:
            shutil.rmtree(work, ignore_errors=True)


def _hand_off(path, stem, row, work, staged, labels_file, seg, method, t0_wall) -> Segmented:
    """The :class:`Segmented` that cell-chunk tasks classify and :func:`merge_chunks` finishes."""
    return Segmented(
        path=path, stem=stem, row=dict(row), work=os.fspath(work),
        staged={k: os.fspath(v) for k, v in staged.items()}, labels=os.fspath(labels_file),
        table=seg.table, scale=tuple(seg.scale), translate=tuple(seg.translate), unit=seg.unit,
        method=method, t0=t0_wall,
    )  # fmt: skip


# -- whole slides: one task per tile ------------------------------------------------------------


@dataclass
class TilePlan:
    """How one big image is cut, exactly as :func:`napari_nucleus_ai.segment.tiles.segment_tiled`."""

    path: str
    stem: str
    method: str
    shape: tuple
    rgb: bool
    px: float | None  # the pixel size given or read from the file (sets scale and unit)
    px_work: float | None  # the pixel size the method works at (calibrated for wbc)
    kwargs: dict
    tiles: list  # (core, extended) in row-major order
    stamp: dict

    def frame(self) -> tuple[tuple, tuple, str]:
        """``(scale, translate, unit)`` of the slide's labels and cell table."""
        s = float(self.px) if self.px else 1.0
        return (s, s), (0.0, 0.0), ("um" if self.px else "px")


@task
def plan_tiles(path: str, stem: str, settings: Settings, method: str | None = None) -> TilePlan:
    """Calibrate once and list the tiles of ``path`` (runs where the slide is readable)."""
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.images import read_image
    from napari_nucleus_ai.segment.tiles import MAX_OBJECT_UM, calibrate

    method = method or resolve_method(path, settings.method)
    if method not in MAX_OBJECT_UM:
        raise InputError(path, f"{method} cannot be split into tiles")
    img = read_image(path)
    data = img.levels[0]
    if not img.rgb:
        from napari_nucleus_ai.segment.file import grey_plane

        data, axes = grey_plane(data, img.axes, path)
        if "T" in axes:
            raise InputError(path, "time-lapse stacks are not split into tiles")
    if method == "wbc" and not img.rgb:
        raise InputError(path, f"wbc needs a colour smear image; this one is {img.axes}")
    px = settings.pixel_size_um or (img.pixel_size_um[0] if img.pixel_size_um else None)
    params = dict(settings.params)
    fixed = calibrate(data, method, None, px, params)
    px_work = fixed.pop("pixel_size_um", px)
    kwargs = {**params, **{k: v for k, v in fixed.items() if params.get(k) is None}}
    overlap = int(np.ceil(MAX_OBJECT_UM[method] / (px_work or 0.25)))
    if method == "nuclei" and kwargs.get("diameter_um"):
        overlap = int(np.ceil(1.5 * kwargs["diameter_um"] / (px_work or 1.0))) + 4
    overlap = max(0, overlap)
    H, W = data.shape[:2]
    tile = int(settings.tile or 2048)
    tiles = []
    for ty in range(0, H, tile):
        for tx in range(0, W, tile):
            a, b, c, d = ty, min(ty + tile, H), tx, min(tx + tile, W)
            ext = (
                max(0, a - overlap),
                min(H, b + overlap),
                max(0, c - overlap),
                min(W, d + overlap),
            )
            tiles.append(((a, b, c, d), ext))
    return TilePlan(
        path, stem, method, (H, W), img.rgb, px, px_work, kwargs, tiles, input_stamp(path)
    )


def _level0(path: str, rgb: bool):
    from napari_nucleus_ai.images import read_image

    img = read_image(path)
    data = img.levels[0]
    if not rgb:
        from napari_nucleus_ai.segment.file import grey_plane

        data, _ = grey_plane(data, img.axes, path)
    return data


@task
def segment_tile(plan: TilePlan, index: int) -> tuple:
    """Segment one extended tile of a slide (read lazily on the worker) and measure its cells.

    Returns ``(kept, table)``: the objects of the tile that the stitching rule gives it
    (:func:`napari_nucleus_ai.segment.tiles._paste`: centroid in the tile's core, not cut by
    its outer edge), numbered ``1..k`` in the order the stitch numbers them, on the
    extended tile; and their cell table in the slide's coordinates, with labels ``1..k``
    (the stitch adds the ids of the tiles before). The stitched slide is then not measured
    again: its cell table is the tiles' tables end to end.
    """
    from scipy import ndimage as ndi

    from napari_nucleus_ai.segment.tiles import _paste, _read

    _limit_threads()
    core, ext = plan.tiles[index]
    ea, eb, ec, ed = ext
    block = _read(_level0(plan.path, plan.rgb), ea, eb, ec, ed)
    if plan.method == "wbc":
        from napari_nucleus_ai.segment.wbc import segment_wbc as fn
    else:
        from napari_nucleus_ai.segment.nuclei import segment_nuclei as fn
    lab = np.asarray(fn(block, plan.px_work, **plan.kwargs))
    kept = np.zeros(lab.shape[:2], np.int32)
    _paste(kept, lab, core, ext, (ea, ec), plan.shape, 1, None, ndi)
    return kept, _measure_part(plan, kept, block, (ea, ec))


def _measure_part(plan: TilePlan, labels: np.ndarray, image, origin, offset=(0, 0)):
    """The cell table of ``labels``, a part of the slide whose first pixel is ``origin``
    (y, x), as measuring the whole stitched slide gives it (``segment.run._measure``).

    ``image`` holds the intensity under ``labels`` from pixel ``offset`` (y, x) on.
    """
    from napari_nucleus_ai.segment.run import INTENSITY_MAX_PIXELS, _measure

    (sy, sx), (ty, tx), unit = plan.frame()
    translate = (ty + origin[0] * sy, tx + origin[1] * sx)
    table = _measure(labels, image, plan.rgb, (sy, sx), translate, unit, plan.path, offset)
    if plan.shape[0] * plan.shape[1] > INTENSITY_MAX_PIXELS:  # the whole slide has no mean colour
        table = table.drop(columns=[c for c in table.columns if c.startswith("mean_")])
    return table


def _remeasured(plan: TilePlan, labels: np.ndarray, table, ids):
    """``table`` with the cells ``ids`` measured again on the stitched ``labels``.

    Those cells lost pixels, when stitched, to an earlier tile's cell, so their tile's
    measurement no longer holds; a cell left with no pixel has no row (as measuring the
    stitched slide gives).
    """
    import pandas as pd

    ids = sorted(int(i) for i in ids)
    if not ids:
        return table
    (sy, sx), (ty, tx), _ = plan.frame()
    image = _level0(plan.path, plan.rgb)
    rows = table.set_index("label", drop=False)
    parts = []
    for i in ids:
        r = rows.loc[i]
        y0, y1 = (int(round((r[f"bbox_y{k}"] - ty) / sy)) for k in (0, 1))
        x0, x1 = (int(round((r[f"bbox_x{k}"] - tx) / sx)) for k in (0, 1))
        part = labels[y0:y1, x0:x1]
        part = np.where(part == i, part, 0)
        parts.append(_measure_part(plan, part, image, (y0, x0), (y0, x0)))
    kept = table[~table["label"].isin(ids)]
    parts = [t for t in parts if len(t)]
    return pd.concat([kept, *parts]).sort_values("label", ignore_index=True)


@task
def finish_tiled(
    plan: TilePlan,
    labels: np.ndarray,
    table,
    seams,
    out_dir: str,
    settings: Settings,
    t0: float,
    cells_per_task: int | None = None,
) -> dict | Segmented:
    """Write (and classify) a stitched slide's outputs like ``segment`` does.

    ``table`` is the tiles' cell tables end to end (:func:`segment_tile`); ``seams`` the
    ids of the cells that lost pixels to an earlier tile's cell when stitched, measured
    again here. ``t0`` is the wall clock (``time.time()``) when the slide's first task was
    submitted; ``cells_per_task`` as for :func:`process_input`.
    """
    from napari_nucleus_ai.cells import write_cell_table
    from napari_nucleus_ai.core.errors import one_line
    from napari_nucleus_ai.segment.run import Segmentation
    from napari_nucleus_ai.segment.writers import write_labels_tif

    row = {
        "path": plan.path,
        "stem": plan.stem,
        "status": "failed",
        "error": "",
        "n_cells": 0,
        "method": plan.method,
        "tiles": len(plan.tiles),
        **plan.stamp,
    }
    work = Path(out_dir) / STATE / "work" / plan.stem
    handed_off = False
    try:
        work.mkdir(parents=True, exist_ok=True)
        scale, translate, unit = plan.frame()
        table = _remeasured(plan, labels, table, seams)
        seg = Segmentation(labels, table, scale, translate, unit, plan.method, {})
        lab, cells = work / "labels.tif", work / "cells.csv"
        write_labels_tif(lab, labels, scale, unit)
        row["height"], row["width"] = plan.shape
        if _split(cells_per_task, seg, settings):
            handed_off = True
            return _hand_off(plan.path, plan.stem, row, work, {"labels": lab, "cells": cells},
                             lab, seg, plan.method, t0)  # fmt: skip
        if settings.model:
            table, counts = _classify_kept(settings, out_dir, plan.stem, plan.path, seg)
            row.update({f"n_{k}": int(v) for k, v in counts.items()})
        write_cell_table(table, cells)
        staged = {"labels": lab, "cells": cells}
        if settings.output == "zarr":
            _stage_zarr(work, plan.stem, plan.path, seg, table, staged)
        row["n_cells"] = int(len(table))
        row["status"] = "ok"
        row["seconds"] = round(time.time() - t0, 3)
        row["settings"] = settings.key()
        return _finish(out_dir, plan.stem, staged, row, settings.output)
    except Exception as e:  # noqa: BLE001
        row["error"] = one_line(e, plan.path)
        return row
    finally:
        if not handed_off:
            shutil.rmtree(work, ignore_errors=True)
