"""Whole-slide pyramids (SVS, NDPI, SCN, BIF, OME/generic SubIFDs) and fluorescence stacks,
written here with tifffile the way the vendors lay them out, read lazily with physical scale."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_nucleus_ai.images import base, read_image, read_layers, read_region
from napari_nucleus_ai.io import describe as io_describe
from napari_nucleus_ai.io import read_layers as io_read_layers
from napari_nucleus_ai.samples.slide import write_slide


def _texture(h=1024, w=1536, seed=0):
    """A smooth, JPEG-friendly RGB test image with structure at every scale."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [128 + 100 * np.sin(xx / 37.0), 128 + 100 * np.cos(yy / 23.0), (xx + yy) % 256], -1
    )
    img += rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image():
    return _texture()


@pytest.fixture(scope="module")
def svs(tmp_path_factory, image):
    path = tmp_path_factory.mktemp("svs") / "slide.svs"
    write_slide(
        path, image, mpp=0.2525, magnification=40, flavour="svs", factor=2, date="03/05/2020"
    )
    return path


def test_svs_levels_scale_and_associated(svs, image):
    im = read_image(svs)
    assert im.format == "svs"
    assert im.rgb and im.axes == "YXS"
    assert [lv.shape[:2] for lv in im.levels] == [(1024, 1536), (512, 768), (256, 384)]
    assert im.pixel_size_um == pytest.approx((0.2525, 0.2525))
    assert im.metadata["magnification"] == 40
    assert im.metadata["acquisition_date"].startswith("03/05/2020")
    # thumbnail, label and macro are not levels, but are listed
    assert im.metadata["associated"] == ["Thumbnail", "Label", "Macro"]
    # JPEG tiles decode close to the original
    assert np.abs(np.asarray(im.levels[0][:256, :256], float) - image[:256, :256]).mean() < 6


def test_svs_layer_is_lazy_multiscale_with_micrometre_scale(svs):
    ((data, kw, kind),) = read_layers(svs, lazy=True)
    assert kind == "image" and kw["multiscale"] and kw["rgb"]
    assert all(hasattr(lv, "dask") for lv in data)
    assert kw["scale"] == pytest.approx((0.2525, 0.2525))
    assert kw["metadata"]["mpp"] == pytest.approx(0.2525)
    assert data[0].chunksize[:2] == (256, 256)  # one dask chunk per file tile


def test_region_reads_only_the_tiles_it_touches(svs, image, monkeypatch):
    im = read_image(svs, lazy=True)
    calls = []
    orig = tifffile.tifffile.FileCache.read

    def counting(self, *a, **k):  # every tile the zarr store fetches from the file
        calls.append(1)
        return orig(self, *a, **k)

    monkeypatch.setattr(tifffile.tifffile.FileCache, "read", counting)
    region = read_region(im, 0, 256, 512, 512, 512)
    assert region.shape == (512, 512, 3)
    assert len(calls) == 4  # 2 x 2 tiles of 256, no more
    assert np.abs(region.astype(float) - image[256:768, 512:1024]).mean() < 6
    calls.clear()
    read_region(im, 0, 300, 300, 10, 10)
    assert len(calls) == 1


def test_lazy_levels_survive_garbage_collection(svs):
    import gc

    data = read_layers(svs, lazy=True)[0][0]
    gc.collect()
    assert np.asarray(data[1][:10, :10]).shape == (10, 10, 3)


@pytest.mark.parametrize("flavour,fmt", [("ome", "ome-tiff"), ("generic", "pyramidal-tiff")])
def test_subifd_pyramids(tmp_path, image, flavour, fmt):
    path = tmp_path / f"slide.{flavour}.tif"
    write_slide(path, image, mpp=0.5, flavour=flavour, compression="zlib")
    im = read_image(path)
    assert im.format == fmt
    assert len(im.levels) == 3 and im.levels[1].shape == (512, 768, 3)
    assert im.pixel_size_um == pytest.approx((0.5, 0.5))
    np.testing.assert_array_equal(np.asarray(im.levels[0]), image)  # lossless


def test_jpeg2000_tiles_decode(tmp_path, image):
    path = tmp_path / "j2k.svs"
    write_slide(
        path, image[:512, :512], flavour="svs", compression="jpeg2000", factor=2, min_size=128
    )
    im = read_image(path)
    assert np.abs(np.asarray(im.levels[0], float) - image[:512, :512]).mean() < 8


