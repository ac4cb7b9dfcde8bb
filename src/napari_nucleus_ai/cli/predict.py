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


def run(args) -> int:
    import sys

    from napari_nucleus_ai.classify.predict import predict_paths
    from napari_nucleus_ai.core.files import atomic_write

    notes: list[str] = []
    df = predict_paths(
        args.model,
        expand_inputs(args.inputs),
        device=args.device,
        batch_size=args.batch_size,
        tta=args.tta,
        mc_dropout=args.mc_dropout,
        threshold=args.threshold,
        notes=notes,
        proposer=args.proposer,
    )
    for note in notes:
        print(f"napari-nucleus-ai: {note}", file=sys.stderr)
    with atomic_write(args.out, "w", newline="") as fh:
        df.to_csv(fh, index=False)
    counts = df["label"].value_counts().to_dict()
    print(
        f"{args.out}: {len(df)} inputs; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    )
    return 0
