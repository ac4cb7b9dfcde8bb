"""PBC (Acevedo et al. 2020): 17,092 CellaVision crops in 8 class folders.

The Mendeley download unpacks to ``PBC_dataset_normal_DIB/<class>/`` with the
folders ``basophil``, ``eosinophil``, ``erythroblast``, ``ig``, ``lymphocyte``,
``monocyte``, ``neutrophil`` and ``platelet`` (CytoDiffusion renames ``ig`` to
``immature granulocyte``; both are known). File names start with a code that is
finer than the folder: ``SNE_`` segmented and ``BNE_`` band neutrophils,
``PMY_`` / ``MY_`` / ``MMY_`` promyelocytes, myelocytes and metamyelocytes
inside ``ig``, and ``BA_``, ``EO_``, ``ERB_``, ``LY_``, ``MO_``, ``PLATELET_``.

By default the folder is the class and the prefix is checked against it (a
prefix of another class means a misplaced file: it is skipped and reported).
``fine=True`` uses the prefix as the class instead, which gives the Matek-like
sub-types (segmented vs band neutrophil, three immature granulocytes).
"""

from __future__ import annotations

from pathlib import Path

from napari_nucleus_ai.datasets.builder import Plan, Skip
from napari_nucleus_ai.datasets.folders import items_from_scan, scan

INFO = {
    "dataset": "PBC dataset normal DIB (peripheral blood cells, CellaVision DM96)",
    "citation": "Acevedo A, Merino A, Alferez S, Molina A, Boldu L, Rodellar J. A dataset of "
    "microscopic peripheral blood cell images for development of automatic recognition systems. "
    "Data in Brief 30, 105474 (2020), doi:10.1016/j.dib.2020.105474; Mendeley Data "
    "doi:10.17632/snkd93bnjr.1",
    "licence": "CC BY 4.0",
    "url": "https://data.mendeley.com/datasets/snkd93bnjr/1",
}


def prefix_of(name: str) -> str:
    """The PBC code in a file name: ``SNE_12345.jpg`` -> ``SNE``."""
    stem = Path(name).stem
    return stem.split("_", 1)[0] if "_" in stem else ""


def plan(source, *, vocab=None, fine: bool = False, split: str | None = None) -> Plan:
    """Read a PBC tree (see the module docstring)."""
    from napari_nucleus_ai.datasets.harmonise import load_vocabulary

    vocab = vocab or load_vocabulary()
    source = Path(source)
    found, skipped = scan(source, split=split)
    items = items_from_scan(found)
    kept = []
    unknown_prefix = 0
    for item in items:
        prefix = prefix_of(item.name)
        item.meta["prefix"] = prefix
        by_prefix = vocab.lookup("pbc-prefix", prefix) if prefix else None
        if fine:
            if by_prefix is None:
                skipped.append(
                    Skip(
                        item.meta["source"], "unknown class", f"unknown PBC file prefix {prefix!r}"
                    )
                )
                continue
            item.meta["folder"] = item.label
            item.label = by_prefix.label
        else:
            by_folder = vocab.lookup("pbc", item.label)
            if by_prefix is None:
                unknown_prefix += 1
            elif by_folder is not None and by_prefix.common != by_folder.common:
                skipped.append(
                    Skip(
                        item.meta["source"],
                        "misplaced file",
                        f"prefix {prefix} means {by_prefix.common} but the folder is {item.label}",
                    )
                )
                continue
        kept.append(item)
    return Plan(
        "pbc",
        "pbc-prefix" if fine else "pbc",
        source,
        dict(INFO),
        items=kept,
        skipped=skipped,
        notes={
            "classes_from": "file-name prefix" if fine else "folder",
            "files_without_known_prefix": unknown_prefix,
        },
    )
