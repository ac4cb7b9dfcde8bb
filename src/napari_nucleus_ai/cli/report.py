"""``napari-nucleus-ai report STORE``: differential count per image or slide (CSV, PNG, HTML)."""

from __future__ import annotations

HELP = (
    "differential count report from reviewed cells: counts, percentages, blasts, chart, HTML; "
    "reliability diagram and ECE of the model on the reviewed cells"
)


def add_arguments(p) -> None:
    p.add_argument("store", help="corrections store (.sqlite file, or the folder holding it)")
    p.add_argument(
        "--image",
        action="append",
        default=None,
        metavar="ID",
        help="image id to include (repeat for the fields of a slide; default: all)",
    )
    p.add_argument(
        "--cells",
        default=None,
        metavar="CSV",
        help="use this cell table (e.g. classify's cells.csv) instead of a saved session",
    )
    p.add_argument(
        "--image-id", default=None, help="the store's id of --cells' image (default: the CSV name)"
    )
    p.add_argument("--out", default=None, help="output folder (default: STORE_FOLDER/reports)")
    p.add_argument("--title", default=None, help="report title (default: the image, or 'N images')")
    p.add_argument("--stem", default="report", help="file name stem of the outputs")
    p.add_argument("--per-image", action="store_true", help="also write one report per image")
    p.add_argument(
        "--blast-classes", default=None, help="comma-separated classes counted as blasts"
    )


def run(args) -> int:
    from pathlib import Path

    from napari_nucleus_ai.cells import read_cell_table
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.review.report import build_report, calibration_text, write_report
    from napari_nucleus_ai.review.session import load_session
    from napari_nucleus_ai.review.store import AnnotationStore, store_path

    path = store_path(args.store)
    if not path.exists():
        raise InputError(path, "no corrections store here")
    store = AnnotationStore(path)
    tables, classes, models = {}, [], []
    if args.cells:
        image_id = args.image_id or Path(args.cells).name
        tables[image_id] = read_cell_table(args.cells)
        classes = [c[2:] for c in tables[image_id].columns if c.startswith("p_")]
    else:
        ids = args.image or [
            i for i in store.images() if (store.image_info(i) or {}).get("session")
        ]
        if not ids:
            raise InputError(path, "no reviewed images with a saved session; give --cells")
        for image_id in ids:
            s = load_session(store, image_id)
            if s is None:
                raise InputError(path, f"no saved session for image {image_id!r}")
            tables[image_id] = s.table
            classes += [c for c in (s.info.get("classes") or []) if c not in classes]
            models += [s.info["model"]] if s.info.get("model") else []
    corrections = {i: store.labels(i) for i in tables}
    authors = sorted({a for i in tables for a in store.history(i)["author"]})
    blasts = args.blast_classes.split(",") if args.blast_classes else None
    out = Path(args.out) if args.out else path.parent / "reports"
    rep = build_report(
        tables,
        corrections,
        classes,
        title=args.title,
        blast_classes=blasts,
        authors=authors,
        models=models,
    )
    paths = write_report(rep, out, args.stem)
    if args.per_image and len(tables) > 1:
        from napari_nucleus_ai.core.files import slug

        for i, t in tables.items():
            r = build_report(
                {i: t},
                {i: corrections[i]},
                classes,
                blast_classes=blasts,
                authors=authors,
                models=models,
            )
            write_report(r, out, f"{args.stem}-{slug(i)}")
    print(
        f"{rep.title}: {rep.total} cells, {rep.reviewed} reviewed, {rep.unreviewed} unreviewed; "
        f"blasts {rep.blast_percent:.1f} %"
    )
    for _, r in rep.counts.iterrows():
        pct = f"{r['percent']:5.1f} %" if r["counted"] else "  (not counted)"
        print(f"  {r['class']:<24} {r['count']:>6}  {pct}")
    if rep.calibration:
        print(f"calibration: {calibration_text(rep)}")
    for kind, p in paths.items():
        print(f"{kind}: {p}")
    return 0
