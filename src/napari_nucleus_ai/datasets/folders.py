"""Class-folder layouts: every folder that directly holds images is a class.

PBC, Raabin-WBC and many Kaggle-style sets ship as ``<split>/<class>/<image>``;
the folder name is the label the vocabulary maps. Splits (``Train``,
``TestA``...) are recorded per file and can be selected.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.datasets.builder import IMAGE_SUFFIXES, Item, Skip

IGNORED = {"thumbs.db", "desktop.ini"}


def scan(
    source: Path, *, split: str | None = None
) -> tuple[list[tuple[Path, str, str]], list[Skip]]:
    """``(file, folder label, split)`` for every image below ``source``, and what was skipped.

    ``split`` keeps only files with a folder of that name (case ignored) on
    their path below ``source``.
    """
    if not source.is_dir():
        raise InputError(source, "no such folder" if not source.exists() else "is not a folder")
    found, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        rel = here.relative_to(source)
        if rel == Path("."):
            continue  # files at the top are not in a class folder
        parts = rel.parts
        if split is not None and split.casefold() not in (p.casefold() for p in parts[:-1]):
            continue
        group = "/".join(parts[:-1])
        for name in sorted(filenames):
            if name.startswith(".") or name.lower() in IGNORED:
                continue
            path = here / name
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.append((path, parts[-1], group))
            else:
                skipped.append(Skip(str(path), "not an image", f"suffix {path.suffix or '(none)'}"))
    if not found:
        where = f" in split {split!r}" if split else ""
        raise InputError(
            source, f"no class folders with images found{where} (expected <class>/<image>)"
        )
    return found, skipped


def items_from_scan(found: list[tuple[Path, str, str]]) -> list[Item]:
    return [
        Item(label=label, name=path.name, path=path, meta={"source": str(path), "split": group})
        for path, label, group in found
    ]


INFO = {
    "dataset": "class folders",
    "citation": "",
    "licence": "as given by the data's owner (pass --licence)",
    "url": "",
}


def plan(source, *, vocab=None, split: str | None = None):
    """Any ``<class>/<image>`` tree (Kaggle-style sets, a lab's own crops): folder = class.

    Labels are kept as they are (``--labels common`` maps them through the
    vocabulary's ``folders`` rows and any data set's names and codes).
    """
    from napari_nucleus_ai.datasets.builder import Plan

    source = Path(source)
    found, skipped = scan(source, split=split)
    return Plan(
        "folders",
        "folders",
        source,
        dict(INFO),
        items=items_from_scan(found),
        skipped=skipped,
        vocabulary_required=False,
        notes={"split": split or "all"},
    )
