"""Infection dock: track nuclei in a Hoechst time-lapse, score infection, predict lysis, plot per track.

Thin: the work is :func:`napari_nucleus_ai.infection.score.analyse_timelapse` run through
``start_work`` (progress bar, cancel, UI stays live). Results become a Labels
layer (nuclei numbered by track, coloured by fate), a Tracks layer coloured by
``p_infected`` and, below, a table of tracks and a matplotlib plot of the selected
track's probability over time. Pick a track in the list, or click a nucleus (or a
track's line) in the viewer, to select it; the viewer jumps to it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    PushButton,
)

from napari_nucleus_ai.widgets._base import DockBase, ScrollableDock
from napari_nucleus_ai.widgets._figure import DockFigure

if TYPE_CHECKING:
    import napari

FATE_COLOURS = {"lytic": "#e8412c", "infected": "#f5a623", "uninfected": "#4a90d9", None: "#9b9b9b"}


class InfectionWidget(ScrollableDock, DockBase, Container):
    """The "Infection" dock."""

    def __init__(self, viewer: napari.viewer.Viewer):
        from napari.layers import Image

        super().__init__(labels=True, scrollable=True)
        self.init_dock(viewer)
        self.result = None
        self._look = None  # scale/translate of the analysed layer (world -> pixel)
        self.layer = ComboBox(label="time-lapse", nullable=True)
        from napari_nucleus_ai.core.params import command_param

        # the limits `track` checks; the lowest value means "from the layer"
        self.pixel = self.schema_spin(
            command_param("track", "--pixel-size-um"), label="pixel size", value=0.0,
            none_value=0.0, none_text="from the layer", suffix=" um",
            tooltip="micrometres per pixel; lowest = from the layer",
        )  # fmt: skip
        self.interval = self.schema_spin(
            command_param("track", "--frame-interval-h"), label="frame interval", value=0.0,
            none_value=0.0, none_text="from the layer", suffix=" h",
            tooltip="hours between frames; lowest = from the layer metadata, else 1 h",
        )  # fmt: skip
        self.demo_model = CheckBox(label="demo model", value=True,
                                   tooltip="the infection model trained on simulated nuclei (trained once, cached)")  # fmt: skip
        self.model = FileEdit(
            label="model",
            mode="r",
            filter="*.zip card.json",
            tooltip="infection model package (infected/uninfected): its .zip, or the card.json "
            "of a package folder",
        )
        self.lytic = FileEdit(label="lytic model", mode="r", filter="*.json",
                              tooltip="lytic predictor (empty = the one shipped)")  # fmt: skip
        self.run_btn = PushButton(text="Track and score")
        self.cancel_btn = PushButton(text="Cancel")
        self.status = Label(value="")
        self.track = ComboBox(label="track", choices=[])
        self._set_track_choices([])  # "no tracks yet", never magicgui's "-----"
        from napari_nucleus_ai.widgets._base import status_label

        status_label(self.status)
        self.extend([self.layer, self.pixel, self.interval, self.demo_model, self.model, self.lytic,
                     self.run_btn, self.cancel_btn, self.status, self.track])  # fmt: skip
        self._plot = _TrackPlot()
        self.body_layout().addWidget(self._plot.canvas)
        self.run_btn.changed.connect(self.run)
        self.cancel_btn.changed.connect(self.cancel)
        self.track.changed.connect(lambda v: self.select_track(v, jump=True))
        self.layer_choice(
            self.layer,
            lambda ly: isinstance(ly, Image) and ly.ndim == 3 and not ly.rgb,
            "a time-lapse (t, y, x) image layer",
        )
        self.run_button(self.run_btn, needs=[self.layer])
        self.cancel_button(self.cancel_btn)
        viewer.dims.events.current_step.connect(lambda e: self._plot.set_time(self._current_t()))
        # on the viewer, not on the nuclei layer: napari only calls the *active* layer's mouse
        # callbacks, and the Tracks layer (added last) is the active one after a run
        viewer.mouse_drag_callbacks.append(self._on_click)
        self.native.destroyed.connect(
            lambda *_: _discard(getattr(viewer, "mouse_drag_callbacks", []), self._on_click)
        )

    # ---------------------------------------------------------------- running
    def _params(self):
        from napari_nucleus_ai.widgets.segment import layer_pixel_size_um

        layer = self.layer.value
        if layer is None:
            raise ValueError("choose a time-lapse image layer")
        px = self.pixel.value or layer_pixel_size_um(layer)
        dt = self.interval.value or float((layer.metadata or {}).get("frame_interval_h", 1.0))
        lytic = str(self.lytic.value) if str(self.lytic.value) not in ("", ".") else None
        model = str(self.model.value) if str(self.model.value) not in ("", ".") else None
        if model is not None and Path(model).name == "card.json":
            model = str(Path(model).parent)  # a package folder, picked by its card
        return layer, px, dt, model, lytic

    def run(self, *_):
        """Track and score the chosen time-lapse; returns the worker (``None`` if nothing to run)."""
        from napari.utils.notifications import show_error

        try:
            layer, px, dt, model, lytic = self._params()
        except ValueError as e:
            show_error(str(e))
            return None
        self.status.value = "working..."
        look = _layer_kw(layer)
        self._look = look
        return self.start_job(
            _workflow, layer.data, px, dt, model, lytic, self.demo_model.value, look,
            on_result=self._show, description="Infection", freeze_gc=True,
        )  # fmt: skip

    # ---------------------------------------------------------------- results
    def _show(self, payload) -> None:
        """Add the result's layers (built in the worker) and fill the dock.

        Each layer is added in its own event-loop turn (see ``run_in_steps``).
        """
        from napari_nucleus_ai.widgets._worker import run_in_steps

        self.result, built = payload
        run_in_steps([*(lambda ly=ly: self.replace_layer(ly) for ly in built), self._fill])

    def _fill(self) -> None:
        """Track choices, status line and the first track's curve."""
        result = self.result
        table = result.table
        order = result.tracks["track_id"].unique()
        if table is not None:
            order = table.sort_values(["infected", "p_infected_mean"], ascending=False)[
                "track_id"
            ].to_numpy()
        # a track seen in one frame has a one-dot curve: such tracks go last
        lengths = result.tracks.groupby("track_id")["t"].nunique()
        order = sorted(order, key=lambda k: int(lengths.get(k, 0)) < 2)
        self._set_track_choices([int(k) for k in order])
        n_inf = int(table["infected"].sum()) if table is not None else 0
        msg = f"{len(order)} tracks"
        if table is not None:
            # no lytic predictor (none shipped or given): no column, none predicted
            import pandas as pd

            lytic = table.get("lytic_predicted", [])
            n_lyt = sum(bool(v) for v in lytic if not pd.isna(v))  # NaN / NA: not predicted
            msg += f", {n_inf} infected, {n_lyt} predicted lytic"
        self.status.value = msg
        self.status.tooltip = f"tracking {result.tracking.seconds_per_frame:.2f} s/frame"
        if len(order):
            self.select_track(int(order[0]), jump=False)

    #: What the track box shows before a run, and after a run that found no track.
    NO_TRACKS = "no tracks yet"
    NONE_FOUND = "no tracks found"

    def _set_track_choices(self, ids: list[int]) -> None:
        """Fill the track list in one pass: magicgui's ``choices`` setter looks every new item
        up in the items already there (``findText``), quadratic for thousands of tracks.

        Items are ``track <id>`` (data: the id); with no track the one item says why
        (:attr:`NO_TRACKS` before a run, :attr:`NONE_FOUND` after one), never ``-----``.
        """
        native = self.track.native
        blocked = native.blockSignals(True)
        try:
            native.clear()
            if not ids:
                native.addItem(self.NONE_FOUND if self.result is not None else self.NO_TRACKS, None)
            for k in ids:
                native.addItem(f"track {k}", k)
        finally:
            native.blockSignals(blocked)
        self.track.enabled = bool(ids)

    def _current_t(self) -> int:
        return int(self._viewer.dims.current_step[0]) if self._viewer.dims.ndim >= 3 else 0

    def _on_click(self, viewer, event):
        """Viewer mouse callback: a click (not a drag) on a nucleus or a track selects that track.

        Only while the selected layer is in pan/zoom mode: a click that paints, erases or picks
        a label (or adds a point) is the user editing, not choosing a track.
        """
        active = viewer.layers.selection.active
        if self.result is None or str(getattr(active, "mode", "pan_zoom")) != "pan_zoom":
            return
        press = np.asarray(event.position, float)
        yield
        while event.type == "mouse_move":
            yield
        if np.abs(np.asarray(event.position, float) - press).max() > 1e-6:
            return  # the user dragged (panned), not clicked
        tid = self.track_at(press)
        if tid is not None:
            with contextlib.suppress(RuntimeError):  # the dock was closed
                self.track.value = tid

    def track_at(self, position, radius_px: float = 10.0) -> int | None:
        """The track under a world ``position`` (t, y, x); see :func:`..track.track_at`."""
        if self.result is None or len(position) < 3:
            return None
        from napari_nucleus_ai.infection.track import track_at

        look = self._look or {"scale": (1, 1, 1), "translate": (0, 0, 0)}
        pos = np.asarray(position[-3:], float)
        tyx = (pos - np.asarray(look["translate"][-3:])) / np.asarray(look["scale"][-3:])
        return track_at(self.result.tracking.labels, self.result.tracks, tyx, radius_px)

    def select_track(self, track_id, jump: bool = True) -> None:
        """Plot ``track_id``'s curve; with ``jump``, move the viewer to its nucleus."""
        if self.result is None or track_id is None:
            return
        tracks = self.result.tracks
        rows = tracks[tracks["track_id"] == int(track_id)].sort_values("t")
        if rows.empty:
            return
        info = None
        if self.result.table is not None:
            info = self.result.table[self.result.table["track_id"] == int(track_id)].iloc[0]
        self._plot.show(rows, info, self.result.frame_interval_h, self._current_t())
        if jump:
            from napari_nucleus_ai.widgets._compat import set_view

            layer = self.layer.value
            scale = np.asarray(layer.scale if layer is not None else (1, 1, 1))
            now = self._current_t()
            t = now if rows["t"].min() <= now <= rows["t"].max() else int(rows["t"].iloc[0])
            r = rows.iloc[int(np.argmin(np.abs(rows["t"].to_numpy() - t)))]
            self._viewer.dims.set_current_step(0, t)
            set_view(self._viewer, layer, center=(float(r.y * scale[1]), float(r.x * scale[2])))


