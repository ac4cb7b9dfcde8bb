"""Generative dock: synthetic cells, counterfactual maps and anomaly heatmaps.

Works with a ``diffusion`` model package (``train DATA --arch diffusion``).
Classifying cells with a diffusion model goes through the classifier dock /
``classify`` like any other model; this dock adds what only a generative model
can do. All work runs in :mod:`napari_nucleus_ai.models.diffusion.tasks`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    PushButton,
    SpinBox,
)

from napari_nucleus_ai.widgets._base import DockBase, ScrollableDock

if TYPE_CHECKING:
    import napari


class GenerativeWidget(ScrollableDock, DockBase, Container):
    """Generate a grid of synthetic cells, explain one cell, paint the anomaly score."""

    def __init__(self, viewer: napari.viewer.Viewer):
        # field labels on: the cells box is ``cells``, never ``labels`` (that would hide
        # magicgui's ``Container.labels``, and the dock would show no field names)
        super().__init__(labels=True, scrollable=True)
        self.init_dock(viewer)
        self.model = FileEdit(
            label="diffusion model", mode="r", filter="*.zip *.safetensors *.json"
        )
        self._classes: list[str] = []
        self.klass = ComboBox(label="class", choices=lambda w: list(self._classes))
        from napari_nucleus_ai.core.params import command_param

        def option(name, label, value):  # the limits `generate` checks
            return self.schema_spin(command_param("generate", name), label=label, value=value)

        self.n = option("-n", "how many", 16)
        self.steps = option("--steps", "denoising steps", 50)
        from napari_nucleus_ai.models.diffusion.generate import GUIDANCE

        self.guidance = option("--guidance", "guidance", GUIDANCE)
        self.seed = option("--seed", "seed", 0)
        self.generate_btn = PushButton(text="Generate")
        self.image = ComboBox(label="image", nullable=True)
        self.cells = ComboBox(label="cells", nullable=True)
        self.cell = SpinBox(label="cell label", value=0, min=0, max=2**31 - 1)
        self.counterfactual_btn = PushButton(text="Counterfactual for selected cell")
        self.anomaly_btn = PushButton(text="Anomaly heatmap")
        self.status = Label(label="")
        from napari_nucleus_ai.widgets._base import status_label

        status_label(self.status)
        self.extend(
            [
                self.model,
                self.klass,
                self.n,
                self.steps,
                self.guidance,
                self.seed,
                self.generate_btn,
                self.image,
                self.cells,
                self.cell,
                self.counterfactual_btn,
                self.anomaly_btn,
                self.status,
            ]
        )
        self.model.changed.connect(self._on_model)
        self.generate_btn.clicked.connect(lambda: self.run_generate())
        self.counterfactual_btn.clicked.connect(lambda: self.run_counterfactual())
        self.anomaly_btn.clicked.connect(self.show_anomaly)
        self._followed = None
        self.layer_choice(self.image, "Image", "an image layer", by_name=True)
        self.layer_choice(
            self.cells,
            "Labels",
            "a cells (Labels) layer",
            by_name=True,
            on_change=self._follow_selected_label,
        )
        self.klass.changed.connect(self.update_buttons)
        self.run_button(
            self.generate_btn, needs=[(lambda: bool(self.klass.value), "a diffusion model")]
        )
        self.run_button(
            self.counterfactual_btn,
            needs=[(lambda: bool(self.klass.value), "a diffusion model"), self.image, self.cells],
        )
        self.run_button(self.anomaly_btn, needs=[self.cells])
        self._follow_selected_label()

    # ------------------------------------------------------------------ helpers
    def _follow_selected_label(self, *_) -> None:
        """Keep ``cell label`` in step with the chosen Labels layer's selected label."""
        if self._followed is not None:
            self._followed.events.selected_label.disconnect(self._on_selected_label)
            self._followed = None
        if self.cells.value in self.viewer.layers:
            self._followed = self.viewer.layers[self.cells.value]
            self._followed.events.selected_label.connect(self._on_selected_label)
            self._on_selected_label()

    def _on_selected_label(self, event=None) -> None:
        if self._followed is not None:
            self.cell.value = int(self._followed.selected_label)

    def _on_model(self, value=None) -> None:
        from napari_nucleus_ai.classify.predict import as_package
        from napari_nucleus_ai.core.errors import one_line

        try:
            pkg = as_package(str(self.model.value))
        except Exception as e:  # noqa: BLE001 - shown in the dock, nothing else to do
            self._set_classes([])
            self.status.value = one_line(e)
            return
        if pkg.card["kind"] != "diffusion":
            self._set_classes([])
            self.status.value = f"{pkg.name} is a {pkg.card['kind']} model, not a diffusion model"
            return
        self._set_classes(pkg.classes)
        self.status.value = (
            f"{pkg.name}: {len(pkg.classes)} classes, {pkg.card['input']['crop_size']} px"
        )

    def _set_classes(self, classes) -> None:
        self._classes = list(classes)
        self.klass.reset_choices()
        self.update_buttons()

    # ------------------------------------------------------------------ actions
    def run_generate(self, sync: bool | None = None):
        """Synthetic cells of the chosen class as one RGB grid image layer."""
        from napari_nucleus_ai.models.diffusion.tasks import generate_grid_gen

        if not self.klass.value:
            self.status.value = "choose a diffusion model and a class first"
            return None
        cls = self.klass.value

        def show(img):
            self.add_result("image", img, name=f"synthetic {cls}", rgb=img.ndim == 3)
            self.status.value = f"generated {self.n.value} {cls} cells"

        return self.start_job(
            generate_grid_gen,
            str(self.model.value),
            cls,
            int(self.n.value),
            steps=int(self.steps.value),
            guidance=float(self.guidance.value),
            seed=int(self.seed.value),
            on_result=show,
            description="generating",
            sync=sync,
        )

    def run_counterfactual(self, sync: bool | None = None):
        """Map where the chosen cell's denoising error differs most between its class and the runner-up."""
        import numpy as np

        from napari_nucleus_ai.models.diffusion.tasks import counterfactual_gen

        if not self.klass.value:  # no model: never the current directory's files
            self.status.value = "choose a diffusion model first"
            return None
        if not (self.image.value and self.cells.value):
            self.status.value = "choose an image and a cells (Labels) layer"
            return None
        img_layer, lab_layer = self.chosen(self.image), self.chosen(self.cells)
        data = img_layer.data[0] if img_layer.multiscale else img_layer.data
        labels = lab_layer.data[0] if lab_layer.multiscale else lab_layer.data
        label = int(self.cell.value)
        scale, translate = tuple(img_layer.scale[-2:]), tuple(img_layer.translate[-2:])

        def show(res):
            lim = float(np.abs(res["map"]).max()) or 1.0
            self.add_result(
                "image",
                res["map"],
                name=f"counterfactual {label}: {res['source']} vs {res['target']}",
                colormap="PiYG",
                contrast_limits=(-lim, lim),
                opacity=0.6,
                **res["map_kwargs"],
            )
            self.add_result(
                "image",
                res["image"],
                name=f"cell {label} as {res['target']}",
                rgb=res["image"].ndim == 3,
                **res["image_kwargs"],
            )
            p = dict(zip(res["classes"], res["p"], strict=True))
            self.status.value = (
                f"cell {label}: {res['source']} ({p.get(res['source'], 0):.2f}) vs "
                f"{res['target']} ({p.get(res['target'], 0):.2f}); green = looks like {res['source']}"
            )

        return self.start_job(
            counterfactual_gen,
            str(self.model.value),
            data,
            np.asarray(labels),
            label,
            scale=scale,
            translate=translate,
            on_result=show,
            description="counterfactual",
            sync=sync,
        )

    def show_anomaly(self) -> None:
        """Paint each cell with its ``anomaly`` score (from classifying with a diffusion model)."""
        import numpy as np
        import pandas as pd

        from napari_nucleus_ai.core.errors import one_line
        from napari_nucleus_ai.models.diffusion.layers import per_cell_image

        if not self.cells.value:
            self.status.value = "choose a cells (Labels) layer classified with a diffusion model"
            return
        layer = self.chosen(self.cells)
        data = layer.data[0] if layer.multiscale else layer.data
        try:
            heat = per_cell_image(np.asarray(data), pd.DataFrame(layer.features), "anomaly")
        except Exception as e:  # noqa: BLE001
            self.status.value = one_line(e)
            return
        finite = heat[np.isfinite(heat)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        self.add_result(
            "image",
            heat,
            name=f"anomaly ({layer.name})",
            colormap="magma",
            opacity=0.7,
            contrast_limits=(lo, hi if hi > lo else lo + 1),
            scale=layer.scale,
            translate=layer.translate,
        )
        self.status.value = "anomaly: higher = less like any training class"
