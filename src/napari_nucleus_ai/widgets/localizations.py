"""Localizations dock: open a localization file, see what it holds, filter, correct
drift, render at true nanometres, re-render on zoom, save, measure (merge blinks, NeNA,
FRC, clusters: the Measure section of :mod:`._localizations_measure`).

Thin: reading, filtering, drift correction and rendering are core generators in
:mod:`napari_nucleus_ai.localizations.pipeline`, run through ``start_work``.
Rendered layers carry the table in ``metadata["localizations"]`` (the filtered one
after *Render*), which the CSV writer and the segmentation dock use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    PushButton,
)

from napari_nucleus_ai.localizations.detect import FORMATS as DETECT_FORMATS
from napari_nucleus_ai.widgets._base import (
    DockBase,
    ScrollableDock,
    narrow_fields,
    status_label,
)
from napari_nucleus_ai.widgets._compat import camera, set_view
from napari_nucleus_ai.widgets._localizations_measure import MeasureSection, roi_nm
from napari_nucleus_ai.widgets._localizations_zoom import NanoscaleZoom
from napari_nucleus_ai.widgets._units import adopt_units_before_insert

if TYPE_CHECKING:
    import napari

NONE = "-"
AUTO_FORMAT = "auto (by content)"
# formats a user may force (csv: the generic reader; hdf5-bad is detection-only)
READ_FORMATS = tuple(f for f in DETECT_FORMATS if f != "hdf5-bad")
UNITS = {"nm": 1.0, "µm": 1000.0, "camera px": None}
COLORMAPS = ("magma", "green", "magenta", "cyan", "yellow", "red", "blue", "gray", "turbo")
#: The spin-box value meaning "no such filter" where 0 is a real value (photons, frames).
OFF = -1.0


def _is_table_layer(layer) -> bool:
    """A layer that carries a localization table (not a zoom overlay)."""
    meta = layer.metadata or {}
    return meta.get("localizations") is not None and "zoom_of" not in meta


class LocalizationsWidget(MeasureSection, NanoscaleZoom, ScrollableDock, DockBase, Container):
    """The "Localizations" dock."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True, scrollable=True)
        self.init_dock(viewer)
        from napari_nucleus_ai.core.params import command_param

        def render_param(name):  # every limit is the one `render` checks
            return command_param("render", name)

        spin = self.schema_spin
        self.mapping_wanted = False  # the column-mapping box is in use
        self._last_path = None
        self.file = FileEdit(label="file", mode="r", filter="*")
        self.file_format = ComboBox(  # detection is by content; override when it is wrong
            label="format", choices=[AUTO_FORMAT, *READ_FORMATS], value=AUTO_FORMAT
        )
        self.open_btn = PushButton(text="Open")
        self.layer = ComboBox(label="layer", nullable=True)
        self.info = Label(label="table", value="")
        status_label(self.info)  # a long summary wraps, never widens the dock
        # column mapping for unknown tables (hidden until needed)
        self.map_x = ComboBox(label="x column", choices=[])
        self.map_y = ComboBox(label="y column", choices=[])
        self.map_z = ComboBox(label="z column", choices=[])
        self.map_frame = ComboBox(label="frame column", choices=[])
        self.map_photons = ComboBox(label="photons column", choices=[])
        self.map_precision = ComboBox(label="precision column", choices=[])
        self.map_channel = ComboBox(label="channel column", choices=[])
        self.map_unit = ComboBox(label="unit", choices=list(UNITS), value="nm")
        self.camera_px = spin(render_param("--camera-pixel"), label="camera pixel", value=100.0,
                              suffix=" nm", tooltip="nm per camera pixel (unit: camera px)")  # fmt: skip
        self.mapping_box = Container(
            widgets=[
                self.map_x,
                self.map_y,
                self.map_z,
                self.map_frame,
                self.map_photons,
                self.map_precision,
                self.map_channel,
                self.map_unit,
                self.camera_px,
            ],
            labels=True,
            visible=False,
        )
        # rendering
        self.pixel = spin(render_param("--pixel-size"), label="pixel", value=10.0, suffix=" nm",
                          tooltip="pixel of the rendered image")  # fmt: skip
        self.method = ComboBox(label="method", choices=["gaussian", "histogram", "precision"])
        self.sigma = spin(
            render_param("--sigma"), label="sigma", value=0.0, none_value=0.0, none_text="auto",
            suffix=" nm", tooltip="Gaussian sigma; lowest = auto (the median precision)",
        )  # fmt: skip
        self.z_mode = ComboBox(label="3D", choices=["project", "stack", "color"])
        self.colormap = ComboBox(label="colour", choices=list(COLORMAPS))
        # filters
        self.max_precision = spin(
            render_param("--max-precision"), label="max precision", value=0.0, none_value=0.0,
            none_text="off", suffix=" nm", tooltip="drop less precise localizations; lowest = off",
        )  # fmt: skip
        # 0 photons and frame 0 are real values: "off" is the value below them
        self.min_photons = spin(
            render_param("--min-photons"), label="min photons", value=OFF, none_value=OFF,
            none_text="off", tooltip="drop localizations with fewer photons; lowest = off",
        )  # fmt: skip
        self.min_photons.native.setDecimals(0)  # whole photons: one step up from "off" is 0
        self.first_frame = spin(render_param("frame_first"), label="first frame", value=OFF,
                                none_value=OFF, none_text="off", tooltip="lowest = from the first")  # fmt: skip
        self.last_frame = spin(render_param("frame_last"), label="last frame", value=OFF,
                               none_value=OFF, none_text="off", tooltip="lowest = to the last")  # fmt: skip
        self.roi = ComboBox(label="ROI shapes", choices=self._shapes_choices)
        self.drift = CheckBox(label="drift correction", value=False)
        # the schema's 0 is the command line's "off"; here the check box is the switch, and
        # correction needs 2 segments at least (render says so when fewer are asked)
        self.segments = spin(render_param("--drift-segments"), label="drift segments", value=8,
                             tooltip="time segments cross-correlated (2 at least)")  # fmt: skip
        self.zoom = CheckBox(label="re-render on zoom", value=True)
        self.render_btn = PushButton(text="Render")
        self.points_btn = PushButton(text="Show points (ROI or small tables)")
        self.save_path = FileEdit(label="save CSV", mode="w", filter="*.csv")
        self.save_btn = PushButton(text="Save filtered CSV")
        self.status = Label(label="", value="")
        status_label(self.status)
        self._render_text = {}  # layer name -> what its last successful render was
        self.extend(
            [
                self.file,
                self.file_format,
                self.open_btn,
                self.mapping_box,
                self.layer,
                self.info,
                self.pixel,
                self.method,
                self.sigma,
                self.z_mode,
                self.colormap,
                self.max_precision,
                self.min_photons,
                self.first_frame,
                self.last_frame,
                self.roi,
                self.drift,
                self.segments,
                self.zoom,
                self.render_btn,
                self.points_btn,
                self.save_path,
                self.save_btn,
                *self.build_measure(),
                self.status,
            ]
        )
        narrow_fields(self, combos=(self.file_format, self.method, self.z_mode, self.colormap,
                                    self.roi))  # fmt: skip
        narrow_fields(
            self.mapping_box, combos=[w for w in self.mapping_box if w is not self.camera_px]
        )
        self.open_btn.changed.connect(self.open_file)
        self.render_btn.changed.connect(self.render)
        self.points_btn.changed.connect(self.show_points)
        self.save_btn.changed.connect(lambda: self.save_csv(str(self.save_path.value)))
        self.colormap.changed.connect(self._set_colormap)
        self.layer_choice(
            self.layer, _is_table_layer, "a localization layer", by_name=True,
            on_change=self._show_info,
        )  # fmt: skip
        for button in (self.render_btn, self.points_btn, self.save_btn):
            self.run_button(button, needs=[self.layer])
        self.run_button(self.open_btn, needs=[(self._has_file, "a localization file")])
        self.finish_measure()  # after the layer box: Measure needs a layer
        self.file.changed.connect(self.update_buttons)
        self.zoom.changed.connect(self._on_zoom_toggled)
        adopt_units_before_insert(viewer)  # an ROI Shapes layer takes the render's nm
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        viewer.layers.events.renamed.connect(self._refresh)
        self._zoom_timer = None
        camera(viewer).events.zoom.connect(self._on_camera)
        camera(viewer).events.center.connect(self._on_camera)
        self._refresh()

    def _has_file(self) -> bool:
        from pathlib import Path

        value = str(self.file.value or "")
        return value not in ("", ".") and Path(value).is_file()

    def _on_zoom_toggled(self, on) -> None:
        """Unticking re-render-on-zoom removes the zoom layers (they would go stale)."""
        if on:
            self.update_zoom()
            return
        for ly in [ly for ly in self.viewer.layers if "zoom_of" in (ly.metadata or {})]:
            self.viewer.layers.remove(ly)

    # ------------------------------------------------------------ choices
    def _shapes_choices(self, _=None):
        from napari.layers import Shapes

        return [NONE] + [ly.name for ly in self.viewer.layers if isinstance(ly, Shapes)]

    def _refresh(self, _=None):
        self.roi.reset_choices()
        self._show_info()

    def _current(self):
        return self.chosen(self.layer)

    def _show_info(self, _=None):
        layer = self._current()
        if layer is None:
            self.info.value = ""
            return
        m = layer.metadata
        df = m["localizations"]
        b = ", ".join(f"{k} {v[0]:.0f}-{v[1]:.0f}" for k, v in m.get("bounds_nm", {}).items())
        self.info.value = (
            f"{m.get('format', '?')} · {len(df):,} locs · channel {m.get('channel', '0')}\n"
            f"{b} nm · {m.get('n_dropped', 0)} dropped"
        )
        r = m.get("render") or {}
        if r.get("pixel_size_nm"):
            self.pixel.value = float(r["pixel_size_nm"])

    def job_failed(self, error):
        """The message, and the column mapping when the table's columns were not recognised."""
        from napari.utils import notifications

        from napari_nucleus_ai.core.errors import one_line

        text = one_line(error)
        self.status.value = text[:120]
        if "unknown columns" in text:
            self._offer_mapping()
        notifications.show_error(text)

    # ------------------------------------------------------------ open
    def _mapping(self):
        if not self.mapping_wanted:
            return None, {}
        cols = {
            "x_nm": self.map_x,
            "y_nm": self.map_y,
            "z_nm": self.map_z,
            "frame": self.map_frame,
            "photons": self.map_photons,
            "precision_nm": self.map_precision,
            "channel": self.map_channel,
        }
        mapping = {k: w.value for k, w in cols.items() if w.value not in (None, NONE)}
        factor = UNITS[self.map_unit.value] or float(self.camera_px.value)
        return mapping, {"scale_nm": factor}

    def _offer_mapping(self):
        from napari_nucleus_ai.localizations.generic import read_table

        try:
            cols = list(read_table(self._last_path).columns) if self._last_path else []
        except Exception:  # noqa: BLE001 - not even a table: nothing to map
            return
        if not cols:
            return
        for w in (self.map_x, self.map_y):
            w.choices = cols
        for w in (
            self.map_z,
            self.map_frame,
            self.map_photons,
            self.map_precision,
            self.map_channel,
        ):
            w.choices = [NONE, *cols]
        self.mapping_wanted = True
        self.mapping_box.visible = True
        self.status.value = "choose the x / y columns (and units), then Open again"

    def open_file(self, _=None, path=None):
        """Read ``path`` (default: the file box) and add one density layer per channel."""
        from napari_nucleus_ai.localizations.pipeline import read_gen

        path = str(path or self.file.value or "")
        if path in ("", ".") or not os.path.isfile(path):
            self.status.value = (
                "choose a localization file first" if path in ("", ".") else f"{path}: no such file"
            )
            return None
        self._last_path = path
        mapping, opts = self._mapping()
        if mapping:
            opts["mapping"] = mapping
        elif self.file_format.value != AUTO_FORMAT:
            opts["format"] = self.file_format.value
        return self.start_job(
            read_gen, path, on_result=self._add_table, description="reading", **opts
        )

    def _add_table(self, table):
        from napari_nucleus_ai.localizations.layers import table_layers

        self.mapping_wanted = False
        self.mapping_box.visible = False
        layers = table_layers(
            table,
            points=False,  # points hide the render; "Show points" adds them on request
            pixel_size_nm=self.pixel.value,
            method=self.method.value,
            sigma_nm=self.sigma.value or None,
            z_mode=self.z_mode.value,
        )
        added = [_add(self.viewer, ly) for ly in layers]
        from napari.layers import Image

        images = [ly for ly in added if isinstance(ly, Image)]
        if images:
            self.layer.value = images[0].name
        self.status.value = (
            f"{len(table):,} localizations ({table.format}), {table.n_dropped} dropped"
        )

    # ------------------------------------------------------------ render
    def render(self, _=None):
        """Filter, (drift-correct), render the selected layer's table; update the layer."""

        layer = self._current()
        if layer is None:
            self.status.value = "open a file or choose a localization layer first"
            return None
        source = layer.metadata.get("all_localizations", layer.metadata["localizations"])
        self.status.value = "rendering..."
        roi, roi_types = None, None
        if self.roi.value not in (None, NONE) and self.roi.value in self.viewer.layers:
            roi, roi_types = roi_nm(self.viewer.layers[self.roi.value])
        frames = (_on(self.first_frame, int), _on(self.last_frame, int))
        if self.drift.value and self.segments.value < 2:
            self.status.value = "drift correction needs 2 segments at least"
            return None
        params = dict(
            pixel_size_nm=self.pixel.value,
            method=self.method.value,
            sigma_nm=self.sigma.value or None,
            z_mode=self.z_mode.value,
            precision_max_nm=self.max_precision.value or None,
            photons_min=_on(self.min_photons, float),
            frame_range=frames if frames != (None, None) else None,
            roi=roi,
            roi_types=roi_types,
            drift_segments=self.segments.value if self.drift.value else 0,
        )
        return self.start_job(
            _process_checked,
            source,
            on_result=lambda r: self._update(layer, source, r),
            description="rendering",
            **params,
        )

    def _update(self, layer, source, result):
        from napari_nucleus_ai.localizations.layers import MULTISCALE_SIDE, contrast_limits
        from napari_nucleus_ai.localizations.render import pyramid

        r = result.rendered
        spatial = r.image.shape[:2] if r.rgb else r.image.shape[-2:]
        multiscale = max(spatial) > MULTISCALE_SIDE  # large fields stay a pyramid, as read
        data = pyramid(r.image, min_size=1024) if multiscale else r.image
        meta = dict(layer.metadata)
        meta["all_localizations"] = source
        meta["localizations"] = result.data
        meta["render"] = {**result.params, "bounds_nm": r.bounds_nm}
        if result.drift is not None:
            meta["drift_nm"] = {
                "frames": result.drift.segment_frames.tolist(),
                "drift": result.drift.drift_nm.tolist(),
            }
        if (
            layer.rgb != r.rgb
            or layer.ndim != r.image.ndim - (1 if r.rgb else 0)
            or layer.multiscale
            or multiscale
        ):
            name, cmap = layer.name, None if layer.rgb else layer.colormap
            self.viewer.layers.remove(layer)
            layer = self.viewer.add_image(
                data,
                name=name,
                scale=r.scale,
                translate=r.translate,
                rgb=r.rgb,
                multiscale=multiscale,
                metadata=meta,
                blending="additive",
                units="nm",
                **({"colormap": cmap} if cmap is not None and not r.rgb else {}),
            )
        else:
            layer.data = r.image
            layer.scale = r.scale
            layer.translate = r.translate
            layer.metadata = meta
        if not r.rgb:
            layer.contrast_limits = contrast_limits(data[-1] if multiscale else r.image)
        self.layer.value = layer.name
        text = (
            f"{len(result.data):,} of {result.n_before:,} localizations rendered"
            f" at {r.pixel_size_nm:g} nm ({r.method})"
        )
        if result.drift is not None:
            import numpy as np

            d = result.drift.drift_nm
            text += (
                f"; drift corrected: {np.hypot(d[:, 0], d[:, 1]).max():.0f} nm at most over "
                f"{len(d)} segments"
            )
        self._render_text[layer.name] = self.status.value = text
        self._on_camera()

    def _set_colormap(self, value):
        layer = self._current()
        if layer is not None and not layer.rgb:
            layer.colormap = value

    # ------------------------------------------------------------ points, save
    def show_points(self, _=None):
        """A Points layer of the selected table (the ROI's localizations when a ROI is set)."""
        from napari_nucleus_ai.localizations.filters import filter_localizations
        from napari_nucleus_ai.localizations.layers import points_layer

        layer = self._current()
        if layer is None:
            return None
        df = layer.metadata["localizations"]
        if self.roi.value not in (None, NONE) and self.roi.value in self.viewer.layers:
            verts, types = roi_nm(self.viewer.layers[self.roi.value])
            df = filter_localizations(df, roi=verts, roi_types=types)
        if len(df) > 2_000_000:
            self.status.value = f"{len(df):,} points is too many; draw a smaller ROI"
            return None
        data, kwargs, kind = points_layer(
            df, f"{layer.name} points", {"source": layer.metadata.get("source")}
        )
        # the table's points layer already there (the reader's) is replaced, not doubled
        from napari.layers import Points

        src = layer.metadata.get("source")
        for ly in self.viewer.layers:
            if isinstance(ly, Points) and src and (ly.metadata or {}).get("source") == src:
                kwargs["name"] = ly.name
                break
        return self.add_result(kind, data, **kwargs)

    def save_csv(self, path: str):
        """Write the selected layer's (filtered) table as a ThunderSTORM CSV."""
        from napari_nucleus_ai.localizations import write_thunderstorm_csv

        layer = self._current()
        if layer is None or not path or path == ".":
            self.status.value = "choose a layer and a file name"
            return None
        out = write_thunderstorm_csv(layer.metadata["localizations"], path)
        self.status.value = f"saved {out}"
        return out


