"""The Present dock: the guided tour, a PNG of the view with scale bar and legend, a movie.

For the person showing the plugin: *Start tour* / *Next step* walk through
:data:`~napari_nucleus_ai.demo.tour.TOUR` (the keys ``n`` / ``PageDown`` and ``r`` work
too), *Save PNG with legend...* writes the current view as a figure
(:mod:`~napari_nucleus_ai.demo.figure`) and *Save movie...* records the fly-in to a STORM
nucleus (:mod:`~napari_nucleus_ai.demo.movie`, napari-animation).

The dock is under *Layers > Visualize > Present*, and :func:`start_tour` is the command
*Guided tour (Nucleus AI)* of the command palette: napari 0.9's Help menu takes no plugin
entries (``napari/help`` is not among its contributable menus).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from magicgui.widgets import Container, FloatSpinBox, Label, PushButton

from napari_nucleus_ai.widgets._base import DockBase

if TYPE_CHECKING:
    import napari

PLUGIN = "napari-nucleus-ai"
DOCK = "Present"


class PresentWidget(DockBase, Container):
    """Tour start / next, a PNG of the view with a legend, a movie of a zoom into a nucleus."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        # the viewer itself, not napari's public-only proxy: the tour and the one-unit
        # display (demo.units) set what napari keeps private (the units override)
        self.init_dock(getattr(viewer, "__wrapped__", viewer))
        self.tour = None
        self.start_btn = PushButton(text="Start tour")
        self.next_btn = PushButton(text="Next step (n)")
        self.png_btn = PushButton(text="Save PNG with legend...")
        self.scale = FloatSpinBox(value=2.0, min=1.0, max=4.0, step=0.5, label="PNG scale")
        self.movie_btn = PushButton(text="Save movie...")
        self.seconds = FloatSpinBox(
            value=6.0, min=1.0, max=60.0, step=1.0, label="seconds", tooltip="movie length (s)"
        )
        self.status = Label(value="")
        from napari_nucleus_ai.widgets._base import status_label

        status_label(self.status)
        self.png_btn.tooltip = (
            "the current view at PNG scale x the screen, with a scale bar and the classes"
        )
        self.movie_btn.tooltip = "a fly-in to a STORM nucleus (napari-animation), MP4 or GIF"
        self.extend(
            [
                self.start_btn,
                self.next_btn,
                self.png_btn,
                Container(widgets=[self.scale], labels=True),
                self.movie_btn,
                Container(widgets=[self.seconds], labels=True),
                self.status,
            ]
        )
        self.start_btn.changed.connect(lambda *_: self.start_tour())
        self.next_btn.changed.connect(lambda *_: self.next_step())
        self.png_btn.changed.connect(lambda *_: self.save_png())
        self.movie_btn.changed.connect(lambda *_: self.save_movie())
        self.run_button(self.png_btn, needs=[(lambda: len(self.viewer.layers) > 0, "a layer")])
        self.run_button(self.movie_btn)
        self.run_button(self.next_btn, needs=[(lambda: self.tour is not None, "Start tour")])

    # ---------------------------------------------------------------- tour
    def start_tour(self):
        """A new tour on this viewer: its caption, its keys; returns it."""
        from napari_nucleus_ai.demo.tour import Tour
        from napari_nucleus_ai.demo.units import show_lengths_in

        show_lengths_in(self.viewer)
        self.tour = Tour(self.viewer, sync=True)
        self.tour.bind_keys()
        self.say("tour started: Next step (or n, PageDown)")
        self.update_buttons()
        return self.tour

    def next_step(self) -> None:
        if self.tour is None:
            self.start_tour()
        self.tour.next()
        self.say(f"tour step {self.tour.current} of {len(self.tour.steps)}")

    # ---------------------------------------------------------------- PNG
    def save_png(self, path=None):
        """Save the current view with a scale bar and legend to ``path`` (asked when ``None``).

        The canvas is shot here (it lives on this thread); composing and writing the PNG run
        through the dock's worker. Returns the worker (``None`` when no path was chosen).
        """
        from napari_nucleus_ai.demo.figure import figure_job, grab_view

        path = path or _ask_path(self.native, "Save the view as PNG", "PNG image (*.png)", ".png")
        if not path:
            return None
        view = grab_view(self.viewer, scale=float(self.scale.value))
        self.say("writing the figure...")
        return self.start_job(
            figure_job,
            path,
            view,
            on_result=self._png_saved,
            description="saving the figure",
        )

    def _png_saved(self, result) -> None:
        path, bar, legend = result
        what = f"scale bar {bar.label}" if bar else "no scale bar (no physical size)"
        self.say(f"saved {path} ({what}, {len(legend)} classes)")

    # ---------------------------------------------------------------- movie
    def save_movie(self, path=None, *, fps: int = 20):
        """Record the fly-in to a STORM nucleus into ``path`` (asked when ``None``).

        The frames are rendered by the canvas, so this runs on the viewer's thread (the
        window waits, as napari-animation's own dock does); the viewer is given back as it
        was. Returns the path, or ``None``.
        """
        from napari_nucleus_ai.demo.movie import zoom_movie
        from napari_nucleus_ai.demo.tour import _synchronous

        path = path or _ask_path(self.native, "Save the movie", "Movie (*.mp4 *.gif)", ".mp4")
        if not path:
            return None
        self.say("recording the movie...")
        self._jobs += 1
        self.update_buttons()
        try:
            with _synchronous(True):
                out = zoom_movie(self.viewer, path, fps=fps, seconds=float(self.seconds.value))
        except Exception as e:  # noqa: BLE001 - one line on the status line and a notification
            self.job_failed(e)
            return None
        finally:
            self._jobs -= 1
            self.update_buttons()
        self.say(f"saved {out}")
        return out


def _ask_path(parent, title: str, filters: str, suffix: str) -> str | None:
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getSaveFileName(parent, title, "", filters)
    if path and not path.lower().endswith((".png", ".mp4", ".gif", ".mov", ".avi")):
        path += suffix
    return path or None


def start_tour(viewer: napari.viewer.Viewer) -> None:
    """Menu command: open the Present dock and start the guided tour."""
    from napari_nucleus_ai.demo.tour import _dock

    _dock(viewer, DOCK).start_tour()  # the dock itself, also inside the demo's scroll area
