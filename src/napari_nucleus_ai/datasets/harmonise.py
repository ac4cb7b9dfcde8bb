"""One class vocabulary across public data sets, kept as data.

The shipped table ``vocabulary.csv`` (beside this module) has one row per label
as it appears in a data set::

    dataset,label,name,common,description
    matek,NGS,neutrophil segmented,neutrophil,Neutrophil (segmented)
    pbc-prefix,SNE,neutrophil segmented,neutrophil,Neutrophil (segmented)

``label`` is the code, folder name or index the source uses (matched without
regard to case or surrounding spaces); ``name`` is this plugin's class name for
it (the same cell type has the same name in every data set, so Matek's ``NGS``
and PBC's ``SNE_`` files both become ``neutrophil segmented``); ``common`` is
the shared coarse vocabulary that lets a model trained on one data set be scored
on another (CytoDiffusion's ``name_to_number`` table does the same job: Matek's
15 classes and PBC's 8 fold onto ten: basophil, blast, lymphocyte, monocyte,
neutrophil, erythroblast, eosinophil, immature granulocyte, platelet,
artefact). An empty ``common`` keeps the label out of the shared vocabulary.

Users edit a copy (``napari-nucleus-ai import-dataset --show-vocabulary KIND``
prints it) and pass it with ``--vocabulary FILE``: their rows replace shipped
rows with the same ``dataset`` and ``label`` and add new ones.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from napari_nucleus_ai.core.errors import InputError

VOCABULARY_FILE = Path(__file__).with_name("vocabulary.csv")
COLUMNS = ("dataset", "label", "name", "common", "description")
MODES = ("native", "common", "code")


@dataclass(frozen=True)
class Entry:
    """One row of the vocabulary."""

    dataset: str
    label: str
    name: str
    common: str
    description: str

    def class_for(self, mode: str) -> str | None:
        """The class folder name for ``mode`` (``None``: not in that vocabulary)."""
        if mode == "native":
            return self.name
        if mode == "common":
            return self.common or None
        if mode == "code":
            return self.label
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _key(text) -> str:
    return " ".join(str(text).split()).casefold()


class Vocabulary:
    """Label -> class lookups for every data set (see the module docstring)."""

    def __init__(self, entries: Iterable[Entry], sources: tuple[str, ...] = ()):
        self._entries: dict[tuple[str, str], Entry] = {}
        for e in entries:
            self._entries[(_key(e.dataset), _key(e.label))] = e
        self.sources = sources

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self, dataset: str | None = None) -> list[Entry]:
        """All rows, or those of one data set, in file order."""
        if dataset is None:
            return list(self._entries.values())
        d = _key(dataset)
        return [e for (ds, _), e in self._entries.items() if ds == d]

    def datasets(self) -> list[str]:
        return sorted({e.dataset for e in self._entries.values()})

    def lookup(self, dataset: str, label) -> Entry | None:
        """The row for ``label`` in ``dataset`` (case and spacing ignored), or ``None``."""
        return self._entries.get((_key(dataset), _key(label)))

    def class_for(self, dataset: str, label, mode: str = "native") -> str | None:
        """Class name of ``label`` under ``mode``; ``None`` when unknown or excluded."""
        entry = self.lookup(dataset, label)
        return None if entry is None else entry.class_for(mode)

    def common_classes(self) -> list[str]:
        """The shared vocabulary, in first-seen order."""
        seen: dict[str, None] = {}
        for e in self._entries.values():
            if e.common:
                seen.setdefault(e.common, None)
        return list(seen)

    def to_common(self, class_name: str) -> str | None:
        """Map a class name of any data set (native name, code or common) onto the shared set.

        This is what cross-data-set evaluation uses: predictions of a model
        trained on Matek names and the true labels of a PBC folder both go
        through it before they are compared.
        """
        k = _key(class_name)
        commons = {_key(c): c for c in self.common_classes()}
        if k in commons:
            return commons[k]
        for e in self._entries.values():
            if k in (_key(e.name), _key(e.label)) and e.common:
                return e.common
        return None

    def to_csv(self, dataset: str | None = None) -> str:
        """The rows as CSV text (what ``--show-vocabulary`` prints)."""
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for e in self.entries(dataset):
            w.writerow([e.dataset, e.label, e.name, e.common, e.description])
        return buf.getvalue()


def _read_rows(path: str | os.PathLike) -> list[Entry]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            missing = [c for c in ("dataset", "label", "name") if c not in fields]
            if missing:
                raise InputError(
                    path,
                    f"vocabulary needs columns dataset,label,name[,common,description]; "
                    f"missing {','.join(missing)}",
                )
            rows = []
            for lineno, raw in enumerate(reader, start=2):
                row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
                if not row.get("dataset") or not row.get("label") or not row.get("name"):
                    raise InputError(path, f"line {lineno}: dataset, label and name must be filled")
                rows.append(
                    Entry(
                        row["dataset"],
                        row["label"],
                        safe_class_name(row["name"]),
                        safe_class_name(row["common"]) if row.get("common") else "",
                        row.get("description", ""),
                    )
                )
    except FileNotFoundError:
        raise InputError(path, "no such vocabulary file") from None
    except UnicodeDecodeError:
        raise InputError(path, "vocabulary is not UTF-8 text") from None
    except csv.Error as e:
        raise InputError(path, f"not a readable CSV ({e})") from None
    return rows


def load_vocabulary(path: str | os.PathLike | None = None) -> Vocabulary:
    """The shipped vocabulary, with a user's file layered on top when given."""
    entries = _read_rows(VOCABULARY_FILE)
    sources = (str(VOCABULARY_FILE),)
    if path is not None:
        entries += _read_rows(path)  # later rows win
        sources += (os.fspath(path),)
    return Vocabulary(entries, sources)


