"""Public data sets into training folders: ``napari-nucleus-ai import-dataset``.

One module per source layout reads it into a :class:`~.builder.Plan`;
:func:`~.builder.build` writes the folder ``train`` reads (``OUT/<class>/<file>``)
with ``_manifest.json`` (source, licence, citation, counts per class, the
annotation used), ``_files.csv`` and ``_skipped.csv``. Labels become classes
through the vocabulary in :mod:`.harmonise` (data: ``vocabulary.csv``).
No heavy imports at module level.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Generator
from typing import Any

from napari_nucleus_ai.core.errors import InputError

# KIND -> (module, one-line description); the order is the order in --help.
KINDS: dict[str, tuple[str, str]] = {
    "matek": (".matek", "AML-Cytomorphology_LMU (TCIA): TIFF tree + annotations.dat, 15 classes"),
    "pbc": (".pbc", "PBC (Acevedo 2020): class folders of CellaVision crops, 8 classes"),
    "voc": (".voc", "Pascal-VOC boxes (BCCD...): square crops around the boxes"),
    "bccd": (".voc", "alias of voc"),
    "bloodmnist": (".medmnist", "BloodMNIST (MedMNIST v2) .npz, 8 classes"),
    "raabin": (".raabin", "Raabin-WBC: Train/TestA/TestB class folders, 5 classes"),
    "localizations": (
        ".localizations",
        "folder of localization files + CSV of labels (AINU-style)",
    ),
    "folders": (".folders", "any <class>/<image> tree (Kaggle-style sets, your own crops)"),
}


__all__ = ["KINDS", "import_dataset", "kind_module", "kind_options"]


def kind_module(kind: str):
    """The importer module for ``kind``."""
    try:
        modname = KINDS[kind.lower()][0]
    except KeyError:
        raise InputError(
            None, f"unknown dataset kind {kind!r}; one of {', '.join(KINDS)}"
        ) from None
    return importlib.import_module(modname, __name__)


def kind_options(kind: str) -> list[str]:
    """The keyword options ``kind``'s ``plan()`` takes."""
    sig = inspect.signature(kind_module(kind).plan)
    return [n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY and n != "vocab"]


def import_dataset(
    kind: str,
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: str = "native",
    vocabulary: str | os.PathLike | None = None,
    link: str = "copy",
    fmt: str = "copy",
    verify: bool = True,
    strict: bool = False,
    overwrite: bool = False,
    info: dict[str, str] | None = None,
    **options: Any,
) -> Generator:
    """Import ``source`` of ``kind`` into the training folder ``out``.

    A core generator: yields :class:`~napari_nucleus_ai.core.progress.Progress`,
    returns a :class:`~.builder.Report`. Drive it with
    :func:`napari_nucleus_ai.core.progress.run_sync`.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    source, out : path
        The downloaded data set; the training folder to create.
    labels : {"native", "common", "code"}
        Class names: this plugin's name per cell type, the shared coarse
        vocabulary, or the source's own codes.
    vocabulary : path, optional
        A user's vocabulary CSV layered over the shipped one.
    link : {"copy", "hardlink", "symlink"}
        How source files get into ``out`` (crops and npz images are written).
    fmt : {"copy", "png", "csv"}
        Keep files as they are, re-encode every image as RGB PNG, or rewrite
        every localization file as a ThunderSTORM CSV in nm (files that need a
        side-file, e.g. Picasso HDF5 + YAML, are always rewritten so).
    verify : bool
        Decode every image (read every localization file) first; unreadable
        ones are skipped and reported.
    strict : bool
        Stop at the first problem instead of skipping and reporting it.
    overwrite : bool
        Replace an existing folder made by ``import-dataset``.
    info : dict, optional
        Overrides for the manifest's ``dataset``, ``licence``, ``citation``, ``url``.
    **options
        Kind-specific options (see :func:`kind_options`), e.g. ``annotation``
        for Matek, ``size`` for VOC crops, ``split`` for BloodMNIST/Raabin.
    """
    from napari_nucleus_ai.datasets.builder import build
    from napari_nucleus_ai.datasets.harmonise import load_vocabulary

    mod = kind_module(kind)
    allowed = kind_options(kind)
    unknown = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if unknown:
        raise InputError(None, f"{kind} does not take option(s) {', '.join(unknown)}")
    vocab = load_vocabulary(vocabulary)
    plan = mod.plan(source, vocab=vocab, **{k: v for k, v in options.items() if v is not None})
    plan.info.update({k: v for k, v in (info or {}).items() if v})
    used = {k: v for k, v in options.items() if v is not None}
    used.update(labels=labels, link=link, format=fmt, verify=verify)
    return (
        yield from build(
            plan,
            out,
            labels=labels,
            vocabulary=vocab,
            link=link,
            fmt=fmt,
            verify=verify,
            strict=strict,
            overwrite=overwrite,
            options=used,
        )
    )
