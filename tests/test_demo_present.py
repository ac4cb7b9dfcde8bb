"""The Present dock and its figure: PNG with scale bar and legend, tour buttons, movie."""

from __future__ import annotations

import numpy as np
import pytest

BLUE, ORANGE = "#1f77b4", "#ff7f0e"


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def _pixels_of(image: np.ndarray, colour: str) -> int:
    return int(np.all(image[..., :3] == _rgb(colour), axis=-1).sum())


def _longest_run(mask: np.ndarray) -> int:
    """The longest horizontal run of True in any row of ``mask``."""
    best = 0
    for row in mask:
        padded = np.concatenate([[0], row.astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(padded))
        if len(edges):
            best = max(best, int((edges[1::2] - edges[::2]).max()))
    return best


def _bar_length(image: np.ndarray, width: int, colour=(255, 255, 255)) -> int:
    """Length in pixels of the longest run of the bar colour in the lower fifth of the image
    part (the text above the bar makes only short runs)."""
    h = image.shape[0]
    lower = image[int(0.8 * h) :, :width, :3]
    return _longest_run(np.all(lower == np.array(colour, np.uint8), axis=-1))


def test_scale_bar_is_a_round_length_in_nm_or_um():
    from napari_nucleus_ai.demo.figure import scale_bar

    bar = scale_bar(nm_per_pixel=7.3, width=600)  # 0.2 x 600 x 7.3 nm = 876 nm -> 500 nm
    assert (bar.nm, bar.label) == (500.0, "500 nm")
    assert bar.pixels == pytest.approx(500 / 7.3)
    bar = scale_bar(nm_per_pixel=200.0, width=1000)  # 40 um -> 20 um
    assert (bar.nm, bar.label) == (20000.0, "20 µm")
    with pytest.raises(ValueError):
        scale_bar(0.0, 100)


def test_figure_has_the_legend_colours_and_a_bar_of_the_right_length():
    from napari_nucleus_ai.demo.figure import LegendEntry, compose_figure

    view = np.full((400, 600, 4), 40, np.uint8)  # a dark view: the bar is white
    view[..., 3] = 255
    legend = [LegendEntry("neutrophil", BLUE, 3), LegendEntry("eosinophil", ORANGE, 1)]
    fig, bar = compose_figure(view, 7.3, legend, title="smear-wbc")
    assert fig.shape[0] == 400 and fig.shape[1] > 600  # the legend panel beside the view
    np.testing.assert_array_equal(fig[:50, :50, :3], view[:50, :50, :3])  # view unresampled
    for colour in (BLUE, ORANGE):
        assert _pixels_of(fig[:, 600:], colour) > 50, colour
    assert abs(_bar_length(fig, 600) - 500 / 7.3) <= 2

    bare, no_bar = compose_figure(view, None, [])
    assert no_bar is None and bare.shape[1] == 600
    assert _pixels_of(bare, BLUE) == 0 and _bar_length(bare, 600) < 10


def test_figure_bar_is_black_on_a_light_view():
    from napari_nucleus_ai.demo.figure import compose_figure

    view = np.full((300, 500, 3), 230, np.uint8)  # a smear is light
    fig, bar = compose_figure(view, 80.0, [])
    assert abs(_bar_length(fig, 500, colour=(0, 0, 0)) - bar.pixels) <= 2


def _classified_viewer(make_napari_viewer):
    """A 100 x 100 px image at 0.5 um (50 um wide, grey on black) with two classified cells."""
    import pandas as pd
    from napari.utils.colormaps import DirectLabelColormap

    viewer = make_napari_viewer(show=True)  # a hidden canvas renders black
    viewer.add_image(np.full((100, 100), 0.5), scale=(0.5, 0.5), units="um", name="field",
                     contrast_limits=(0, 1))  # fmt: skip
    labels = np.zeros((100, 100), np.uint32)
    labels[10:30, 10:30], labels[60:80, 60:80], labels[60:80, 10:30] = 1, 2, 3
    table = pd.DataFrame({"label": [1, 2, 3], "class": ["lymphocyte", "monocyte", "lymphocyte"]})
    cmap = DirectLabelColormap(
        color_dict={None: "transparent", 0: "transparent", 1: BLUE, 2: ORANGE, 3: BLUE}
    )
    viewer.add_labels(labels, scale=(0.5, 0.5), units="um", name="field classes",
                      features=table, colormap=cmap, opacity=0.6,
                      metadata={"model": "test model", "model_card": {"classes": [
                          {"name": "monocyte"}, {"name": "lymphocyte"}, {"name": "blast"}]}})  # fmt: skip
    return viewer


@pytest.mark.gui
def test_present_dock_saves_the_view_with_legend_and_bar(make_napari_viewer, qtbot, tmp_path):
    from PIL import Image

    from napari_nucleus_ai.widgets._compat import camera

    viewer = _classified_viewer(make_napari_viewer)
    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Present")
    viewer.reset_view()
    camera(viewer).zoom *= 0.6  # the field in the middle, black around it
    viewer.canvas.overlays.scale_bar.visible = True
    out = tmp_path / "figure.png"
    dock.scale.value = 1.5
    worker = dock.save_png(str(out))  # composed and written by the dock's worker thread
    qtbot.waitUntil(lambda: not dock.busy, timeout=60000)
    assert not getattr(worker, "is_running", False)
    assert out.exists() and "saved" in dock.status.value
    fig = np.asarray(Image.open(out).convert("RGB"))
    # the legend panel starts at the first all-white column (the view's edge is black)
    view_w = int(np.flatnonzero(np.all(fig == 255, axis=(0, 2)))[0])
    for colour in (BLUE, ORANGE):
        assert _pixels_of(fig[:, view_w:], colour) > 30, colour
    # the field's width on the picture itself: 50 um
    grey = np.all(np.abs(fig[:, :view_w].astype(int) - 128) <= 2, axis=-1)
    px_per_um = grey.sum(axis=1).max() / 50.0  # a row across the field, between the cells
    from napari_nucleus_ai.demo.figure import scale_bar

    expected = scale_bar(1000.0 / px_per_um, view_w)
    assert abs(_bar_length(fig, view_w) - expected.pixels) <= 3
    assert expected.label in dock.status.value
    assert viewer.canvas.overlays.scale_bar.visible  # napari's own bar hidden for the shot only
    from napari_nucleus_ai.demo.figure import classes_layer, legend_of

    legend = legend_of(classes_layer(viewer))  # the card's order, the layer's colours
    assert [(e.name, e.colour, e.count) for e in legend] == [
        ("monocyte", ORANGE, 1),
        ("lymphocyte", BLUE, 2),
    ]


@pytest.mark.gui
def test_present_dock_tour_buttons_and_movie(make_napari_viewer, tmp_path):
    import imageio

    from napari_nucleus_ai.widgets._compat import camera

    viewer = make_napari_viewer(show=True)  # a hidden canvas renders black frames
    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Present")
    assert not dock.next_btn.enabled  # nothing to step through before Start tour
    dock.start_btn.clicked.emit()
    assert dock.tour is not None and dock.next_btn.enabled
    dock.next_btn.clicked.emit()
    assert dock.tour.current == 1 and dock.tour.failed == []
    assert viewer.canvas.overlays.text.text.startswith("1/7  Read")
    storm = next(ly for ly in viewer.layers if "localizations" in (ly.metadata or {}))
    smear = viewer.add_image(np.zeros((20, 20)), scale=(0.2, 0.2), units="um", name="smear")
    smear.visible = True
    zoom = camera(viewer).zoom
    pytest.importorskip("napari_animation", reason="the movie needs the [movie] extra")
    dock.seconds.value = 1.0
    out = dock.save_movie(str(tmp_path / "zoom.mp4"), fps=4)
    assert out is not None and out.exists(), dock.status.value
    reader = imageio.get_reader(str(out))
    frames = [f for f in reader]
    reader.close()
    assert len(frames) >= 5 and frames[0].ndim == 3
    assert frames[0].std() > 0  # not a blank canvas
    # the viewer is given back as it was: the smear still shown, the camera where it was
    assert smear.visible and storm.visible
    assert camera(viewer).zoom == pytest.approx(zoom)


@pytest.mark.gui
def test_guided_tour_command_opens_present_and_starts(make_napari_viewer):
    from napari_nucleus_ai.demo.present import start_tour

    viewer = make_napari_viewer()
    start_tour(viewer)
    _, dock = viewer.window.add_plugin_dock_widget("napari-nucleus-ai", "Present")
    assert dock.tour is not None
    assert "Guided tour" in viewer.canvas.overlays.text.text


def test_demo_cli_has_png():
    import argparse

    from napari_nucleus_ai.cli import demo

    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    args = p.parse_args(["--png", "fig.png", "--png-scale", "3"])
    assert args.png == "fig.png" and args.png_scale == 3.0
