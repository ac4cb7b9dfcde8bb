"""``napari-nucleus-ai import-bioimageio PKG.zip --out MODEL.zip``: back to a model package."""

from __future__ import annotations

HELP = (
    "turn a bioimage.io package exported by napari-nucleus-ai back into a model package "
    "(no code from the file is run)"
)


def add_arguments(p) -> None:
    p.add_argument("package", help="bioimage.io package (.zip or unpacked folder)")
    p.add_argument(
        "--out",
        required=True,
        metavar="MODEL.zip",
        help="model package to write (.zip, .safetensors or a folder)",
    )


def run(args) -> int:
    from napari_nucleus_ai.models.bioimageio import import_bioimageio
    from napari_nucleus_ai.models.package import load_model

    out = import_bioimageio(args.package, args.out)
    pkg = load_model(out, cache=False)
    print(
        f"{out}: {pkg.card['architecture']['name']} classifier {pkg.name!r}, "
        f"classes {', '.join(pkg.classes)}"
    )
    return 0
