"""Batch processing on Dask distributed: folders of slides and localization files.

:func:`run_batch_gen` (core generator) / :func:`run_batch`: every input is
segmented (and classified with a model) by the same code as the ``segment`` and
``classify`` commands, on a ``distributed.LocalCluster`` or any existing Dask
scheduler, with per-input outputs written atomically, ``summary.csv``,
``report.html`` and resume. See ``docs/batch.md``.
"""

from __future__ import annotations


def __getattr__(name):  # keep ``import napari_nucleus_ai.batch`` cheap (no dask import)
    if name in ("run_batch", "run_batch_gen", "BatchResult", "connect"):
        from napari_nucleus_ai.batch import run

        return getattr(run, name)
    raise AttributeError(name)


__all__ = ["BatchResult", "connect", "run_batch", "run_batch_gen"]
