"""Test-time adaptation across the inputs of a batch run: many small fields, one microscope.

A package's fallback model is adapted to the cells routed to it when they form a batch of
one microscope (:mod:`napari_nucleus_ai.models.adapt`; at least 30 cells, most of them out
of its domain). A smear field holds a few white cells, so no single field passes that gate;
a folder of fields of one size usually comes from one microscope and does. With
``adapt="folder"`` the run therefore:

1. classifies every input unadapted and keeps, in its run state, the unadapted cell table
   and the fallback's features of its routed cells
   (:func:`~napari_nucleus_ai.batch.tasks.keep_unadapted`);
2. after the last input, groups the inputs by :func:`group_key` (the folder, the
   segmentation method and the image size) and adapts the fallback to each group's routed
   cells as one batch (:func:`adapt_groups`, with
   :func:`~napari_nucleus_ai.classify.predict.adapt_table`): the cell tables (CSV, and the
   OME-Zarr store's table), the summary's class counts and the status records are
   rewritten from the kept unadapted tables, so a resumed run, or one with more inputs,
   adapts again from the same starting point.

``adapt="auto"`` (the default) adapts each input's routed cells alone (a whole slide is a
batch by itself); ``adapt="off"`` never adapts. Qt-free.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.progress import Progress

__all__ = ["MODES", "adapt_groups", "group_key"]

#: ``adapt`` choices of a batch run: per input (``auto``), across a folder's inputs, or never.
MODES = ("auto", "folder", "off")


def group_key(row: dict) -> tuple:
    """Inputs taken as one microscope: the same folder, segmentation method and image size
    (a summary row's ``path``, ``method``, ``height`` and ``width``)."""
    return (
        str(Path(str(row.get("path", ""))).parent),
        str(row.get("method", "")),
        row.get("height"),
        row.get("width"),
    )


def _describe(key: tuple, n_inputs: int) -> str:
    folder, _, h, w = key
    size = f"{w} x {h} px" if h is not None and w is not None else "one size"
    inputs = "1 input" if n_inputs == 1 else f"{n_inputs} inputs"
    return f"{inputs} of {size} in {Path(folder).name or folder}"


def _n_adapted(table) -> int:
    """Cells of ``table`` whose ``adapted`` is true (NaN: no prediction)."""
    if "adapted" not in table.columns:
        return 0
    import pandas as pd

    return int(pd.to_numeric(table["adapted"], errors="coerce").fillna(0).astype(bool).sum())


def adapt_groups(out_dir, rows: dict, settings, notes: list | None = None) -> Generator:
    """Adapt the fallback model to each group of inputs' routed cells as one batch.

    A core generator (yields :class:`~napari_nucleus_ai.core.progress.Progress`). For each
    group (:func:`group_key`) of finished inputs that kept their unadapted tables
    (:func:`~napari_nucleus_ai.batch.tasks.keep_unadapted`), the tables are joined, adapted with
    :func:`~napari_nucleus_ai.classify.predict.adapt_table` (which applies the fallback's
    gate to the joined batch) and written back: ``<stem>_cells.csv``, the OME-Zarr
    store's table (``--format zarr``), the input's status record, and in ``rows`` its class
    counts and ``adapted_cells``. A group that fails the gate gets its unadapted tables back.

    Parameters
    ----------
    out_dir : path-like
        The run's output folder.
    rows : dict
        ``{stem: summary row}`` of the run (updated in place).
    settings : :class:`~napari_nucleus_ai.batch.tasks.Settings`
    notes : list, optional
        Receives one line per adapted group.
    """
    from napari_nucleus_ai.batch.tasks import kept_paths, output_paths, state_path

    out = Path(out_dir)
    groups: dict[tuple, list[str]] = {}
    for stem, row in rows.items():
        if row.get("status") != "ok":
            continue
        if all(p.exists() for p in kept_paths(out, stem)):
            groups.setdefault(group_key(row), []).append(stem)
    if not groups:
        return
    import pandas as pd

    from napari_nucleus_ai.batch.tasks import _model
    from napari_nucleus_ai.cells import read_cell_table, write_cell_table
    from napari_nucleus_ai.classify.cells import class_counts
    from napari_nucleus_ai.classify.predict import adapt_table
    from napari_nucleus_ai.core.files import atomic_write

    package = _model(settings)
    n = len(rows)
    for key, stems in groups.items():
        yield Progress(n, n, f"adapting the fallback model to {_describe(key, len(stems))}")
        tables = [read_cell_table(kept_paths(out, s)[0]) for s in stems]
        features = [np.load(kept_paths(out, s)[1], allow_pickle=False) for s in stems]
        joined = pd.concat(tables, ignore_index=True)
        adapted = adapt_table(package, joined, features, settings.threshold)
        n_adapted = _n_adapted(adapted)
        start = 0
        for stem, table in zip(stems, tables, strict=True):
            part = adapted.iloc[start : start + len(table)].reset_index(drop=True)
            start += len(table)
            paths = output_paths(out, stem, settings.output)
            write_cell_table(part, paths["cells"])
            if settings.output == "zarr" and paths["labels"].exists():
                from napari_nucleus_ai.io.ngff import replace_label_table

                replace_label_table(paths["labels"], "cells", part)
            row = rows[stem]
            for k in [k for k in row if k.startswith("n_") and k != "n_cells"]:
                row.pop(k)
            row.update({f"n_{k}": v for k, v in class_counts(part, package.classes).items()})
            row["adapted_cells"] = _n_adapted(part)
            record = {k: v for k, v in row.items() if k != "resumed"}
            with atomic_write(state_path(out, stem), "w") as fh:
                json.dump(record, fh, default=str)
        if n_adapted and notes is not None:
            notes.append(
                f"the fallback model was adapted to the {n_adapted} cells it classified in "
                f"{_describe(key, len(stems))}, as one batch of one microscope "
                "(column 'adapted')"
            )
