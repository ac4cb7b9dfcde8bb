"""npe2 reader and writer entry points: files <-> layer data tuples.

Readers never raise for files they do not take (``get_reader`` returns None);
for files they take but cannot read, napari gets a one-line error notification
and no layer (the null-layer sentinel ``[(None,)]``).
"""

from __future__ import annotations

import os

from ..errors import one_line


def _notify(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def get_reader(path):
    """npe2 ``get_reader``: a reader function for ``path`` or None."""
    from . import family_for

    if isinstance(path, list):
        if not path or not all(isinstance(p, str | os.PathLike) for p in path):
            return None
        if any(os.path.isdir(p) or family_for(p) is None for p in path):
            return None
        return read_paths
    if not isinstance(path, str | os.PathLike) or os.path.isdir(path):
        return None
    if family_for(path) is None:
        return None
    return read_paths


def read_paths(path):
    """Read one path or a list of paths into layer data tuples (errors become notifications)."""
    from . import read_layers

    paths = path if isinstance(path, list) else [path]
    layers = []
    for p in paths:
        try:
            layers.extend(read_layers(p))
        except Exception as e:  # noqa: BLE001 - every failure becomes one notification
            _notify(one_line(e, p))
    return layers or [(None,)]
