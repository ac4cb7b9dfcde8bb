"""The review queue: which cell to look at next, what it is now, undo/redo, live counts.

Qt-free. The review dock (``widgets/review.py``) drives a :class:`ReviewQueue`
and persists each :class:`Edit` it returns in the
:class:`~napari_nucleus_ai.review.store.AnnotationStore`; scripts and tests can
drive it the same way.

A cell's *final* class is the annotator's label when there is one, else the
model's prediction. Cells are visited most uncertain first. Setting a class (or
confirming the prediction) moves to the next unreviewed cell, so a review takes
one key press per cell when the model is right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_nucleus_ai.cells import (
    CLASS_ARTEFACT,
    CLASS_UNIDENTIFIED,
    class_columns,
    validate_cell_table,
)

EXTRA_CLASSES = (CLASS_UNIDENTIFIED, CLASS_ARTEFACT)
#: Column keeping the model's class once ``class`` holds the annotator's final label.
MODEL_COLUMN = "model_class"
#: Keys that set classes, in class order (``1`` is the first class).
CLASS_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0")

#: Columns of the review table, as shown in the dock and exported to CSV (with
#: :data:`SET_COLUMN` after ``uncertainty`` when the model gives conformal sets).
TABLE_COLUMNS = ("label", "predicted", "p_predicted", "uncertainty", "class", "reviewed")
#: The conformal prediction set of a cell (``"a|b"``; :mod:`.models.trust`).
SET_COLUMN = "set"


@dataclass(frozen=True)
class Edit:
    """One change of a cell's label: ``before``/``after`` are ``None`` for *unreviewed*."""

    cell: int
    before: str | None
    after: str | None
    action: str = "set"  # set | confirm | undo | redo


def model_classes(table: pd.DataFrame, classes: Sequence[str] | None = None) -> list[str]:
    """The model's class list: given, else from ``p_<class>`` columns, else from ``class``."""
    if classes:
        return [str(c) for c in classes]
    probs = [c[2:] for c in class_columns(table)]
    if probs:
        return probs
    if "class" in table.columns:
        return sorted(str(c) for c in table["class"].dropna().unique())
    return []


def review_classes(classes: Iterable[str]) -> list[str]:
    """The classes an annotator can give: the model's, then ``unidentified`` and ``artefact``."""
    out = [str(c) for c in classes]
    return out + [c for c in EXTRA_CLASSES if c not in out]