_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]+')


def safe_class_name(text) -> str:
    """A class name usable as a folder name on every OS (no slashes, colons...)."""
    name = _UNSAFE.sub("-", " ".join(str(text).split())).strip(" .-")
    return name or "unnamed"


def score_across_datasets(predictions, vocabulary: Vocabulary | None = None) -> dict:
    """Score a model on another data set's folder through the shared vocabulary.

    Parameters
    ----------
    predictions : pandas.DataFrame or path
        ``napari-nucleus-ai predict`` output (``path``, ``label``...) on the
        files of an imported folder: the true class is each file's folder.
    vocabulary : Vocabulary, optional

    Returns
    -------
    dict
        ``n`` (cells scored), ``n_unmapped`` (true or predicted class with no
        common class, e.g. ``unidentified``), ``accuracy``, ``balanced_accuracy``
        and ``confusion`` (true common class -> predicted common class -> count).
    """
    import pandas as pd

    vocab = vocabulary or load_vocabulary()
    df = predictions if isinstance(predictions, pd.DataFrame) else pd.read_csv(predictions)
    if "path" not in df.columns or "label" not in df.columns:
        raise InputError(None, "predictions need 'path' and 'label' columns (predict's output)")
    truth = df["path"].map(lambda p: vocab.to_common(Path(str(p)).parent.name))
    pred = df["label"].map(lambda c: vocab.to_common(str(c)))
    ok = truth.notna() & pred.notna()
    t, p = truth[ok], pred[ok]
    recalls = [(p[t == c] == c).mean() for c in sorted(t.unique())]
    confusion = {c: p[t == c].value_counts().to_dict() for c in sorted(t.unique())}
    return {
        "n": int(ok.sum()),
        "n_unmapped": int((~ok).sum()),
        "accuracy": float((t == p).mean()) if len(t) else float("nan"),
        "balanced_accuracy": float(sum(recalls) / len(recalls)) if recalls else float("nan"),
        "confusion": confusion,
    }
