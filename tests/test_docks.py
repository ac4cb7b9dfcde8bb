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
