"""Segmentation dock: pick a layer and a method, tune a few scale-aware parameters, run.

Thin: parameters are gathered here, the work is :func:`napari_nucleus_ai.segment.run.segment`
(run through ``start_work``: progress bar, cancel). The result is a Labels layer on
top of the source (same scale / translate) whose ``features`` is the cell table;
the table is re-measured after paint / erase / fill edits (debounced), keeping
prediction columns per label.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    PushButton,
)

from napari_nucleus_ai.widgets._base import DockBase, ScrollableDock

if TYPE_CHECKING:
    import napari

AUTO = "auto"
MAX_DOCK_PIXELS = 400_000_000  # labels of a bigger region would not fit a Labels layer
REGION_WHOLE = "whole image"
REGION_VISIBLE = "visible region"


def layer_pixel_size_um(layer) -> float | None:
    """The layer's pixel size in micrometres when it is calibrated, else None."""
    meta = layer.metadata or {}
    px = meta.get("pixel_size_um")
    if px:
        return float(np.mean(px))
    try:
        unit = str(layer.units[-1])
    except (AttributeError, IndexError):
        unit = ""
    s = float(layer.scale[-1])
    if unit in ("micrometer", "um", "µm"):
        return s
    if unit in ("nanometer", "nm"):
        return s / 1000.0
    return None


def localizations_of(layer):
    """The localization table behind a density-image or points layer, or None."""
    meta = layer.metadata or {}
    df = meta.get("localizations")
    if df is not None:
        return df
    feats = getattr(layer, "features", None)
    if feats is not None and {"x_nm", "y_nm"} <= set(feats.columns):
        return feats
    return None


