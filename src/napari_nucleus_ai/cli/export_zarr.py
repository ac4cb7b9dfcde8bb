"""``napari-nucleus-ai export-zarr IMAGE --labels LABELS.tif --table CELLS.csv --out x.zarr``."""

from __future__ import annotations

HELP = "image + labels + cell table as one OME-Zarr (NGFF 0.4) store, for napari, Fiji, QuPath"


def add_arguments(p) -> None:
    p.add_argument("image", help="the image (TIFF/OME-TIFF/PNG/JPEG/slide); read lazily")
    p.add_argument("--labels", metavar="TIFF", help="label image on IMAGE's grid (0 = background)")
    p.add_argument(
        "--table", metavar="CSV", help="cell table of --labels (default: measured from it)"
    )
    p.add_argument("--out", required=True, metavar="ZARR", help="output .zarr folder")
    p.add_argument(
        "--pixel-size", type=float, help="pixel size of IMAGE (default: from its metadata)"
    )
    # --pixel-size, --unit and --name are checked by the schema (core.params.COMMANDS)
    p.add_argument(
        "--unit", default="um", metavar="{um,nm}", help="unit of --pixel-size (default um)"
    )
    p.add_argument(
        "--name",
        default="cells",
        help="name of the labels group (labels/NAME; letters, digits, _ - .; default cells)",
    )


def run(args) -> int:
    import os
    from pathlib import Path

    import numpy as np

    from napari_nucleus_ai.cells import measure_cells, read_cell_table
    from napari_nucleus_ai.cli._outputs import _writable_parent
    from napari_nucleus_ai.core.errors import InputError, UsageError
    from napari_nucleus_ai.images import read_image
    from napari_nucleus_ai.io.ngff import sniff, write_ngff

    out = Path(args.out)
    if out.suffix.lower() != ".zarr":
        raise UsageError(f"--out {out}: writes an OME-Zarr store; use a name ending in .zarr")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not sniff(out))):
        raise UsageError(f"--out {out}: exists and is not an OME-Zarr store")
    _writable_parent(out, "--out")
    image = read_image(args.image)
    unit = args.unit if args.pixel_size else ("um" if image.pixel_size_um else "px")
    size = args.pixel_size or (image.pixel_size_um[0] if image.pixel_size_um else 1.0)
    labels = {}
    if args.labels:
        import tifffile

        from napari_nucleus_ai.models.crops import read_crop

        lab = (
            tifffile.imread(args.labels)
            if args.labels.lower().endswith((".tif", ".tiff"))
            else read_crop(args.labels)
        )
        if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
            raise InputError(
                args.labels, f"labels must be a 2D integer image, got {lab.dtype} {lab.shape}"
            )
        table = (
            read_cell_table(args.table) if args.table else measure_cells(lab, scale=size, unit=unit)
        )
        labels[args.name] = (lab, table)
    axes = image.axes.replace("I", "Z")
    write_ngff(
        os.fspath(out), image.levels[0], labels, axes=axes, pixel_size=size, unit=unit,
        channel_names=image.channels or None,
    )  # fmt: skip
    n = len(next(iter(labels.values()))[1]) if labels else 0
    print(
        f"{out}: image {tuple(image.shape)}"
        + (f", {n} cells in labels/{args.name}" if labels else "")
    )
    return 0
