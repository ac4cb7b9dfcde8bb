"""What every dock shares, written once: the viewer, layer boxes, run buttons, work, results.

A dock mixes in :class:`DockBase` (magicgui ``Container`` docks and plain ``QWidget``
docks alike), calls :meth:`DockBase.init_dock` after its widget's own ``__init__`` and
then declares only its parameters and what it does with a result:

* :meth:`~DockBase.layer_choice` turns a combo box into a box of the layers of one kind.
  It follows ``viewer.layers`` (inserted / removed / renamed) and, while nothing is
  chosen, takes the selected layer when it fits, else the only layer that fits, whether
  that layer was opened before or after the dock.
* :meth:`~DockBase.run_button` / :meth:`~DockBase.cancel_button` register buttons: a run
  button is disabled while work runs or while a required input is missing, and then its
  tooltip says what to choose.
* :meth:`~DockBase.start_job` runs a core generator through
  :func:`~napari_nucleus_ai.widgets._worker.start_work` (progress, cancel, one error
  notification) and keeps the busy state; :meth:`~DockBase.cancel` stops it.
* :meth:`~DockBase.add_result` / :meth:`~DockBase.replace_layer` show a result layer
  in place of the previous result of the same name, never beside it.
* :meth:`~DockBase.schema_spin` / :meth:`~DockBase.schema_choice` make a number's spin
  box or a choice box from its :class:`~napari_nucleus_ai.core.params.Param`: the dock's
  limits, step and choices are the schema's that the command line and batch check
  (:attr:`~DockBase.schema_widgets` lists them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

#: Height a dock keeps when docks share a 768 px laptop screen (it scrolls within it).
DOCK_MIN_HEIGHT = 180

#: What ``accept`` may be given as: a napari layer class name, a tuple of them, or a test.
Accept = str | tuple[str, ...] | Callable[[Any], bool]


def _accepts(accept: Accept) -> Callable[[Any], bool]:
    if callable(accept):
        return accept
    names = (accept,) if isinstance(accept, str) else tuple(accept)
    return lambda layer: type(layer).__name__ in names


def _named(viewer, name):
    """The viewer's layer called ``name``, or ``None``."""
    return next((ly for ly in viewer.layers if ly.name == name), None)


def _unwrap(layer):
    """The layer itself: docks opened from the plugin menu see napari's proxies of layers,
    a new proxy object at each access, so identity is checked on what they wrap."""
    return getattr(layer, "__wrapped__", layer)


def same_layer(a, b) -> bool:
    return _unwrap(a) is _unwrap(b)


def _is_qt(widget) -> bool:
    """A plain Qt widget (``QComboBox``, ``QPushButton``), not a magicgui one."""
    return not hasattr(widget, "native")


def _set_enabled(widget, on: bool) -> None:
    if _is_qt(widget):
        widget.setEnabled(on)
    else:
        widget.enabled = on


def _tooltip(widget) -> str:
    return (widget.toolTip() if _is_qt(widget) else widget.tooltip) or ""


def _set_tooltip(widget, text: str) -> None:
    if _is_qt(widget):
        widget.setToolTip(text)
    else:
        widget.tooltip = text


