"""Pieces of the Slide dock: layer levels/axes, the metadata text, the clickable thumbnail,
channel colours. Kept apart so ``slide.py`` stays the dock's wiring only.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QRectF, Qt, Signal
from qtpy.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from qtpy.QtWidgets import QLabel

COLOURS = {
    "blue": "#0000ff", "green": "#00ff00", "red": "#ff0000", "magenta": "#ff00ff",
    "cyan": "#00ffff", "yellow": "#ffff00", "gray": "#ffffff",
}  # fmt: skip


def layer_levels(layer) -> tuple[list, str]:
    """(levels largest first, axes) of an image layer; axes from the reader when known."""
    levels = list(layer.data) if layer.multiscale else [layer.data]
    axes = str(layer.metadata.get("axes", "")) if layer.metadata else ""
    if layer.metadata.get("channels") and "C" in axes and not layer.rgb:
        axes = axes.replace("C", "")  # napari split the channels into layers
    axes = axes.replace("S", "") + ("S" if layer.rgb else "")
    ndim = levels[0].ndim
    if len(axes) != ndim or "Y" not in axes or "X" not in axes:
        axes = "I" * (ndim - (3 if layer.rgb else 2)) + ("YXS" if layer.rgb else "YX")
    return levels, axes


def _pixel_size_from_units(layer, iy: int, ix: int) -> tuple[float, float] | None:
    """(y, x) pixel size in um from the layer's scale and physical units, else ``None``."""
    from napari_nucleus_ai.core.units import nm_per

    try:
        units = [str(layer.units[i]) for i in (iy, ix)]
    except (AttributeError, IndexError):
        return None
    factors = [nm_per(u) for u in units]
    if any(f is None for f in factors):
        return None
    return tuple(float(layer.scale[i]) * f / 1000.0 for i, f in zip((iy, ix), factors, strict=True))


def describe_layer(layer) -> str:
    """Rich text with what users look for in a slide or stack."""
    meta = layer.metadata or {}
    levels, axes = layer_levels(layer)
    iy, ix = axes.index("Y"), axes.index("X")
    rows = [("layer", layer.name)]
    if meta.get("format"):
        rows.append(("format", meta["format"]))
    px = meta.get("pixel_size_um") or _pixel_size_from_units(layer, iy, ix)
    sy, sx = layer.scale[iy], layer.scale[ix]
    if px:
        sy, sx = px[0], px[1]  # um
    rows.append(
        (
            "pixel size",
            f"{px[1]:.4g} um ({1 / px[1]:.4g} px/um)" if px else f"unknown (scale {sx:g})",
        )
    )
    if meta.get("magnification"):
        rows.append(("magnification", f"{meta['magnification']:g}x"))
    h0, w0 = levels[0].shape[iy], levels[0].shape[ix]
    size = f"{h0} x {w0} px"
    if px:
        size += f" = {h0 * sy / 1000:.3g} x {w0 * sx / 1000:.3g} mm"
    rows.append(("size", size))
    rows.append(("levels", ", ".join(f"{lv.shape[iy]}x{lv.shape[ix]}" for lv in levels)))
    rows.append(("axes", axes + (" (lazy)" if not isinstance(levels[0], np.ndarray) else "")))
    if meta.get("channels"):
        rows.append(("channels", ", ".join(meta["channels"])))
    for key, label in (
        ("z_step_um", "z step"),
        ("time_step_s", "time step"),
        ("acquisition_date", "acquired"),
    ):
        if meta.get(key):
            unit = {"z_step_um": " um", "time_step_s": " s"}.get(key, "")
            rows.append((label, f"{meta[key]}{unit}"))
    if meta.get("associated"):
        rows.append(("also in file", ", ".join(meta["associated"])))
    return (
        "<table>"
        + "".join(f"<tr><td><b>{k}</b>&nbsp;</td><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )


#: The thumbnail's longest side, px: it fits a dock of a 1366 px laptop screen (~290 px wide).
THUMB_PX = 240


class Thumbnail(QLabel):
    """An overview image; a click sends the clicked position as fractions (fy, fx)."""

    clicked = Signal(float, float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setMinimumHeight(120)
        self._pix: QPixmap | None = None
        self.view = None  # (fy0, fx0, fy1, fx1) of the visible area

    def set_image(self, rgb: np.ndarray | None) -> None:
        if rgb is None:
            self._pix = None
            self.clear()
            return
        rgb = np.ascontiguousarray(rgb)
        h, w = rgb.shape[:2]
        image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        self._pix = QPixmap.fromImage(image).scaled(
            THUMB_PX,
            THUMB_PX,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
        self._redraw()

    def set_view(self, view) -> None:
        self.view = view
        self._redraw()

    def _redraw(self) -> None:
        if self._pix is None:
            return
        pix = QPixmap(self._pix)
        if self.view is not None:
            fy0, fx0, fy1, fx1 = self.view
            p = QPainter(pix)
            p.setPen(QPen(QColor("#00e5ff"), 2))
            w, h = pix.width(), pix.height()
            p.drawRect(
                QRectF(fx0 * w, fy0 * h, max(2.0, (fx1 - fx0) * w), max(2.0, (fy1 - fy0) * h))
            )
            p.end()
        self.setPixmap(pix)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self._pix is None:
            return
        pos = event.position() if hasattr(event, "position") else event.pos()
        w, h = self._pix.width(), self._pix.height()
        ox, oy = (self.width() - w) / 2, (self.height() - h) / 2
        fx, fy = (pos.x() - ox) / w, (pos.y() - oy) / h
        if 0 <= fx <= 1 and 0 <= fy <= 1:
            self.clicked.emit(float(fy), float(fx))


def _colour_name(colormap) -> str:
    """A short name for a layer's colormap: a COLOURS key when its top colour is one."""
    top = np.asarray(colormap.colors)[-1][:3]
    hexcol = "#{:02x}{:02x}{:02x}".format(*(int(round(v * 255)) for v in top))
    return next((k for k, v in COLOURS.items() if v == hexcol), colormap.name)


def set_channel_colour(layer, colour: str) -> None:
    """Give a channel layer a black-to-``colour`` colormap (name from :data:`COLOURS` or hex)."""
    hexcol = COLOURS.get(colour, colour)
    if not str(hexcol).startswith("#"):
        layer.colormap = colour
        return
    layer.colormap = {"colors": ["#000000", hexcol], "name": f"{layer.name} {hexcol}"}
