"""``napari-nucleus-ai batch INPUT... --out DIR``: segment/classify folders on Dask distributed."""

from __future__ import annotations

import sys
import time

from napari_nucleus_ai.cli._inference_options import add_adapt_option
from napari_nucleus_ai.cli._localization_options import add_localization_options

HELP = "segment (and classify) files and folders on Dask distributed; resumable, with summary.csv and report.html"

EPILOG = """Outputs per input: DIR/<stem>_labels.tif and DIR/<stem>_cells.csv (as `segment`
and `classify` write them); with --format zarr, DIR/<stem>.zarr (the input image + its
labels + the cell table, as `export-zarr` writes it) instead of the labels TIFF.
At the end DIR/summary.csv and DIR/report.html.
Running the same command again skips inputs already finished.
Exit status: 0 all ok, 2 some inputs failed (see summary.csv), 1 the run could not start."""


def add_arguments(p) -> None:
    import argparse

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="files, or folders (searched recursively)"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created)")
    p.add_argument(
        "--format",
        dest="output",
        default="tiff",
        choices=["tiff", "zarr"],
        help="labels as <stem>_labels.tif (default) or image + labels + table as <stem>.zarr",
    )
    p.add_argument(
        "--segment",
        default="auto",
        choices=["auto", "wbc", "nuclei", "storm-nuclei"],
        help="method; auto: localization tables -> storm-nuclei, colour -> wbc, grey -> nuclei",
    )
    p.add_argument("--model", help="model package: add class, probabilities and uncertainty")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, help="local Dask worker processes (default: cores)")
    g.add_argument(
        "--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786"
    )
    p.add_argument("--pixel-size-um", type=float, help="pixel size when a file does not say")
    p.add_argument(
        "--pixel-size-nm",
        type=float,
        default=100.0,
        help="storm-nuclei density pixel (default 100)",
    )
    p.add_argument(
        "--tile", type=int, help="tile size for tile-wise segmentation (as `segment --tile`)"
    )
    p.add_argument(
        "--tile-above",
        type=int,
        metavar="PIXELS",
        help="split images larger than this into tile tasks (default 12000000)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="segmentation parameter, as for `segment` (repeatable)",
    )
    p.add_argument(
        "--cells-per-task",
        type=int,
        metavar="N",
        help="with --model, classify inputs with more cells in chunks of N cells, one Dask "
        "task each (default 250; 0: one task per input)",
    )
    p.add_argument("--device", help="classification device: auto, cuda, mps, cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--tta", type=int, help="test-time augmentations (default: the model card's)")
    p.add_argument(
        "--threshold", type=float, help="uncertainty above which cells are 'unidentified'"
    )
    add_adapt_option(p, across_inputs=True)
    p.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="redo every input even if an earlier run finished it",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_localization_options(p)  # --camera-pixel, --columns (inherited by Dask workers)


def run(args) -> int:
    from napari_nucleus_ai.batch.run import run_batch_gen
    from napari_nucleus_ai.cli._outputs import check_out_dir
    from napari_nucleus_ai.cli.segment import _parse_params

    params = _check_params(args.segment, _parse_params(args.param))  # before any input is read
    check_out_dir(args.out)
    bar = _Bar(quiet=args.quiet)
    gen = run_batch_gen(
        args.inputs,
        args.out,
        method=args.segment,
        model=args.model,
        workers=args.workers,
        scheduler=args.scheduler,
        pixel_size_um=args.pixel_size_um,
        pixel_size_nm=args.pixel_size_nm,
        tile=args.tile,
        params=params,
        device=args.device,
        batch_size=args.batch_size,
        tta=args.tta,
        threshold=args.threshold,
        tile_above=args.tile_above,
        cells_per_task=args.cells_per_task,
        resume=args.resume,
        output=args.output,
        adapt=args.adapt,
    )
    from napari_nucleus_ai.core.progress import run_sync

    result = run_sync(gen, bar)
    bar.close()
    s = result.summary
    resumed = int(s["resumed"].sum()) if "resumed" in s.columns else 0
    print(
        f"{len(s)} inputs: {result.n_ok} ok ({resumed} from an earlier run), {result.n_failed} failed "
        f"in {result.seconds:.1f} s -> {result.summary_path}, {result.report_path}"
    )
    for note in result.notes:
        print(f"napari-nucleus-ai: {note}", file=sys.stderr)
    for _, r in s[s["status"] == "failed"].iterrows():
        print(f"  failed: {r['error']}", file=sys.stderr)
    return 2 if result.n_failed else 0


def _check_params(method: str, params: dict) -> dict:
    """``--param`` values against the method's schema; with ``auto``, against every method naming them."""
    from napari_nucleus_ai.core.errors import UsageError
    from napari_nucleus_ai.segment.run import METHODS, check_params, method_schema

    if method != "auto":
        return check_params(method, params)
    out = dict(params)
    for key, value in params.items():
        owners = [m for m in METHODS if any(p.dest == key for p in method_schema(m))]
        if not owners:
            raise UsageError(f"batch: unknown segmentation parameter {key}")
        for m in owners:
            out.update(check_params(m, {key: value}))
    return out


class _Bar:
    """``[#####-----] 12/40 inputs, 1 failed, ETA 0:01:10`` on stderr (one line on a terminal)."""

    def __init__(self, quiet: bool = False, width: int = 24):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.width = width
        self.last = 0.0
        self.seen_dashboard = False

    def __call__(self, p) -> None:
        if self.quiet:
            return
        if "dashboard" in p.message and not self.seen_dashboard:
            self.seen_dashboard = True
            sys.stderr.write(("\n" if self.tty else "") + p.message + "\n")
            return
        now = time.monotonic()
        final = p.total is not None and p.done >= p.total
        if not self.tty and not final and now - self.last < 5:
            return  # logs get a line every 5 s, not a flood
        self.last = now
        frac = p.fraction or 0.0
        fill = int(round(frac * self.width))
        line = f"[{'#' * fill}{'-' * (self.width - fill)}] {p.message}"
        sys.stderr.write(f"\r{line:<100}" if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\n")
