"""The docks take their limits from the schemas the command line checks, and fit a laptop.

Every spin box and choice box of every dock (but Review, tested with its dock) is
checked generically: it must come from a
:class:`~napari_nucleus_ai.core.params.Param` (or be listed below with why not), and
its range must be the schema's to within one displayed step. Then the dock details
of issue 25: the Classifier's legend flows, Batch's Run needs an output folder, the
Infection track box never shows a placeholder, a refused Slide level says so.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.core.errors import UsageError

pytestmark = pytest.mark.gui
PLUGIN = "napari-nucleus-ai"
DOCKS = ["Segmentation", "Classifier", "Batch", "Infection", "Generative", "Slide", "Settings",
         "Localizations"]  # fmt: skip

#: Spin boxes whose range is not a schema's, and why.
NOT_FROM_A_SCHEMA = {
    ("Generative", "cell"): "a label id of the chosen Labels layer",
    ("Slide", "level"): "the levels of the slide that is open",
}


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget(PLUGIN, name)[1]


def _native(widget):
    return getattr(widget, "native", widget)


def _refused(param, value) -> bool:
    try:
        param.check(value)
    except UsageError:
        return True
    return False


def _spin_boxes(dock):
    from qtpy.QtWidgets import QAbstractSpinBox

    return _native(dock).findChildren(QAbstractSpinBox)


def _check_dock(name, dock) -> int:
    """Assert every spin / choice box of ``dock`` holds its schema's range; returns how many."""
    from napari_nucleus_ai.core.params import INT_WIDGET_MAX, UNBOUNDED

    schema_widgets = getattr(dock, "schema_widgets", [])
    registered = {id(_native(w)): (w, p, none) for w, p, none in schema_widgets}
    attrs = {id(_native(v)): a for a, v in vars(dock).items()}
    checked = 0
    for box in _spin_boxes(dock):
        if id(box) not in registered:
            attr = attrs.get(id(box))
            assert (name, attr) in NOT_FROM_A_SCHEMA, f"{name}.{attr}: a spin box without a schema"
            continue
        widget, param, none = registered[id(box)]
        lo, hi, step = box.minimum(), box.maximum(), box.singleStep()
        tiny = 1 if param.kind is int else 10.0 ** -box.decimals()
        caps = (UNBOUNDED, INT_WIDGET_MAX)
        # the top: allowed, and one displayed step above it refused (unless the box's cap)
        assert not _refused(param, hi), (name, param.name, hi)
        assert hi in caps or _refused(param, hi + tiny), (name, param.name, "max", hi)
        if none is None:
            assert not _refused(param, lo), (name, param.name, lo)
            assert -lo in caps or _refused(param, lo - tiny), (name, param.name, "min", lo)
        else:  # the lowest value means None: outside the range, so never a real value
            assert lo == none and param.optional and _refused(param, none), (name, param.name)
            assert not _refused(param, lo + tiny), (name, param.name, "first value", lo + tiny)
        if param.step is not None:
            assert math.isclose(step, param.step), (name, param.name, step)
        value = widget.value
        assert value == none or not _refused(param, value), (name, param.name, value)
        checked += 1
    for widget, param, _ in schema_widgets:
        if param.choices is not None:  # a choice box offers exactly the schema's choices
            offered = [c for c in widget.choices if c is not None]
            assert offered == list(param.choices), (name, param.name, offered)
            checked += 1
    return checked


@pytest.mark.parametrize("name", DOCKS)
def test_every_dock_number_has_the_schema_range(make_napari_viewer, name):
    """A spin box whose range differs from its schema's (or has none) fails here."""
    viewer = make_napari_viewer()
    checked = _check_dock(name, _dock(viewer, name))
    expected = {"Segmentation": 10, "Classifier": 6, "Batch": 1, "Infection": 2, "Generative": 4,
                "Localizations": 15}  # fmt: skip
    assert checked == expected.get(name, 0), (name, checked)


def test_the_check_catches_a_hard_coded_limit(make_napari_viewer):
    from magicgui.widgets import SpinBox

    viewer = make_napari_viewer()
    dock = _dock(viewer, "Segmentation")
    dock.min_nucleus.native.setMaximum(20.0)  # the dock's old hand-written limit
    with pytest.raises(AssertionError, match="min_nucleus_um"):
        _check_dock("Segmentation", dock)
    dock = _dock(viewer, "Batch")
    dock.extra = SpinBox(label="extra", min=1, max=256)  # a spin box without a schema
    dock.append(dock.extra)
    with pytest.raises(AssertionError, match="Batch.extra"):
        _check_dock("Batch", dock)


def test_segmentation_limits_are_the_method_schemas(make_napari_viewer):
    """A change of a method's schema reaches the dock (one source of the limits)."""
    from napari_nucleus_ai.core.params import param_named
    from napari_nucleus_ai.segment.run import method_schema

    viewer = make_napari_viewer()
    dock = _dock(viewer, "Segmentation")
    min_nucleus = param_named(method_schema("wbc"), "min_nucleus_um")
    assert dock.min_nucleus.native.maximum() == min_nucleus.high
    assert dock.min_nucleus.native.minimum() > min_nucleus.low  # an open bound
    assert dock.diameter.native.specialValueText() == "estimate"
    assert dock.params()["min_nucleus_um"] == dock.min_nucleus.value
    dock.method.value = "nuclei"
    assert dock.params()["diameter_um"] is None  # the lowest value: estimate


