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
    from napari_nucleus_ai.settings import load_settings

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