class ReviewQueue:
    """Cells of one image in review order, with the annotator's labels and undo/redo.

    Parameters
    ----------
    table : pandas.DataFrame
        Cell table (``label`` plus optional ``class``, ``uncertainty``, ``p_<class>``).
    classes : sequence of str, optional
        The model's class names (default: from the table).
    corrections : mapping, optional
        ``{cell: label}`` already stored (e.g. ``AnnotationStore.labels(image_id)``).
    """

    def __init__(
        self,
        table: pd.DataFrame,
        classes: Sequence[str] | None = None,
        corrections: Mapping[int, str] | None = None,
    ):
        table = validate_cell_table(table).drop(columns=["index"], errors="ignore")
        self.table = table.set_index("label", drop=False)
        self.model_classes = model_classes(table, classes)
        self.classes = review_classes(self.model_classes)
        pred = _column(table, MODEL_COLUMN if MODEL_COLUMN in table.columns else "class")
        self._predicted = dict(zip(table["label"].tolist(), pred, strict=True))
        # a classifier's best guess for cells it marked unidentified (``predicted``)
        self._guess = dict(zip(table["label"].tolist(), _column(table, "predicted"), strict=True))
        probs = class_columns(table)
        pmax = table[probs].max(axis=1).to_numpy(float) if probs else np.full(len(table), np.nan)
        self._pmax = dict(zip(table["label"].tolist(), pmax.tolist(), strict=True))
        self._uncertainty = dict(zip(table["label"].tolist(), _uncertainty(table), strict=True))
        self._set = (
            dict(zip(table["label"].tolist(), table[SET_COLUMN].tolist(), strict=True))
            if SET_COLUMN in table.columns
            else None
        )
        unc = np.array([self._uncertainty[c] for c in table["label"]], float)
        key = np.where(np.isnan(unc), -np.inf, unc)
        order = np.lexsort((table["label"].to_numpy(), -key))
        self.order: list[int] = [int(x) for x in table["label"].to_numpy()[order]]
        self._rank = {c: i for i, c in enumerate(self.order)}
        self.corrections: dict[int, str] = {
            int(k): str(v) for k, v in (corrections or {}).items() if int(k) in self._rank
        }
        self.filter_classes: set[str] | None = None
        self.min_uncertainty: float | None = None
        self.max_uncertainty: float | None = None
        self.unreviewed_only = False
        self._undo: list[Edit] = []
        self._redo: list[Edit] = []
        self.pos = -1
        self.first()

    # -- what a cell is -----------------------------------------------------
    def __len__(self) -> int:
        return len(self.order)

    def __contains__(self, cell) -> bool:
        """Whether ``cell`` is one of the queue's cells."""
        try:
            return int(cell) in self._rank
        except (TypeError, ValueError):
            return False

    def rank(self, cell: int) -> int:
        """``cell``'s place in review order (0 = the most uncertain)."""
        return self._rank[int(cell)]

    def predicted(self, cell: int) -> str | None:
        return self._predicted.get(int(cell))

    def suggestion(self, cell: int) -> str | None:
        """What *confirm* gives: the label, else the model's class, else its best guess."""
        cell = int(cell)
        if cell in self.corrections:
            return self.corrections[cell]
        pred = self._predicted.get(cell)
        if pred in (None, CLASS_UNIDENTIFIED) and self._guess.get(cell) in self.classes:
            return self._guess[cell]
        return pred

    def uncertainty(self, cell: int) -> float:
        return self._uncertainty.get(int(cell), float("nan"))

    def prediction_set(self, cell: int) -> list[str] | None:
        """The classes of the cell's conformal set (the model is confident the true class is
        one of them at the card's coverage); ``None`` when the model gives no sets."""
        if self._set is None:
            return None
        value = self._set.get(int(cell))
        if not isinstance(value, str):
            return []
        return [c for c in value.split("|") if c]

    def final(self, cell: int) -> str | None:
        """The annotator's label, else the model's prediction."""
        cell = int(cell)
        return self.corrections.get(cell, self._predicted.get(cell))

    def is_reviewed(self, cell: int) -> bool:
        return int(cell) in self.corrections

    @property
    def reviewed(self) -> int:
        return len(self.corrections)

    @property
    def unreviewed(self) -> int:
        return len(self.order) - len(self.corrections)

    def final_classes(self) -> pd.Series:
        """Final class of every cell, indexed by label, in table order."""
        return pd.Series({c: self.final(c) for c in self.table["label"]}, dtype=object)

    def key_for(self, label: str) -> str | None:
        """The key that sets ``label`` (``None`` beyond the tenth class)."""
        i = self.classes.index(label)
        return CLASS_KEYS[i] if i < len(CLASS_KEYS) else None

    def class_for_key(self, key: str) -> str | None:
        i = CLASS_KEYS.index(key) if key in CLASS_KEYS else -1
        return self.classes[i] if 0 <= i < len(self.classes) else None

    # -- filter and navigation ----------------------------------------------
    def set_filter(
        self,
        classes: Iterable[str] | None = None,
        min_uncertainty: float | None = None,
        max_uncertainty: float | None = None,
        unreviewed_only: bool = False,
    ) -> None:
        """Show only cells whose final class is in ``classes`` and uncertainty in range.

        The current cell stays current when it still matches, else the first match.
        """
        self.filter_classes = None if classes is None else {str(c) for c in classes}
        self.min_uncertainty = min_uncertainty
        self.max_uncertainty = max_uncertainty
        self.unreviewed_only = bool(unreviewed_only)
        if self.current is None or not self.matches(self.current):
            self.pos = -1
            self.first()

    def matches(self, cell: int) -> bool:
        if self.unreviewed_only and self.is_reviewed(cell):
            return False
        if self.filter_classes is not None and self.final(cell) not in self.filter_classes:
            return False
        u = self.uncertainty(cell)
        if self.min_uncertainty is not None and not (u >= self.min_uncertainty):
            return False
        return not (self.max_uncertainty is not None and not (u <= self.max_uncertainty))

    def visible(self) -> list[int]:
        """Cells that match the filter, in review order."""
        return [c for c in self.order if self.matches(c)]

    @property
    def current(self) -> int | None:
        return self.order[self.pos] if 0 <= self.pos < len(self.order) else None

    def goto(self, cell: int) -> int:
        self.pos = self._rank[int(cell)]
        return int(cell)

    def _scan(self, start: int, step: int, want=lambda c: True, wrap=False) -> int | None:
        n = len(self.order)
        idx = range(start, n) if step > 0 else range(start, -1, -1)
        for i in idx:
            if 0 <= i < n and self.matches(self.order[i]) and want(self.order[i]):
                return i
        if wrap:
            idx = range(0, min(start, n)) if step > 0 else range(n - 1, start, -1)
            for i in idx:
                if self.matches(self.order[i]) and want(self.order[i]):
                    return i
        return None

    def first(self) -> int | None:
        """Go to the most uncertain unreviewed cell that matches (else the first match)."""
        i = self._scan(0, 1, lambda c: not self.is_reviewed(c))
        if i is None:
            i = self._scan(0, 1)
        if i is not None:
            self.pos = i
        return self.current if i is not None else None

    def next(self) -> int | None:
        """The next matching cell in review order (stays on the last one)."""
        i = self._scan(self.pos + 1, 1)
        if i is not None:
            self.pos = i
        return self.current

    def previous(self) -> int | None:
        i = self._scan(self.pos - 1, -1)
        if i is not None:
            self.pos = i
        return self.current

    def next_unreviewed(self) -> int | None:
        """The next matching unreviewed cell after the current one, wrapping; ``None`` when done."""
        i = self._scan(self.pos + 1, 1, lambda c: not self.is_reviewed(c), wrap=True)
        if i is None:
            return None
        self.pos = i
        return self.current

    # -- editing --------------------------------------------------------------
    def _apply(self, cell: int, label: str | None) -> None:
        if label is None:
            self.corrections.pop(cell, None)
        else:
            self.corrections[cell] = label

    def take_label(self, cell: int, label: str | None) -> None:
        """Take a label given elsewhere (another annotator's, read from the store).

        It is not an edit of this annotator: nothing to persist, no undo entry; the
        position in the queue stays. ``None`` makes the cell unreviewed again.
        """
        cell = int(cell)
        if cell in self._rank:
            self._apply(cell, None if label is None else str(label))

    def set_class(self, label: str, advance: bool = True, cell: int | None = None) -> Edit | None:
        """Give the current cell (or ``cell``) ``label``; then go to the next unreviewed cell."""
        if label not in self.classes:
            raise ValueError(f"unknown class {label!r}; classes: {self.classes}")
        cell = self.current if cell is None else int(cell)
        if cell is None:
            return None
        action = "confirm" if label in (self.predicted(cell), self._guess.get(cell)) else "set"
        edit = Edit(cell, self.corrections.get(cell), label, action)
        self._apply(cell, label)
        self._undo.append(edit)
        self._redo.clear()
        if advance:
            self.goto(cell)
            self.next_unreviewed()
        return edit

    def confirm(self, advance: bool = True) -> Edit | None:
        """Accept the current cell's :meth:`suggestion` and move on.

        For a cell the model left ``unidentified`` that is its best guess, when it
        gave one; a cell without any prediction is confirmed as ``unidentified``.
        """
        cell = self.current
        if cell is None:
            return None
        return self.set_class(self.suggestion(cell) or CLASS_UNIDENTIFIED, advance=advance)

    def undo(self) -> Edit | None:
        """Revert the last edit; returns the reverting edit (to persist) and goes to its cell."""
        if not self._undo:
            return None
        e = self._undo.pop()
        self._apply(e.cell, e.before)
        self._redo.append(e)
        self.goto(e.cell)
        return Edit(e.cell, e.after, e.before, "undo")

    def redo(self) -> Edit | None:
        if not self._redo:
            return None
        e = self._redo.pop()
        self._apply(e.cell, e.after)
        self._undo.append(e)
        self.goto(e.cell)
        return Edit(e.cell, e.before, e.after, "redo")

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # -- views ------------------------------------------------------------------
    def counts(self) -> pd.DataFrame:
        """Live differential counts of the final classes (see :func:`report.differential_counts`)."""
        from napari_nucleus_ai.review.counts import differential_counts

        corr, pred = self.corrections, self._predicted
        return differential_counts((corr.get(c, p) for c, p in pred.items()), self.classes)

    def review_table(self, visible_only: bool = True) -> pd.DataFrame:
        """The table the dock shows (and exports): one row per cell, in review order."""
        cells = self.visible() if visible_only else list(self.order)
        rows = []
        for c in cells:
            pred = self.predicted(c)
            p = self._pmax.get(c, np.nan)
            rows.append(
                (c, pred, float(p), self.uncertainty(c), self.final(c), self.is_reviewed(c))
            )
        df = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
        df["label"] = df["label"].astype(np.int64)
        df["reviewed"] = df["reviewed"].astype(bool)
        if self._set is not None:
            sets = ["|".join(self.prediction_set(c) or []) for c in cells]
            df.insert(df.columns.get_loc("uncertainty") + 1, SET_COLUMN, sets)
        return df


