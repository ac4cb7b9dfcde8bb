"""The guided tour: read -> render -> segment -> classify -> uncertainty -> review -> retrain.

``napari-nucleus-ai demo --tour`` opens an empty viewer and runs one step per key press
(``n``, ``PageDown`` - what a presenter's clicker sends - or the *Next tour step* button of
the caption), each live: the step runs the plugin's own dock on the sample data, a short
caption appears on the canvas (napari's text overlay) and the step's dock is raised.
``r`` runs the current step again; ``--step N`` runs steps 1..N at once and stops on N.

Every step is a function of the viewer; steps are done in order because each needs the
layers of the ones before it (classification needs the segmentation...).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

PLUGIN = "napari-nucleus-ai"


@dataclass
class TourStep:
    key: str
    caption: str
    dock: str
    run: Callable


def _storm_layer(viewer):
    return next(
        (
            ly
            for ly in viewer.layers
            if "localizations" in (ly.metadata or {}) and "[zoom]" not in ly.name
        ),
        None,
    )


def _dock(viewer, name: str):
    """The plugin's dock widget ``name`` (opened if needed; unwrapped from the demo's scroll area)."""
    from qtpy.QtWidgets import QScrollArea

    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    if not isinstance(widget, QScrollArea):
        return widget
    inner = widget.widget()  # a magicgui dock: its Container, not the Qt widget inside
    return getattr(inner, "_magic_widget", inner)


def _only(viewer, keep: Callable) -> None:
    for layer in viewer.layers:
        layer.visible = bool(keep(layer))


def _read(viewer) -> None:
    from napari_nucleus_ai.widgets.localizations import demo_storm

    viewer.window.add_plugin_dock_widget(PLUGIN, "Settings")
    if _storm_layer(viewer) is None:
        demo_storm(viewer, zoom=False)
    storm = _storm_layer(viewer)
    _only(viewer, lambda ly: ly is storm)
    viewer.canvas.overlays.scale_bar.visible = True
    viewer.reset_view()


def _render(viewer) -> None:
    from napari_nucleus_ai.widgets._compat import set_view

    storm = _storm_layer(viewer)
    dock = _dock(viewer, "Localizations")
    dock.layer.value = storm.name
    df = storm.metadata["localizations"]
    first = df[df["nucleus"] == 1] if "nucleus" in df else df
    centre = (float(first["y_nm"].median()), float(first["x_nm"].median()))
    _only(viewer, lambda ly: ly is storm or ly.name.startswith(f"{storm.name} [zoom]"))
    set_view(viewer, storm, center=centre, zoom=1 / 6.0)  # 6 nm per screen pixel
    dock.update_zoom()


def _segment(viewer) -> None:
    from napari_nucleus_ai.demo.viewer import _focus
    from napari_nucleus_ai.widgets.segment import demo_segment
    from napari_nucleus_ai.widgets.slide import demo_smear

    if not any(ly.name.startswith("smear field") for ly in viewer.layers):
        demo_smear(viewer)
    demo_segment(viewer)
    _focus(viewer)


def _classify(viewer) -> None:
    from napari_nucleus_ai.demo.viewer import _focus
    from napari_nucleus_ai.widgets.classifier import demo_classify

    demo_classify(viewer)
    _focus(viewer)


def _uncertainty(viewer) -> None:
    from napari_nucleus_ai.demo.viewer import _focus

    _focus(viewer)
    for layer in viewer.layers:
        if layer.name == "uncertainty":
            layer.visible = True
            viewer.layers.selection.active = layer


def _review(viewer) -> None:
    from napari_nucleus_ai.demo.viewer import _focus
    from napari_nucleus_ai.widgets._review_outputs import demo_review

    demo_review(viewer)
    _focus(viewer)


def _retrain(viewer) -> None:
    import tempfile

    from napari_nucleus_ai.widgets._review_outputs import retrain_dialog

    w = _dock(viewer, "Review")
    out = os.path.join(tempfile.mkdtemp(prefix="nucleus-ai-tour-"), "retrained.zip")
    retrain_dialog(w, out=out, sync=True, epochs=3)


TOUR: list[TourStep] = [
    TourStep(
        "read",
        "Read: a STORM localization table (simulated nuclei, nm)\n"
        "opens as an image rendered at 20 nm",
        "Localizations",
        _read,
    ),
    TourStep(
        "render",
        "Render: zoomed into one nucleus, the view is re-rendered\n"
        "from the localizations at 6 nm per screen pixel",
        "Localizations",
        _render,
    ),
    TourStep(
        "segment",
        "Segment: the white cells of a blood smear\n(and the STORM nuclei) in one click",
        "Segmentation",
        _segment,
    ),
    TourStep(
        "classify",
        "Classify: every cell gets a class and a colour\nfrom a shipped demo model",
        "Classifier",
        _classify,
    ),
    TourStep(
        "uncertainty",
        "Uncertainty: brighter = less sure (test-time augmentation);\nreview those cells first",
        "Classifier",
        _uncertainty,
    ),
    TourStep(
        "review",
        "Review: confirm or correct cells, most uncertain first;\ncorrections are saved as you go",
        "Review",
        _review,
    ),
    TourStep(
        "retrain",
        "Retrain: the corrections fine-tune the model\ninto a new version with its own metrics",
        "Review",
        _retrain,
    ),
]


class Tour:
    """Steps through :data:`TOUR` on ``viewer``: a caption, the step's dock raised."""

    def __init__(self, viewer, steps: list[TourStep] | None = None, sync: bool = False):
        self.viewer = viewer
        self.steps = steps or TOUR
        #: run each step's dock work on this thread, even without ``NAPARI_NUCLEUS_AI_SYNC``
        #: (the Present dock: a step needs the layers of the one before it)
        self.sync = sync
        self.done = 0  # steps run so far
        self.current = 0  # 1-based number of the step on show (0: none yet)
        self.failed: list[str] = []
        overlay = viewer.canvas.overlays.text
        overlay.font_size = 13
        overlay.color = "white"
        overlay.position = "top_center"
        if "box" in type(overlay).model_fields:  # a box keeps the text readable on any image
            overlay.box = True
        self.caption("Guided tour: n (or PageDown) for the next step,\nr to run the step again")

    # ---------------------------------------------------------------- keys
    def bind_keys(self) -> None:
        for key in ("n", "PageDown"):
            self.viewer.bind_key(key, lambda _v: self.next(), overwrite=True)
        self.viewer.bind_key("r", lambda _v: self.rerun(), overwrite=True)

    # ---------------------------------------------------------------- steps
    def caption(self, text: str) -> None:
        overlay = self.viewer.canvas.overlays.text
        overlay.text = text
        overlay.visible = True

    def _title(self, n: int) -> str:
        step = self.steps[n - 1]
        return f"{n}/{len(self.steps)}  {step.caption}"

    def run_step(self, n: int) -> bool:
        """Run step ``n`` (1-based) live; ``False`` when it failed (the tour goes on)."""
        from napari_nucleus_ai.core.errors import one_line

        step = self.steps[n - 1]
        self.caption(self._title(n) + "  ...")
        _process_events()
        ok = True
        try:
            with _synchronous(self.sync):
                step.run(self.viewer)
        except Exception as e:  # noqa: BLE001 - a lab-meeting tour must not die on one step
            log.exception("tour step %s failed", step.key)
            self.failed.append(step.key)
            self.caption(f"{n}/{len(self.steps)}  {step.key} failed: {one_line(e)}")
            ok = False
        self.done = max(self.done, n)
        self.current = n
        raise_dock(self.viewer, step.dock)
        if ok:
            self.caption(self._title(n))
        return ok

    def next(self) -> None:
        if self.current < len(self.steps):
            self.run_step(self.current + 1)
        else:
            self.caption("End of the tour: every dock stays open to try")

    def rerun(self) -> None:
        if self.current:
            self.run_step(self.current)

    def goto(self, n: int) -> None:
        """Run every step up to ``n`` (those not run yet) and stop on ``n``."""
        n = max(1, min(int(n), len(self.steps)))
        for k in range(self.done + 1, n + 1):
            self.run_step(k)
        if n <= self.done and self.current != n:
            self.current = n
            raise_dock(self.viewer, self.steps[n - 1].dock)
            self.caption(self._title(n))


def raise_dock(viewer, title: str) -> None:
    """Bring the dock whose title contains ``title`` to the front of its tab stack."""
    from qtpy.QtWidgets import QDockWidget

    win = viewer.window._qt_window
    for dock in win.findChildren(QDockWidget):
        if title in dock.windowTitle() and dock.isVisible():
            dock.raise_()
            dock.show()


@contextlib.contextmanager
def _synchronous(on: bool):
    """``NAPARI_NUCLEUS_AI_SYNC=1`` for the block when ``on`` (the docks' work then finishes
    before the block ends), restored after."""
    if not on:
        yield
        return
    before = os.environ.get("NAPARI_NUCLEUS_AI_SYNC")
    os.environ["NAPARI_NUCLEUS_AI_SYNC"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("NAPARI_NUCLEUS_AI_SYNC", None)
        else:
            os.environ["NAPARI_NUCLEUS_AI_SYNC"] = before


def _process_events() -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is not None:
        app.processEvents()
