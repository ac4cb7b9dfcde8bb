"""``napari-nucleus-ai export-bioimageio MODEL --out PKG.zip``: a bioimage.io model package."""

from __future__ import annotations

HELP = "export a classifier package as a bioimage.io model package (rdf.yaml 0.5; TorchScript and/or pytorch_state_dict)"


def add_arguments(p) -> None:
    p.add_argument("model", help="classifier package (folder, .zip or .safetensors)")
    p.add_argument("--out", required=True, metavar="PKG.zip", help="bioimage.io package to write")
    p.add_argument(
        "--sample",
        metavar="CROP",
        default=None,
        help="a cell crop (or STORM localization file) for the test tensors and the cover "
        "(default: a deterministic noise crop with the training set's statistics)",
    )
    p.add_argument(
        "--author",
        action="append",
        default=None,
        metavar="NAME",
        help="author (repeat for several; default: the plugin's author setting)",
    )
    p.add_argument(
        "--license", default="CC-BY-4.0", help="SPDX license of the weights (default CC-BY-4.0)"
    )
    p.add_argument(
        "--cite",
        action="append",
        default=None,
        metavar="'TEXT|DOI_OR_URL'",
        help="a citation to add (repeatable), e.g. 'Our paper, 2025|10.1234/abcd'",
    )
    p.add_argument("--tag", action="append", default=None, help="an extra tag (repeatable)")
    p.add_argument("--description", default=None, help="one-paragraph description")
    p.add_argument(
        "--tta",
        type=int,
        default=None,
        help="test-time transforms inside the exported network (default: the card's)",
    )
    p.add_argument(
        "--no-state-dict",
        action="store_true",
        help="write TorchScript weights only (no pytorch_state_dict; refused for morph, which has no TorchScript)",
    )
    p.add_argument(
        "--no-validate", action="store_true", help="do not check the package with bioimageio.spec"
    )


def run(args) -> int:
    import sys

    from napari_nucleus_ai.models.bioimageio import export_bioimageio

    res = export_bioimageio(
        args.model,
        args.out,
        sample=args.sample,
        authors=args.author,
        license=args.license,
        cite=args.cite,
        tags=args.tag,
        description=args.description,
        tta=args.tta,
        state_dict=not args.no_state_dict,
        validate=not args.no_validate,
    )
    print(
        f"{res['path']}: bioimage.io model, {len(res['classes'])} classes, weights "
        f"{' + '.join(res['weights'])}; validation: {res['status']}"
    )
    if res["status"] == "not validated":
        print(f"napari-nucleus-ai: {res['validation']}", file=sys.stderr)
    else:
        print(res["validation"])
    return 0
