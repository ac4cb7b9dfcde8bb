"""``napari-nucleus-ai info FILE``: what the plugin's readers see in a file."""

from __future__ import annotations

HELP = "describe a file as the plugin's readers see it (format, size, scale, channels)"


def add_arguments(p) -> None:
    from napari_nucleus_ai.cli._localization_options import add_localization_options

    p.add_argument("file", help="a localization table, image, slide or stack")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_localization_options(p)


def run(args) -> int:
    import json

    from napari_nucleus_ai.io import describe

    info = describe(args.file)
    if args.json:
        print(json.dumps(info, default=_jsonable))
    else:
        width = max(len(k) for k in info) if info else 0
        for key, value in info.items():
            print(f"{key:<{width}}  {_jsonable(value) if not isinstance(value, str) else value}")
    return 0


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    return str(value)
