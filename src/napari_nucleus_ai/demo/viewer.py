"""The one-command demo: sample data, the plugin's docks, and results on screen.

:data:`DEMO_STEPS` is an ordered list of ``(title, function(viewer))``. Each
capability adds its own step (open a sample, segment it, classify it...). Steps
run in order; one that fails is reported and skipped so a lab-meeting demo never
dies on one broken piece.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

PLUGIN = "napari-nucleus-ai"


def _docks(viewer) -> None:
    viewer.window.add_plugin_dock_widget(PLUGIN, "Settings")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Present")  # tour, PNG figure, movie


def _storm(viewer) -> None:
    from napari_nucleus_ai.widgets.localizations import demo_storm

    demo_storm(viewer)


def _smear(viewer) -> None:
    from napari_nucleus_ai.widgets.slide import demo_smear

    demo_smear(viewer)


def _segment(viewer) -> None:
    from napari_nucleus_ai.widgets.segment import demo_segment

    demo_segment(viewer)


def _classify(viewer) -> None:
    from napari_nucleus_ai.widgets.classifier import demo_classify

    demo_classify(viewer)


def _review(viewer) -> None:
    from napari_nucleus_ai.widgets._review_outputs import demo_review

    demo_review(viewer)


def _infection(viewer) -> None:
    """A 24-frame simulated Hoechst time-lapse tracked and scored in the Infection dock.

    24 frames rather than the dock's own 40-frame demo: the same story (cells infected in
    the first hours, some lysing) at ~60 % of the cost, so the whole demo starts quickly.
    """
    from napari_nucleus_ai.samples.timelapse import sample_layers

    img, meta, _ = sample_layers(n_frames=24, shape=(320, 320), seed=2)[0]
    layer = viewer.add_image(img, **meta)
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Infection")
    dock.layer.value = layer
    dock.run()


def _real(viewer) -> None:
    """The two real samples shipped with the plugin (BCCD smear field, ColiCoords dSTORM)."""
    for key in ("bccd_smear", "colicoords_storm"):
        viewer.open_sample(PLUGIN, key)


def _focus(viewer) -> None:
    """End on the classified smear: its layers visible, the camera on it, docks tabbed.

    Every layer is drawn in um (:func:`~napari_nucleus_ai.demo.units.show_lengths_in`:
    STORM renders in nm and smears in um share one unit and scale bar), but the samples
    all start at the origin, so showing them at once would stack unrelated fields on top
    of each other; the other layers stay in the layer list, hidden, one click away.
    """
    focus = [ly for ly in viewer.layers if ly.name.startswith("smear field")]
    if not focus:
        return
    keep = {id(ly) for ly in focus}
    keep |= {id(ly) for ly in viewer.layers if ly.name in ("uncertainty", "reviewed cells")}
    for layer in viewer.layers:
        layer.visible = id(layer) in keep and "ground truth" not in layer.name
    for layer in viewer.layers:
        if layer.name == "uncertainty":
            layer.visible = False  # one click away; the class colours are the headline
    image = focus[0]
    ext = image.extent.world
    lo, hi = ext[0][-2:], ext[1][-2:]
    from napari_nucleus_ai.widgets._compat import set_view

    size = viewer.window._qt_viewer.canvas.size if hasattr(viewer.window, "_qt_viewer") else None
    span = float(max(hi - lo)) or 1.0
    width = float(min(size)) if size else 800.0
    set_view(viewer, image, center=(lo + hi) / 2, zoom=0.95 * width / span)
    classes = [ly for ly in focus if ly.name.endswith("classes")]
    if classes:
        viewer.layers.selection.active = classes[0]


DEMO_STEPS: list[tuple[str, Callable]] = [
    ("docks", _docks),
    # one step per capability, in pipeline order
    ("storm", _storm),
    ("smear", _smear),
    ("segment", _segment),
    ("classify", _classify),
    ("review", _review),
    ("infection", _infection),
    ("real", _real),
    ("focus", _focus),
]


def build_demo(viewer, steps: list[str] | None = None) -> list[str]:
    """Run the demo steps on ``viewer``; return the titles of steps that failed."""
    from napari_nucleus_ai.core.errors import one_line
    from napari_nucleus_ai.demo.units import show_lengths_in

    show_lengths_in(viewer)  # nm (STORM) and um (smear) layers in one unit, no warning
    failed = []
    for title, step in DEMO_STEPS:
        if steps is not None and title not in steps:
            continue
        try:
            step(viewer)
        except Exception as e:  # noqa: BLE001 - a demo step must not kill the demo
            log.exception("demo step %s failed", title)
            from napari.utils.notifications import show_warning

            show_warning(f"demo step '{title}' failed: {one_line(e)}")
            failed.append(title)
    return failed