def test_ndpi_like(tmp_path, image):
    path = tmp_path / "slide_ndpi.tif"
    tags = [
        (65420, "I", 1, 1, True),
        (65421, "f", 1, 20.0, True),
        (271, "s", 0, "Hamamatsu", True),
        (272, "s", 0, "C13220", True),
    ]
    with tifffile.TiffWriter(path) as tw:
        for f in (1, 2, 4):
            tw.write(image[::f, ::f], tile=(256, 256), compression="jpeg", photometric="rgb", metadata=None,
                     resolution=(1e4 / (0.23 * f),) * 2, resolutionunit="CENTIMETER", extratags=tags)  # fmt: skip
    im = read_image(path)
    assert im.format == "ndpi" and len(im.levels) == 3
    assert im.pixel_size_um == pytest.approx((0.23, 0.23))
    assert im.metadata["magnification"] == 20


def test_bif_like(tmp_path, image):
    path = tmp_path / "slide_bif.tif"
    xmp = b'<?xml version="1.0"?><Metadata><iScan Magnification="40" ScanRes="0.2325" BuildDate="2020-01-01"/></Metadata>'
    kw = {
        "software": "ScanOutputManager 1.1.0.15854",
        "metadata": None,
        "photometric": "rgb",
        "extratags": [(700, "B", len(xmp), xmp, True)],
    }
    with tifffile.TiffWriter(path) as tw:
        tw.write(image[:200, :300], description="Label Image", **kw)
        for i, f in enumerate((1, 2, 4)):
            tw.write(
                image[::f, ::f],
                tile=(256, 256),
                compression="jpeg",
                description=f"level={i} mag={40 // f} quality=95",
                **kw,
            )
    im = read_image(path)
    assert im.format == "bif" and len(im.levels) == 3 and im.shape == (1024, 1536, 3)
    assert im.pixel_size_um == pytest.approx((0.2325, 0.2325))
    assert im.metadata["magnification"] == 40
    assert im.metadata["associated"] == ["Label"]


def test_scn_like(tmp_path, image):
    path = tmp_path / "slide.scn"
    dims = "".join(
        f'<dimension sizeX="{1536 // f}" sizeY="{1024 // f}" r="{r}" ifd="{ifd}"/>'
        for r, (f, ifd) in enumerate([(1, 0), (2, 2), (4, 3)])
    )
    xml = (
        '<?xml version="1.0"?><scn xmlns="http://www.leica-microsystems.com/scn/2010/10/01"><collection name="c">'
        '<image name="macro"><creationDate>2019-01-01</creationDate><view sizeX="3000000" sizeY="2000000"/>'
        "<scanSettings><objectiveSettings><objective>1</objective></objectiveSettings></scanSettings>"
        '<pixels sizeX="300" sizeY="200"><dimension sizeX="300" sizeY="200" r="0" ifd="1"/></pixels></image>'
        '<image name="main"><creationDate>2020-02-02T10:00:00Z</creationDate><view sizeX="768000" sizeY="512000"/>'
        "<scanSettings><objectiveSettings><objective>20</objective></objectiveSettings></scanSettings>"
        f'<pixels sizeX="1536" sizeY="1024">{dims}</pixels></image></collection></scn>'
    )
    with tifffile.TiffWriter(path) as tw:
        opts = {"tile": (256, 256), "compression": "jpeg", "photometric": "rgb", "metadata": None}
        tw.write(image, description=xml, **opts)
        tw.write(image[:200, :300], **opts)
        tw.write(image[::2, ::2], **opts)
        tw.write(image[::4, ::4], **opts)
    im = read_image(path)
    assert im.format == "scn" and len(im.levels) == 3
    assert im.pixel_size_um == pytest.approx((0.5, 0.5))
    assert im.metadata["magnification"] == 20
    assert im.metadata["acquisition_date"].startswith("2020-02-02")


