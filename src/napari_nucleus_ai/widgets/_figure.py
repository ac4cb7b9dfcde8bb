"""A matplotlib figure embedded in a dock, safe to redraw after the dock is gone."""

from __future__ import annotations


class DockFigure:
    """A ``Figure`` on a ``FigureCanvasQTAgg``; :meth:`redraw` is a no-op once Qt deleted it.

    Viewer events (the time slider, a worker's last progress) can arrive after the user
    closed the dock; drawing then would raise "wrapped C/C++ object has been deleted".
    """

    def __init__(self, figsize, dpi: int = 100, **figure_kw):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=figsize, dpi=dpi, **figure_kw)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.alive = True
        self.canvas.destroyed.connect(self._gone)

    def _gone(self, *_):
        self.alive = False

    def redraw(self) -> None:
        """Schedule a repaint if the canvas still exists."""
        if not self.alive:
            return
        try:
            self.canvas.draw_idle()
        except RuntimeError:  # deleted on the C++ side before `destroyed` was delivered
            self.alive = False
