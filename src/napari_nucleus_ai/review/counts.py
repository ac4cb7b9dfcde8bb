"""Differential counts: which classes are blasts, which are counted, counts and percentages.

Percentages are of the *counted* cells: every class except artefacts and the
non-leukocyte classes a differential reports per 100 counted cells instead
(platelets, erythroblasts/NRBC, smudge cells), as in a manual differential.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pandas as pd

from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED

#: Matek 2019 codes for blasts (MYO = myeloblast, MOB = monoblast); other names match "blast".
BLAST_CODES = {"MYO", "MOB", "BLA", "LYB"}
_NOT_BLAST = re.compile(r"erythro|normo", re.I)
_NOT_COUNTED = re.compile(
    r"^(artefact|artifact)$|platelet|thrombo|erythroblast|normoblast|nrbc|smudge|^ksc$|^ebo$", re.I
)


def is_blast(name: str) -> bool:
    """Whether a class name is a blast (myeloblast, monoblast, lymphoblast, ``MYO``...)."""
    name = str(name)
    return name.upper() in BLAST_CODES or ("blast" in name.lower() and not _NOT_BLAST.search(name))


def is_counted(name: str) -> bool:
    """Whether a class enters the differential's denominator (not artefacts, platelets, NRBC...)."""
    return not _NOT_COUNTED.search(str(name))


def differential_counts(final: Iterable[str | None], classes: Sequence[str] = ()) -> pd.DataFrame:
    """Counts and percentages per class.

    Parameters
    ----------
    final : iterable of str or None
        The final class of each cell (``None`` counts as ``unidentified``).
    classes : sequence of str
        Classes to list even when absent (in this order; others follow).

    Returns
    -------
    pandas.DataFrame
        ``class, count, percent, counted``: ``percent`` is per 100 counted cells.
    """
    from collections import Counter

    counts = Counter(CLASS_UNIDENTIFIED if v is None or v != v else str(v) for v in final)
    names = list(dict.fromkeys([str(c) for c in classes] + sorted(counts)))
    df = pd.DataFrame({"class": names})
    df["count"] = [int(counts.get(n, 0)) for n in names]
    df["counted"] = [is_counted(n) for n in names]
    total = int(df.loc[df["counted"], "count"].sum())
    df["percent"] = 100.0 * df["count"] / total if total else 0.0
    return df[["class", "count", "percent", "counted"]]
