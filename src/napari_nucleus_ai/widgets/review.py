"""Review dock: confirm or correct each cell's class with one key, durably, with live counts.

Thin: the queue, undo/redo and counts are :class:`napari_nucleus_ai.review.queue.ReviewQueue`,
the store is :class:`napari_nucleus_ai.review.store.AnnotationStore` written by a
:class:`~napari_nucleus_ai.review.store.BackgroundWriter` thread (a row turns from
*saving…* to *yes* only once its correction is on disk), outputs live in
``_review_outputs``. Works on any Labels layer whose ``features`` is a cell table:
smear cells, fluorescence nuclei and STORM nuclei alike.

Keys (while *review keys* is on): ``1``-``9``, ``0`` set a class and go to the
next unreviewed cell; ``Space``/``Return`` confirm the shown class and go on;
``Right``/``Left`` next/previous; ``Ctrl+Z`` undo, ``Ctrl+Shift+Z``/``Ctrl+Y`` redo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QWidget,
)

from napari_nucleus_ai.review.queue import review_colours as class_colors  # noqa: F401
from napari_nucleus_ai.widgets._base import DockBase, same_layer
from napari_nucleus_ai.widgets._review_table import ReviewTableModel
from napari_nucleus_ai.widgets._review_view import ReviewView, layer_source, model_name

if TYPE_CHECKING:
    import napari


def _has_cell_table(layer) -> bool:
    """A Labels layer whose ``features`` is a cell table of *classified* cells.

    A bare segmentation (no ``class`` and no ``p_<class>`` column) has nothing to review:
    the dock never takes it, so it cannot stick to it once the cells are classified.
    """
    from napari.layers import Labels

    feats = getattr(layer, "features", None)
    if not isinstance(layer, Labels) or feats is None or not len(feats) or "label" not in feats:
        return False
    return "class" in feats.columns or any(str(c).startswith("p_") for c in feats.columns)


class ReviewWidget(ReviewView, DockBase, QWidget):
    """The *Review* dock."""

    saved = Signal(object, object)  # Correction, token (from the writer thread)
    failed = Signal(object, object)  # exception, token

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        from napari_nucleus_ai.review.store import default_author

        self.init_dock(viewer)
        self.queue = None
        self.store = None
        self.writer = None
        self.layer = None
        self.image_id: str | None = None
        self.project: str | None = None
        self.store_path: Path | None = None  # the store of the layer under review
        self.source: str | None = None  # the image file its cells came from, when known
        self.colors: dict[str, str] = {}
        self._pending: dict[int, int] = {}
        self._zoom_next = True
        self.saved_count = 0
        self.open_outputs = True  # open reports in the browser (tests turn it off)
        self.saved.connect(self._on_saved)
        self.failed.connect(self._on_failed)

        self.layer_box = QComboBox()
        self.store_label = QLabel("-")
        self.store_label.setWordWrap(True)
        self.project_btn = QPushButton("Project folder…")
        self.author = QLineEdit(default_author())
        self.info = QLabel("classify cells first (Classifier dock), then review them here")
        self.info.setWordWrap(True)
        self.class_grid = QGridLayout()
        self.btn_prev, self.btn_confirm, self.btn_next = (
            QPushButton("◀ prev"),
            QPushButton("✓ confirm"),
            QPushButton("next ▶"),
        )
        self.btn_undo, self.btn_redo = QPushButton("undo"), QPushButton("redo")
        self.filter_class = QComboBox()
        self.min_unc, self.max_unc = QDoubleSpinBox(), QDoubleSpinBox()
        for s, v in ((self.min_unc, 0.0), (self.max_unc, 99.0)):
            s.setRange(0.0, 99.0), s.setDecimals(2), s.setSingleStep(0.05), s.setValue(v)
        self.unreviewed_only = QCheckBox("unreviewed only")
        self.keys_on = QCheckBox("review keys (1-9, 0, Space, ←/→, Ctrl+Z)")
        self.keys_on.setChecked(True)
        self.zoom_on = QCheckBox("zoom to cell")
        self.zoom_on.setChecked(True)
        self.table_model = ReviewTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.counts = QLabel()
        self.status = QLabel()
        self.btn_csv, self.btn_report = QPushButton("Export CSV…"), QPushButton("Report")
        self.btn_trainset, self.btn_retrain = (
            QPushButton("Training set…"),
            QPushButton("Retrain…"),
        )
        self._layout()
        self._connect()
        self._shortcuts: dict[str, QShortcut] = {}
        self._install_keys()
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(300)
        self._refresh_timer.timeout.connect(self.refresh_marks)
        # other annotators (processes) writing to the same store: pick up their labels
        self._sync_timer = QTimer(self)
        self._sync_timer.setInterval(3000)
        self._sync_timer.timeout.connect(self.sync_from_store)
        self._sync_timer.start()
        self.layer_choice(
            self.layer_box, _has_cell_table, "a Labels layer of classified cells",
            on_change=self._on_layer_choice,
        )  # fmt: skip

    # -- layout -----------------------------------------------------------------
    def _layout(self) -> None:
        """Rows of at most three controls, so the dock fits ~290 px of a laptop screen."""
        from napari_nucleus_ai.widgets._base import _narrow_combo, scroll_body, status_label

        form = QFormLayout()
        form.addRow("cells", self.layer_box)
        form.addRow("store", self.store_label)
        form.addRow("", self.project_btn)
        form.addRow("author", self.author)
        nav = QGridLayout()
        for i, b in enumerate((self.btn_prev, self.btn_confirm, self.btn_next)):
            nav.addWidget(b, 0, i)
        nav.addWidget(self.btn_undo, 1, 0)
        nav.addWidget(self.btn_redo, 1, 2)
        filt = QGridLayout()
        filt.addWidget(self.filter_class, 0, 0, 1, 4)
        filt.addWidget(QLabel("unc."), 1, 0)
        filt.addWidget(self.min_unc, 1, 1)
        filt.addWidget(QLabel("–"), 1, 2)
        filt.addWidget(self.max_unc, 1, 3)
        filt.addWidget(self.unreviewed_only, 2, 0, 1, 4)
        outs = QGridLayout()
        for i, b in enumerate((self.btn_csv, self.btn_report, self.btn_trainset, self.btn_retrain)):
            outs.addWidget(b, i // 2, i % 2)
        for label in (self.status, self.counts, self.store_label, self.info):
            status_label(label)
        for box in (self.layer_box, self.filter_class):
            _narrow_combo(box)
        self.btn_confirm.setToolTip("confirm the shown class (Space)")
        self.keys_on.setText("review keys")
        self.keys_on.setToolTip(
            "1-9 and 0 label the current cell, Space confirms, ←/→ step, Ctrl+Z undoes"
        )
        self.table.setMinimumHeight(160)  # several rows, even on a 768 px screen
        self.table.setMinimumWidth(50)  # the table scrolls inside; it never widens the dock
        lay = scroll_body(self)
        lay.addLayout(form)
        lay.addWidget(self.info)
        lay.addLayout(self.class_grid)
        lay.addLayout(nav)
        lay.addLayout(filt)
        opts = QHBoxLayout()
        opts.addWidget(self.keys_on)
        opts.addWidget(self.zoom_on)
        lay.addLayout(opts)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.counts)
        lay.addLayout(outs)
        lay.addWidget(self.status)

    def _connect(self) -> None:
        from napari_nucleus_ai.widgets import _review_outputs as outs

        self.project_btn.clicked.connect(self._choose_project)
        self.btn_prev.clicked.connect(lambda: self.step(-1))
        self.btn_next.clicked.connect(lambda: self.step(1))
        self.btn_confirm.clicked.connect(self.confirm)
        self.btn_undo.clicked.connect(self.undo)
        self.btn_redo.clicked.connect(self.redo)
        self.filter_class.currentIndexChanged.connect(self._on_filter)
        self.min_unc.valueChanged.connect(self._on_filter)
        self.max_unc.valueChanged.connect(self._on_filter)
        self.unreviewed_only.toggled.connect(self._on_filter)
        self.keys_on.toggled.connect(self._enable_keys)
        self.table.clicked.connect(lambda idx: self.goto(self.table_model.cell_at(idx.row())))
        self.btn_csv.clicked.connect(lambda: outs.export_csv_dialog(self))
        self.btn_report.clicked.connect(lambda: outs.write_report_for(self))
        self.btn_trainset.clicked.connect(lambda: outs.export_trainset_dialog(self))
        self.btn_retrain.clicked.connect(lambda: outs.retrain_dialog(self))
        self.viewer.layers.events.inserted.connect(self._on_inserted)

    def _install_keys(self) -> None:
        keys = {str(k): (lambda k=str(k): self.press_class_key(k)) for k in "1234567890"}
        keys.update(
            {
                "Space": self.confirm,
                "Return": self.confirm,
                "Enter": self.confirm,
                "Right": lambda: self.step(1),
                "Left": lambda: self.step(-1),
                "Ctrl+Z": self.undo,
                "Ctrl+Shift+Z": self.redo,
                "Ctrl+Y": self.redo,
            }
        )
        for key, fn in keys.items():
            sc = QShortcut(QKeySequence(key), self)  # active while the dock is shown
            sc.setContext(Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(fn)
            self._shortcuts[key] = sc
        self._enable_keys(self.keys_on.isChecked())

    def _enable_keys(self, on: bool) -> None:
        for sc in self._shortcuts.values():
            sc.setEnabled(bool(on) and self.queue is not None)

    # -- layers and store ------------------------------------------------------------
    def _on_inserted(self, event) -> None:
        from napari_nucleus_ai.widgets import _review_outputs as outs

        outs.maybe_restore(self, event.value)

    def _on_layer_choice(self, layer) -> None:
        if layer is None:
            self.detach()
        elif not same_layer(layer, self.layer):
            self.attach(layer)

    def _choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder for corrections")
        if folder:
            self.set_project(folder)

    def set_project(self, folder: str | None) -> None:
        """Keep corrections in ``folder`` instead of beside the data."""
        self.project = folder
        if self.layer is not None:
            layer, self.layer = self.layer, None
            self.attach(layer)

    def store_location(self, layer) -> Path:
        """The project folder's store, else the one beside the data (if that folder is writable)."""
        from napari_nucleus_ai.core.settings import config_dir
        from napari_nucleus_ai.review.store import store_for_data, store_path

        src = self.image_file(layer)
        if self.project:
            return store_path(self.project)
        if src:
            path = store_for_data(src)
            if path.exists() or os.access(path.parent, os.W_OK):
                return path
            from napari.utils.notifications import show_warning

            show_warning(f"{path.parent} is read-only: corrections go to the user's project folder")
        return store_path(config_dir() / "annotations")

    def image_file(self, layer) -> str | None:
        """The image file the layer's cells were found on (``None``: not a file)."""
        from napari_nucleus_ai.widgets._base import image_file_of

        return image_file_of(self.viewer, layer) or layer_source(layer)

    def image_id_of(self, layer, store) -> str:
        """What corrections of ``layer`` are keyed by: the image, never the layer's name.

        The image file's path (relative to the store's folder when inside it), else a
        hash of the image's pixels (of the cells' image layer when known, else of the
        label image): another image never shares the id, the same image finds it again.
        """
        from napari_nucleus_ai.review.store import image_id_for
        from napari_nucleus_ai.widgets._base import _named, content_id

        meta = layer.metadata or {}
        if meta.get("image_id"):
            return str(meta["image_id"])
        src = self.image_file(layer)
        if src:
            return image_id_for(src, store)
        parent = _named(self.viewer, meta.get("image_layer") or meta.get("source_layer"))
        data = parent.data if parent is not None and not parent.multiscale else layer.data
        return content_id(data)

    def attach(self, layer) -> None:
        """Start reviewing ``layer``: restore its stored corrections (nothing is written yet)."""
        from napari_nucleus_ai.cells import from_features, in_frame, to_features
        from napari_nucleus_ai.review.queue import (
            ReviewQueue,
            layer_classes,
            model_table,
            review_colours,
        )
        from napari_nucleus_ai.review.store import AnnotationStore
        from napari_nucleus_ai.widgets._base import layer_frame

        self.detach()
        meta = layer.metadata or {}
        path = self.store_location(layer)
        src = self.image_file(layer)
        image_id = self.image_id_of(layer, path)
        # open an existing store only: a store and a session are created by the first correction
        self.store = (
            AnnotationStore(path, author=self.author.text() or None) if path.exists() else None
        )
        corrections = self.store.labels(image_id) if self.store is not None else {}
        table = from_features(layer.features)
        if isinstance(layer.data, np.ndarray):
            # one frame for the layer, its table and the markers: a table in um over a
            # layer in pixels (a wbc pixel size measured on red cells) is re-measured
            scale, translate, unit = layer_frame(layer)
            framed = in_frame(table, layer.data, scale=scale, translate=translate, unit=unit)
            if framed is not table:
                table = framed
                layer.features = to_features(table)
        table = model_table(table)  # a reviewed layer: the model's classes
        self.store_path, self.source = path, src
        self.layer, self.image_id = layer, image_id
        classes, given = layer_classes(meta, table)
        self.queue = ReviewQueue(table, classes, corrections)
        self.colors = review_colours(self.queue.classes, given)
        self.store_label.setText(f"{path}  [{image_id}]")
        self._build_class_buttons()
        self.filter_class.blockSignals(True)
        self.filter_class.clear()
        self.filter_class.addItems(["all classes", *self.queue.classes])
        self.filter_class.blockSignals(False)
        self._enable_keys(self.keys_on.isChecked())
        self._reload_table()
        self.refresh_marks()
        self._zoom_next = True
        self.show_current()

    def ensure_store(self):
        """The store (created on the first correction), its writer thread and the saved session."""
        from napari_nucleus_ai.review.store import AnnotationStore, BackgroundWriter
        from napari_nucleus_ai.widgets import _review_outputs as outs

        if self.store is None:
            self.store = AnnotationStore(self.store_path, author=self.author.text() or None)
        if self.writer is None:
            self.writer = BackgroundWriter(
                self.store, on_saved=self.saved.emit, on_error=self.failed.emit
            )
            outs.save_session_once(self, self.queue.table.reset_index(drop=True), self.source)
        return self.store

    def detach(self) -> None:
        if self.writer is not None:
            self.writer.flush(30)
            self.writer.close()
        self.writer = None
        self.store = None
        self.queue = None
        self.layer = None
        self._pending.clear()
        self.table_model.pending.clear()
        self._enable_keys(False)

    def _build_class_buttons(self) -> None:
        while self.class_grid.count():
            old = self.class_grid.takeAt(0).widget()
            old.hide()  # processEvents() does not run deleteLater: hide it now
            old.setParent(None)
            old.deleteLater()
        for i, c in enumerate(self.queue.classes):
            key = self.queue.key_for(c)
            text = f"{key} {c}" if key else c
            b = QPushButton()
            b.setText(b.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, 120))
            b.setToolTip(text)  # a long class name is shortened on its button
            b.setStyleSheet(
                f"border-left: 6px solid {self.colors[c]}; text-align: left; padding-left: 4px"
            )
            b.clicked.connect(lambda _=False, c=c: self.set_class(c))
            self.class_grid.addWidget(b, i // 2, i % 2)  # two a row: a narrow dock

    # -- actions --------------------------------------------------------------------
    def press_class_key(self, key: str) -> None:
        if self.queue is not None and (label := self.queue.class_for_key(key)):
            self.set_class(label)

    def set_class(self, label: str) -> None:
        if self.queue is not None:
            self._persist(self.queue.set_class(label))

    def confirm(self) -> None:
        if self.queue is not None:
            self._persist(self.queue.confirm())

    def undo(self) -> None:
        if self.queue is not None:
            self._persist(self.queue.undo())

    def redo(self) -> None:
        if self.queue is not None:
            self._persist(self.queue.redo())

    def step(self, direction: int) -> None:
        if self.queue is not None:
            self.queue.next() if direction > 0 else self.queue.previous()
            self.show_current()

    def goto(self, cell: int | None) -> None:
        if self.queue is not None and cell is not None:
            self.queue.goto(cell)
            self.show_current()

    def _persist(self, edit) -> None:
        if edit is None:
            return
        q, cell = self.queue, edit.cell
        pred = q.predicted(cell)
        prob = q.table.at[cell, f"p_{pred}"] if pred and f"p_{pred}" in q.table else None
        self._pending[cell] = self._pending.get(cell, 0) + 1
        self.table_model.pending.add(cell)
        self.ensure_store()
        self.writer.submit(
            self.image_id,
            cell,
            edit.after,
            token=cell,
            author=self.author.text() or None,
            predicted=pred,
            probability=prob,
            uncertainty=q.uncertainty(cell),
            model=model_name(self.layer),
            action=edit.action if edit.after is not None else "undo",
        )
        self.table_model.update_row(cell, {"class": q.final(cell), "reviewed": q.is_reviewed(cell)})
        self.show_current()
        if len(q) <= 5000:  # bigger tables (whole slides): counts with the throttled refresh
            self._show_counts()
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def _on_saved(self, corr, token) -> None:
        cell = int(token)
        self.saved_count += 1
        n = self._pending.get(cell, 1) - 1
        if n <= 0:
            self._pending.pop(cell, None)
            self.table_model.pending.discard(cell)
            if self.queue is not None:
                self.table_model.update_row(cell, {})
        else:
            self._pending[cell] = n
        self._show_status()

    def _on_failed(self, error, token) -> None:
        from napari.utils.notifications import show_error

        from napari_nucleus_ai.core.errors import one_line

        self._pending.pop(int(token), None)
        show_error(f"correction of cell {token} NOT saved: {one_line(error, self.store.path)}")
        self._show_status()

    def sync_from_store(self) -> int:
        """Take in labels other annotators stored for this image; returns how many cells changed.

        Cells with a correction of ours still being written are left alone; the
        undo history stays ours.
        """
        from napari_nucleus_ai.review.store import AnnotationStore

        q = self.queue
        if q is None or (self.store is None and not self.store_path.exists()):
            return 0
        if self.store is None:
            self.store = AnnotationStore(self.store_path, author=self.author.text() or None)
        stored = self.store.labels(self.image_id)
        changed = 0
        for cell in set(stored) | set(q.corrections):
            if cell in self._pending or cell not in q:
                continue
            new = stored.get(cell)
            if q.corrections.get(cell) != new:
                q.take_label(cell, new)
                self.table_model.update_row(
                    cell, {"class": q.final(cell), "reviewed": q.is_reviewed(cell)}
                )
                changed += 1
        if changed:
            self._show_counts()
            self.refresh_marks()
        return changed

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every correction is durable and shown as saved."""
        from qtpy.QtWidgets import QApplication

        ok = self.writer.flush(timeout) if self.writer else True
        QApplication.processEvents()
        return ok

    # -- display ----------------------------------------------------------------------
    def _on_filter(self, *_) -> None:
        if self.queue is None:
            return
        idx = self.filter_class.currentIndex()
        classes = None if idx <= 0 else [self.filter_class.currentText()]
        self.queue.set_filter(
            classes, self.min_unc.value(), self.max_unc.value(), self.unreviewed_only.isChecked()
        )
        self._reload_table()
        self.show_current()

    def _reload_table(self) -> None:
        self.table_model.set_table(self.queue.review_table())
