"""Raabin-WBC (Kouzehkanan et al. 2022): class folders of cropped white cells.

The release unpacks to ``Train/``, ``TestA/`` and ``TestB/``, each with class
folders ``Basophil``, ``Eosinophil``, ``Lymphocyte``, ``Monocyte`` and
``Neutrophil`` of 575 x 575 JPEG crops. ``split="Train"`` imports one split;
by default all are imported and ``_files.csv`` records each file's split.
"""

from __future__ import annotations

from pathlib import Path

from napari_nucleus_ai.datasets.builder import Plan
from napari_nucleus_ai.datasets.folders import items_from_scan, scan

INFO = {
    "dataset": "Raabin-WBC",
    "citation": "Kouzehkanan ZM, Saghari S, Tavakoli S, et al. A large dataset of white blood "
    "cells containing cell locations and types, along with segmented nuclei and cytoplasm. "
    "Sci Rep 12, 1123 (2022), doi:10.1038/s41598-021-04426-x",
    "licence": "free for research with citation; check the terms at raabindata.com",
    "url": "https://raabindata.com/free-data/",
}


def plan(source, *, vocab=None, split: str | None = None) -> Plan:
    """Read a Raabin-WBC tree (see the module docstring)."""
    source = Path(source)
    found, skipped = scan(source, split=split)
    return Plan(
        "raabin",
        "raabin",
        source,
        dict(INFO),
        items=items_from_scan(found),
        skipped=skipped,
        notes={"split": split or "all"},
    )
