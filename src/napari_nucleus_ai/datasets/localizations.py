"""A folder of localization files plus a CSV of labels (AINU-style STORM nuclei).

AINU's data are one STORM acquisition per nucleus, labelled by cell state
(somatic vs hiPSC, treated vs control). Labs keep them as a folder of exports
(ThunderSTORM CSV, N-STORM TXT, Picasso HDF5...) and a table naming each file's
class::

    nuclei/
        labels.csv          file,label
        cell001.csv         cell001.csv,somatic
        cell002.csv         cell002.csv,hiPSC

The CSV needs a file column (``file``, ``path`` or ``filename``; paths relative to
the CSV or to the folder) and a label column (``label``, ``class``, ``condition``
or ``group``). Every file must be read by the plugin's localization readers;
Picasso's ``.yaml`` side-files travel with their ``.hdf5``. Files not in the
CSV are reported as unlabelled.
"""

from __future__ import annotations

import csv
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.datasets.builder import Item, Plan, Skip

INFO = {
    "dataset": "localization files with a label table",
    "citation": "",
    "licence": "as given by the data's owner (pass --licence)",
    "url": "",
}
FILE_COLUMNS = ("file", "path", "filename", "name")
LABEL_COLUMNS = ("label", "class", "condition", "group", "category")
SIDE_SUFFIXES = (".yaml", ".yml")


def _find_csv(source: Path, labels_csv: str | None) -> Path:
    if labels_csv:
        p = Path(labels_csv)
        if not p.is_absolute() and not p.exists():
            p = source / labels_csv
        if not p.is_file():
            raise InputError(labels_csv, "no such labels CSV")
        return p
    for name in ("labels.csv", "classes.csv", "annotations.csv"):
        if (source / name).is_file():
            return source / name
    raise InputError(source, "no labels.csv in the folder (give the label table with --labels-csv)")


def plan(source, *, vocab=None, labels_csv: str | None = None) -> Plan:
    """Read a folder of localization files and its label table (see the module docstring)."""
    source = Path(source)
    if not source.is_dir():
        raise InputError(source, "no such folder" if not source.exists() else "is not a folder")
    table = _find_csv(source, labels_csv)
    try:
        with open(table, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = {c.strip().lower(): c for c in (reader.fieldnames or []) if c}
            rows = list(reader)
    except UnicodeDecodeError:
        raise InputError(table, "labels CSV is not text") from None
    file_col = next((cols[c] for c in FILE_COLUMNS if c in cols), None)
    label_col = next((cols[c] for c in LABEL_COLUMNS if c in cols), None)
    if file_col is None or label_col is None:
        raise InputError(
            table,
            f"labels CSV needs a file column ({'/'.join(FILE_COLUMNS)}) and a label "
            f"column ({'/'.join(LABEL_COLUMNS)}); found {', '.join(cols) or 'none'}",
        )
    result = Plan(
        "localizations",
        "localizations",
        source,
        dict(INFO),
        modality="localizations",
        vocabulary_required=False,
        notes={"labels_csv": str(table.absolute())},
    )
    listed = {table.resolve()}
    for lineno, row in enumerate(rows, start=2):
        name = (row.get(file_col) or "").strip()
        label = (row.get(label_col) or "").strip()
        if not name:
            continue
        path = next((p for p in (table.parent / name, source / name) if p.is_file()), source / name)
        listed.add(path.resolve())
        if not label:
            result.skipped.append(
                Skip(str(path), "unlabelled", f"{table.name} line {lineno} has no label")
            )
            continue
        if not path.is_file():
            result.skipped.append(
                Skip(str(path), "missing file", f"listed in {table.name} line {lineno}")
            )
            continue
        side = [p for p in (path.with_suffix(s) for s in SIDE_SUFFIXES) if p.is_file()]
        listed.update(p.resolve() for p in side)
        result.items.append(
            Item(
                label=label,
                name=path.name,
                path=path,
                meta={"source": str(path), "side_files": ";".join(p.name for p in side)},
            )
        )
    for p in sorted(source.rglob("*")):
        if p.is_file() and not p.name.startswith(".") and p.resolve() not in listed:
            if p.suffix.lower() in SIDE_SUFFIXES and p.with_suffix(".hdf5").exists():
                continue
            result.skipped.append(Skip(str(p), "unlabelled", f"not listed in {table.name}"))
    return result