class SegmentWidget(ScrollableDock, DockBase, Container):
    """The "Segmentation" dock."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True, scrollable=True)
        self.init_dock(viewer)
        self._syncing = {}
        self._fingerprints = {}  # id(labels layer) -> fingerprint of the data last measured
        self.layer = ComboBox(label="layer", nullable=True)
        self.method = ComboBox(
            label="method",
            choices=["wbc", "nuclei", "storm-nuclei", "cellpose", "stardist", "instanseg"],
            value="wbc",
            tooltip="wbc: white cells in stained smears; nuclei: Hoechst / DAPI; "
            "storm-nuclei: nuclei from localization density; deep backends need local weights",
        )
        from napari_nucleus_ai.core.params import command_param, param_named
        from napari_nucleus_ai.segment.run import method_schema

        # every limit and step is the schema's that `segment` / `batch` check
        wbc, nuclei, storm = (method_schema(m) for m in ("wbc", "nuclei", "storm-nuclei"))
        spin = self.schema_spin
        self.pixel = spin(
            command_param("segment", "--pixel-size-um"),
            label="pixel size",
            value=0.0,
            none_value=0.0,
            none_text="from the layer",
            suffix=" um",
            tooltip="micrometres per pixel; lowest = from the layer (wbc measures it on the "
            "red cells)",
        )
        # wbc
        self.min_nucleus = spin(
            param_named(wbc, "min_nucleus_um"), label="min nucleus", value=3.9, suffix=" um",
            tooltip="equivalent diameter of the smallest white-cell nucleus (platelets are smaller)",
        )  # fmt: skip
        self.lobe_gap = spin(param_named(wbc, "lobe_gap_um"), label="lobe gap", value=1.6,
                             suffix=" um", tooltip="nuclear lobes closer than this are one cell")  # fmt: skip
        self.cytoplasm = spin(
            param_named(wbc, "cytoplasm_um"), label="cytoplasm", value=3.0, suffix=" um",
            tooltip="how far a cell reaches beyond its nucleus (0 = nuclei only)",
        )  # fmt: skip
        self.nucleus_od = spin(
            param_named(wbc, "nucleus_od"), label="nucleus OD", value=0.085,
            tooltip="nuclear-stain absorbance a nucleus reaches (lower = more sensitive)",
        )  # fmt: skip
        # nuclei
        self.diameter = spin(
            param_named(nuclei, "diameter_um"), label="diameter", value=0.0, none_value=0.0,
            none_text="estimate", suffix=" um", tooltip="typical nucleus diameter; lowest = estimate",
        )  # fmt: skip
        self.min_snr = spin(
            param_named(nuclei, "min_snr"), label="min SNR", value=5.0,
            tooltip="nuclei stand this many noise sigmas above background",
        )  # fmt: skip
        self.split = CheckBox(label="split touching", value=True)
        # storm
        self.storm_px = spin(command_param("segment", "--pixel-size-nm"), label="density pixel",
                             value=100.0, suffix=" nm", tooltip="pixel of the density image")  # fmt: skip
        self.smooth = spin(param_named(storm, "smooth_nm"), label="smoothing", value=300.0,
                           suffix=" nm", tooltip="density blur")  # fmt: skip
        self.min_area = spin(param_named(storm, "min_area_um2"), label="min area", value=10.0,
                             suffix=" um²", tooltip="smallest nucleus")  # fmt: skip
        # deep
        self.model = FileEdit(
            label="weights", mode="r", tooltip="local weights file or folder (never downloaded)"
        )
        # region, actions, status
        self.region = ComboBox(label="region", choices=self._region_choices)
        self.run_btn = PushButton(text="Segment")
        self.cancel_btn = PushButton(text="Cancel")
        self.status = Label(value="")
        from napari_nucleus_ai.widgets._base import status_label

        status_label(self.status)
        self.count = Label(label="objects", value="-")
        self._groups = {
            "wbc": [self.min_nucleus, self.lobe_gap, self.cytoplasm, self.nucleus_od],
            "nuclei": [self.diameter, self.min_snr, self.split],
            "storm-nuclei": [self.storm_px, self.smooth, self.min_area, self.split],
            "deep": [self.model, self.diameter],
        }
        self.extend(
            [self.layer, self.method, self.pixel, self.min_nucleus, self.lobe_gap, self.cytoplasm,
             self.nucleus_od, self.diameter, self.min_snr, self.storm_px, self.smooth,
             self.min_area, self.split, self.model, self.region, self.run_btn, self.cancel_btn,
             self.count, self.status]
        )  # fmt: skip
        self.method.changed.connect(self._show_params)
        self.run_btn.changed.connect(self.run)
        self.cancel_btn.changed.connect(self.cancel)
        self.layer_choice(self.layer, ("Image", "Points"), "an image or localization layer",
                          on_change=self._on_layer)  # fmt: skip
        self.run_button(self.run_btn, needs=[self.layer])
        self.cancel_button(self.cancel_btn)
        viewer.layers.events.inserted.connect(self._refresh_regions)
        viewer.layers.events.removed.connect(self._refresh_regions)
        viewer.layers.events.renamed.connect(self._refresh_regions)
        self._on_layer(self.layer.value)
        self._show_params(self.method.value)

    # ---- choices
    def _region_choices(self, _=None):
        from napari.layers import Shapes

        return [REGION_WHOLE, REGION_VISIBLE] + [
            ly.name for ly in self._viewer.layers if isinstance(ly, Shapes)
        ]

    def _refresh_regions(self, _=None):
        self.region.reset_choices()

    def _on_layer(self, layer):
        if layer is None:
            return
        if localizations_of(layer) is not None:
            self.method.value = "storm-nuclei"
        elif getattr(layer, "rgb", False):
            self.method.value = "wbc"
        else:
            self.method.value = "nuclei"
        px = layer_pixel_size_um(layer)
        self.pixel.value = px if (px and self.method.value != "storm-nuclei") else 0.0

    def _show_params(self, method):
        group = "deep" if method in ("cellpose", "stardist", "instanseg") else method
        shown = {id(w) for w in self._groups[group]}
        for ws in self._groups.values():
            for w in ws:
                w.visible = id(w) in shown
        self.pixel.visible = method != "storm-nuclei"
        self.region.visible = method in ("wbc", "nuclei")

    # ---- parameters
    def params(self) -> dict:
        m = self.method.value
        if m == "wbc":
            return {"min_nucleus_um": self.min_nucleus.value, "lobe_gap_um": self.lobe_gap.value,
                    "cytoplasm_um": self.cytoplasm.value, "nucleus_od": self.nucleus_od.value,
                    "nucleus_low_od": round(self.nucleus_od.value * 0.59, 4)}  # fmt: skip
        if m == "nuclei":
            return {"diameter_um": self.diameter.value or None, "min_snr": self.min_snr.value,
                    "split": self.split.value}  # fmt: skip
        if m == "storm-nuclei":
            return {"pixel_size_nm": self.storm_px.value, "smooth_nm": self.smooth.value,
                    "min_area_um2": self.min_area.value, "split": self.split.value}  # fmt: skip
        model = (
            str(self.model.value)
            if self.model.value and str(self.model.value) not in ("", ".")
            else None
        )
        return {"model": model, "diameter_um": self.diameter.value or None}

    def _region(self, layer):
        """(region, polygon) in the layer's pixel coordinates for the chosen region."""
        choice = self.region.value
        if choice in (None, REGION_WHOLE) or self.method.value not in ("wbc", "nuclei"):
            return None, None

        def to_data(yx):
            pos = np.r_[np.zeros(layer.ndim - 2), yx]
            return np.asarray(layer.world_to_data(pos))[-2:]

        if choice == REGION_VISIBLE:
            lo_w, hi_w = self._visible_world(layer)
            lo, hi = to_data(lo_w), to_data(hi_w)
            return (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])), None
        shapes = self._viewer.layers[choice]
        if not len(shapes.data):
            return None, None
        polys = [
            np.array([to_data(np.asarray(shapes.data_to_world(v))[-2:]) for v in np.asarray(d)])
            for d in shapes.data
        ]
        verts = np.concatenate(polys)
        (y0, x0), (y1, x1) = verts.min(axis=0), verts.max(axis=0)
        region = (float(y0), float(y1) + 1, float(x0), float(x1) + 1)
        return region, polys[0] if len(polys) == 1 else None

    def _visible_world(self, layer):
        """World (y, x) corners of what the canvas shows, in ``layer``'s world units."""
        from napari_nucleus_ai.widgets._compat import canvas_hw, view_of

        (*_, cy, cx), zoom = view_of(self._viewer, layer)
        h, w = canvas_hw(self._viewer)
        half_h, half_w = h / 2 / zoom, w / 2 / zoom
        return np.array([cy - half_h, cx - half_w]), np.array([cy + half_h, cx + half_w])

    # ---- run
    def run(self, _=None, sync: bool | None = None):
        layer = self.layer.value
        if layer is None:
            self.status.value = "choose an image layer first"
            return None
        method = self.method.value
        params = self.params()
        if method == "storm-nuclei":
            data = localizations_of(layer)
            if data is None:
                self.status.value = "this layer carries no localizations"
                return None
            kwargs = {}
        else:
            data = list(layer.data) if layer.multiscale else layer.data
            px = self.pixel.value or layer_pixel_size_um(layer)
            region, polygon = self._region(layer)
            full = data[0] if isinstance(data, list) else data
            if region is None and full.shape[0] * full.shape[1] > MAX_DOCK_PIXELS:
                self.status.value = (
                    f"{full.shape[0]} x {full.shape[1]} px is a whole slide: choose the visible "
                    "region or a shapes ROI here, or run `napari-nucleus-ai segment` on the file"
                )
                return None
            sc = tuple(layer.scale)[-2:]
            kwargs = {"pixel_size_um": px, "scale": sc, "translate": tuple(layer.translate)[-2:],
                      "unit": "um" if layer_pixel_size_um(layer) else "px",
                      "rgb": bool(getattr(layer, "rgb", False)), "region": region, "polygon": polygon}  # fmt: skip
            if data is not None and getattr(data, "ndim", 2) == 3 and not kwargs["rgb"]:
                kwargs["scale"] = tuple(layer.scale)[-3:]
                kwargs["translate"] = tuple(layer.translate)[-3:]
        from napari_nucleus_ai.widgets._base import image_file_of

        source = image_file_of(self._viewer, layer) or layer.name
        self.status.value = f"{method}: running..."
        return self.start_job(
            _segment_work, data, method, look=self._look(layer), source=str(source),
            cancel=lambda: self.cancelled, on_result=lambda out: self._on_result(out, layer),
            description=f"segment ({method})", sync=sync, **kwargs, **params,
        )  # fmt: skip

    def _look(self, source_layer) -> dict:
        """What the result layer takes from its source layer: name and image file."""
        from napari_nucleus_ai.widgets._base import image_file_of

        image_path = image_file_of(self._viewer, source_layer)
        return {"source_layer": source_layer.name,
                **({"image_path": image_path} if image_path else {})}  # fmt: skip

    def _on_result(self, out, source_layer):
        """Show the result layer (built in the worker) and watch its edits."""
        res, labels_layer = out
        # a new layer, not an update: the table watcher below is tied to the layer
        labels_layer = self.show_layer(labels_layer, in_place=False)
        self._watch(labels_layer, source_layer, per_frame="t" in res.table.columns)
        extra = ""
        if res.extra.get("pixel_size_um") and res.extra.get("scale_from") == "red cells":
            extra = f" · pixel size {res.extra['pixel_size_um']:.3g} um (from red cells)"
        self.count.value = str(res.n)
        self.status.value = f"{res.n} objects{extra}"

    # ---- table follows edits
    def _watch(self, labels_layer, source_layer, per_frame=False):
        from qtpy.QtCore import QTimer

        timer = QTimer(self.native)  # dies with the dock: no callback after it is closed
        timer.setSingleShot(True)
        timer.setInterval(300)
        timer.timeout.connect(lambda: self.sync_table(labels_layer, source_layer, per_frame))
        self._syncing[id(labels_layer)] = timer

        def later(_event=None):
            try:
                timer.start()
            except RuntimeError:  # the dock was closed
                labels_layer.events.paint.disconnect(later)
                labels_layer.events.data.disconnect(later)

        def maybe(_event=None):
            # undo / redo replace pixels without a paint or data event: napari then only
            # refreshes the layer (set_data); the timer re-measures when the pixels changed
            if self._fingerprints.get(id(labels_layer)) != _fingerprint(labels_layer.data):
                later()

        labels_layer.events.paint.connect(later)
        labels_layer.events.data.connect(later)
        labels_layer.events.set_data.connect(maybe)
        self._fingerprints[id(labels_layer)] = _fingerprint(labels_layer.data)

    def sync_table(self, labels_layer, source_layer=None, per_frame=False):
        """Re-measure the table of ``labels_layer`` after edits (keeps prediction columns)."""
        from napari_nucleus_ai.cells import from_features, to_features
        from napari_nucleus_ai.segment.table_sync import refresh_table

        intensity = None
        if (
            source_layer is not None
            and source_layer in self._viewer.layers
            and not source_layer.multiscale
        ):
            data = source_layer.data
            if (
                hasattr(data, "shape")
                and data.shape[: labels_layer.data.ndim] == labels_layer.data.shape
            ):
                intensity = np.asarray(data)
        old = from_features(labels_layer.features) if len(labels_layer.features) else None
        unit = (labels_layer.metadata or {}).get("unit", "px")
        table = refresh_table(labels_layer.data, old, intensity, scale=tuple(labels_layer.scale),
                              translate=tuple(labels_layer.translate), unit=unit, per_frame=per_frame)  # fmt: skip
        labels_layer.features = to_features(table)
        self._fingerprints[id(labels_layer)] = _fingerprint(labels_layer.data)
        self.count.value = str(len(table))
        return table