def layer_classes(metadata: Mapping | None, table: pd.DataFrame) -> tuple[list[str], dict]:
    """The model's classes of a classified layer and the colours its model gave them.

    From the layer's ``metadata``: ``classes`` / ``class_colors`` when set (a restored
    review), else the classifier's ``model_card`` (its ``classes``: ``name``, ``colour``);
    the classes else come from the table (:func:`model_classes`).

    Returns
    -------
    classes : list of str
        The model's classes (the review adds ``unidentified`` and ``artefact``).
    colours : dict
        ``{class: colour}`` the model gave (may be empty); see :func:`review_colours`.
    """
    meta = dict(metadata or {})
    card = meta.get("model_card") if isinstance(meta.get("model_card"), dict) else {}
    entries = [c for c in card.get("classes", []) if isinstance(c, dict)]
    classes = meta.get("classes") or [c.get("name") for c in entries] or model_classes(table)
    colours = meta.get("class_colors") or {c.get("name"): c.get("colour") for c in entries}
    return [str(c) for c in classes], {k: v for k, v in colours.items() if v}


def review_colours(classes: Iterable[str], given: Mapping[str, str] | None = None) -> dict:
    """A colour for each review class: the model's (``given``) else the shared palette."""
    from napari_nucleus_ai.core.palette import class_colours

    classes = list(classes)
    colours = class_colours(classes, given)
    return {c: colours[c] for c in classes}


