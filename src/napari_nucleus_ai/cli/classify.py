"""``napari-nucleus-ai classify MODEL IMAGE --labels LABELS.tif --out DIR``.

A TIFF image or label image over 256 MiB (a whole-slide region) is read lazily
(:func:`napari_nucleus_ai.images.tiff.read_region_lazy`): only the tiles under cells are
decoded and the class and uncertainty TIFFs are written tile by tile, so memory follows the
cells, not the region.
"""

from __future__ import annotations

from napari_nucleus_ai.cli._inference_options import add_inference_options

HELP = "classify every labelled cell of an image (or STORM localizations): cells.csv, class and uncertainty TIFFs, or one .zarr"


def add_arguments(p) -> None:
    p.add_argument("model", help="model package (folder, .zip or .safetensors)")
    p.add_argument(
        "image",
        help="the image the labels belong to (PNG/JPEG/TIFF), or a localization file for STORM models",
    )
    p.add_argument(
        "--labels", required=True, help="label image (TIFF/PNG), 0 = background, same grid as IMAGE"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR|ZARR",
        help="output folder: cells.csv, classes.tif, uncertainty.tif, classes.json; or a name "
        "ending in .zarr: one OME-Zarr store (IMAGE + labels/cells + the classified cell table)",
    )
    p.add_argument(
        "--pixel-size",
        type=float,
        help="pixel size of IMAGE/LABELS (default: from the TIFF, else unknown)",
    )
    p.add_argument(
        "--unit", default="um", choices=("um", "nm"), help="unit of --pixel-size (default um)"
    )
    p.add_argument(
        "--origin",
        type=float,
        nargs=2,
        default=(0.0, 0.0),
        metavar=("Y", "X"),
        help="physical position of the labels' pixel (0, 0) centre, for localization input (default 0 0)",
    )
    add_inference_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress, only errors")


