"""npe2 reader and writer entry points: files <-> layer data tuples.

Readers never raise for files they do not take (``get_reader`` returns None);
for files they take but cannot read, napari gets a one-line error notification
and no layer (the null-layer sentinel ``[(None,)]``). Besides the files a family
sniffs, the reader also takes files no reader can open but whose problem it can
name (:func:`claims_broken`): empty files, and ``.csv``/``.txt``/... files with
binary content or a table without known position columns. napari's own layer
CSVs (``axis-0`` columns) are left to napari.
"""

from __future__ import annotations

import os

from napari_nucleus_ai.core.errors import one_line


def _notify(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def get_reader(path):
    """npe2 ``get_reader``: a reader function for ``path`` or None."""
    if isinstance(path, list):
        if not path or not all(isinstance(p, str | os.PathLike) for p in path):
            return None
        if any(not _takes(p) for p in path):
            return None
        return read_paths
    if not isinstance(path, str | os.PathLike):
        return None
    if not _takes(path):
        return None
    return read_paths


def _takes(path) -> bool:
    from napari_nucleus_ai.io import family_for

    if os.path.isdir(path):  # only OME-Zarr stores (io.ngff sniffs folders)
        from napari_nucleus_ai.io.ngff import sniff

        return sniff(path)
    return family_for(path) is not None or claims_broken(path)


def claims_broken(path) -> bool:
    """True for files no reader can open whose problem this plugin can name (never raises)."""
    try:
        from napari_nucleus_ai.localizations.detect import TEXT_EXTENSIONS, head_text

        if not os.path.isfile(path):
            return False
        if os.path.getsize(path) == 0:
            return True
        if os.path.splitext(os.fspath(path))[1].lower() not in TEXT_EXTENSIONS:
            return False
        header = head_text(path, 4096).split("\n", 1)[0].lower()
        return "axis-0" not in header  # napari's points/shapes CSVs are napari's
    except Exception:  # noqa: BLE001 - a reader's get_reader never raises
        return False


def read_paths(path):
    """Read one path or a list of paths into layer data tuples (errors become notifications)."""
    from napari_nucleus_ai.io import read_layers

    paths = path if isinstance(path, list) else [path]
    layers = []
    for p in paths:
        try:
            layers.extend(read_layers(p))
        except Exception as e:  # noqa: BLE001 - every failure becomes one notification
            _notify(one_line(e, p))
    return layers or [(None,)]
