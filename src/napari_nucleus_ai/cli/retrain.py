"""``napari-nucleus-ai retrain MODEL CORRECTIONS``: fine-tune on corrections, new model version."""

from __future__ import annotations

HELP = "fine-tune a model on reviewed cells; saves the next version with metrics before and after"


def add_arguments(p) -> None:
    p.add_argument("model", help="base model package (folder, .zip or .safetensors)")
    p.add_argument(
        "corrections",
        help="a corrections store (.sqlite or its folder) or an exported "
        "training set (class folders)",
    )
    p.add_argument("--out", default=None, help="new package (default: beside MODEL as NAME-vN)")
    p.add_argument(
        "--image",
        action="append",
        default=None,
        metavar="ID",
        help="with a store: image ids to learn from (default: every reviewed image)",
    )
    p.add_argument(
        "--base-data",
        default=None,
        help="the base model's training data to replay (default: from its card if present)",
    )
    p.add_argument("--no-replay", action="store_true", help="learn from the corrections only")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument(
        "--holdout",
        type=float,
        default=0.25,
        help="fraction of corrected cells per class held out to score both models",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="auto, cuda, mps or cpu (default: the setting)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress, only the summary and errors")


def run(args) -> int:
    import tempfile
    from pathlib import Path

    from napari_nucleus_ai.cli._progress import ProgressPrinter
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.uncertainty import ACCURACY
    from napari_nucleus_ai.review.export import export_training_set, items_from_store
    from napari_nucleus_ai.review.retrain import retrain_gen, summary
    from napari_nucleus_ai.review.store import AnnotationStore, store_path

    opts = dict(
        base_data=False if args.no_replay else args.base_data,
        holdout=args.holdout,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    src = Path(args.corrections)
    with (
        tempfile.TemporaryDirectory(prefix="nucleus-ai-corrections-") as tmp,
        ProgressPrinter("retrain", quiet=args.quiet) as bar,
    ):
        if store_path(src).exists():
            items = items_from_store(AnnotationStore(store_path(src)), args.image)
            run_sync(export_training_set(tmp, items), bar)
            data = tmp
        else:
            data = src
        # the same core generator as the Review dock's Retrain
        res = run_sync(retrain_gen(args.model, data, args.out, **opts), bar)
    b, a = res["metrics_before"], res["metrics_after"]
    print(f"new model version {res['version']}: {res['out']}")
    print(f"{summary(res)}; accuracy {b[ACCURACY]:.3f} -> {a[ACCURACY]:.3f}")
    if res["skipped"]:
        print(f"skipped (classes the model lacks): {res['skipped']}")
    return 0
