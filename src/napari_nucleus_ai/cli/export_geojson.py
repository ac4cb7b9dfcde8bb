"""``napari-nucleus-ai export-geojson LABELS --table CELLS.csv --out cells.geojson`` (QuPath)."""

from __future__ import annotations

HELP = "cells as QuPath GeoJSON: one polygon per cell (image pixels), class and measurements"


def add_arguments(p) -> None:
    p.add_argument("labels", help="label image (TIFF/PNG), 0 = background")
    p.add_argument(
        "--table",
        metavar="CSV",
        help="cell table (e.g. classify's cells.csv): class and measurements (default: measured)",
    )
    p.add_argument("--out", required=True, metavar="GEOJSON", help="output .geojson file")
    # choices checked by the schema (core.params.COMMANDS): one line, exit 2
    p.add_argument(
        "--object-type",
        default="detection",
        metavar="{detection,annotation}",
        help="QuPath object type (default detection; annotations are editable)",
    )
    p.add_argument(
        "--colours",
        metavar="JSON|MODEL",
        help="class colours: classify's classes.json or a model package (default: classes.json "
        "beside --table, else the shared palette)",
    )


def _colours(args) -> dict:
    import json
    import os

    src = args.colours
    if src is None and args.table:
        beside = os.path.join(os.path.dirname(os.path.abspath(args.table)), "classes.json")
        src = beside if os.path.isfile(beside) else None
    if src is None:
        return {}
    if src.lower().endswith(".json") and os.path.isfile(src):
        from napari_nucleus_ai.core.errors import InputError

        try:
            with open(src, encoding="utf-8") as fh:
                doc = json.load(fh)
        except (OSError, ValueError) as e:
            raise InputError(src, f"not a readable classes.json ({e})") from None
        return {"colours": doc.get("colours") or {}} if isinstance(doc, dict) else {}
    from napari_nucleus_ai.models.package import as_package

    return {"model_card": as_package(src).card}


def run(args) -> int:
    import numpy as np

    from napari_nucleus_ai.cells import measure_cells, read_cell_table
    from napari_nucleus_ai.cli._outputs import check_out_file
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.io.geojson import write_geojson
    from napari_nucleus_ai.models.crops import read_crop

    check_out_file(args.out, (".geojson", ".json"), "GeoJSON file")
    labels = read_crop(args.labels, keep_channels=True)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            args.labels, f"labels must be a 2D integer image, got {labels.dtype} {labels.shape}"
        )
    table = read_cell_table(args.table) if args.table else measure_cells(labels)
    meta = _colours(args)
    write_geojson(args.out, labels, table, object_type=args.object_type, metadata=meta)
    n = len(np.unique(labels)) - int((labels == 0).any())
    print(f"{args.out}: {n} cells as QuPath {args.object_type}s")
    return 0
