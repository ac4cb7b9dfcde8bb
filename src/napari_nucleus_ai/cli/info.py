"""``napari-nucleus-ai info FILE``: what the plugin's readers see in a file or a model package."""

from __future__ import annotations

HELP = (
    "describe a file as the plugin's readers see it (format, size, scale, channels), or a "
    "model package (classes, input, uncertainty, trust, training, SHA-256)"
)


def add_arguments(p) -> None:
    from napari_nucleus_ai.cli._localization_options import add_localization_options

    p.add_argument(
        "file",
        help="a localization table, image, slide or stack, or a model package (folder, .zip or "
        ".safetensors)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_localization_options(p)


def run(args) -> int:
    import json

    info = describe(args.file)
    if args.json:
        print(json.dumps(info, default=_jsonable))
    elif info.get("kind") == "model package":
        _print_tree(info)
    else:
        width = max(len(k) for k in info) if info else 0
        for key, value in info.items():
            print(f"{key:<{width}}  {_jsonable(value) if not isinstance(value, str) else value}")
    return 0


def describe(path) -> dict:
    """A model package's summary (:func:`~napari_nucleus_ai.models.describe.describe_package`)
    when ``path`` holds one, or is named like one and no data reader takes it (the package
    reader's one-line error then); otherwise what the data readers see
    (:func:`napari_nucleus_ai.io.describe`)."""
    from pathlib import Path

    from napari_nucleus_ai.io import describe as describe_data
    from napari_nucleus_ai.io import family_for
    from napari_nucleus_ai.models.describe import PACKAGE_SUFFIXES, describe_package, is_package

    if is_package(path) or (
        Path(path).suffix.lower() in PACKAGE_SUFFIXES and family_for(path) is None
    ):
        return describe_package(path)
    return describe_data(path)


def _print_tree(info: dict, indent: int = 0) -> None:
    """Nested entries indented under their key; a list of objects (the classes, the files)
    one aligned line each; yes/no for true/false; entries without a value left out."""
    pad = " " * indent
    shown = {k: v for k, v in info.items() if v is not None and v != {}}
    width = max((len(k) for k, v in shown.items() if not _nested(v)), default=0)
    for key, value in shown.items():
        if isinstance(value, dict):
            print(f"{pad}{key}")
            _print_tree(value, indent + 2)
        elif _nested(value):
            print(f"{pad}{key}")
            rows = [[_text(v) for v in item.values()] for item in value]
            widths = [
                max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))
            ]
            for row in rows:
                cells = [f"{c:<{w}}" for c, w in zip(row, widths, strict=False)]
                print(f"{pad}  " + "  ".join(cells).rstrip())
        else:
            print(f"{pad}{key:<{width}}  {_text(value)}")


def _nested(value) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    return str(value)


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)
