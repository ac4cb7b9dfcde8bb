"""Qt table model for the review dock: the review table exactly as the CSV export writes it."""

from __future__ import annotations

import math

import pandas as pd
from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt
from qtpy.QtGui import QBrush, QColor, QFont

REVIEWED_BG = QColor(40, 110, 60)
PENDING_BG = QColor(120, 100, 30)


def display_text(value) -> str:
    """How a table value is shown (and compared with the CSV export in tests)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)


class ReviewTableModel(QAbstractTableModel):
    """Rows of :meth:`ReviewQueue.review_table`; reviewed rows bold on green, unsaved ones amber."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.df = pd.DataFrame()
        self._row_of: dict[int, int] = {}
        self.pending: set[int] = set()
        self._bold = QFont()
        self._bold.setBold(True)

    def set_table(self, df: pd.DataFrame) -> None:
        self.beginResetModel()
        self.df = df.reset_index(drop=True)
        self._row_of = {int(c): i for i, c in enumerate(self.df["label"])} if len(df) else {}
        self.endResetModel()

    def update_row(self, cell: int, values: dict) -> None:
        """Change one row in place (no reset: keeps the view's scroll and selection)."""
        r = self._row_of.get(int(cell))
        if r is None:
            return
        for k, v in values.items():
            self.df.at[r, k] = v
        self.dataChanged.emit(self.index(r, 0), self.index(r, self.columnCount() - 1))

    def row_of(self, cell: int) -> int | None:
        return self._row_of.get(int(cell))

    def cell_at(self, row: int) -> int | None:
        return int(self.df["label"].iloc[row]) if 0 <= row < len(self.df) else None

    # -- Qt API -------------------------------------------------------------
    def rowCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.df)

    def columnCount(self, parent=QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.df.columns)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return str(self.df.columns[section]) if section < len(self.df.columns) else None
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            v = self.df.iat[r, c]
            if self.df.columns[c] == "reviewed" and v:
                return "saving…" if int(self.df.iat[r, 0]) in self.pending else "yes"
            return display_text(v.item() if hasattr(v, "item") else v)
        reviewed = bool(self.df["reviewed"].iat[r]) if "reviewed" in self.df else False
        if role == Qt.ItemDataRole.BackgroundRole and reviewed:
            pend = int(self.df.iat[r, 0]) in self.pending
            return QBrush(PENDING_BG if pend else REVIEWED_BG)
        if role == Qt.ItemDataRole.FontRole and reviewed:
            return self._bold
        return None