def _on(box, kind):
    """A filter box's value, or ``None`` at its lowest value ("off")."""
    return None if box.value <= OFF else kind(box.value)


def _process_checked(source, **params):
    """``process_gen`` with a one-line error when the filters leave no localization."""
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.localizations.filters import filter_localizations
    from napari_nucleus_ai.localizations.pipeline import process_gen

    keys = ("precision_max_nm", "photons_min", "frame_range", "roi", "roi_types")
    kept = filter_localizations(source, **{k: params[k] for k in keys if params.get(k) is not None})
    if len(kept) == 0:
        asked = ", ".join(f"{k} {params[k]}" for k in keys[:3] if params.get(k) is not None)
        raise InputError(None, f"no localization passes the filters ({asked or 'ROI'}): relax them")
    return (yield from process_gen(source, **params))


def _add(viewer, layer_tuple):
    from napari.layers import Layer

    data, kwargs, kind = layer_tuple
    return viewer.add_layer(Layer.create(data, kwargs, kind))


def demo_storm(viewer, zoom: bool = True):
    """Demo step: simulated STORM nuclei rendered at 20 nm, with the Localizations dock.

    With ``zoom`` the camera moves into one nucleus (6 nm per screen pixel) and the
    dock re-renders the visible region at screen-matched pixels (the nanoscale zoom).
    """
    viewer.open_sample("napari-nucleus-ai", "storm_nuclei")
    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Localizations")
    layer = next(ly for ly in viewer.layers if "localizations" in (ly.metadata or {}))
    dock.layer.value = layer.name
    viewer.reset_view()
    if zoom:
        df = layer.metadata["localizations"]
        first = df[df["nucleus"] == 1] if "nucleus" in df else df
        centre = (float(first["y_nm"].median()), float(first["x_nm"].median()))
        set_view(
            viewer, layer, center=centre, zoom=1 / 6.0
        )  # 6 nm per screen pixel: finer than the 20 nm base
        dock.update_zoom()
    return dock