def test_classifier_passes_tta_mc_dropout_and_val_fraction(make_napari_viewer, monkeypatch):
    from napari_nucleus_ai.widgets.classifier import ClassifierWidget

    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((20, 20), np.int32), name="cells")
    w = ClassifierWidget(viewer)
    got = {}
    monkeypatch.setattr(type(w), "start_job", lambda *a, **k: got.update(k))
    w.run()
    assert got["tta"] is None and got["mc_dropout"] is None  # the model card's
    w.tta.value, w.mc_dropout.value = 8, 0
    w.run()
    assert got["tta"] == 8 and got["mc_dropout"] == 0
    w.val_fraction.value = 0.3
    assert w._train_options()["val_fraction"] == pytest.approx(0.3)


# -- issue 25: the Classifier's legend flows, no dock scrolls sideways --------------------------
CLASSES = ["neutrophil", "band", "eosinophil", "basophil", "lymphocyte", "monocyte", "blast",
           "myelocyte", "unidentified"]  # fmt: skip


def _body(dock):
    inner = getattr(dock, "_widget", None)
    if inner is not None:
        return inner._mgui_get_native_widget()
    area = getattr(dock, "scroll_area", None)
    return area.widget() if area is not None else _native(dock)


def _hbar(dock):
    native = _native(dock)
    area = native if hasattr(native, "horizontalScrollBar") else getattr(dock, "scroll_area", None)
    return None if area is None else area.horizontalScrollBar()


@pytest.mark.parametrize("window_width", [1366, 1600])
def test_classifier_legend_fits_without_sideways_scroll(make_napari_viewer, qtbot, window_width):
    from qtpy.QtWidgets import QApplication

    from napari_nucleus_ai.core.palette import class_colours
    from napari_nucleus_ai.widgets._classifier_parts import legend_html

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(window_width, 768)
    _dock(viewer, "Segmentation")
    dock = _dock(viewer, "Classifier")
    image = viewer.add_image(np.zeros((8, 8)), name="BloodImage_00001 of a long series")
    viewer.add_labels(np.zeros((8, 8), np.int32), name=f"{image.name} wbc classes")
    dock.legend.value = legend_html({c: 10 * i for i, c in enumerate(CLASSES)},
                                    class_colours(CLASSES))  # fmt: skip
    for _ in range(10):
        QApplication.processEvents()
    assert "<br>" not in dock.legend.value and dock.legend.native.wordWrap()
    width = _native(dock).width()
    assert _body(dock).minimumSizeHint().width() <= width
    assert not _hbar(dock).isVisible()
    assert dock.legend.native.height() > 2 * dock.legend.native.fontMetrics().height()  # wrapped


@pytest.mark.parametrize("name", DOCKS)
def test_docks_are_narrow_enough_for_a_laptop(make_napari_viewer, name):
    """Two docks side by side beside the canvas of a 1366 px screen get ~290 px each,
    whatever the names of the layers their boxes list."""
    viewer = make_napari_viewer()
    dock = _dock(viewer, name)
    long = "BloodImage_00001 of a long series of smears"
    viewer.add_image(np.zeros((4, 8, 8)), name=long)
    viewer.add_labels(np.zeros((8, 8), np.int32), name=f"{long} wbc classes")
    dock_width = 290 - 15  # minus the vertical scroll bar
    assert _body(dock).minimumSizeHint().width() <= dock_width


@pytest.mark.parametrize("window_width", [1366, 1600])
def test_localizations_dock_has_no_sideways_scroll(make_napari_viewer, tmp_path, window_width):
    """Docked in a laptop-sized window, with a table open: file button, table text and
    status wrap or shrink instead of widening the dock."""
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(window_width, 768)
    dock = _dock(viewer, "Localizations")
    dock.sync = True
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"frame": rng.integers(0, 50, 300), "x [nm]": rng.uniform(0, 3e3, 300),
                          "y [nm]": rng.uniform(0, 3e3, 300),
                          "uncertainty [nm]": rng.uniform(5, 20, 300)})  # fmt: skip
    path = tmp_path / "a_long_localization_file_name_from_an_acquisition_series.csv"
    table.to_csv(path, index=False)
    dock.file.value = path
    dock.open_file()
    dock.render()
    for _ in range(10):
        QApplication.processEvents()
    assert dock.info.value and dock.status.value
    assert _body(dock).minimumSizeHint().width() <= _native(dock).width()
    assert not _hbar(dock).isVisible()


