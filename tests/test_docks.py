"""Every dock in the manifest opens in a real napari viewer and closes cleanly."""

import pytest

npe2 = pytest.importorskip("npe2")


def _widget_names():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-nucleus-ai")
    return [w.display_name for w in pm.contributions.widgets or []]


@pytest.mark.parametrize("name", _widget_names())
def test_dock_opens(make_napari_viewer, qtbot, name):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", name)
    assert widget is not None
    assert dock.isVisible() or not viewer.window._qt_window.isVisible()
    viewer.window.remove_dock_widget(dock)


def test_settings_dock_shows_device(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Settings")
    assert widget.used.value.startswith("cpu")
    widget.device.value = "cpu"
    from napari_nucleus_ai.core.settings import load_settings

    assert load_settings()["device"] == "cpu"


def test_infection_dock_survives_time_steps_after_close(make_napari_viewer, qtbot):
    """The track plot listens to the time slider; after the dock is closed and its canvas
    deleted, moving the slider must not raise "wrapped C/C++ object has been deleted"."""
    import numpy as np

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((5, 32, 32), np.uint8))
    dock, widget = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Infection")
    plot = widget._plot
    viewer.window.remove_dock_widget(dock)
    plot.canvas.deleteLater()
    qtbot.waitUntil(lambda: not plot.alive, timeout=5000)
    viewer.dims.set_current_step(0, 3)  # would draw on the deleted canvas
    plot.set_time(2)
    plot.redraw()


def test_train_plot_redraw_after_delete(qtbot):
    from napari_nucleus_ai.widgets._train_plot import TrainPlot

    plot = TrainPlot()
    plot.add({"train_loss": 1.0, "val_acc": 0.5})
    plot.canvas.deleteLater()
    qtbot.waitUntil(lambda: not plot.alive, timeout=5000)
    plot.add({"train_loss": 0.8, "val_acc": 0.6})  # a late progress message
    assert len(plot.rows) == 2


def test_camera_helpers_convert_between_layer_and_viewer_units(make_napari_viewer):
    """napari 0.9 draws nm and um layers together in nm: docks that centre on a cell (um)
    or read the visible region must convert, or they look 1000x off."""
    import numpy as np

    from napari_nucleus_ai.widgets._compat import set_view, view_of, world_factor

    viewer = make_napari_viewer()
    um = viewer.add_image(np.zeros((100, 100)), scale=(0.1, 0.1), units=("um", "um"))
    assert world_factor(viewer, um) == 1.0  # one unit: nothing to convert
    nm = viewer.add_image(np.zeros((100, 100)), scale=(20.0, 20.0), units=("nm", "nm"))
    assert world_factor(viewer, um) == pytest.approx(1000.0)
    assert world_factor(viewer, nm) == 1.0
    set_view(viewer, um, center=(5.0, 7.0), zoom=40.0)  # 40 screen px per um
    cam = viewer.scene.camera
    assert cam.center[-2:] == pytest.approx((5000.0, 7000.0))
    assert cam.zoom == pytest.approx(0.04)
    center, zoom = view_of(viewer, um)
    assert center[-2:] == pytest.approx((5.0, 7.0)) and zoom == pytest.approx(40.0)
    assert world_factor(viewer, None) == 1.0
