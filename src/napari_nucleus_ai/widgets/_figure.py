"""A matplotlib figure embedded in a dock, safe to redraw after the dock is gone."""

from __future__ import annotations

import functools


@functools.cache
def _canvas_class():
    """``FigureCanvasQTAgg`` that draws only when shown (defined on first use: lazy imports)."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

    class HiddenAwareCanvas(FigureCanvasQTAgg):
        """Defers ``draw_idle`` while the canvas is not visible; draws once it is shown.

        matplotlib renders a canvas on every ``draw_idle`` and resize, visible or not: the
        Classifier's training plot, folded away in its Train section, was rendered (about
        1 s for the first draw: fonts, tight layout) in the event-loop turn that opened the
        progress bar of a classification, and again on the dock's resizes.
        """

        stale_hidden = False

        def draw_idle(self):
            if not self.isVisible():
                self.stale_hidden = True
                return
            super().draw_idle()

        def showEvent(self, event):  # noqa: N802 - Qt's name
            super().showEvent(event)
            if self.stale_hidden:
                self.stale_hidden = False
                super().draw_idle()

    return HiddenAwareCanvas


class DockFigure:
    """A ``Figure`` on a ``FigureCanvasQTAgg``; :meth:`redraw` is a no-op once Qt deleted it.

    Viewer events (the time slider, a worker's last progress) can arrive after the user
    closed the dock; drawing then would raise "wrapped C/C++ object has been deleted".
    While the canvas is hidden (a folded section, a dock not on show), drawing waits until
    it is shown.
    """

    def __init__(self, figsize, dpi: int = 100, **figure_kw):
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=figsize, dpi=dpi, **figure_kw)
        self.canvas = _canvas_class()(self.figure)
        self.alive = True
        self.canvas.destroyed.connect(self._gone)

    def _gone(self, *_):
        self.alive = False

    def redraw(self) -> None:
        """Schedule a repaint if the canvas still exists (when it is shown, if hidden)."""
        if not self.alive:
            return
        try:
            self.canvas.draw_idle()
        except RuntimeError:  # deleted on the C++ side before `destroyed` was delivered
            self.alive = False
