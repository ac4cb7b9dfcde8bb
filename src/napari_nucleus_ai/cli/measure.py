"""``napari-nucleus-ai measure LOCS [--merge] [--nena] [--frc] [--cluster M] --out TABLE.csv``."""

from __future__ import annotations

HELP = "measure a localization file: blink merging, NeNA precision, FRC resolution, clusters"


def add_arguments(p) -> None:
    p.add_argument("file", help="a localization table (ThunderSTORM, N-STORM, Picasso, SMAP, ...)")
    p.add_argument(
        "--out",
        required=True,
        help="output CSV: one row per cluster with --cluster, else one summary row",
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--merge", action="store_true", help="merge blinks before FRC / clustering")
    p.add_argument("--radius", type=float, default=30.0, help="merge radius in nm (default 30)")
    p.add_argument(
        "--precision-factor",
        type=float,
        default=None,
        help="merge within K x the larger precision instead of --radius",
    )
    p.add_argument(
        "--dark", type=int, default=1, help="dark frames a merged molecule may bridge (default 1)"
    )
    p.add_argument("--nena", action="store_true", help="NeNA localization precision")
    p.add_argument(
        "--nena-model",
        choices=("endesfelder", "picasso", "locan"),
        default="endesfelder",
        help="NeNA fit: the published three-term model (default), Picasso's two-term one or "
        "Locan's nearest-neighbour estimate",
    )
    p.add_argument(
        "--nena-range",
        type=float,
        default=150.0,
        help="largest next-frame distance in nm (150; Picasso uses one camera pixel)",
    )
    p.add_argument("--frc", action="store_true", help="FRC resolution (1/7 threshold)")
    p.add_argument("--frc-pixel", type=float, default=10.0, help="FRC render pixel nm (10)")
    p.add_argument("--frc-splits", type=int, default=5, help="random splits averaged (5)")
    p.add_argument("--cluster", choices=("dbscan", "hdbscan", "optics"), default=None)
    p.add_argument("--eps", type=float, default=20.0, help="DBSCAN / OPTICS radius nm (20)")
    p.add_argument("--min", dest="min_samples", type=int, default=5, help="min samples (5)")
    p.add_argument(
        "--density-factor",
        type=float,
        default=None,
        help="HDBSCAN / OPTICS noise rule: localizations below F x the field's mean density "
        "are noise (default 5; 0 = scikit-learn's labels)",
    )
    from napari_nucleus_ai.cli._localization_options import add_localization_options

    add_localization_options(p)  # --camera-pixel, --columns


def run(args) -> int:
    import json

    import pandas as pd

    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.files import atomic_write
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.localizations import read_localizations
    from napari_nucleus_ai.localizations.analysis.measure import measure_gen

    if not (args.merge or args.nena or args.frc or args.cluster):
        raise InputError(None, "nothing to measure: give --merge, --nena, --frc or --cluster")
    from napari_nucleus_ai.cli._localization_options import reading_kwargs

    table = read_localizations(args.file, **reading_kwargs(args))
    r = run_sync(
        measure_gen(
            table.data,
            merge=args.merge,
            radius_nm=args.radius,
            max_dark_frames=args.dark,
            precision_factor=args.precision_factor,
            nena=args.nena,
            nena_model=args.nena_model,
            nena_range_nm=args.nena_range,
            frc=args.frc,
            frc_pixel_nm=args.frc_pixel,
            frc_splits=args.frc_splits,
            cluster=args.cluster,
            eps_nm=args.eps,
            min_samples=args.min_samples,
            density_factor=args.density_factor,
        )
    )
    summary = {"file": table.path, "format": table.format, **r.summary}
    if r.merge is not None:
        summary["merge"] = r.merge.info
    out = None
    if r.cluster is not None:
        summary["cluster"] = {"method": r.cluster.method, **r.cluster.params}
        out = r.cluster.clusters
    if out is None:
        flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
        out = pd.DataFrame([flat])
    with atomic_write(args.out, "w", newline="") as fh:
        out.to_csv(fh, index=False)
    if args.json:
        clean = {k: None if isinstance(v, float) and v != v else v for k, v in summary.items()}
        print(json.dumps(clean, default=_jsonable))
    else:
        parts = [f"{k}={_fmt(v)}" for k, v in summary.items() if not isinstance(v, dict)]
        print(f"{args.out}: " + " ".join(parts[2:]))
    return 0


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _jsonable(v):
    import numpy as np

    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