def _discard(callbacks: list, func) -> None:
    if func in callbacks:
        callbacks.remove(func)


def _workflow(stack, px, dt, model, lytic, demo_model, look):
    """Core generator run by the dock (module level so tests can call it).

    It also builds the result's napari layers from ``look`` (the source layer's name,
    scale, units...) here, in the worker: the Tracks layer's graph and the labels' colours
    of a 100-frame movie cost about a second that the UI thread would otherwise freeze for.
    """
    from napari_nucleus_ai.infection.lytic import default_model_path
    from napari_nucleus_ai.infection.score import analyse_timelapse, ensure_demo_model

    if model is None and demo_model:
        model = yield from ensure_demo_model()
    stack = np.asarray(stack) if not hasattr(stack, "compute") else stack
    lytic = lytic or (default_model_path() if default_model_path().exists() else None)
    result = yield from analyse_timelapse(stack, px, model=model, lytic=lytic, frame_interval_h=dt)
    return result, result_layers(result, look["name"], look)


def _layer_kw(source) -> dict:
    """What the result layers copy from the time-lapse layer (read on the UI thread)."""
    return {
        "name": source.name,
        "scale": tuple(source.scale),
        "translate": tuple(source.translate),
        "units": tuple(str(u) for u in source.units),
        "axis_labels": tuple(source.axis_labels),
    }