class LayerBox:
    """A combo box listing the viewer's layers of one kind.

    Parameters
    ----------
    viewer : napari.Viewer
    widget : magicgui ComboBox or QComboBox
        The box. A magicgui box gets its ``choices`` from here (layers, or their names
        with ``by_name``); a ``QComboBox`` is filled with the names, each item's data
        being its layer.
    accept : callable
        Whether a layer belongs in the box.
    what : str
        What to choose, for messages ("an image layer").
    by_name : bool
        A magicgui box's values are layer names instead of layers.
    on_change : callable, optional
        Called with the chosen layer (or ``None``) when the choice changes.
    """

    def __init__(self, viewer, widget, accept, what, by_name=False, on_change=None):
        self.viewer = viewer
        self.widget = widget
        self.accept = accept
        self.what = what
        self.by_name = by_name
        self.on_change = on_change
        self._current = None  # the layer on_change was last told of
        if _is_qt(widget):
            widget.currentIndexChanged.connect(self._qt_changed)
        else:
            widget.choices = self._choices
            widget.changed.connect(self._changed)

    def candidates(self) -> list:
        """The layers that fit, in layer-list order."""
        return [ly for ly in self.viewer.layers if self.accept(ly)]

    def _choices(self, _widget=None) -> list:
        return [ly.name if self.by_name else ly for ly in self.candidates()]

    @property
    def layer(self):
        """The chosen layer, or ``None``."""
        if _is_qt(self.widget):
            value = self.widget.currentData()
        else:
            value = self.widget.value
            if self.by_name:
                value = _named(self.viewer, value)
        if value is None or not any(same_layer(value, ly) for ly in self.viewer.layers):
            return None
        return value

    @layer.setter
    def layer(self, layer) -> None:
        if _is_qt(self.widget):
            names = [self.widget.itemText(i) for i in range(self.widget.count())]
            index = names.index(layer.name) if layer is not None and layer.name in names else -1
            self.widget.setCurrentIndex(index)
        else:
            self.widget.value = None if layer is None else (layer.name if self.by_name else layer)

    def default(self):
        """The selected layer when it fits, else the only layer that fits, else ``None``."""
        candidates = self.candidates()
        active = self.viewer.layers.selection.active
        if active is not None and any(same_layer(active, ly) for ly in candidates):
            return active
        return candidates[0] if len(candidates) == 1 else None

    def refresh(self) -> None:
        """List the layers that fit now; keep the choice, else take the :meth:`default`."""
        before = self.layer
        if _is_qt(self.widget):
            box = self.widget
            blocked = box.blockSignals(True)
            try:
                box.clear()
                for ly in self.candidates():
                    box.addItem(ly.name, ly)
                kept = before is not None and any(same_layer(before, c) for c in self.candidates())
                self.layer = before if kept else self.default()
            finally:
                box.blockSignals(blocked)
        else:
            self.widget.reset_choices()
            if self.layer is None and (pick := self.default()) is not None:
                self.layer = pick
        self._changed()  # the chosen layer may be gone (removed) or new (the default)

    def fill(self) -> None:
        """Take the :meth:`default` when nothing is chosen (the selection changed)."""
        if self.layer is None and (pick := self.default()) is not None:
            self.layer = pick

    def _qt_changed(self, _index=None) -> None:
        self._changed()

    def _changed(self, _value=None) -> None:
        layer = self.layer
        if same_layer(layer, self._current):
            return
        self._current = layer
        if self.on_change is not None:
            self.on_change(layer)


