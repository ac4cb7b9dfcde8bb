"""``napari-nucleus-ai predict MODEL INPUT... --out PREDS.csv``: classify crops or nuclei."""

from __future__ import annotations

from napari_nucleus_ai.cli._inference_options import add_inference_options
from napari_nucleus_ai.cli._localization_options import add_localization_options

HELP = "classify image crops or STORM localization files with a model package; write a CSV"


def add_arguments(p) -> None:
    p.add_argument("model", help="model package (folder, .zip or .safetensors)")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="crop images or localization files (folders are expanded)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="PREDS.csv",
        help="CSV: path, label, uncertainty, p_<class>...",
    )
    add_inference_options(p)
    p.add_argument(
        "--pixel-size",
        type=float,
        help="pixel size of the crops: a model with the canonical cell frame then scales the "
        "cell physically (default: unknown, the cell is measured)",
    )
    p.add_argument(
        "--unit", default="um", choices=("um", "nm"), help="unit of --pixel-size (default um)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress, only the summary and errors")
    add_localization_options(p)  # --camera-pixel, --columns (localization inputs)


def expand_inputs(inputs) -> list[str]:
    import os

    out = []
    for item in inputs:
        if os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                out += [
                    os.path.join(root, f) for f in sorted(files) if not f.startswith((".", "_"))
                ]
        else:
            out.append(item)
    return out


def warn_out_of_domain(table, where: str) -> None:
    """One warning line when most cells of ``table`` are out of the model's domain."""
    import sys

    from napari_nucleus_ai.models.trust import domain_warning, routing_note

    if "routed" in table.columns:
        msg = routing_note(table["routed"].dropna().astype(bool), where)
        if msg:
            print(f"napari-nucleus-ai: note: {msg}", file=sys.stderr)
    if "out_of_domain" in table.columns:
        msg = domain_warning(table["out_of_domain"].dropna().astype(bool), where)
        if msg:
            print(f"napari-nucleus-ai: warning: {msg}", file=sys.stderr)


def run(args) -> int:
    import sys

    from napari_nucleus_ai.classify.predict import predict_paths_gen
    from napari_nucleus_ai.cli._outputs import check_out_file
    from napari_nucleus_ai.cli._progress import ProgressPrinter
    from napari_nucleus_ai.core.files import atomic_write
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.models.framing import pixel_size_um

    check_out_file(args.out, (".csv",), "CSV table")  # before any inference
    notes: list[str] = []
    with ProgressPrinter("predict", quiet=args.quiet) as bar:
        df = run_sync(
            predict_paths_gen(
                args.model,
                expand_inputs(args.inputs),
                device=args.device,
                batch_size=args.batch_size,
                tta=args.tta,
                mc_dropout=args.mc_dropout,
                threshold=args.threshold,
                notes=notes,
                proposer=args.proposer,
                adapt=args.adapt,
                pixel_size_um=pixel_size_um(args.pixel_size, args.unit),
                skip_bad=True,
            ),
            bar,
        )
    for note in notes:
        print(f"napari-nucleus-ai: {note}", file=sys.stderr)
    warn_out_of_domain(df, "these inputs")
    with atomic_write(args.out, "w", newline="") as fh:
        df.to_csv(fh, index=False)
    failed = df[df["error"] != ""] if "error" in df.columns else df.iloc[:0]
    counts = df["label"].dropna().value_counts().to_dict()
    print(
        f"{args.out}: {len(df)} inputs; "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        + (f"; {len(failed)} failed" if len(failed) else "")
    )
    for _, r in failed.iterrows():
        print(f"  failed: {r['error']}", file=sys.stderr)
    return 2 if len(failed) else 0
