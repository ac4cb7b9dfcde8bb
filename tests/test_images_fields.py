"""Fields of view (real BCCD JPEGs and PBC PNGs, BMP, RGBA, 16-bit), content sniffing,
and one-line errors for corrupt, truncated and unsupported files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.images import as_rgb, read_image, sniff
from napari_nucleus_ai.io import describe, family_for, read_layers
from napari_nucleus_ai.io.napari_io import get_reader, read_paths


@pytest.fixture(scope="module")
def bccd(shared_data):
    files = sorted((shared_data / "smear" / "bccd" / "JPEGImages").glob("*.jpg"))
    assert len(files) > 100
    return files


@pytest.fixture(scope="module")
def pbc(shared_data):
    return sorted((shared_data / "smear" / "pbc").glob("*/*.png"))


def test_real_bccd_fields(bccd):
    for path in bccd[:5]:
        im = read_image(path)
        assert im.format == "jpeg" and im.rgb and im.axes == "YXS"
        assert im.shape == (480, 640, 3) and im.dtype == np.uint8
        # stained smear: white cells/nuclei are blue-purple, so blue > green somewhere
        arr = im.levels[0].astype(int)
        assert (arr[..., 2] - arr[..., 1]).max() > 40
    info = describe(bccd[0])
    assert (
        info["kind"] == "image"
        and info["levels"] == [[480, 640, 3]]
        and info["pixel_size_um"] is None
    )


def test_real_pbc_crops_through_the_napari_reader(pbc):
    assert len(pbc) == 96
    path = str(pbc[0])
    reader = get_reader(path)
    assert reader is not None
    ((data, kw, kind),) = reader(path)
    assert kind == "image" and kw["rgb"] and data.shape == (360, 360, 3)
    assert kw["metadata"]["format"] == "png" and kw["metadata"]["path"] == path


def test_sniff_uses_content_not_extension(bccd, tmp_path):
    disguised = tmp_path / "field.dat"
    shutil.copy(bccd[0], disguised)
    assert sniff(disguised)
    assert read_image(disguised).shape == (480, 640, 3)
    fake = tmp_path / "table.tif"
    fake.write_text("x,y\n1,2\n")
    assert not sniff(fake)
    bm = tmp_path / "notes.bmp"
    bm.write_text("BM is not enough: the DIB header must be valid\n")
    assert not sniff(bm)


def test_bmp_rgba_and_16bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.bmp")
    im = read_image(tmp_path / "a.bmp")
    assert im.format == "bmp" and np.array_equal(im.levels[0], rgb)

    rgba = np.dstack([rgb, np.full((20, 30), 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    im = read_image(tmp_path / "a.png")
    assert im.shape == (20, 30, 4) and im.metadata["alpha"]
    np.testing.assert_array_equal(as_rgb(im.levels[0]), rgb)  # alpha dropped for analysis

    grey = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100
    Image.fromarray(grey).save(tmp_path / "g16.png")
    im = read_image(tmp_path / "g16.png")
    assert im.axes == "YX" and im.dtype == np.uint16 and not im.rgb
    np.testing.assert_array_equal(im.levels[0], grey)
    out = as_rgb(im.levels[0])
    assert (
        out.dtype == np.uint8 and out.shape == (20, 30, 3) and out.max() == 255 and out.min() == 0
    )


def test_as_rgb_rejects_stacks():
    with pytest.raises(InputError, match="2D grey or RGB"):
        as_rgb(np.zeros((3, 4, 5, 6)))


# -- bad files: one line, naming the file -----------------------------------------------------


def _one_line_naming(err: InputError, path) -> str:
    msg = str(err)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_truncated_jpeg(bccd, tmp_path):
    path = tmp_path / "cut.jpg"
    data = bccd[0].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        read_image(path)
    assert "truncated" in _one_line_naming(e.value, path)


def test_broken_tiff_header(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 64)
    with pytest.raises(InputError) as e:
        read_layers(path)
    assert "TIFF" in _one_line_naming(e.value, path)


def test_truncated_tiff(tmp_path):
    path = tmp_path / "cut.tif"
    img = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    tifffile.imwrite(path, img, tile=(128, 128), photometric="rgb", compression="zlib")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InputError) as e:
        read_image(path)
    assert "truncated" in _one_line_naming(e.value, path)


def test_unknown_compression(tmp_path):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, np.zeros((64, 64), np.uint8), compression="zlib")
    with tifffile.TiffFile(path) as tf:
        offset = tf.pages[0].tags["Compression"].valueoffset
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 2] = (50123).to_bytes(2, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        read_image(path)
    assert "compression" in _one_line_naming(e.value, path)


def test_corrupt_jpeg_tile_fails_at_open_not_in_napari(tmp_path):
    path = tmp_path / "badtile.tif"
    img = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    tifffile.imwrite(path, img, tile=(256, 256), photometric="rgb", compression="jpeg")
    with tifffile.TiffFile(path) as tf:
        off = tf.pages[0].dataoffsets[0]
    raw = bytearray(path.read_bytes())
    raw[off : off + 64] = b"\x00" * 64  # destroy the JPEG headers of the only tile
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError) as e:
        read_image(path)
    _one_line_naming(e.value, path)


def test_empty_and_unknown_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_layers(empty)
    unknown = tmp_path / "notes.txt"
    unknown.write_text("hello")
    assert family_for(unknown) is None
    with pytest.raises(InputError, match="not a format"):
        describe(unknown)


def test_openslide_formats_explain_the_extra(tmp_path, monkeypatch):
    from napari_nucleus_ai.images import slides

    monkeypatch.setattr(slides, "openslide_available", lambda: False)
    path = tmp_path / "slide.mrxs"
    path.write_text("[GENERAL]\nSLIDE_VERSION = 01.02\n")
    with pytest.raises(InputError) as e:
        read_image(path)
    assert "pip install" in _one_line_naming(e.value, path) and "MIRAX" in str(e.value)
    preview = tmp_path / "preview.mrxs"  # MIRAX index files are JPEG previews: still a slide
    preview.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    with pytest.raises(InputError, match="need openslide"):
        read_image(preview)
    dcm = tmp_path / "wsi.dcm"
    dcm.write_bytes(b"\x00" * 128 + b"DICM" + b"\x00" * 16)
    with pytest.raises(InputError, match="DICOM slides need openslide"):
        read_image(dcm)


def test_napari_reader_turns_errors_into_a_notification(tmp_path, monkeypatch):
    import napari_nucleus_ai.io.napari_io as nio

    path = tmp_path / "broken.tif"
    path.write_bytes(b"II*\x00" + b"\x01" * 40)
    messages = []
    monkeypatch.setattr(nio, "_notify", messages.append)
    assert read_paths(str(path)) == [(None,)]
    assert len(messages) == 1 and str(path) in messages[0] and "\n" not in messages[0]


def test_cli_info_for_a_field(bccd, capsys):
    import json

    from napari_nucleus_ai.cli import main

    assert main(["info", str(bccd[0]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info == {**info, "kind": "image", "format": "jpeg", "shape": [480, 640, 3], "dtype": "uint8",
                    "axes": "YXS", "levels": [[480, 640, 3]], "pixel_size_um": None, "rgb": True, "channels": []}  # fmt: skip
