"""Review dock: confirm or correct each cell's class with one key, durably, with live counts.

Thin: the queue, undo/redo and counts are :class:`napari_nucleus_ai.review.ReviewQueue`,
the store is :class:`napari_nucleus_ai.annotations.AnnotationStore` written by a
:class:`~napari_nucleus_ai.annotations.BackgroundWriter` thread (a row turns from
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
    QVBoxLayout,
    QWidget,
)

from ._review_table import ReviewTableModel

if TYPE_CHECKING:
    import napari

CLASS_COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#7f7f7f",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
]
EXTRA_COLORS = {"unidentified": "#ffffff", "artefact": "#555555"}


def class_colors(classes: list[str], given: dict | None = None) -> dict[str, str]:
    """A colour per class: the model's (layer metadata ``class_colors``) else a fixed palette."""
    given = given or {}
    out = {}
    for i, c in enumerate(classes):
        out[c] = given.get(c) or EXTRA_COLORS.get(c) or CLASS_COLORS[i % len(CLASS_COLORS)]
    return out


def layer_source(layer) -> str | None:
    """The image file a Labels layer's cells came from, when known."""
    meta = getattr(layer, "metadata", {}) or {}
    for key in ("image_path", "source_path", "source"):
        v = meta.get(key)
        if isinstance(v, str | os.PathLike) and Path(v).is_file():
            return os.fspath(v)
    feats = getattr(layer, "features", None)
    if feats is not None and "source" in feats.columns and len(feats):
        vals = feats["source"].dropna().unique()
        if len(vals) == 1 and Path(str(vals[0])).is_file():
            return str(vals[0])
    path = getattr(getattr(layer, "source", None), "path", None)
    return path if path and Path(path).is_file() else None


def model_name(layer) -> str | None:
    """The model that predicted the layer's classes (metadata ``model`` or the ``model`` column)."""
    m = (getattr(layer, "metadata", {}) or {}).get("model")
    feats = getattr(layer, "features", None)
    if m is None and feats is not None and "model" in feats.columns and len(feats):
        vals = feats["model"].dropna().unique()
        m = vals[0] if len(vals) == 1 else None
    if isinstance(m, dict):
        return " ".join(str(m.get(k)) for k in ("name", "version") if m.get(k)) or None
    return None if m is None else str(m)


