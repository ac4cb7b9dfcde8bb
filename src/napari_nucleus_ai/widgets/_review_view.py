"""The review dock's view side: camera, markers, counts, status; colours and layer facts.

Mixed into :class:`~napari_nucleus_ai.widgets.review.ReviewWidget`, which holds
``viewer``, ``queue``, ``layer``, ``store``, ``colors``, ``table``/``table_model``
and the labels used here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


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


def set_text(classes: list[str] | None) -> str:
    """The current cell's conformal set for the dock's line (``""`` when the model has none)."""
    if classes is None:
        return ""
    if not classes:
        return " · set: <b>empty</b>"
    return f" · set: <b>{' | '.join(classes)}</b>" + (" (one of these)" if len(classes) > 1 else "")


class ReviewView:
    """Display methods of the review dock (no state of their own)."""

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
            f"cell <b>{cell}</b> ({q.rank(cell) + 1}/{len(q)}) · model: <b>{pred}</b> · "
            f"uncertainty {q.uncertainty(cell):.3f}{set_text(q.prediction_set(cell))} · "
            f"{state} · {done}/{len(q)} reviewed"
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
        from napari_nucleus_ai.widgets._compat import camera

        return camera(self.viewer)

    def _centre_on(self, row, zoom: bool = False) -> None:
        c = self._centres(row)
        if len(c) == 3:
            self.viewer.dims.set_point(self.viewer.dims.ndim - 3, c[0])
        from napari_nucleus_ai.widgets._compat import set_view

        new_zoom = None
        if zoom and self.zoom_on.isChecked() and "bbox_y0" in row:
            side = max(row["bbox_y1"] - row["bbox_y0"], row["bbox_x1"] - row["bbox_x0"], 1e-9)
            new_zoom = min(self.viewer.canvas.size) / (5.0 * side)
        set_view(self.viewer, self.layer, center=c[-2:], zoom=new_zoom)

    def _markers(self, name: str, **kw):
        ndim = 3 if "centroid_z" in self.queue.table else 2
        if name in self.viewer.layers and self.viewer.layers[name].ndim == ndim:
            return self.viewer.layers[name]
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        units = getattr(self.layer, "units", None)  # markers sit in the cells' world units
        if units is not None and len(units) >= ndim:
            kw["units"] = tuple(units)[-ndim:]
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

    def refresh_marks(self) -> None:
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
            from napari_nucleus_ai.cells import from_features, to_features
            from napari_nucleus_ai.review.queue import apply_corrections

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
