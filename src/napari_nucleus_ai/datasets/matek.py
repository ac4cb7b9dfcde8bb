"""Matek et al. AML-Cytomorphology_LMU (TCIA): 18,365 single-cell TIFFs in 15 classes.

The download unpacks to a tree of class folders named by code plus one
annotation file::

    AML-Cytomorphology_LMU/
        annotations.dat
        AML-Cytomorphology/
            BAS/BAS_0001.tiff ... NGS/NGS_8484.tiff

``annotations.dat`` has one space-separated line per image: its path relative
to the tree, the original label, and the labels of two re-annotations by
other experts (``nan``: not re-annotated; ``UNC``: the re-annotator could not
assign a class)::

    BAS/BAS_0001.tiff BAS nan nan
    EBO/EBO_0014.tiff EBO LYT EBO

Which annotation to trust is a choice (``annotation=``):

``original`` (default)
    the label given by the first expert (the paper's ground truth).
``first`` / ``second``
    the first / second re-annotation where there is one, else the original;
    ``UNC`` images are skipped.
``agreed``
    only images on which every annotation made agrees (``UNC`` disagrees).
``majority``
    the label at least two of the three annotations share; images without
    such a majority (only possible where both re-annotations exist) and
    ``UNC`` majorities are skipped. Images never re-annotated keep the original.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.datasets.builder import Item, Plan, Skip

INFO = {
    "dataset": "AML-Cytomorphology_LMU (Munich AML Morphology Dataset)",
    "citation": "Matek C, Schwarz S, Marr C, Spiekermann K. A Single-cell Morphological Dataset of "
    "Leukocytes from AML Patients and Non-malignant Controls. The Cancer Imaging Archive (2019), "
    "doi:10.7937/tcia.2019.36f5o9ld; Matek et al., Nat Mach Intell 1, 538-544 (2019)",
    "licence": "CC BY 3.0 (TCIA data usage policy)",
    "url": "https://www.cancerimagingarchive.net/collection/aml-cytomorphology_lmu/",
}
ANNOTATIONS = ("original", "first", "second", "agreed", "majority")
ANNOTATION_FILE = "annotations.dat"
MISSING = "nan"
UNCERTAIN = "UNC"


def find_annotations(source: Path) -> Path:
    """``annotations.dat`` in ``source`` or up to two folders below it."""
    if source.is_file():
        return source
    for depth in range(3):
        pattern = "/".join(["*"] * depth + [ANNOTATION_FILE])
        found = sorted(source.glob(pattern))
        if found:
            return found[0]
    raise InputError(
        source,
        f"no {ANNOTATION_FILE} found (the TCIA download has it beside the "
        "AML-Cytomorphology folder; give it with --annotations)",
    )


def parse_annotations(path: Path) -> tuple[list[tuple[int, str, str, str, str]], list[Skip]]:
    """``(line, image, original, re1, re2)`` rows, and the lines that are not such rows."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InputError(path, f"{ANNOTATION_FILE} is not text") from None
    rows, bad = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4:
            bad.append(
                Skip(
                    f"{path}:{lineno}",
                    "bad annotation line",
                    f"expected 'path label re-annotation1 re-annotation2', got {line.strip()[:80]!r}",
                )
            )
            continue
        rows.append((lineno, *fields))
    if not rows:
        raise InputError(path, f"no annotation lines in {ANNOTATION_FILE}")
    return rows, bad


def find_image_root(source: Path, annotations: Path, first_image: str) -> Path:
    """The folder the annotation paths are relative to."""
    bases = [source, annotations.parent]
    candidates = []
    for base in bases:
        if base.is_dir():
            candidates += [base, *sorted(p for p in base.iterdir() if p.is_dir())]
    for c in candidates:
        if (c / first_image).exists():
            return c
    # no first image: fall back to the folder holding code sub-folders
    code = first_image.split("/")[0]
    for c in candidates:
        if (c / code).is_dir():
            return c
    raise InputError(
        source,
        f"cannot find the image tree ({first_image} is not below {source} or its sub-folders)",
    )


def choose(original: str, re1: str, re2: str, annotation: str) -> tuple[str | None, str]:
    """The label to trust under ``annotation``, or ``None`` with the reason."""
    done = [a for a in (re1, re2) if a != MISSING]
    if annotation == "original":
        return original, ""
    if annotation in ("first", "second"):
        value = re1 if annotation == "first" else re2
        if value == MISSING:
            return original, ""
        if value == UNCERTAIN:
            return None, f"{annotation} re-annotation is UNC (could not be assigned)"
        return value, ""
    if annotation == "agreed":
        votes = [original, *done]
        if all(v == original for v in votes):
            return original, ""
        return None, "annotations disagree: " + " / ".join(votes)
    if annotation == "majority":
        votes = [original, *done]
        if not done:
            return original, ""
        label, n = Counter(votes).most_common(1)[0]
        if n >= 2 and label != UNCERTAIN:
            return label, ""
        return None, "no majority among annotations: " + " / ".join(votes)
    raise InputError(None, f"annotation must be one of {ANNOTATIONS}, got {annotation!r}")


def plan(
    source,
    *,
    vocab=None,
    annotation: str = "original",
    annotations: str | None = None,
) -> Plan:
    """Read the AML-Cytomorphology_LMU layout (see the module docstring)."""
    source = Path(source)
    if annotation not in ANNOTATIONS:
        raise InputError(None, f"--annotation must be one of {', '.join(ANNOTATIONS)}")
    if not source.exists():
        raise InputError(source, "no such folder")
    ann_path = Path(annotations) if annotations else find_annotations(source)
    if not ann_path.is_file():
        raise InputError(ann_path, "annotation file not found")
    rows, bad = parse_annotations(ann_path)
    root = find_image_root(source if source.is_dir() else ann_path.parent, ann_path, rows[0][1])
    result = Plan("matek", "matek", source, dict(INFO), skipped=bad)
    outcome: Counter[str] = Counter()
    listed = set()
    for _lineno, image, original, re1, re2 in rows:
        listed.add(image)
        label, why = choose(original, re1, re2, annotation)
        where = str(root / image)
        if label is None:
            cat = "re-annotation UNC" if "UNC" in why else "annotations disagree"
            result.skipped.append(Skip(where, cat, why))
            outcome[cat] += 1
            continue
        outcome["kept, relabelled" if label != original else "kept"] += 1
        result.items.append(
            Item(
                label=label,
                name=Path(image).name,
                path=root / image,
                meta={
                    "source": where,
                    "original": original,
                    "reannotation_1": re1,
                    "reannotation_2": re2,
                },
            )
        )
    # images in the tree that annotations.dat does not list
    for p in sorted(root.glob("*/*")):
        if p.suffix.lower() in (".tif", ".tiff") and p.relative_to(root).as_posix() not in listed:
            result.skipped.append(Skip(str(p), "not annotated", f"not listed in {ann_path.name}"))
    result.notes = {
        "annotation_file": str(ann_path.absolute()),
        "annotation_used": annotation,
        "annotation_outcome": dict(outcome),
        "annotation_help": "original = first expert; first/second = re-annotations where made; "
        "agreed = all annotations agree; majority = 2 of 3",
    }
    return result
