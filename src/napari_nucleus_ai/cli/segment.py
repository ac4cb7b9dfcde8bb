"""``napari-nucleus-ai segment IMAGE... --method M --out DIR``: labels + cell table per input."""

from __future__ import annotations

HELP = "segment white cells, nuclei or STORM nuclei; write <stem>_labels.tif and <stem>_cells.csv"


def add_arguments(p) -> None:
    p.add_argument(
        "inputs", nargs="+", metavar="IMAGE", help="images, slides, stacks or localization tables"
    )
    p.add_argument(
        "--method",
        default="wbc",
        choices=["wbc", "nuclei", "storm-nuclei", "cellpose", "stardist", "instanseg"],
        help="wbc: white cells in stained smears; nuclei: Hoechst/DAPI; "
        "storm-nuclei: nuclei from localization density; deep backends need local weights",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument(
        "--pixel-size-um",
        type=float,
        default=None,
        help="pixel size when the file does not say (wbc otherwise measures it on the red cells)",
    )
    p.add_argument(
        "--pixel-size-nm",
        type=float,
        default=100.0,
        help="storm-nuclei: pixel of the density image (default 100 nm)",
    )
    p.add_argument(
        "--tile", type=int, default=None, help="force tile-wise processing with this tile size"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a method parameter, e.g. --param min_nucleus_um=4 (repeatable; see docs/segmentation.md)",
    )
    p.add_argument("--model", default=None, help="deep backends: local weights file or folder")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _parse_params(items) -> dict:
    from ..errors import InputError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(None, f"--param needs NAME=VALUE, got {item!r}")
        low = value.strip().lower()
        if low in ("true", "false"):
            out[key] = low == "true"
        elif low in ("none", ""):
            out[key] = None
        else:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out


def segment_file(
    path,
    method: str,
    out_dir,
    pixel_size_um=None,
    pixel_size_nm=100.0,
    tile=None,
    params=None,
    on_progress=None,
):
    """Segment one file and write ``<stem>_labels.tif`` + ``<stem>_cells.csv``; return both paths."""
    from pathlib import Path

    from ..progress import run_sync
    from ..segment.run import segment
    from ..segment.writers import write_labels_tif

    params = dict(params or {})
    path = Path(path)
    stem = path.stem
    if method == "storm-nuclei":
        from ..io.localizations import read_localizations

        table = read_localizations(path)
        result = run_sync(
            segment(table, "storm-nuclei", source=str(path), pixel_size_nm=pixel_size_nm, **params),
            on_progress,
        )
    else:
        from ..errors import InputError
        from ..io.images import read_image

        img = read_image(path)
        px = pixel_size_um or (img.pixel_size_um[0] if img.pixel_size_um else None)
        data = img.levels[0]
        axes = img.axes
        if method == "wbc" and not img.rgb:
            raise InputError(path, f"wbc needs a colour smear image; this one is {axes}")
        if not img.rgb and method != "wbc":
            data, axes = _grey_plane(data, axes, path)
        try:
            result = run_sync(
                segment(
                    data,
                    method,
                    pixel_size_um=px,
                    rgb=img.rgb,
                    tile=tile,
                    source=str(path),
                    **params,
                ),
                on_progress,
            )
        except InputError as e:
            raise InputError(path, e.problem) from None
    out_dir = Path(out_dir)
    labels_path = out_dir / f"{stem}_labels.tif"
    cells_path = out_dir / f"{stem}_cells.csv"
    write_labels_tif(labels_path, result.labels, result.scale, result.unit)
    from ..cells import write_cell_table

    write_cell_table(result.table, cells_path)
    if method == "storm-nuclei":
        storm = result.extra["storm"]
        loc_path = out_dir / f"{stem}_localizations.csv"
        from ..utils import atomic_write

        with atomic_write(loc_path, "w", newline="") as fh:
            storm.localizations.to_csv(fh, index=False)
    return result, labels_path, cells_path


def _grey_plane(data, axes: str, path):
    """A (Y, X) or (T, Y, X) view of a fluorescence image (first channel, first z)."""
    from ..errors import InputError

    keep = []
    index = []
    for a in axes:
        if a in "YX" or (a == "T"):
            index.append(slice(None))
            keep.append(a)
        elif a in "CZI":
            index.append(0)
        else:
            raise InputError(path, f"cannot segment axes {axes}")
    return data[tuple(index)], "".join(keep)


def run(args) -> int:
    import sys

    from ..errors import NucleusAIError, one_line

    params = _parse_params(args.param)
    if args.model:
        params["model"] = args.model
    failed = 0
    for path in args.inputs:
        try:
            result, lab, csv = segment_file(
                path,
                args.method,
                args.out,
                args.pixel_size_um,
                args.pixel_size_nm,
                args.tile,
                params,
            )
        except (NucleusAIError, OSError) as e:
            print(f"napari-nucleus-ai: error: {one_line(e, path)}", file=sys.stderr)
            failed += 1
            continue
        if not args.quiet:
            print(f"{path}: {result.n} objects -> {lab}, {csv}")
    return 1 if failed else 0