class DockBase:
    """Mixin owning a dock's viewer, layer boxes, run/cancel buttons, work and result layers.

    Attributes
    ----------
    viewer : napari.Viewer
    worker : GeneratorWorker or SyncWork or None
        The last job started (it stays after it finished).
    busy : bool
        A job started with ``busy=True`` is running.
    cancelled : bool
        :meth:`cancel` was asked since the last job started (core generators that take a
        ``cancel`` callable poll it).
    sync : bool or None
        Run jobs on the calling thread (tests); ``None``: ``NAPARI_NUCLEUS_AI_SYNC``.
    """

    #: What the status line says after Cancel.
    cancel_message = "cancelled"

    def init_dock(self, viewer) -> None:
        """Call once, after the widget's own ``__init__``."""
        self.viewer = viewer
        self._viewer = viewer  # the docks' mixins (zoom, review view) read either name
        self.worker = None
        self.cancelled = False
        self.sync: bool | None = None
        self._jobs = 0
        self._boxes: list[LayerBox] = []
        self._runs: list[tuple[Any, list, str]] = []
        self._cancels: list = []
        self.schema_widgets: list[tuple[Any, Any, Any]] = []
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.renamed):
            event.connect(self.refresh_layers)
        viewer.layers.selection.events.active.connect(self._on_selection)
        if isinstance(self, ScrollableDock):
            from qtpy.QtCore import Qt

            self.native.setMinimumHeight(DOCK_MIN_HEIGHT)
            # a narrow dock area scrolls sideways too: no field is ever cut off unreachable
            self.native.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)

    # ---------------------------------------------------------------- layer boxes
    def layer_choice(self, widget, accept: Accept, what: str, *, by_name=False, on_change=None):
        """Make ``widget`` a box of the layers ``accept`` takes; returns ``widget``.

        ``accept`` is a layer class name (``"Image"``), a tuple of names or a test;
        ``what`` says what to choose ("an image layer"), for the run buttons' tooltips.
        """
        box = LayerBox(self.viewer, widget, _accepts(accept), what, by_name, None)
        box.on_change = lambda layer: self._box_changed(box, on_change, layer)
        _narrow_combo(widget)  # a long layer name never widens the dock
        self._boxes.append(box)
        box.refresh()
        return widget

    def box_of(self, widget) -> LayerBox:
        """The :class:`LayerBox` behind a widget made by :meth:`layer_choice`."""
        return next(b for b in self._boxes if b.widget is widget)

    def chosen(self, widget):
        """The layer chosen in a :meth:`layer_choice` box (``None`` when none is)."""
        return self.box_of(widget).layer

    def refresh_layers(self, _event=None) -> None:
        """Follow the layer list: every box lists what fits now; the buttons follow."""
        with contextlib.suppress(RuntimeError):  # the dock's widgets were deleted
            for box in self._boxes:
                box.refresh()
            self.update_buttons()

    def _on_selection(self, _event=None) -> None:
        with contextlib.suppress(RuntimeError):
            for box in self._boxes:
                box.fill()

    def _box_changed(self, box, on_change, layer) -> None:
        if on_change is not None:
            on_change(layer)
        self.update_buttons()

    # ---------------------------------------------------------------- schema widgets
    def schema_spin(
        self,
        param,
        *,
        label: str,
        value,
        tooltip: str = "",
        none_value=None,
        none_text: str = "",
        suffix: str = "",
    ):
        """A magicgui spin box holding what ``param`` allows; returns it.

        Its minimum, maximum, step and decimals are
        :func:`~napari_nucleus_ai.core.params.widget_options` of ``param``. For an
        optional parameter, ``none_value`` (below the range) means ``None`` and shows
        ``none_text`` ("from the layer"); such a box holds floats even for an integer
        parameter (read it with ``int()``). The box is listed in :attr:`schema_widgets`.
        """
        from magicgui.widgets import FloatSpinBox, SpinBox

        from napari_nucleus_ai.core.params import widget_options

        opts = widget_options(param, none_value=none_value)
        # magicgui's integer box (superqt's) shows no special value text: an integer with a
        # None value is a float box with 0 decimals (read it with int())
        integer = param.kind is int and none_value is None
        cls = SpinBox if integer else FloatSpinBox
        widget = cls(label=label, min=opts["min"], max=opts["max"], step=opts["step"],
                     value=opts["min"], tooltip=tooltip)  # fmt: skip
        native = widget.native
        if not integer:
            native.setDecimals(opts["decimals"])  # then the range again, unrounded
            native.setRange(opts["min"], opts["max"])
        if none_value is not None and none_text:
            native.setSpecialValueText(none_text)  # shown at the minimum: the None value
        if suffix:
            native.setSuffix(suffix)
        widget.value = value
        self.schema_widgets.append((widget, param, none_value))
        return widget

    def schema_choice(self, param, *, label: str, value=None, none_text: str = "", tooltip=""):
        """A magicgui combo box of ``param``'s choices (first ``none_text`` for ``None``)."""
        from magicgui.widgets import ComboBox

        from napari_nucleus_ai.core.params import widget_options

        choices = [(str(c), c) for c in widget_options(param)["choices"]]
        if none_text:
            if not param.optional:
                raise ValueError(f"{param.name} is not optional: no choice may mean None")
            choices.insert(0, (none_text, None))
        widget = ComboBox(label=label, choices=choices, value=value, tooltip=tooltip)
        self.schema_widgets.append((widget, param, None))
        return widget

    # ---------------------------------------------------------------- buttons
    def run_button(self, button, needs: Sequence = ()):
        """Register ``button`` as a run button; returns it.

        It is enabled only while no job runs and each of ``needs`` is met: a widget made by
        :meth:`layer_choice` (a layer is chosen) or ``(test, what)``. While one is missing,
        its tooltip says "choose <what> first".
        """
        self._runs.append((button, list(needs), _tooltip(button)))
        self.update_buttons()
        return button

    def cancel_button(self, button):
        """Register ``button`` as the Cancel button (enabled while a job runs); returns it."""
        self._cancels.append(button)
        self.update_buttons()
        return button

    def missing(self, needs: Sequence) -> str | None:
        """What of ``needs`` is missing (the first), or ``None``."""
        for need in needs:
            if isinstance(need, tuple):
                test, what = need
                if not test():
                    return what
            else:
                box = self.box_of(need)
                if box.layer is None:
                    return box.what
        return None

    def update_buttons(self) -> None:
        """Enable what can run now; the tooltip of a disabled run button says why."""
        busy = self.busy
        for button, needs, tip in self._runs:
            what = self.missing(needs)
            _set_enabled(button, what is None and not busy)
            _set_tooltip(button, f"choose {what} first" if what is not None else tip)
        for button in self._cancels:
            _set_enabled(button, busy)

    # ---------------------------------------------------------------- work
    @property
    def busy(self) -> bool:
        return getattr(self, "_jobs", 0) > 0

    def start_job(
        self,
        gen_func,
        *args,
        on_result=None,
        on_progress=None,
        on_error=None,
        description: str = "working",
        sync: bool | None = None,
        busy: bool = True,
        **kwargs,
    ):
        """Run ``gen_func(*args, **kwargs)`` through ``start_work``; returns the worker.

        ``busy`` jobs disable the run buttons until they finish (background jobs, such
        as a re-render on zoom, pass ``False``). Errors go to :meth:`job_failed` unless
        ``on_error`` is given.
        """
        from napari_nucleus_ai.widgets._worker import start_work

        self.cancelled = False
        if busy:
            self._jobs += 1
            self.update_buttons()

        def finish() -> None:
            if busy:
                self._jobs = max(0, self._jobs - 1)
            with contextlib.suppress(RuntimeError):  # the dock was closed meanwhile
                self.update_buttons()

        self.worker = start_work(
            gen_func,
            *args,
            on_result=on_result,
            on_progress=on_progress,
            on_error=on_error or self.job_failed,
            on_finish=finish,
            description=description,
            sync=self.sync if sync is None else sync,
            **kwargs,
        )
        return self.worker

    def cancel(self, *_) -> None:
        """Stop the running job (its result is dropped)."""
        self.cancelled = True
        if self.worker is not None:
            self.worker.quit()
        self.say(self.cancel_message)

    def job_failed(self, error: BaseException) -> None:
        """One notification (none for a cancelled job) and the message on the status line."""
        from napari.utils import notifications

        from napari_nucleus_ai.core.errors import Cancelled, one_line

        if isinstance(error, Cancelled):
            self.say(self.cancel_message)
            return
        text = one_line(error)
        self.say(text[:200])
        notifications.show_error(text)

    def say(self, text: str) -> None:
        """Show ``text`` on the dock's status line (when it has one)."""
        status = getattr(self, "status", None)
        if status is None:
            return
        with contextlib.suppress(RuntimeError):
            if _is_qt(status):
                status.setText(text)
            else:
                status.value = text

    # ---------------------------------------------------------------- result layers
    def add_result(self, kind: str, data, *, name: str, in_place: bool = True, **kwargs):
        """Show ``data`` as the ``kind`` layer ``name`` (``"image"``, ``"labels"``...).

        The previous result of that name is updated in place when it can be (same kind,
        dimensions, RGB-ness and pyramid-ness): it keeps its place in the layer list, its
        visibility and the user's selection. Otherwise it is replaced by a new layer at
        its place. ``in_place=False`` always replaces (for layers whose events a dock
        watches).
        """
        from napari.layers import Layer

        layer = Layer.create(data, {"name": name, **kwargs}, kind)
        return self.show_layer(layer, props=kwargs, in_place=in_place)

    def show_layer(self, layer, *, props=(), in_place: bool = True):
        """Show a layer built elsewhere (a worker can build it) as :meth:`add_result` does.

        ``props`` names the properties an in-place update copies from ``layer`` into the
        previous result of the same name (the keyword arguments it was built with).
        """
        old = _named(self.viewer, layer.name)
        if in_place and old is not None and self._update_in_place(old, layer, props):
            return old
        return self.replace_layer(layer)

    def show_in_steps(self, steps) -> None:
        """Run the UI-thread ``steps`` of a result one per event-loop turn (``run_in_steps``).

        The dock stays busy (its run buttons disabled) until the last step has run.
        """
        from napari_nucleus_ai.widgets._worker import run_in_steps

        self._jobs += 1
        self.update_buttons()

        def done() -> None:
            self._jobs = max(0, self._jobs - 1)
            with contextlib.suppress(RuntimeError):  # the dock was closed meanwhile
                self.update_buttons()

        run_in_steps([*steps, done], sync=self.sync)

    def replace_layer(self, layer):
        """Add ``layer`` in place of the layer of the same name (same position); returns it."""
        layers = self.viewer.layers
        index = None
        if layer.name in layers:
            old = layers[layer.name]
            index = layers.index(old)
            layers.remove(old)
        if index is None:
            layers.append(layer)
        else:
            layers.insert(index, layer)
        return layer

    @staticmethod
    def _update_in_place(old, new, kwargs) -> bool:
        """Copy ``new``'s data and the given properties into ``old``; ``False`` if it cannot."""
        fixed = ("rgb", "multiscale", "ndim")
        if type(old) is not type(new) or any(
            getattr(old, k, None) != getattr(new, k, None) for k in fixed
        ):
            return False
        keys = [k for k in kwargs if k not in ("name", "visible", *fixed)]
        if hasattr(new, "contrast_limits") and "contrast_limits" not in keys:
            keys.append("contrast_limits")
        try:
            old.data = new.data
            for key in keys:
                if key == "contrast_limits":
                    old.contrast_limits_range = new.contrast_limits_range
                setattr(old, key, getattr(new, key))
        except (AttributeError, TypeError, ValueError):
            return False
        return True


