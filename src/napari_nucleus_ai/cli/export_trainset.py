"""``napari-nucleus-ai export-trainset STORE --out DIR``: reviewed cells as class folders."""

from __future__ import annotations

HELP = "export reviewed cells as a training set (class folders of crops or localization files)"


def add_arguments(p) -> None:
    p.add_argument("store", help="corrections store (.sqlite file, or the folder holding it)")
    p.add_argument("--out", required=True, help="output folder (one sub-folder per class)")
    p.add_argument(
        "--image",
        action="append",
        default=None,
        metavar="ID",
        help="image id to export (repeatable; default: every reviewed image)",
    )
    p.add_argument(
        "--include-predicted",
        action="store_true",
        help="also export unreviewed cells under the model's class",
    )
    p.add_argument(
        "--window",
        type=float,
        default=None,
        help="crop side in the cell table's unit (default: 1.5 x the 90th percentile cell)",
    )


def run(args) -> int:
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.review.export import export_training_set, items_from_store
    from napari_nucleus_ai.review.store import AnnotationStore, store_path

    path = store_path(args.store)
    if not path.exists():
        raise InputError(path, "no corrections store here")
    items = items_from_store(AnnotationStore(path), args.image)
    res = run_sync(
        export_training_set(
            args.out, items, include_predicted=args.include_predicted, window=args.window
        )
    )
    print(f"{res['files']} {res['kind']} in {res['out']}")
    for c, n in sorted(res["counts"].items()):
        print(f"  {c:<24} {n:>6}")
    return 0