def result_layers(result, name: str, kw: dict) -> list:
    """The nuclei Labels (outlines coloured by fate, the track table as features) and the
    Tracks layer (coloured by p_infected) of an :class:`InfectionResult`, not yet in a viewer."""
    from napari.layers import Labels, Tracks

    from napari_nucleus_ai.infection.track import tracks_layer_data

    kw = {k: v for k, v in kw.items() if k != "name"}
    tracks, table = result.tracks, result.table
    lab = Labels(result.tracking.labels, name=f"{name} nuclei", opacity=0.8, **kw)
    lab.contour = 2  # outlines coloured by fate; the chromatin stays visible
    if table is not None:
        from napari_nucleus_ai.cells import to_features

        lab.features = to_features(table.rename(columns={"track_id": "label"}))
        lab.colormap = _fate_colormap(table)
    data, graph = tracks_layer_data(tracks)
    tl = Tracks(data, graph=graph, name=f"{name} tracks", tail_length=20, tail_width=4, **kw)
    feats = tracks.sort_values(["track_id", "t"]).reset_index(drop=True)
    if "p_infected" in feats:
        tl.features = feats[["track_id", "t", "p_infected"]].fillna(0.0)
        tl.color_by = "p_infected"
        tl.colormap = _p_colormap().name
    return [lab, tl]


