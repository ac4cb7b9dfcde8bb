"""``napari-nucleus-ai render FILE --pixel-size NM --out OUT.tif``: localizations -> TIFF."""

from __future__ import annotations

HELP = "render a localization file into a density TIFF with its physical pixel size"


def add_arguments(p) -> None:
    from napari_nucleus_ai.cli._localization_options import add_localization_options

    p.add_argument("file", help="a localization table (ThunderSTORM, N-STORM, Picasso, SMAP, ...)")
    p.add_argument("--out", required=True, help="output .tif")
    p.add_argument(
        "--pixel-size", type=float, default=10.0, help="display pixel in nm (default 10)"
    )
    p.add_argument(
        "--method",
        choices=("histogram", "gaussian", "precision"),
        default="gaussian",
        help="histogram, fixed Gaussian (default) or per-localization precision Gaussian",
    )
    p.add_argument(
        "--sigma", type=float, default=None, help="Gaussian sigma in nm (default: median precision)"
    )
    p.add_argument(
        "--z",
        dest="z_mode",
        choices=("project", "stack", "color"),
        default="project",
        help="3D data: sum over z (default), voxel stack, or depth colour-coded RGB",
    )
    p.add_argument(
        "--z-pixel-size", type=float, default=None, help="voxel depth in nm for --z stack"
    )
    p.add_argument("--channel", action="append", help="only these channels (repeatable)")
    p.add_argument(
        "--max-precision", type=float, default=None, help="drop localizations less precise (nm)"
    )
    p.add_argument(
        "--min-photons", type=float, default=None, help="drop localizations with fewer photons"
    )
    p.add_argument(
        "--frames", default=None, help="frame range FIRST:LAST (inclusive, either may be empty)"
    )
    p.add_argument(
        "--drift-segments",
        type=int,
        default=0,
        help="correct drift by cross-correlating this many time segments (0 = off)",
    )
    add_localization_options(p)


def run(args) -> int:
    from napari_nucleus_ai.cli._outputs import check_out_file
    from napari_nucleus_ai.localizations import read_localizations
    from napari_nucleus_ai.localizations.filters import filter_localizations
    from napari_nucleus_ai.localizations.render import render_localizations
    from napari_nucleus_ai.localizations.writers import write_rendered_tiff

    check_out_file(args.out, (".tif", ".tiff"), "TIFF image")  # before reading anything
    frame_range = _frames(args.frames)
    needs = {"precision_nm"} if args.sigma is None or args.method == "precision" else set()
    if args.max_precision is not None:
        needs.add("precision_nm")
    if args.min_photons is not None:
        needs.add("photons")
    if frame_range or args.drift_segments:
        needs.add("frame")
    if args.channel:
        needs.add("channel")
    # --camera-pixel / --columns are the reading defaults of the run (cli.main)
    table = read_localizations(args.file, only=tuple(sorted(needs)))
    df = table.data
    if args.channel:
        _check_channels(args.file, df, args.channel)
    if any(
        v is not None for v in (args.max_precision, args.min_photons, frame_range, args.channel)
    ):
        df = filter_localizations(
            df, args.max_precision, args.min_photons, frame_range, args.channel
        )
    if args.drift_segments:
        from napari_nucleus_ai.localizations.drift import drift_correct

        df = drift_correct(df, segments=args.drift_segments).data
    r = render_localizations(
        df,
        pixel_size_nm=args.pixel_size,
        method=args.method,
        sigma_nm=args.sigma,
        z_mode=args.z_mode,
        z_pixel_size_nm=args.z_pixel_size,
    )
    write_rendered_tiff(
        args.out,
        r.image,
        r.scale,
        r.translate,
        rgb=r.rgb,
        extra={
            "source": table.path,
            "format": table.format,
            "method": r.method,
            "sigma_nm": r.sigma_nm,
            "count": int(r.n_rendered),
        },
    )
    shape = "x".join(map(str, r.image.shape))
    print(
        f"{args.out}: {shape} {r.method} image of {r.n_rendered} localizations at {r.pixel_size_nm:g} nm"
    )
    return 0


def _check_channels(path, df, wanted) -> None:
    """Refuse --channel values the file does not have (they would render an empty image)."""
    from napari_nucleus_ai.core.errors import UsageError

    have = sorted(set(df["channel"].astype(str))) if "channel" in df.columns else ["0"]
    missing = [c for c in wanted if str(c) not in have]
    if missing:
        shown = ", ".join(have[:12]) + (", ..." if len(have) > 12 else "")
        n = len(have)
        raise UsageError(
            f"render: --channel {missing[0]}: {path} has {n} channel{'s' if n != 1 else ''} ({shown})"
        )


def _frames(text):
    if not text:
        return None
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.params import command_param

    lo, sep, hi = text.partition(":")
    try:
        first, last = (int(lo) if lo else None, int(hi) if hi else None)
    except ValueError:
        raise InputError(None, f"--frames must be FIRST:LAST (got {text!r})") from None
    # the dock's first/last frame boxes take their limits from the same entries
    command_param("render", "frame_first").check(first, "render")
    command_param("render", "frame_last").check(last, "render")
    return first, last
