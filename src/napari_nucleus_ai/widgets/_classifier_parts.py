"""Helpers of the Classifier dock: layer geometry, class colours, legend, demo step."""

from __future__ import annotations

import html

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
