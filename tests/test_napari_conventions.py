"""napari plugin conventions (issue 19): reader patterns, Layers submenus, licence, classifiers."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _manifest():
    from npe2 import PluginManifest

    return PluginManifest.from_distribution("napari-nucleus-ai")


def test_reader_lists_extensions_not_everything():
    (reader,) = _manifest().contributions.readers
    assert "*" not in reader.filename_patterns
    # folders: OME-Zarr stores only (get_reader declines any other folder)
    assert reader.accepts_directories and "*.zarr" in reader.filename_patterns
    for name in (
        "locs.csv", "locs.csv.gz", "a.txt", "x_locs.hdf5", "d.h5", "m_sml.mat", "s.smlm",
        "olist.bin", "slide.svs", "field.jpg", "img.ome.tif", "stack.tiff", "f.png",
        "cells.geojson", "plate.zarr", "scan.czi", "run.nd2", "experiment.lif",
    ):  # fmt: skip
        assert any(fnmatch(name, p) for p in reader.filename_patterns), name


def test_docks_under_napari_layers_submenus():
    from napari._app_model.constants._menus import is_menu_contributable

    pm = _manifest()
    menus = pm.contributions.menus or {}
    widgets = {w.command for w in pm.contributions.widgets}
    assert {"napari/layers/segment", "napari/layers/classify", "napari/layers/visualize"} <= set(
        menus
    )
    for menu_id, items in menus.items():
        assert is_menu_contributable(menu_id), menu_id
        for item in items:
            assert item.command in widgets, item.command
    segment = {i.command for i in menus["napari/layers/segment"]}
    assert "napari-nucleus-ai.segment_widget" in segment


def test_licence_file_and_classifiers():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "LICENSE").read_text()
    assert meta["license"] == "BSD-3-Clause" and text.startswith("BSD 3-Clause License")
    classifiers = set(meta["classifiers"])
    for c in (
        "Development Status :: 3 - Alpha",
        "Framework :: napari",
        "Operating System :: OS Independent",
        *(f"Programming Language :: Python :: 3.{v}" for v in (10, 11, 12, 13)),
    ):
        assert c in classifiers, c