# -------------------------------------------------------------------- layer facts
def layer_frame(layer) -> tuple[tuple, tuple, str]:
    """``(scale, translate, unit)`` of the world a layer is drawn in: the one frame for its cells.

    A layer's cell table, and every marker a dock draws over it, use these: ``unit``
    is the layer's own unit (``"um"``, ``"nm"``), or ``"px"`` for a layer without
    physical units. A layer in pixels whose ``scale`` is not 1 keeps the unit its table
    or metadata gives (older layers put a physical pixel size in ``scale`` only).
    """
    from napari_nucleus_ai.cells import table_unit
    from napari_nucleus_ai.core.units import canonical

    scale = tuple(float(s) for s in layer.scale)
    translate = tuple(float(t) for t in layer.translate)
    try:
        unit = canonical(str(layer.units[-1]))
    except (AttributeError, IndexError):
        unit = "px"
    if unit == "px" and any(abs(s - 1.0) > 1e-12 for s in scale):
        feats = getattr(layer, "features", None)
        given = table_unit(feats) if feats is not None and len(feats) else None
        unit = given or str((layer.metadata or {}).get("unit") or "px")
    return scale, translate, unit


def image_file_of(viewer, layer) -> str | None:
    """The image file ``layer`` (or the image its cells were found on) was read from."""
    import os
    from pathlib import Path

    def path_of(ly) -> str | None:
        meta = getattr(ly, "metadata", {}) or {}
        for key in ("image_path", "path", "source_path"):
            v = meta.get(key)
            if isinstance(v, str | os.PathLike) and Path(v).is_file():
                return os.fspath(v)
        p = getattr(getattr(ly, "source", None), "path", None)
        return p if p and Path(p).is_file() else None

    own = path_of(layer)
    if own is not None:
        return own
    feats = getattr(layer, "features", None)
    if feats is not None and "source" in feats.columns and len(feats):
        vals = feats["source"].dropna().unique()
        if len(vals) == 1 and Path(str(vals[0])).is_file():
            return str(vals[0])
    meta = getattr(layer, "metadata", {}) or {}
    src = meta.get("source_layer") or meta.get("image_layer")
    if src and (parent := _named(viewer, src)) is not None and not same_layer(parent, layer):
        return path_of(parent)
    return None