def test_info_json_for_a_slide(svs, capsys):
    from napari_nucleus_ai.cli import main

    assert main(["info", str(svs), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "image" and info["format"] == "svs"
    assert info["shape"] == [1024, 1536, 3] and info["dtype"] == "uint8" and info["axes"] == "YXS"
    assert info["levels"] == [[1024, 1536, 3], [512, 768, 3], [256, 384, 3]]
    assert (
        info["pixel_size_um"] == [0.2525, 0.2525] and info["rgb"] is True and info["channels"] == []
    )
    assert info["magnification"] == 40


def test_big_tiff_goes_lazy(tmp_path, monkeypatch):
    monkeypatch.setattr(base, "EAGER_BYTES", 1000)
    monkeypatch.setattr("napari_nucleus_ai.images.tiff.EAGER_BYTES", 1000)
    path = tmp_path / "strips.tif"
    tifffile.imwrite(path, np.arange(300 * 400, dtype=np.uint16).reshape(300, 400), rowsperstrip=8)
    im = read_image(path)
    assert im.lazy and im.axes == "YX" and im.dtype == np.uint16
    assert im.levels[0].chunksize[0] >= 256  # thin strips grouped into sensible chunks
    ((data, kw, _),) = read_layers(path)
    assert kw["contrast_limits"][1] > kw["contrast_limits"][0]


# -- fluorescence stacks ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack():
    rng = np.random.default_rng(1)
    return rng.integers(0, 4000, (3, 2, 4, 32, 48), dtype=np.uint16)  # T C Z Y X


def test_ome_stack_channels_and_physical_sizes(tmp_path, stack):
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, stack, metadata={
        "axes": "TCZYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325, "PhysicalSizeZ": 2.0,
        "TimeIncrement": 300, "Channel": {"Name": ["Hoechst 33342", "GFP"]},
    })  # fmt: skip
    im = read_image(path)
    assert im.format == "ome-tiff" and im.axes == "TCZYX" and not im.rgb
    assert im.channels == ["Hoechst 33342", "GFP"]
    assert im.pixel_size_um == pytest.approx((0.325, 0.325))
    assert im.metadata["z_step_um"] == pytest.approx(2.0)
    assert im.metadata["time_step_s"] == pytest.approx(300)
    ((data, kw, kind),) = io_read_layers(path)
    assert kw["channel_axis"] == 1 and kw["name"] == ["Hoechst 33342", "GFP"]
    assert kw["scale"] == pytest.approx((1.0, 2.0, 0.325, 0.325))  # T, Z, Y, X (C split off)
    assert kw["axis_labels"] == ("T", "Z", "Y", "X")
    assert (
        kw["colormap"][0]["colors"][-1] == "#0000ff"
        and kw["colormap"][1]["colors"][-1] == "#00ff00"
    )
    np.testing.assert_array_equal(data, stack)
    assert io_describe(path)["channels"] == ["Hoechst 33342", "GFP"]


def test_imagej_hyperstack(tmp_path, stack):
    path = tmp_path / "cells_ij.tif"
    tzcyx = stack.transpose(0, 2, 1, 3, 4)
    labels = [f"{n}" for _t in range(3) for _z in range(4) for n in ("DAPI", "mCherry")]
    tifffile.imwrite(path, tzcyx, imagej=True, resolution=(1 / 0.5, 1 / 0.5),
                     metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "um", "finterval": 60, "Labels": labels})  # fmt: skip
    im = read_image(path)
    assert im.format == "imagej-tiff" and im.axes == "TZCYX"
    assert im.pixel_size_um == pytest.approx((0.5, 0.5))
    assert im.metadata["z_step_um"] == pytest.approx(1.5) and im.metadata["time_step_s"] == 60
    assert im.channels == ["DAPI", "mCherry"]
    assert im.metadata["channel_colors"] == ["#0000ff", "#ff0000"]
    ((_, kw, _),) = read_layers(path)
    assert kw["channel_axis"] == 2 and kw["scale"] == pytest.approx((1.0, 1.5, 0.5, 0.5))


def test_single_channel_timelapse_keeps_time_axis(tmp_path):
    path = tmp_path / "hoechst.ome.tif"
    tifffile.imwrite(
        path,
        np.zeros((5, 16, 16), np.uint16),
        metadata={"axes": "TYX", "PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65},
    )
    ((data, kw, _),) = read_layers(path)
    assert data.shape == (5, 16, 16) and "channel_axis" not in kw
    assert kw["scale"] == pytest.approx((1.0, 0.65, 0.65)) and kw["axis_labels"] == ("T", "Y", "X")
    assert kw["name"] == "hoechst"  # ".ome.tif" is one suffix


def test_grey_16bit_tiff_field(tmp_path):
    path = tmp_path / "grey.tif"
    img = (np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) * 7) % 4096
    tifffile.imwrite(path, img, resolution=(1e4 / 0.1, 1e4 / 0.1), resolutionunit="CENTIMETER")
    im = read_image(path)
    assert im.axes == "YX" and im.dtype == np.uint16 and not im.rgb
    assert im.pixel_size_um == pytest.approx((0.1, 0.1))
    np.testing.assert_array_equal(im.levels[0], img)


def test_screen_resolution_is_not_a_pixel_size(tmp_path):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(
        path,
        np.zeros((8, 8, 3), np.uint8),
        photometric="rgb",
        resolution=(72, 72),
        resolutionunit="INCH",
    )
    assert read_image(path).pixel_size_um is None