def _p_colormap():
    """Blue (uninfected) - white - red (infected), registered so the Tracks layer can use it by name."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    cmap = Colormap(["#4a90d9", "#f0f0f0", "#e8412c"], name="p_infected", controls=[0.0, 0.5, 1.0])
    return ensure_colormap(cmap)


def _fate_colormap(table):
    import pandas as pd
    from napari.utils.colormaps import DirectLabelColormap

    colours = {None: "transparent", 0: "transparent"}
    for r in table.itertuples():
        lytic = getattr(r, "lytic_predicted", False)
        lytic = bool(lytic) if lytic is not None and lytic is not pd.NA else False
        key = "lytic" if lytic else ("infected" if r.infected else "uninfected")
        colours[int(r.track_id)] = FATE_COLOURS[key]
    return DirectLabelColormap(color_dict=colours)


class _TrackPlot(DockFigure):
    """Matplotlib canvas: p_infected (and relative area) of one track over time."""

    def __init__(self):
        super().__init__(figsize=(4, 2.6), tight_layout=True)
        self.canvas.setMinimumHeight(220)
        self.ax = self.figure.add_subplot(111)
        self._now = None
        self._dt = 1.0
        self._empty()

    def _empty(self):
        self.ax.clear()
        self.ax.set_xlabel("time (h)")
        self.ax.set_ylabel("p(infected)")
        self.ax.set_ylim(-0.03, 1.03)
        self.redraw()

    def show(self, rows, info, dt: float, now: int) -> None:
        self._dt = dt
        ax = self.ax
        ax.clear()
        t = rows["t"].to_numpy(float) * dt
        title = f"track {int(rows['track_id'].iloc[0])}"
        if "p_infected" in rows:
            ax.plot(t, rows["p_infected"], "-o", ms=3, color="#e8412c", label="p(infected)")
        area = rows["area_px"].to_numpy(float)
        ax.plot(t, area / max(area[0], 1.0) / 2.0, color="#7f7f7f", lw=1, label="area / first / 2")
        if info is not None:
            if info.get("t_infected", -1) >= 0:
                ax.axvline(
                    info["t_infected"] * dt, color="#f5a623", ls="--", lw=1, label="infected"
                )
            if np.isfinite(info.get("t_predict", np.nan)):
                ax.axvline(info["t_predict"] * dt, color="k", ls=":", lw=1, label="lytic call")
                title += f"  p(lytic) {info['p_lytic']:.2f}"
            title += f"  [{info['end']}]"
            if np.isfinite(info.get("lead_time_h", np.nan)):
                title += f"  lead {info['lead_time_h']:.1f} h"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("time (h)")
        ax.set_ylim(-0.03, 1.03)
        ax.legend(fontsize=6, loc="upper left")
        self._now = ax.axvline(now * dt, color="#4a90d9", lw=1)
        self.redraw()

    def set_time(self, t: int) -> None:
        if self._now is not None:
            self._now.set_xdata([t * self._dt, t * self._dt])
            self.redraw()


def demo_infection(viewer) -> InfectionWidget:
    """Demo step: the synthetic infection time-lapse, tracked and scored in the Infection dock."""
    from napari_nucleus_ai.samples.timelapse import sample_layers

    img, meta, _ = sample_layers(n_frames=40, shape=(320, 320), seed=2)[0]
    layer = viewer.add_image(img, **meta)
    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Infection")
    dock.layer.value = layer
    dock.run()
    return dock