def content_id(data) -> str:
    """An image id from the pixels themselves (for images that are not a file)."""
    import hashlib

    import numpy as np

    arr = np.ascontiguousarray(np.asarray(data))
    digest = hashlib.sha1(str((arr.shape, arr.dtype.str)).encode())
    digest.update(arr.tobytes())
    return f"sha1:{digest.hexdigest()[:16]}"


def collapsible(title: str, widgets: Sequence, *, expanded: bool = False, qt_widgets=()):
    """A button that shows or hides ``widgets`` (magicgui) and ``qt_widgets``: a section.

    Call it after the widgets were added to their container. Returns the magicgui button.
    """
    from magicgui.widgets import PushButton

    button = PushButton(text=title)
    state = {"open": not expanded}

    def toggle(*_):
        state["open"] = not state["open"]
        button.text = ("▾ " if state["open"] else "▸ ") + title
        for w in widgets:
            w.visible = state["open"]
        for q in qt_widgets:
            q.setVisible(state["open"])

    button.changed.connect(toggle)
    button.toggle_section = toggle
    button.section_open = lambda: state["open"]
    return button


def status_label(widget) -> None:
    """Make a status line wrap (a long message grows the dock's height, never its width)."""
    from qtpy.QtWidgets import QSizePolicy

    native = getattr(widget, "native", widget)
    native.setWordWrap(True)
    native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    native.setMinimumWidth(50)


