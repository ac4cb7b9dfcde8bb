"""Helpers of the Classifier dock: layer geometry, class colours, result layers, legend, demo."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from napari_nucleus_ai.core.palette import UNIDENTIFIED

UNIT_NAMES = {
    "micrometer": "um",
    "micron": "um",
    "um": "um",
    "µm": "um",
    "nanometer": "nm",
    "nm": "nm",
}


def layer_geometry(layer) -> tuple[float, str, tuple]:
    """(pixel size, unit, translate) of a napari layer in the cell-table convention."""
    meta = layer.metadata or {}
    scale = float(layer.scale[-1])
    try:
        unit = UNIT_NAMES.get(str(layer.units[-1]), "px")
    except (AttributeError, IndexError):
        unit = "px"
    if unit == "px" and meta.get("pixel_size_um"):
        scale, unit = float(np.mean(meta["pixel_size_um"])), "um"
    return scale, unit, tuple(float(t) for t in layer.translate[-2:])


def class_colormap(table, colours: dict):
    """``DirectLabelColormap`` giving every cell its class colour (unidentified grey)."""
    from napari.utils.colormaps import DirectLabelColormap

    cmap = {None: "transparent", 0: "transparent"}
    for lab, cls in zip(table["label"], table["class"], strict=True):
        cmap[int(lab)] = colours.get(cls, UNIDENTIFIED)
    return DirectLabelColormap(color_dict=cmap)


@dataclass
class ResultLayers:
    """The Classifier's result, ready to show: layers built off the GUI thread.

    Attributes
    ----------
    classes : napari.layers.Labels
        The cells coloured by class, the cell table (with ``probability``) as features.
    uncertainty : napari.layers.Image
        Every cell filled with its uncertainty (hidden).
    classes_props, uncertainty_props : tuple of str
        The properties an in-place update of an earlier result copies.
    colours : dict
        Class -> colour (``unidentified`` included).
    legend : str
        The legend's rich text.
    """

    classes: object
    uncertainty: object
    classes_props: tuple
    uncertainty_props: tuple
    colours: dict
    legend: str


def result_colours(result) -> dict:
    """Class -> colour of a ``ClassifyResult``, with the ``unidentified`` grey."""
    from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED

    colours = dict(zip(result.classes, result.colours, strict=True))
    colours[CLASS_UNIDENTIFIED] = UNIDENTIFIED
    return colours


def result_layers(result, labels, look: dict) -> ResultLayers:
    """Build the ``<labels> classes`` Labels and ``uncertainty`` Image layers of ``result``.

    Called in the worker: the table, colormap, features and both layers are computed
    there, so the GUI thread only inserts finished layers, one per event-loop turn.

    Parameters
    ----------
    result : ClassifyResult
    labels : numpy.ndarray
        The cell ids the result was computed from (the classes layer's data).
    look : dict
        ``name`` of the classes layer, and the ``scale``, ``translate``, ``units`` and
        ``metadata`` both layers get.
    """
    from napari.layers import Layer

    from napari_nucleus_ai.cells import to_features

    colours = result_colours(result)
    table = result.table.copy()
    cols = ["label", "class", "uncertainty"] + [c for c in table.columns if c.startswith("p_")]
    table = table[cols + [c for c in table.columns if c not in cols]]
    table["probability"] = table[[f"p_{c}" for c in result.classes]].max(axis=1)
    common = {k: look[k] for k in ("scale", "translate", "units", "metadata")}
    classes_kw = {"features": to_features(table), "colormap": class_colormap(table, colours),
                  "opacity": 0.6, **common}  # fmt: skip
    unc_kw = {"colormap": "inferno", "contrast_limits": (0.0, 1.0), "opacity": 0.5,
              "visible": False, **common}  # fmt: skip
    classes = Layer.create(labels, {"name": look["name"], **classes_kw}, "labels")
    unc = Layer.create(result.uncertainty_image, {"name": "uncertainty", **unc_kw}, "image")
    legend = legend_html(result.counts(), colours)
    return ResultLayers(classes, unc, tuple(classes_kw), tuple(unc_kw), colours, legend)


def legend_html(counts: dict, colours: dict) -> str:
    """The class legend as rich text that flows: entries wrap at the dock's width.

    Each entry (swatch, class, count) holds together; the spaces between entries are
    where a line may break, so a narrow dock shows more lines, never a sideways scroll.
    """
    entries = [
        f'<span style="color:{colours.get(c, UNIDENTIFIED)}">&#9632;</span>&nbsp;'
        f"{html.escape(str(c)).replace(' ', '&nbsp;')}:&nbsp;<b>{n}</b>"
        for c, n in counts.items()
    ]
    return "&nbsp;&nbsp; ".join(entries) or "no cells"


def _pairs(viewer):
    """(labels layer, its source image layer) for segmented layers not yet classified."""
    import napari

    images = [ly for ly in viewer.layers if isinstance(ly, napari.layers.Image)]
    for ly in list(viewer.layers):
        if not isinstance(ly, napari.layers.Labels) or ly.name.endswith(" classes"):
            continue
        src = max(
            (im for im in images if ly.name.startswith(im.name)),
            key=lambda im: len(im.name),
            default=None,
        )
        if src is not None:
            yield ly, src


def demo_classify(viewer):
    """Demo step: classify the segmented STORM nuclei and smear cells with the demo models."""
    from napari_nucleus_ai.classify.demo_models import DEMO_PREFIX

    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Classifier")
    for labels, image in list(_pairs(viewer)):
        storm = "localizations" in (image.metadata or {})
        dock.model.value = DEMO_PREFIX + ("storm-chromatin" if storm else "smear-wbc")
        dock.labels_layer.value, dock.image_layer.value = labels.name, image.name
        dock.run()
        labels.visible = False
    return dock
