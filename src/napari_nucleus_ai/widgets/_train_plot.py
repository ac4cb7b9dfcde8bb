"""A small live plot of training curves (loss and accuracy per epoch) for the Classifier dock."""

from __future__ import annotations

from qtpy.QtWidgets import QSizePolicy

from napari_nucleus_ai.widgets._figure import DockFigure


class TrainPlot(DockFigure):
    """Matplotlib canvas with loss (left axis) and accuracy (right axis) against epoch."""

    def __init__(self):
        super().__init__(figsize=(3.2, 1.9), dpi=90, tight_layout=True)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.canvas.setFixedHeight(170)
        self.ax = self.figure.add_subplot(111)
        self.ax2 = self.ax.twinx()
        self.rows: list[dict] = []
        self._draw()

    def clear(self) -> None:
        self.rows = []
        self._draw()

    def add(self, metrics: dict) -> None:
        self.rows.append(dict(metrics))
        self._draw()

    def _draw(self) -> None:
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
        self.redraw()
