"""Readers and writers, Qt-free.

Each file family is a subpackage exposing the same three functions:

``sniff(path) -> bool``
    Cheap content check (a few bytes / the header); never raises.
``describe(path) -> dict``
    What ``napari-nucleus-ai info FILE --json`` prints; raises
    :class:`~napari_nucleus_ai.core.errors.InputError` for bad files.
``read_layers(path, **options) -> list[LayerDataTuple]``
    ``(data, kwargs, layer_type)`` tuples for napari; raises ``InputError``.

:mod:`napari_nucleus_ai.io.napari_io` dispatches over :data:`FAMILIES` in order.
"""

from __future__ import annotations

import importlib
import os

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.files import check_readable

# Order matters: the first family whose sniff() accepts a file reads it.
__all__ = ["FAMILIES", "describe", "family_for", "read_layers"]

# OME-Zarr stores are folders (the only family that takes one); GeoJSON before the tables.
FAMILIES = (
    "napari_nucleus_ai.io.ngff",
    "napari_nucleus_ai.io.geojson",
    "napari_nucleus_ai.localizations",
    "napari_nucleus_ai.images",
)


def _check_readable(path) -> None:
    """:func:`check_readable`, except that an OME-Zarr folder is readable."""
    if os.path.isdir(path):
        from napari_nucleus_ai.io.ngff import sniff as is_ngff

        if is_ngff(path):
            return
    check_readable(path)


def family_for(path: str | os.PathLike):
    """The family module that reads ``path``, or ``None``."""
    for name in FAMILIES:
        mod = importlib.import_module(name)
        try:
            if mod.sniff(path):
                return mod
        except Exception:  # a sniffer must never stop the search
            continue
    return None


def describe(path: str | os.PathLike) -> dict:
    """Describe a file with whichever family reads it."""
    _check_readable(path)
    mod = family_for(path)
    if mod is None:
        _unreadable(path)
    return mod.describe(path)


def read_layers(path: str | os.PathLike, **options) -> list:
    """Layer data tuples for ``path`` from whichever family reads it."""
    _check_readable(path)
    mod = family_for(path)
    if mod is None:
        _unreadable(path)
    return mod.read_layers(path, **options)


def _unreadable(path) -> None:
    """Raise the most useful one-line error for a file no family takes.

    A delimited table named ``.csv``/``.txt``/... is most likely a localization table
    whose columns are not recognised: say which columns it has and ask for a mapping.
    """
    from napari_nucleus_ai.localizations import read_localizations
    from napari_nucleus_ai.localizations.detect import (
        TEXT_EXTENSIONS,
        looks_binary,
        looks_like_table,
    )

    if os.path.splitext(path)[1].lower() in TEXT_EXTENSIONS:
        if looks_binary(path):
            raise InputError(
                path, "not a format napari-nucleus-ai can read (binary content, not a text table)"
            )
        if looks_like_table(path):
            try:
                read_localizations(path)
            except InputError as e:
                if "unknown columns" in e.problem:
                    raise
    raise InputError(path, "not a format napari-nucleus-ai can read")