def test_classifier_dock_screenshot(make_napari_viewer, tmp_path):
    """A screenshot of the dock with a long legend, to look at (``--basetemp`` keeps it)."""
    from qtpy.QtWidgets import QApplication

    from napari_nucleus_ai.core.palette import class_colours
    from napari_nucleus_ai.widgets._classifier_parts import legend_html

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    _dock(viewer, "Segmentation")
    dock = _dock(viewer, "Classifier")
    dock.legend.value = legend_html({c: i for i, c in enumerate(CLASSES)}, class_colours(CLASSES))
    for _ in range(10):
        QApplication.processEvents()
    path = tmp_path / "classifier_dock.png"
    assert _body(dock).grab().save(str(path)) and path.stat().st_size > 0


# -- issue 25: Batch's Run needs an output folder -----------------------------------------------
def test_batch_run_needs_an_output_folder(make_napari_viewer, tmp_path, monkeypatch):
    from napari_nucleus_ai.widgets.batch import BatchWidget

    viewer = make_napari_viewer()
    dock = BatchWidget(viewer)
    monkeypatch.setattr(type(dock), "start_job", lambda *a, **k: "started")
    dock.folder.value = tmp_path
    assert not dock.run_btn.enabled
    assert dock.run_btn.tooltip == "choose an output folder first"
    dock.out.value = tmp_path / "out"
    assert dock.run_btn.enabled
    dock.folder.value = None
    assert not dock.run_btn.enabled and dock.run_btn.tooltip.startswith("choose an opened file")


# -- issue 25: the Infection track box never shows "-----" --------------------------------------
def _items(combo) -> list[str]:
    native = combo.native
    return [native.itemText(i) for i in range(native.count())]


def test_infection_track_box_names_tracks_or_says_none(make_napari_viewer):
    from napari_nucleus_ai.widgets.infection import InfectionWidget

    viewer = make_napari_viewer()
    dock = InfectionWidget(viewer)
    assert _items(dock.track) == ["no tracks yet"] and not dock.track.enabled
    tracks = pd.DataFrame({"track_id": [4, 7, 7], "t": [0, 0, 1]})
    table = pd.DataFrame({"track_id": [4, 7], "infected": [True, False],
                          "p_infected_mean": [0.9, 0.1]})  # fmt: skip
    dock.result = SimpleNamespace(
        table=table, tracks=tracks, tracking=SimpleNamespace(seconds_per_frame=0.1)
    )
    dock.select_track = lambda tid, jump=True: None
    dock._fill()
    assert sorted(_items(dock.track)) == ["track 4", "track 7"] and dock.track.enabled
    assert set(dock.track.choices) == {4, 7}
    dock.result = SimpleNamespace(
        table=table.iloc[:0], tracks=tracks.iloc[:0], tracking=SimpleNamespace(seconds_per_frame=0)
    )
    dock._fill()
    assert _items(dock.track) == ["no tracks found"] and "-----" not in _items(dock.track)


# -- issue 25 item 8: a refused level says so -------------------------------------------------
def test_slide_refused_level_replaces_loading(make_napari_viewer, monkeypatch):
    import napari_nucleus_ai.images.regions as regions
    from napari_nucleus_ai.widgets.slide import SlideWidget

    monkeypatch.setattr(regions, "MAX_REGION_BYTES", 1000)
    viewer = make_napari_viewer()
    base = np.zeros((512, 512), np.uint8)
    viewer.add_image([base, base[::2, ::2]], multiscale=True, name="slide")
    dock = SlideWidget(viewer)
    dock.region.setCurrentText("whole level")
    dock.level.setValue(0)
    n_layers = len(viewer.layers)
    dock.load(sync=True)
    assert "too large to load" in dock.status.text() and "loading" not in dock.status.text()
    assert len(viewer.layers) == n_layers
    monkeypatch.setattr(regions, "MAX_REGION_BYTES", 10**9)
    dock.load(sync=True)
    assert dock.status.text().startswith("loaded") and len(viewer.layers) == n_layers + 1


def test_slide_facts_take_the_pixel_size_from_the_layer_units(make_napari_viewer):
    from napari_nucleus_ai.widgets._slide_parts import describe_layer

    viewer = make_napari_viewer()
    base = np.zeros((256, 512), np.uint8)
    um = viewer.add_image([base, base[::2, ::2]], multiscale=True, scale=(0.25, 0.25),
                          units="um", name="um")  # fmt: skip
    assert "0.25 um (4 px/um)" in describe_layer(um) and "0.064 x 0.128 mm" in describe_layer(um)
    nm = viewer.add_image(base, scale=(500, 500), units="nm", name="nm")
    assert "0.5 um (2 px/um)" in describe_layer(nm)
    px = viewer.add_image(base, scale=(2, 2), name="px")
    assert "unknown (scale 2)" in describe_layer(px)


def test_review_dock_is_narrow_enough_for_a_laptop(make_napari_viewer):
    """Issue 25 item 14: the Review dock's rows (navigation, filters, outputs, store path)
    wrap onto more rows instead of widening the dock beyond ~290 px."""
    viewer = make_napari_viewer()
    dock = _dock(viewer, "Review")
    dock.store_label.setText("/a/long/project/folder/of/a/lab/BloodImage_00001_corrections.sqlite")
    assert _body(dock).minimumSizeHint().width() <= 290 - 15
