"""Slide dock: what a slide/stack is (MPP, magnification, levels, channels), a thumbnail to
navigate it, and loading a region or a whole level into memory for analysis.

Thin: metadata comes from the reader (layer ``metadata``), pixels are read by
:func:`napari_nucleus_ai.images.regions.read_region_gen` in a worker with progress
and cancel. The loaded region becomes a plain in-memory image layer placed exactly over
the slide (same physical ``scale``, ``translate`` at its origin), ready for segmentation.
For fluorescence stacks the dock lists the channel layers with their names and colours.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_nucleus_ai.widgets._base import DockBase
from napari_nucleus_ai.widgets._slide_parts import (
    COLOURS,
    Thumbnail,
    _colour_name,
    describe_layer,
    layer_levels,
    set_channel_colour,
)

if TYPE_CHECKING:
    import napari


class SlideWidget(DockBase, QWidget):
    """Slide metadata, thumbnail navigation, region/level loading; stack channel colours."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.init_dock(viewer)
        self._shown = None  # the layer whose facts are on show
        self.layer_box = QComboBox()
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.thumb = Thumbnail()
        self.level = QSpinBox()
        self.region = QComboBox()
        self.region.addItems(["visible area", "whole level"])
        self.load_btn = QPushButton("Load into memory")
        self.cancel_btn = QPushButton("Cancel")
        self.status = QLabel()
        from napari_nucleus_ai.widgets._base import status_label

        status_label(self.status)
        self._level_auto = True  # the level follows the zoom until the user picks one
        self._setting_level = False
        self.channels = QGridLayout()

        form = QFormLayout()
        form.addRow("image", self.layer_box)
        form.addRow("level", self.level)
        form.addRow("region", self.region)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_btn)
        buttons.addWidget(self.cancel_btn)
        from napari_nucleus_ai.widgets._base import scroll_body

        lay = scroll_body(self)
        lay.addLayout(form)
        lay.addWidget(self.info)
        lay.addWidget(self.thumb)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addLayout(self.channels)
        lay.addStretch(1)

        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.setInterval(60)
        self._view_timer.timeout.connect(self._update_view)
        self.thumb.clicked.connect(self.go_to)
        self.load_btn.clicked.connect(lambda: self.load())
        self.cancel_btn.clicked.connect(self.cancel)
        self.level.valueChanged.connect(self._on_level_edited)
        # napari calls the last connected first: a removed layer is forgotten before the
        # box refreshes, so a new layer of the same name is shown afresh
        viewer.layers.events.removed.connect(self._on_removed)
        self.camera.events.center.connect(self._schedule_view)
        self.camera.events.zoom.connect(self._schedule_view)
        self.layer_choice(self.layer_box, "Image", "an image layer", on_change=self._on_layer)
        self.run_button(self.load_btn, needs=[self.layer_box])
        self.cancel_button(self.cancel_btn)
        self._on_layer()

    @property
    def camera(self):
        """The viewer's camera (``viewer.scene.camera`` since napari 0.9)."""
        from napari_nucleus_ai.widgets._compat import camera

        return camera(self.viewer)

    def _schedule_view(self, event=None) -> None:
        self._view_timer.start()

    # -- layers ---------------------------------------------------------------------------

    def _image_layers(self) -> list:
        from napari.layers import Image

        return [ly for ly in self.viewer.layers if isinstance(ly, Image)]

    def _on_removed(self, event=None) -> None:
        if event is not None and getattr(event.value, "name", None) == self._shown:
            self._shown = None  # a new layer of the same name must be shown afresh

    @property
    def layer(self):
        """The chosen image layer (``None`` when none is)."""
        return self.chosen(self.layer_box)

    def _on_layer(self, _layer=None) -> None:
        layer = self.layer
        if layer is not None and layer.name == self._shown:
            return  # another layer came or went; keep the user's choices
        self._shown = None if layer is None else layer.name
        self._clear_channels()
        if layer is None:
            self.info.setText("open a slide, field or stack")
            self.thumb.set_image(None)
            return
        from napari_nucleus_ai.images.regions import thumbnail

        levels, axes = layer_levels(layer)
        self.info.setText(describe_layer(layer))
        self._setting_level = True
        self.level.setRange(0, len(levels) - 1)
        self._setting_level = False
        self._level_auto = True
        self.status.setText("")
        try:
            self.thumb.set_image(thumbnail(levels, axes, layer.rgb, 512))
        except Exception as e:  # noqa: BLE001 - a broken tile must not break the dock
            from napari_nucleus_ai.core.errors import one_line

            self.thumb.set_image(self._associated_thumbnail(layer))
            if self.thumb.pixmap() is None or self.thumb.pixmap().isNull():
                self.status.setText(one_line(e))
        self._show_channels(layer)
        self._update_view()

    @staticmethod
    def _associated_thumbnail(layer):
        """The scanner's own thumbnail page, for files without a small pyramid level."""
        meta = layer.metadata or {}
        if not meta.get("path") or "thumbnail" not in [
            a.lower() for a in meta.get("associated", [])
        ]:
            return None
        from napari_nucleus_ai.images import as_rgb
        from napari_nucleus_ai.images.tiff import read_associated

        try:
            return as_rgb(read_associated(meta["path"], "thumbnail"))
        except Exception:  # noqa: BLE001 - no thumbnail is not an error
            return None

    # -- navigation -----------------------------------------------------------------------

    def _canvas_hw(self) -> tuple[float, float]:
        """Canvas size in screen pixels (height, width)."""
        canvas = getattr(self.viewer, "canvas", None)
        if canvas is not None and hasattr(canvas, "viewbox_size"):
            return tuple(float(v) for v in canvas.viewbox_size(self.viewer.layers))
        size = getattr(canvas, "size", None) or getattr(self.viewer, "_canvas_size", (600, 800))
        return float(size[0]), float(size[1])

    def _level0_box(self, layer) -> tuple[float, float, float, float] | None:
        """Visible area in level-0 pixels (y0, x0, y1, x1), clipped to the image.

        From the camera (centre, zoom) and the canvas size: napari's own
        ``corner_pixels`` keep the larger region already loaded, not what is on screen.
        """
        levels, axes = layer_levels(layer)
        iy, ix = axes.index("Y"), axes.index("X")
        dims = [i for i, a in enumerate(axes) if a != "S"]
        cy, cx = dims.index(iy), dims.index(ix)
        from napari_nucleus_ai.widgets._compat import view_of

        (*_, wy, wx), zoom = view_of(self.viewer, layer)
        if zoom <= 0:
            return None
        h, w = self._canvas_hw()
        sy, sx = float(layer.scale[cy]), float(layer.scale[cx])
        ty, tx = float(layer.translate[cy]), float(layer.translate[cx])
        y0, y1 = (wy - h / 2 / zoom - ty) / sy, (wy + h / 2 / zoom - ty) / sy
        x0, x1 = (wx - w / 2 / zoom - tx) / sx, (wx + w / 2 / zoom - tx) / sx
        h0, w0 = levels[0].shape[iy], levels[0].shape[ix]
        y0, x0, y1, x1 = max(0.0, y0), max(0.0, x0), min(float(h0), y1), min(float(w0), x1)
        if y1 <= y0 or x1 <= x0:
            return None
        return y0, x0, y1, x1

    def _on_level_edited(self, _value=None) -> None:
        if not self._setting_level:
            self._level_auto = False  # the user chose: keep it

    def level_for_view(self, layer=None) -> int:
        """The level whose pixels are closest to (not coarser than) the screen's at this zoom."""
        from napari_nucleus_ai.images.regions import downsample_factors
        from napari_nucleus_ai.widgets._compat import view_of

        layer = layer if layer is not None else self.layer
        levels, axes = layer_levels(layer)
        if len(levels) == 1:
            return 0
        _, zoom = view_of(self.viewer, layer)  # screen px per world unit
        dims = [i for i, a in enumerate(axes) if a != "S"]
        sx = float(layer.scale[dims.index(axes.index("X"))])
        level0_per_screen = 1.0 / max(zoom * sx, 1e-12)  # level-0 pixels per screen pixel
        best = 0
        for i, (_fy, fx) in enumerate(downsample_factors(levels, axes)):
            if fx <= level0_per_screen * 1.001:
                best = i
        return best

    def _update_view(self) -> None:
        layer = self.layer
        if layer is None:
            return
        if self._level_auto:
            self._setting_level = True
            try:
                self.level.setValue(self.level_for_view(layer))
            finally:
                self._setting_level = False
        box = self._level0_box(layer)
        levels, axes = layer_levels(layer)
        h0, w0 = levels[0].shape[axes.index("Y")], levels[0].shape[axes.index("X")]
        if box is None or (box[2] - box[0] >= h0 and box[3] - box[1] >= w0):
            self.thumb.set_view(None)
        else:
            self.thumb.set_view(
                (box[0] / h0, box[1] / w0, min(1, box[2] / h0), min(1, box[3] / w0))
            )

    def go_to(self, fy: float, fx: float) -> None:
        """Centre the view on a point of the slide given as fractions of its height and width."""
        layer = self.layer
        if layer is None:
            return
        levels, axes = layer_levels(layer)
        iy, ix = axes.index("Y"), axes.index("X")
        dims = [i for i, a in enumerate(axes) if a != "S"]
        cy, cx = dims.index(iy), dims.index(ix)
        h0, w0 = levels[0].shape[iy], levels[0].shape[ix]
        wy = layer.translate[cy] + fy * h0 * layer.scale[cy]
        wx = layer.translate[cx] + fx * w0 * layer.scale[cx]
        from napari_nucleus_ai.widgets._compat import set_view

        set_view(self.viewer, layer, center=(wy, wx))

    # -- loading ----------------------------------------------------------------------------

    def region_request(self) -> tuple[int, float, float, float, float]:
        """(level, y0, x0, height, width) in that level's pixels, from the dock's choices."""
        layer = self.layer
        levels, axes = layer_levels(layer)
        level = int(self.level.value())
        iy, ix = axes.index("Y"), axes.index("X")
        h, w = levels[level].shape[iy], levels[level].shape[ix]
        if self.region.currentText() == "whole level":
            return level, 0, 0, h, w
        box = self._level0_box(layer)
        if box is None:
            return level, 0, 0, h, w
        from napari_nucleus_ai.images.regions import downsample_factors

        fy, fx = downsample_factors(levels, axes)[level]
        return level, box[0] / fy, box[1] / fx, (box[2] - box[0]) / fy, (box[3] - box[1]) / fx

    def load(self, sync: bool | None = None):
        """Load the chosen region/level of the selected layer as a new in-memory layer."""
        from napari_nucleus_ai.images.regions import downsample_factors, read_region_gen

        layer = self.layer
        if layer is None:
            return None
        levels, axes = layer_levels(layer)
        level, y0, x0, h, w = self.region_request()
        f = downsample_factors(levels, axes)[level]
        dims = [i for i, a in enumerate(axes) if a != "S"]
        cy, cx = dims.index(axes.index("Y")), dims.index(axes.index("X"))
        scale, translate = np.array(layer.scale, float), np.array(layer.translate, float)
        units = tuple(layer.units)  # the loaded region is in the slide's units (um)
        name = layer.name

        def done(result) -> None:
            arr, (ry, rx) = result
            sc, tr = scale.copy(), translate.copy()
            sc[cy], sc[cx] = scale[cy] * f[0], scale[cx] * f[1]
            tr[cy], tr[cx] = translate[cy] + ry * sc[cy], translate[cx] + rx * sc[cx]
            ry1, rx1 = ry + arr.shape[axes.index("Y")], rx + arr.shape[axes.index("X")]
            meta = {k: v for k, v in (layer.metadata or {}).items() if k not in ("levels", "lazy")}
            meta.update(
                source_layer=name,
                level=level,
                region=[int(ry), int(rx), int(ry1), int(rx1)],
                pixel_size_um=[float(sc[cy]), float(sc[cx])] if meta.get("pixel_size_um") else None,
            )
            look = {} if layer.rgb else {"colormap": layer.colormap,
                                          "contrast_limits": layer.contrast_limits}  # fmt: skip
            self.add_result(
                "image", arr, name=f"{name} L{level} [{ry}:{ry1}, {rx}:{rx1}]", rgb=layer.rgb,
                scale=sc, translate=tr, metadata=meta, units=units, **look,
            )  # fmt: skip
            self.status.setText(f"loaded {arr.shape} ({arr.nbytes / 2**20:.1f} MiB)")

        self.status.setText("loading...")
        return self.start_job(
            read_region_gen, levels, axes, level, y0, x0, h, w, name=name,
            on_result=done, description=f"loading {name}", sync=sync,
        )  # fmt: skip

    # -- stack channels -------------------------------------------------------------------------

    def _clear_channels(self) -> None:
        while self.channels.count():
            item = self.channels.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()

    def channel_layers(self, layer) -> list:
        """Image layers from the same file as ``layer`` that hold one channel each."""
        path = (layer.metadata or {}).get("path")
        if not path or not layer.metadata.get("channels"):
            return []
        return [ly for ly in self._image_layers() if (ly.metadata or {}).get("path") == path]

    def _show_channels(self, layer) -> None:
        layers = self.channel_layers(layer)
        if not layers:
            return
        self.channels.addWidget(QLabel("<b>channels</b>"), 0, 0, 1, 2)
        for row, ly in enumerate(layers, start=1):
            box = QComboBox()
            box.addItems(list(COLOURS))
            current = _colour_name(ly.colormap)
            if current not in COLOURS:
                box.addItem(current)
            box.setCurrentText(current)
            box.currentTextChanged.connect(lambda text, ly=ly: set_channel_colour(ly, text))
            self.channels.addWidget(QLabel(ly.name), row, 0)
            self.channels.addWidget(box, row, 1)


def demo_smear(viewer) -> None:
    """Demo step: the synthetic smear field (with hidden ground truth) and the Slide dock."""
    viewer.open_sample("napari-nucleus-ai", "smear_field")
    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Slide")
    dock.layer_box.setCurrentText("smear field (synthetic)")
    viewer.scale_bar.visible = True
    viewer.reset_view()