def narrow_fields(container, combos=()) -> None:
    """Let a dock be narrow: file pickers' buttons say "Browse..." (the mode in their
    tooltip) and the given combo boxes size to a few characters, not their longest item."""
    from magicgui.widgets import FileEdit

    for widget in container:
        if isinstance(widget, FileEdit):
            button = widget.choose_btn
            button.tooltip = button.text  # "Choose directory", "Select file"
            button.text = "Browse..."
    for box in combos:
        _narrow_combo(box)


def _narrow_combo(box, chars: int = 6) -> None:
    """Size a combo box (magicgui or Qt) to ``chars`` characters, not its longest item."""
    native = getattr(box, "native", box)
    native.setSizeAdjustPolicy(native.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    native.setMinimumContentsLength(chars)


def scroll_body(widget):
    """Give a plain ``QWidget`` dock a scrollable body; returns the body's ``QVBoxLayout``.

    A dock taller than the screen (a 768 px laptop) then scrolls instead of pushing the
    canvas away.
    """
    from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    body = QWidget()
    area.setWidget(body)
    area.setMinimumHeight(DOCK_MIN_HEIGHT)
    outer.addWidget(area)
    widget.scroll_area = area
    return QVBoxLayout(body)


class ScrollableDock:
    """Mixin for magicgui ``Container`` docks built with ``scrollable=True``.

    napari docks a magicgui widget's ``native``; magicgui's ``native`` is the widget
    *inside* its scroll area, so the scroll area would be lost and the dock would be as
    tall as all its fields. Here ``native`` is the scroll area (the root widget), and
    :meth:`body_layout` is where extra Qt widgets (plots) go.
    """

    @property
    def native(self):
        return self._widget._mgui_get_root_native_widget()

    def body_layout(self):
        """The layout holding the dock's fields (inside the scroll area)."""
        return self._widget._mgui_get_native_widget().layout()
