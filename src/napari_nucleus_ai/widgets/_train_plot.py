"""A small live plot of training curves (loss and accuracy per epoch) for the Classifier dock."""

from __future__ import annotations

from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget


class _Placeholder(QWidget):
    """An empty widget that calls ``on_show`` the first time it is shown."""

    def __init__(self, on_show):
        super().__init__()
        self._on_show = on_show
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

    def showEvent(self, event):  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._on_show is not None:
            on_show, self._on_show = self._on_show, None
            on_show()


class TrainPlot:
    """Loss (left axis) and accuracy (right axis) against epoch, on a matplotlib canvas.

    ``canvas`` is the widget to put in a layout. The figure is built the first time it is
    shown: the Train section starts folded, and importing matplotlib and building the
    figure take about 300 ms on the GUI thread. Rows added before then are drawn when it
    is built.
    """

    def __init__(self):
        self.rows: list[dict] = []
        self.figure = None  # the DockFigure, once shown
        self.canvas = _Placeholder(self._build)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.canvas.setFixedHeight(170)
        self.alive = True
        self.canvas.destroyed.connect(self._gone)

    def _gone(self, *_):
        self.alive = False

    def _build(self) -> None:
        from napari_nucleus_ai.widgets._figure import DockFigure

        if not self.alive:
            return
        self.figure = DockFigure(figsize=(3.2, 1.9), dpi=90, tight_layout=True)
        self.canvas.layout().addWidget(self.figure.canvas)
        self.ax = self.figure.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        self._draw()

    def clear(self) -> None:
        self.rows = []
        self._draw()

    def add(self, metrics: dict) -> None:
        self.rows.append(dict(metrics))
        self._draw()

    def _draw(self) -> None:
        if self.figure is None or not self.alive:
            return
        ax, ax2 = self.ax, self.ax2
        ax.clear()
        ax2.clear()
        x = list(range(1, len(self.rows) + 1))
        for key, style, axis in (
            ("train_loss", "-", ax),
            ("val_loss", "--", ax),
            ("train_accuracy", "-", ax2),
            ("val_accuracy", "--", ax2),
        ):
            ys = [r.get(key, float("nan")) for r in self.rows]
            if any(y == y for y in ys):
                colour = "tab:red" if "loss" in key else "tab:blue"
                axis.plot(
                    x,
                    ys,
                    style,
                    color=colour,
                    label=key.replace("_", " "),
                    lw=1.2,
                    marker="o" if len(x) == 1 else None,  # a closed-form fit is one point
                )
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_ylabel("loss", color="tab:red", fontsize=7)
        ax2.set_ylabel("accuracy", color="tab:blue", fontsize=7)
        ax2.set_ylim(0, 1.02)
        ax2.yaxis.set_label_position("right")
        for a in (ax, ax2):
            a.tick_params(labelsize=6)
        if self.rows:
            lines = ax.get_lines() + ax2.get_lines()
            ax.legend(lines, [ln.get_label() for ln in lines], fontsize=6, loc="center right")
        self.figure.redraw()
