"""napari side of images: the reader in a viewer, the Slide dock, the smear samples."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_nucleus_ai.samples.slide import write_slide

pytestmark = pytest.mark.gui
PLUGIN = "napari-nucleus-ai"


@pytest.fixture
def slide_path(tmp_path):
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(180, 30, (768, 1024, 3)), 0, 255).astype(np.uint8)
    img[300:400, 500:600] = (90, 40, 140)
    path = tmp_path / "small.svs"
    write_slide(path, img, mpp=0.5, magnification=20, flavour="svs", factor=2, min_size=128)
    return path


@pytest.fixture
def stack_path(tmp_path):
    path = tmp_path / "nuclei.ome.tif"
    data = np.random.default_rng(0).integers(0, 1000, (3, 2, 40, 50), dtype=np.uint16)
    tifffile.imwrite(path, data, metadata={"axes": "TCYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65,
                                           "Channel": {"Name": ["Hoechst", "GFP"]}})  # fmt: skip
    return path


def test_slide_opens_lazily_as_multiscale_with_um_scale(make_napari_viewer, slide_path):
    viewer = make_napari_viewer()
    layers = viewer.open(str(slide_path), plugin=PLUGIN)
    (layer,) = layers
    assert layer.multiscale and layer.rgb and len(layer.data) == 4
    assert tuple(layer.scale) == (0.5, 0.5)
    assert layer.metadata["magnification"] == 20 and layer.metadata["format"] == "svs"


def test_broken_file_adds_no_layer(make_napari_viewer, tmp_path, monkeypatch):
    import napari_nucleus_ai.io.napari_io as nio

    messages = []
    monkeypatch.setattr(nio, "_notify", messages.append)
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"MM\x00*" + b"\x00" * 30)
    viewer = make_napari_viewer()
    viewer.open(str(bad), plugin=PLUGIN)
    assert len(viewer.layers) == 0
    assert len(messages) == 1 and "bad.tif" in messages[0]


def test_slide_dock_region_and_level_loading(make_napari_viewer, slide_path):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(slide_path), plugin=PLUGIN)
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Slide")
    assert dock.layer.name == layer.name  # the dock sees napari's proxy of the layer
    text = dock.info.text()
    assert "0.5 um" in text and "20x" in text and "768x1024, 384x512, 192x256, 96x128" in text
    assert dock.thumb.pixmap() is not None and not dock.thumb.pixmap().isNull()

    # whole level 1 into memory, placed over the slide
    dock.level.setValue(1)
    dock.region.setCurrentText("whole level")
    dock.load(sync=True)
    loaded = viewer.layers[-1]
    assert isinstance(loaded.data, np.ndarray) and loaded.data.shape == (384, 512, 3)
    assert tuple(loaded.scale) == (1.0, 1.0) and tuple(loaded.translate) == (0.0, 0.0)
    np.testing.assert_array_equal(loaded.data, np.asarray(layer.data[1]))

    # the visible area of level 0 after zooming into the purple square
    dock.layer_box.setCurrentText(layer.name)
    dock.go_to(350 / 768, 550 / 1024)
    assert dock.camera.center[-2:] == pytest.approx((175.0, 275.0))
    dock.camera.zoom = 4.0  # 4 screen pixels per um = 2 per level-0 pixel
    ch, cw = dock._canvas_hw()
    level, y0, x0, h, w = dock.region_request()
    assert level == 1  # still the level chosen above
    dock.level.setValue(0)
    dock.region.setCurrentText("visible area")
    level, y0, x0, h, w = dock.region_request()
    assert (y0 + h / 2, x0 + w / 2) == pytest.approx((350, 550), abs=1)
    assert (h, w) == pytest.approx((min(ch / 2, 768), min(cw / 2, 1024)), abs=1)
    level, y0, x0, h, w = 0, 300, 500, 100, 100
    dock._level0_box = lambda _layer: (y0, x0, y0 + h, x0 + w)  # a view of exactly the square
    dock.load(sync=True)
    region = viewer.layers[-1]
    assert region.data.shape == (100, 100, 3)
    assert tuple(region.translate) == (150.0, 250.0) and tuple(region.scale) == (0.5, 0.5)
    assert region.metadata["region"] == [300, 500, 400, 600] and region.metadata["level"] == level
    assert np.abs(region.data.astype(int) - (90, 40, 140)).mean() < 12  # JPEG


def test_dock_lists_stack_channels_and_changes_colour(make_napari_viewer, stack_path):
    from napari_nucleus_ai.widgets.slide import set_channel_colour

    viewer = make_napari_viewer()
    layers = viewer.open(str(stack_path), plugin=PLUGIN)
    assert [ly.name for ly in layers] == ["Hoechst", "GFP"]
    assert layers[0].data.shape == (3, 40, 50) and tuple(layers[0].scale) == (1.0, 0.65, 0.65)
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Slide")
    dock.layer_box.setCurrentText("Hoechst")
    assert [ly.name for ly in dock.channel_layers(layers[0])] == ["Hoechst", "GFP"]
    assert "Hoechst, GFP" in dock.info.text()
    set_channel_colour(layers[1], "magenta")
    assert np.allclose(layers[1].colormap.colors[-1][:3], (1, 0, 1))


def test_smear_field_sample_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "smear_field")
    image, truth = viewer.layers
    assert image.rgb and image.data.shape == (960, 1280, 3)
    assert truth.data.max() == 7 and not truth.visible
    assert set(truth.features["class"]) <= {
        "neutrophil", "band", "eosinophil", "basophil", "lymphocyte", "monocyte", "blast",
    }  # fmt: skip


def test_no_pyramid_uses_the_scanner_thumbnail(make_napari_viewer, tmp_path, monkeypatch):
    from napari_nucleus_ai.images import regions

    monkeypatch.setattr(regions, "THUMBNAIL_MAX_LAZY", 100)  # pretend the level is huge
    img = np.full((300, 400, 3), 200, np.uint8)
    path = tmp_path / "flat.svs"
    write_slide(path, img, flavour="svs", min_size=10_000)  # one level + thumbnail page
    plain = tmp_path / "flat.tif"
    tifffile.imwrite(plain, img, photometric="rgb", tile=(64, 64))
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN, lazy=True)
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Slide")
    assert not dock.thumb.pixmap().isNull() and dock.status.text() == ""
    from napari_nucleus_ai.io import read_layers

    data, kw, _ = read_layers(plain, lazy=True)[0]
    viewer.add_image(data, **{**kw, "name": "plain"})
    dock.layer_box.setCurrentText("plain")
    assert "no thumbnail" in dock.status.text()
