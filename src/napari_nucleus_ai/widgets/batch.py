"""Batch dock: run the batch pipeline on the source files of the open layers (and folders).

Thin: it gathers inputs and settings and drives
:func:`napari_nucleus_ai.batch.run.run_batch_gen` through ``start_work`` (progress
bar, cancel). With "show results", the labels written for the layers open in the
viewer come back as Labels layers with the cell table as ``features``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    Select,
)

from napari_nucleus_ai.widgets._base import DockBase, ScrollableDock

if TYPE_CHECKING:
    import napari


def layer_sources(viewer) -> dict[str, str]:
    """``{file path: layer name}`` for the layers that were read from a file."""
    out = {}
    for layer in viewer.layers:
        path = getattr(getattr(layer, "source", None), "path", None)
        if path and os.path.exists(path):
            out.setdefault(os.fspath(path), layer.name)
    return out


def _class_look(table) -> dict:
    """A class-coloured look for a classified batch table (the palette's colours)."""
    if "class" not in table.columns or not len(table):
        return {}
    from napari_nucleus_ai.core.palette import class_colours
    from napari_nucleus_ai.widgets._classifier_parts import class_colormap

    probs = [c[2:] for c in table.columns if str(c).startswith("p_")]
    classes = probs or sorted(str(c) for c in table["class"].dropna().unique())
    return {"colormap": class_colormap(table, class_colours(classes)), "opacity": 0.6}


class BatchWidget(ScrollableDock, DockBase, Container):
    """The "Batch" dock."""

    cancel_message = "cancelled; finished inputs are kept (run again to resume)"

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True, scrollable=True)
        self.init_dock(viewer)
        self.result = None
        self.inputs = Select(
            label="layers' files", choices=self._choices, tooltip="source files of the open layers"
        )
        self.folder = FileEdit(
            label="and folder", mode="d", nullable=True, tooltip="every readable file below it"
        )
        self.out = FileEdit(label="output folder", mode="d", nullable=True)
        self.method = ComboBox(
            label="segment", choices=["auto", "wbc", "nuclei", "storm-nuclei"], value="auto"
        )
        self.model = FileEdit(
            label="model (optional)", mode="r", nullable=True, filter="*.zip *.safetensors"
        )
        from napari_nucleus_ai.core.params import command_param

        self.workers = self.schema_spin(  # the limits `batch --workers` checks
            command_param("batch", "--workers"), label="local workers", value=os.cpu_count() or 1
        )
        self.scheduler = LineEdit(
            label="or scheduler", value="", tooltip="tcp://host:8786 of an existing Dask scheduler"
        )
        self.show_results = CheckBox(label="show results", value=True)
        self.run_btn = PushButton(text="Run batch")
        self.cancel_btn = PushButton(text="Cancel")
        self.report_button = PushButton(text="Open report", enabled=False)
        self.status = Label(value="")
        from napari_nucleus_ai.widgets._base import narrow_fields, status_label

        status_label(self.status)
        self.extend([
            self.inputs, self.folder, self.out, self.method, self.model, self.workers,
            self.scheduler, self.show_results, self.run_btn, self.cancel_btn,
            self.report_button, self.status,
        ])  # fmt: skip
        narrow_fields(self, combos=(self.method,))
        self.inputs.native.setMaximumHeight(120)  # a few files' rows; it scrolls beyond them
        self.body_layout().addStretch(1)  # spare height goes below the fields, not between them
        self.run_btn.changed.connect(self.run)
        self.cancel_btn.changed.connect(self.cancel)
        self.report_button.changed.connect(self.open_report)
        self.run_button(
            self.run_btn,
            needs=[(self._has_inputs, "an opened file or a folder"),
                   (self._has_out, "an output folder")],
        )  # fmt: skip
        self.cancel_button(self.cancel_btn)
        for w in (self.inputs, self.folder, self.out):
            w.changed.connect(self.update_buttons)
        viewer.layers.events.inserted.connect(self._refresh)
        viewer.layers.events.removed.connect(self._refresh)
        self._refresh()

    def _choices(self, _widget=None):
        return list(layer_sources(self.viewer))

    def _refresh(self, _event=None):
        self.inputs.reset_choices()
        self.inputs.value = list(layer_sources(self.viewer))

    def _has_inputs(self) -> bool:
        folder = self.folder.value
        return bool(self.inputs.value) or bool(folder and str(folder) not in ("", "."))

    def _has_out(self) -> bool:
        out = self.out.value
        return bool(out and str(out) not in ("", "."))

    def gather(self) -> tuple[list[str], dict]:
        """The inputs and keyword arguments of ``run_batch_gen`` set in the dock."""
        from napari_nucleus_ai.core.errors import InputError

        inputs = list(self.inputs.value or [])
        if self.folder.value and str(self.folder.value) not in ("", "."):
            inputs.append(str(self.folder.value))
        if not inputs:
            raise InputError(None, "open an image or localization file, or choose a folder")
        out = str(self.out.value) if self.out.value and str(self.out.value) not in ("", ".") else ""
        if not out:
            raise InputError(None, "choose an output folder")
        model = (
            str(self.model.value)
            if self.model.value and str(self.model.value) not in ("", ".")
            else None
        )
        scheduler = self.scheduler.value.strip() or None
        kwargs = {
            "out": out,
            "method": self.method.value,
            "model": model,
            "scheduler": scheduler,
            "workers": None if scheduler else int(self.workers.value),
        }
        return inputs, kwargs

    def run(self, *_):
        from napari_nucleus_ai.batch.run import run_batch_gen
        from napari_nucleus_ai.core.errors import NucleusAIError

        try:
            inputs, kwargs = self.gather()
        except NucleusAIError as e:
            self.status.value = str(e)
            return None
        out = kwargs.pop("out")
        self.status.value = "starting Dask..."
        return self.start_job(
            run_batch_gen,
            inputs,
            out,
            **kwargs,
            on_result=self._done,
            on_progress=self._progress,
            description="batch",
        )

    def _progress(self, p):
        self.status.value = p.message

    def _done(self, result):
        self.result = result
        resumed = int(result.summary["resumed"].sum()) if "resumed" in result.summary else 0
        self.status.value = (
            f"{result.n_ok} ok ({resumed} resumed), {result.n_failed} failed; {result.report_path}"
        )
        self.report_button.enabled = True
        for note in getattr(result, "notes", []):
            from napari.utils.notifications import show_info

            show_info(note)
        if self.show_results.value:
            self.add_results(result)

    def add_results(self, result) -> list:
        """Labels layers (with the cell table as features) for inputs open in the viewer."""
        import pandas as pd
        import tifffile

        from napari_nucleus_ai.cells import to_features

        sources = layer_sources(self.viewer)
        added = []
        for _, row in result.summary.iterrows():
            if row["status"] != "ok" or row["path"] not in sources:
                continue
            src = self.viewer.layers[sources[row["path"]]]
            lab = tifffile.imread(Path(result.out) / row["labels_file"])
            table = pd.read_csv(Path(result.out) / row["cells_file"])
            layer = self.add_result(
                "labels",
                lab,
                name=f"{src.name} batch labels",
                scale=src.scale[-lab.ndim :],
                translate=src.translate[-lab.ndim :],
                features=to_features(table) if len(table) else None,
                **_class_look(table),
            )
            added.append(layer)
        return added

    def open_report(self, *_):
        import webbrowser

        if self.result is not None:
            webbrowser.open(Path(self.result.report_path).as_uri())