# -- openslide (optional extra): an independent reader agrees -------------------------------------


def test_openslide_reads_our_svs_like_tifffile(svs):
    openslide = pytest.importorskip("openslide")
    from napari_nucleus_ai.images.slides import read_openslide

    assert openslide.OpenSlide.detect_format(str(svs)) == "aperio"  # the writer makes real SVS
    slide = openslide.OpenSlide(str(svs))
    assert set(slide.associated_images) == {"thumbnail", "label", "macro"}
    im = read_openslide(svs, "svs")
    assert im.format == "openslide:aperio" and im.pixel_size_um == pytest.approx((0.2525, 0.2525))
    assert [lv.shape for lv in im.levels] == [lv.shape for lv in read_image(svs).levels]
    ref = read_region(read_image(svs), 1, 100, 200, 300, 500)
    np.testing.assert_array_equal(np.asarray(im.levels[1][100:400, 200:700]), ref)


# -- writer: OME-TIFF that keeps the pixel size ---------------------------------------------------


def test_ome_writer_round_trips_a_slide_and_a_region(tmp_path, svs):
    from napari_nucleus_ai.images.writers import write_ome_tiff

    ((data, kw, _),) = read_layers(svs, lazy=True)
    out = tmp_path / "copy.ome.tif"
    assert write_ome_tiff(str(out), data, {**kw, "multiscale": True}) == [str(out)]
    back = read_image(out)
    assert back.format == "ome-tiff" and back.pixel_size_um == pytest.approx((0.2525, 0.2525))
    assert [lv.shape for lv in back.levels] == [lv.shape for lv in data]
    np.testing.assert_array_equal(np.asarray(back.levels[1]), np.asarray(data[1]))  # lossless

    region = read_region(read_image(svs), 0, 0, 0, 300, 1500)  # a loaded region, grey copy too
    out2 = tmp_path / "region.ome.tif"
    write_ome_tiff(
        str(out2),
        region,
        {"rgb": True, "scale": (0.2525, 0.2525), "metadata": {"pixel_size_um": [0.2525, 0.2525]}},
    )
    back = read_image(out2)
    np.testing.assert_array_equal(back.levels[0], region)
    assert len(back.levels) == 2 and back.pixel_size_um == pytest.approx((0.2525, 0.2525))
    grey = tmp_path / "grey.ome.tif"
    write_ome_tiff(str(grey), region[..., 0], {"rgb": False, "scale": (1.0, 1.0)})
    assert read_image(grey).pixel_size_um is None  # unknown units are not invented


def test_ome_writer_keeps_stack_axes(tmp_path, stack):
    from napari_nucleus_ai.images.writers import write_ome_tiff

    out = tmp_path / "one_channel.ome.tif"
    attrs = {"rgb": False, "scale": (1.0, 2.0, 0.325, 0.325), "units": ("pixel", "um", "um", "um"),
             "metadata": {"axes": "TCZYX", "channels": ["a", "b"], "z_step_um": 2.0}}  # fmt: skip
    write_ome_tiff(str(out), stack[:, 0], attrs)
    back = read_image(out)
    assert back.axes == "TZYX" and back.pixel_size_um == pytest.approx((0.325, 0.325))
    assert back.metadata["z_step_um"] == pytest.approx(2.0)
    np.testing.assert_array_equal(back.levels[0], stack[:, 0])


def test_reduced_resolution_pages_are_levels(tmp_path, image):
    path = tmp_path / "vips_like.tif"  # levels as further pages (NewSubfileType=1), libvips style
    with tifffile.TiffWriter(path) as tw:
        opts = {"tile": (256, 256), "photometric": "rgb", "compression": "zlib"}
        tw.write(image, resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER", **opts)
        tw.write(image[::2, ::2], subfiletype=1, **opts)
        tw.write(image[::4, ::4], subfiletype=1, **opts)
    im = read_image(path, lazy=True)
    assert im.format == "pyramidal-tiff" and im.pixel_size_um == pytest.approx((0.5, 0.5))
    assert [lv.shape for lv in im.levels] == [(1024, 1536, 3), (512, 768, 3), (256, 384, 3)]
    np.testing.assert_array_equal(np.asarray(im.levels[2]), image[::4, ::4])


def test_describe_imports_no_gui_and_no_dask(svs):
    import subprocess
    import sys

    code = (
        "import sys; from napari_nucleus_ai.images import describe; "
        f"describe({str(svs)!r}); "
        "print(sorted(m for m in ('napari', 'qtpy', 'torch', 'dask', 'zarr') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