class ReviewWidget(QWidget):
    """The *Review* dock."""

    saved = Signal(object, object)  # Correction, token (from the writer thread)
    failed = Signal(object, object)  # exception, token

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        from ..annotations import default_author

        self.viewer = viewer
        self.queue = None
        self.store = None
        self.writer = None
        self.layer = None
        self.image_id: str | None = None
        self.project: str | None = None
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
        self.info = QLabel("choose a Labels layer with classified cells")
        self.info.setWordWrap(True)
        self.class_grid = QGridLayout()
        self.btn_prev, self.btn_confirm, self.btn_next = (
            QPushButton("◀ prev"),
            QPushButton("✓ confirm (Space)"),
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
            QPushButton("Export training set…"),
            QPushButton("Retrain…"),
        )
        self._layout()
        self._connect()
        self._shortcuts: dict[str, QShortcut] = {}
        self._install_keys()
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(300)
        self._refresh_timer.timeout.connect(self._refresh_slow)
        self._fill_layers()

    # -- layout -----------------------------------------------------------------
    def _layout(self) -> None:
        form = QFormLayout()
        form.addRow("cells", self.layer_box)
        row = QHBoxLayout()
        row.addWidget(self.store_label, 1)
        row.addWidget(self.project_btn)
        form.addRow("store", row)
        form.addRow("author", self.author)
        nav = QHBoxLayout()
        for b in (self.btn_prev, self.btn_confirm, self.btn_next, self.btn_undo, self.btn_redo):
            nav.addWidget(b)
        filt = QHBoxLayout()
        filt.addWidget(self.filter_class)
        filt.addWidget(QLabel("unc."))
        filt.addWidget(self.min_unc)
        filt.addWidget(QLabel("–"))
        filt.addWidget(self.max_unc)
        filt.addWidget(self.unreviewed_only)
        outs = QHBoxLayout()
        for b in (self.btn_csv, self.btn_report, self.btn_trainset, self.btn_retrain):
            outs.addWidget(b)
        lay = QVBoxLayout(self)
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
        from . import _review_outputs as outs

        self.layer_box.currentIndexChanged.connect(self._on_layer_choice)
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
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)

    def _install_keys(self) -> None:
        win = self.viewer.window._qt_window
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
            sc = QShortcut(QKeySequence(key), win)
            sc.setContext(Qt.ShortcutContext.WindowShortcut)
            sc.activated.connect(fn)
            self._shortcuts[key] = sc
        self._enable_keys(self.keys_on.isChecked())

    def _enable_keys(self, on: bool) -> None:
        for sc in self._shortcuts.values():
            sc.setEnabled(bool(on) and self.queue is not None)

    # -- layers and store ------------------------------------------------------------
    def _candidates(self) -> list:
        from napari.layers import Labels

        return [
            ly
            for ly in self.viewer.layers
            if isinstance(ly, Labels)
            and "label" in getattr(ly, "features", {})
            and len(ly.features)
        ]

    def _fill_layers(self) -> None:
        current = self.layer
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        for ly in self._candidates():
            self.layer_box.addItem(ly.name, ly)
        self.layer_box.blockSignals(False)
        if current is not None and current in self._candidates():
            self.layer_box.setCurrentIndex(self._candidates().index(current))
        elif self.layer_box.count():
            self._on_layer_choice(self.layer_box.currentIndex())
        else:
            self.detach()

    def _on_layers_changed(self, event=None) -> None:
        from . import _review_outputs as outs

        if event is not None and getattr(event, "type", "") == "inserted":
            outs.maybe_restore(self, event.value)
        self._fill_layers()

    def _on_layer_choice(self, index: int) -> None:
        layer = self.layer_box.itemData(index) if index >= 0 else None
        if layer is not None and layer is not self.layer:
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
        from ..annotations import store_for_data, store_path
        from ..settings import config_dir

        src = layer_source(layer)
        if self.project:
            return store_path(self.project)
        if src:
            return store_for_data(src)
        return store_path(config_dir() / "unsaved-images")

    def attach(self, layer) -> None:
        """Start reviewing ``layer``: open its store, restore its corrections, save its session."""
        from ..annotations import AnnotationStore, BackgroundWriter, image_id_for
        from ..cells import from_features
        from ..review import ReviewQueue, model_classes

        self.detach()
        table = from_features(layer.features)
        meta = layer.metadata or {}
        store = AnnotationStore(self.store_location(layer), author=self.author.text() or None)
        src = layer_source(layer)
        image_id = str(
            meta.get("image_id") or (image_id_for(src, store.path) if src else layer.name)
        )
        classes = meta.get("classes") or model_classes(table)
        corrections = store.labels(image_id)
        from ..review import model_table

        table = model_table(table)  # a restored/reviewed layer: back to the model's classes
        self.layer, self.store, self.image_id = layer, store, image_id
        self.queue = ReviewQueue(table, classes, corrections)
        self.colors = class_colors(self.queue.classes, meta.get("class_colors"))
        self.writer = BackgroundWriter(store, on_saved=self.saved.emit, on_error=self.failed.emit)
        self.store_label.setText(f"{store.path}  [{image_id}]")
        self._build_class_buttons()
        self.filter_class.blockSignals(True)
        self.filter_class.clear()
        self.filter_class.addItems(["all classes", *self.queue.classes])
        self.filter_class.blockSignals(False)
        from . import _review_outputs as outs

        outs.save_session_once(self, table, src)
        self._enable_keys(self.keys_on.isChecked())
        self._reload_table()
        self._refresh_slow()
        self._zoom_next = True
        self.show_current()

    def detach(self) -> None:
        if self.writer is not None:
            self.writer.flush(30)
            self.writer.close()
        self.writer = None
        self.queue = None
        self.layer = None
        self._pending.clear()
        self.table_model.pending.clear()
        self._enable_keys(False)

    def _build_class_buttons(self) -> None:
        while self.class_grid.count():
            self.class_grid.takeAt(0).widget().deleteLater()
        for i, c in enumerate(self.queue.classes):
            key = self.queue.key_for(c)
            b = QPushButton(f"{key} {c}" if key else c)
            b.setStyleSheet(
                f"border-left: 6px solid {self.colors[c]}; text-align: left; padding-left: 4px"
            )
            b.clicked.connect(lambda _=False, c=c: self.set_class(c))
            self.class_grid.addWidget(b, i // 3, i % 3)

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

        from ..errors import one_line

        self._pending.pop(int(token), None)
        show_error(f"correction of cell {token} NOT saved: {one_line(error, self.store.path)}")
        self._show_status()

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

    def show_current(self) -> None:
        q = self.queue
        cell = q.current if q is not None else None
        if cell is None:
            self.info.setText("no cell matches the filter" if q is not None else "no cells")
            return
        row = q.table.loc[cell]
        pred, fin = q.predicted(cell), q.final(cell)
        if q.is_reviewed(cell):
            state = f"reviewed: <b>{fin}</b>"
        else:
            state = f"not reviewed · Space confirms <b>{q.suggestion(cell) or 'unidentified'}</b>"
        done = q.reviewed
        self.info.setText(
            f"cell <b>{cell}</b> ({q.order.index(cell) + 1}/{len(q)}) · model: <b>{pred}</b> · "
            f"uncertainty {q.uncertainty(cell):.3f} · {state} · {done}/{len(q)} reviewed"
        )
        r = self.table_model.row_of(cell)
        if r is not None:
            self.table.selectRow(r)
            self.table.scrollTo(self.table_model.index(r, 0))
        self._centre_on(row, zoom=self._zoom_next)
        self._zoom_next = False
        self._show_current_marker(row)

    def _centres(self, rows) -> np.ndarray:
        axes = ("z", "y", "x") if "centroid_z" in rows else ("y", "x")
        return np.asarray(rows[[f"centroid_{a}" for a in axes]], float)

    @property
    def camera(self):
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9 moved the camera
        return scene.camera if scene is not None else self.viewer.camera

    def _centre_on(self, row, zoom: bool = False) -> None:
        c = self._centres(row)
        if len(c) == 3:
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3, c[0])
        camera = self.camera
        camera.center = tuple(c[-2:])
        if zoom and self.zoom_on.isChecked() and "bbox_y0" in row:
            side = max(row["bbox_y1"] - row["bbox_y0"], row["bbox_x1"] - row["bbox_x0"], 1e-9)
            camera.zoom = min(self.viewer.canvas.size) / (5.0 * side)

    def _markers(self, name: str, **kw):
        ndim = 3 if "centroid_z" in self.queue.table else 2
        if name in self.viewer.layers and self.viewer.layers[name].ndim == ndim:
            return self.viewer.layers[name]
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        layer = self.viewer.add_points(
            np.zeros((0, ndim)),
            name=name,
            face_color="transparent",
            symbol=kw.pop("symbol", "ring"),
            **kw,
        )
        if self.layer is not None:
            self.viewer.layers.selection.active = self.layer
        return layer

    def _show_current_marker(self, row) -> None:
        """A yellow square around the current cell: one point at 0, moved with ``translate``."""
        c = self._centres(row)
        side = (
            float(
                max(
                    row.get("bbox_y1", 1) - row.get("bbox_y0", 0),
                    row.get("bbox_x1", 1) - row.get("bbox_x0", 0),
                )
            )
            * 1.4
        )
        layer = self._markers(
            "current cell", symbol="square", border_color="yellow", border_width=0.06
        )
        if len(layer.data) != 1:
            layer.data = np.zeros((1, len(c)))
        if abs(float(layer.size[0]) - side) > 0.25 * side:
            layer.size = [side]
        layer.translate = tuple(c)

    def _refresh_slow(self) -> None:
        """Counts, reviewed markers, layer features: coalesced to keep up with key repeat."""
        q = self.queue
        if q is None:
            return
        self._show_counts()
        cells = sorted(q.corrections)
        marks = self._markers("reviewed cells", border_width=0.12)
        if cells:
            sub = q.table.loc[cells]
            side = np.maximum(
                sub.get("bbox_y1", 1) - sub.get("bbox_y0", 0),
                sub.get("bbox_x1", 1) - sub.get("bbox_x0", 0),
            )
            marks.data = self._centres(sub)
            marks.size = np.asarray(side, float) * 1.15
            marks.border_color = [self.colors.get(q.corrections[c], "#ffffff") for c in cells]
        else:
            marks.data = np.zeros((0, marks.ndim))
        marks.selected_data = set()
        if self.layer is not None and self.layer in self.viewer.layers:
            from ..cells import from_features, to_features
            from ..review import apply_corrections

            feats = from_features(self.layer.features)
            self.layer.features = to_features(apply_corrections(feats, q.corrections))
        self._show_status()

    def _show_counts(self) -> None:
        q = self.queue
        counts = q.counts()
        rows = "".join(
            f"<tr><td style='color:{self.colors.get(r['class'], '#aaa')}'>■</td><td>{r['class']}</td>"
            f"<td align=right>{r['count']}</td><td align=right>"
            f"{(format(r['percent'], '.1f') + ' %') if r['counted'] else '–'}</td></tr>"
            for _, r in counts.iterrows()
        )
        self.counts.setText(
            f"<table cellspacing=4>{rows}</table>{q.reviewed} reviewed, {q.unreviewed} unreviewed"
        )

    def _show_status(self) -> None:
        pend = sum(self._pending.values())
        where = self.store.path if self.store is not None else "-"
        self.status.setText(
            f"{self.saved_count} corrections saved to {where}"
            + (f" · {pend} saving…" if pend else " · all saved")
        )