def _tiff_pixel_size(path):
    """Pixel size (value, unit) from TIFF resolution tags, or None."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            res = page.tags.get("XResolution")
            unit = page.tags.get("ResolutionUnit")
            if res is None or unit is None:
                return None
            num, den = res.value
            if not num or int(unit.value) != 3:  # centimetre
                return None
            return 1e4 * den / num, "um"
    except Exception:  # noqa: BLE001 - no usable metadata
        return None


TILE = 512  # tile side of the class and uncertainty TIFFs of a lazy region


def _read_lazy(path):
    """A big TIFF region as a lazy array (only the tiles under cells are read), else None."""
    from napari_nucleus_ai.images.tiff import LAZY_REGION_BYTES, read_region_lazy

    return read_region_lazy(path, LAZY_REGION_BYTES)


def _centre(image, side: int = 2048):
    """A lazy image's central ``side`` x ``side`` part, in memory (an array in memory as is)."""
    import numpy as np

    if isinstance(image, np.ndarray):
        return image
    h, w = image.shape[:2]
    y, x = max(0, h // 2 - side // 2), max(0, w // 2 - side // 2)
    part = image[y : y + side, x : x + side]
    return np.asarray(part.compute(scheduler="threads") if hasattr(part, "compute") else part)


def _write_tiff(path, image, **kwargs) -> None:
    """A zlib TIFF; a lazy image is computed and written one band of tiles at a time.

    A lazy region is mostly background: its all-zero tiles share one compressed tile, so
    writing costs the cells, not the region's area. An image that knows its empty parts
    (:meth:`~napari_nucleus_ai.classify.cells.LutImage.blank`) is computed tile by tile, the
    empty tiles not at all.
    """
    import zlib

    import numpy as np
    import tifffile

    if isinstance(image, np.ndarray):
        tifffile.imwrite(path, image, compression="zlib", **kwargs)
        return
    h, w = image.shape
    dtype = np.dtype(image.dtype).newbyteorder("<")
    empty = zlib.compress(np.zeros((TILE, TILE), dtype).tobytes(), 6)

    def tile(part):
        if not part.any():
            return empty
        out = np.zeros((TILE, TILE), dtype)
        out[: part.shape[0], : part.shape[1]] = part
        return zlib.compress(out.tobytes(), 6)

    def tiles():
        blank = getattr(image, "blank", None)
        for y in range(0, h, TILE):
            if blank is not None:
                for x in range(0, w, TILE):
                    box = np.s_[y : y + TILE, x : x + TILE]
                    yield empty if blank(box) else tile(np.asarray(image[box]))
                continue
            band = image[y : y + TILE, :]
            band = np.asarray(
                band.compute(scheduler="threads") if hasattr(band, "compute") else band
            )
            for x in range(0, w, TILE):
                yield tile(band[:, x : x + TILE])

    tifffile.imwrite(
        path, tiles(), shape=(h, w), dtype=dtype, tile=(TILE, TILE), compression="zlib",
        byteorder="<", bigtiff=h * w * dtype.itemsize > 2**31, **kwargs,
    )  # fmt: skip


def _write_tiffs(*outputs) -> None:
    """:func:`_write_tiff` of every ``(path, image, description or None)`` at once, each on a
    thread of its own (compression and painting release the GIL), each file written whole
    or not at all."""
    from concurrent.futures import ThreadPoolExecutor

    from napari_nucleus_ai.core.files import atomic_path

    def write(path, image, description):
        with atomic_path(path) as tmp:
            kwargs = {} if description is None else {"description": description}
            _write_tiff(tmp, image, **kwargs)

    with ThreadPoolExecutor(len(outputs)) as pool:
        for job in [pool.submit(write, *out) for out in outputs]:
            job.result()


def run(args) -> int:
    import json
    import os
    import sys

    import numpy as np
    import tifffile

    from napari_nucleus_ai.classify.cells import classify_cells_gen
    from napari_nucleus_ai.classify.predict import as_package
    from napari_nucleus_ai.cli._outputs import check_out_dir
    from napari_nucleus_ai.cli._progress import ProgressPrinter
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.files import atomic_write
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.crops import is_image_file, read_crop

    to_zarr = args.out.rstrip("/").lower().endswith(".zarr")
    if to_zarr:  # before any work
        from napari_nucleus_ai.io.ngff import check_zarr_out

        check_zarr_out(args.out)
    else:
        check_out_dir(args.out)
    package = as_package(args.model)
    labels = _read_lazy(args.labels)
    if labels is None:
        labels = read_crop(args.labels)
    if len(labels.shape) != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            args.labels,
            f"labels must be a 2D integer image, got {labels.dtype} {tuple(labels.shape)}",
        )
    scale, unit = (
        (args.pixel_size, args.unit)
        if args.pixel_size
        else (_tiff_pixel_size(args.labels) or (1.0, "px"))
    )
    image = localizations = None
    if package.modality == "storm" and not is_image_file(args.image):
        from napari_nucleus_ai.localizations import read_localizations

        localizations = read_localizations(args.image)
        if unit == "px":
            raise InputError(
                args.labels, "give --pixel-size (nm) of the label grid to place localizations on it"
            )
    else:
        image = _read_lazy(args.image)  # a big TIFF: only the tiles under cells are read
        if image is None:
            image = (
                read_crop(args.image)
                if not args.image.lower().endswith((".tif", ".tiff"))
                else tifffile.imread(args.image)
            )
        from napari_nucleus_ai.models.trust import check_modality

        # an RGB model on grey, 4-channel... (a lazy region: judged on its centre)
        check_modality(_centre(image), package.card, args.image)
    origin = tuple(np.asarray(args.origin, float))
    notes: list = []
    bar = ProgressPrinter("classify", quiet=args.quiet)
    gen = classify_cells_gen(
        package,
        image,
        labels,
        scale=scale,
        unit=unit,
        translate=origin,
        localizations=localizations,
        device=args.device,
        batch_size=args.batch_size,
        tta=args.tta,
        mc_dropout=args.mc_dropout,
        threshold=args.threshold,
        proposer=args.proposer,
        adapt=args.adapt,
    )
    with bar:
        res = run_sync(gen, bar)
    notes += res.notes
    for note in notes:
        print(f"napari-nucleus-ai: {note}", file=sys.stderr)
    from napari_nucleus_ai.cli.predict import warn_out_of_domain

    warn_out_of_domain(res.table, args.image)
    if to_zarr:
        from napari_nucleus_ai.io.ngff import write_cells_zarr

        write_cells_zarr(
            args.out, args.image if image is not None else None, labels, res.table,
            scale=scale, unit=unit, origin=origin,
            class_colours=dict(zip(res.classes, res.colours, strict=True)),
        )  # fmt: skip
        _print_counts(args.out, res)
        return 0
    os.makedirs(args.out, exist_ok=True)
    from napari_nucleus_ai.cells import write_cell_table

    write_cell_table(res.table, os.path.join(args.out, "cells.csv"))
    legend = {
        "values": {str(i): n for i, n in enumerate(res.class_names)},
        "colours": dict(zip(res.classes, res.colours, strict=True)),
        "counts": res.counts(),
        "model": package.name,
        "pixel_size": scale,
        "unit": unit,
    }
    _write_tiffs(
        (os.path.join(args.out, "classes.tif"), res.class_image, json.dumps(legend)),
        (os.path.join(args.out, "uncertainty.tif"), res.uncertainty_image, None),
    )
    with atomic_write(os.path.join(args.out, "classes.json"), "w") as fh:
        json.dump(legend, fh, indent=2)
    _print_counts(args.out, res)
    return 0


def _print_counts(out, res) -> None:
    print(
        f"{out}: {len(res.table)} cells; "
        + ", ".join(f"{k} {v}" for k, v in res.counts().items() if v)
    )