def _column(table: pd.DataFrame, name: str) -> list:
    if name not in table.columns:
        return [None] * len(table)
    col = table[name].astype(object)
    return col.where(col.notna(), None).tolist()


def _uncertainty(table: pd.DataFrame) -> list[float]:
    """``uncertainty`` column, else 1 - max probability, else NaN."""
    if "uncertainty" in table.columns:
        return pd.to_numeric(table["uncertainty"], errors="coerce").astype(float).tolist()
    probs = class_columns(table)
    if probs:
        p = table[probs].to_numpy(float)
        with np.errstate(invalid="ignore"):
            return (1.0 - np.nanmax(np.where(np.isnan(p), -np.inf, p), axis=1)).tolist()
    return [float("nan")] * len(table)


def apply_corrections(table: pd.DataFrame, corrections: Mapping[int, str]) -> pd.DataFrame:
    """The cell table with ``model_class`` (the model's), ``class`` (final) and ``reviewed``.

    Idempotent: a table that already has ``model_class`` keeps it as the model's class.
    """
    out = validate_cell_table(table).drop(columns=["index"], errors="ignore")
    model = pd.Series(
        _column(out, MODEL_COLUMN if MODEL_COLUMN in out else "class"),
        index=out.index,
        dtype=object,
    )
    fixed = out["label"].map(lambda c: corrections.get(int(c)))
    out[MODEL_COLUMN] = model
    out["class"] = fixed.where(fixed.notna(), model)
    out["reviewed"] = fixed.notna()
    return out


def model_table(table: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`apply_corrections`: the table as the model left it."""
    out = table.drop(columns=["reviewed", "index"], errors="ignore")
    if MODEL_COLUMN in out.columns:
        out = out.assign(**{"class": out[MODEL_COLUMN]}).drop(columns=[MODEL_COLUMN])
    return out
