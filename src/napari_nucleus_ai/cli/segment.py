"""``napari-nucleus-ai segment IMAGE... --method M --out DIR``: labels + cell table per input."""

from __future__ import annotations

from napari_nucleus_ai.cli._localization_options import add_localization_options

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
    add_localization_options(p)  # --camera-pixel, --columns (storm-nuclei inputs)


def _parse_params(items) -> dict:
    from napari_nucleus_ai.core.errors import InputError

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


def run(args) -> int:
    import os
    import sys

    from napari_nucleus_ai.cli._outputs import check_out_dir
    from napari_nucleus_ai.cli._progress import ProgressPrinter
    from napari_nucleus_ai.core.errors import NucleusAIError, one_line
    from napari_nucleus_ai.core.progress import Progress
    from napari_nucleus_ai.segment.file import segment_file
    from napari_nucleus_ai.segment.run import check_params

    # every parameter and the output folder checked before the first file is read
    params = check_params(args.method, _parse_params(args.param))
    check_out_dir(args.out)
    if args.model:
        params["model"] = args.model
    failed = 0
    n = len(args.inputs)
    bar = ProgressPrinter("segment", quiet=args.quiet or n < 2)
    for i, path in enumerate(args.inputs):
        name = os.path.basename(str(path))

        def on_progress(p, i=i, name=name):
            bar(Progress(i, n, f"{i}/{n} files; {name}: {p.message}"))

        try:
            result, lab, csv = segment_file(
                path,
                args.method,
                args.out,
                args.pixel_size_um,
                args.pixel_size_nm,
                args.tile,
                params,
                on_progress=on_progress,
            )
        except (NucleusAIError, OSError) as e:
            bar.close()
            print(f"napari-nucleus-ai: error: {one_line(e, path)}", file=sys.stderr)
            failed += 1
            continue
        bar(Progress(i + 1, n, f"{i + 1}/{n} files"))
        bar.close()
        if not args.quiet:
            print(f"{path}: {result.n} objects -> {lab}, {csv}")
    bar.close()
    return 1 if failed else 0