def _segment_work(data, method, look=None, **kwargs):
    """Segment (:func:`~napari_nucleus_ai.segment.run.segment`), then build the result's
    Labels layer here, in the worker (see :func:`result_layer`); returns ``(result, layer)``."""
    from napari_nucleus_ai.segment.run import segment

    res = yield from segment(data, method, **kwargs)
    return res, (None if look is None else result_layer(res, look))


def result_layer(res, look: dict):
    """The Labels layer of a segmentation result, not yet in a viewer.

    ``look`` has the ``source_layer`` name (the layer is ``"<source_layer> <method>"``)
    and, when known, its ``image_path``. The cell table is the layer's ``features``;
    white cells are drawn as contours.
    """
    from napari.layers import Labels

    from napari_nucleus_ai.cells import to_features

    meta = {"unit": res.unit, "method": res.method, **look,
            **{k: v for k, v in res.extra.items() if k != "storm"}}  # fmt: skip
    if "storm" in res.extra:
        meta["localizations"] = res.extra["storm"].localizations
    kwargs = {"name": f"{look['source_layer']} {res.method}", "scale": res.scale,
              "translate": res.translate, "features": to_features(res.table),
              "metadata": meta, "opacity": 0.6}  # fmt: skip
    if res.unit in ("um", "nm"):
        kwargs["units"] = "micrometer" if res.unit == "um" else "nanometer"
    layer = Labels(res.labels, **kwargs)
    if res.method == "wbc":
        layer.contour = 2
    return layer


def _fingerprint(data) -> int | None:
    """A cheap fingerprint of a label image's pixels (``None`` for lazy or huge data)."""
    if not isinstance(data, np.ndarray) or data.size > 50_000_000:
        return None
    return hash(np.ascontiguousarray(data).data.tobytes())


def demo_segment(viewer) -> SegmentWidget:
    """Demo step: the Segmentation dock segments the STORM nuclei and the smear field."""
    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Segmentation")
    layers = list(viewer.layers)
    storm = next((ly for ly in layers if localizations_of(ly) is not None), None)
    smear = next((ly for ly in layers if getattr(ly, "rgb", False)), None)
    for layer in (storm, smear):
        if layer is None:
            continue
        dock.layer.value = layer
        dock.run()
    if storm is not None and f"{storm.name} storm-nuclei" in viewer.layers:
        viewer.layers[f"{storm.name} storm-nuclei"].visible = False  # the smear is on show
    return dock
