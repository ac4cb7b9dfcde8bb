"""Rendering: geometry in nm (napari/Locan conventions), mass, methods, 3D, zoom, TIFF, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations.render import (
    pyramid,
    render_localizations,
    render_view,
    zoom_pixel_size,
)


def _df(x, y, **cols):
    return pd.DataFrame({"x_nm": np.asarray(x, float), "y_nm": np.asarray(y, float), **cols})


def test_geometry_matches_napari_world_coordinates():
    df = _df([1003.0, 1057.0, 1250.0], [2001.0, 2099.0, 2222.0])
    r = render_localizations(df, pixel_size_nm=10, method="histogram")
    assert r.scale == (10.0, 10.0)
    # lower edges snap to multiples of the pixel: x from 1000, y from 2000
    assert r.translate == (2005.0, 1005.0)
    assert r.image.sum() == 3
    for x, y in zip(df.x_nm, df.y_nm, strict=True):
        # napari: world = translate + index * scale, pixel i covers world +- scale/2
        # napari pixel i covers [translate + (i - 1/2) s, translate + (i + 1/2) s)
        iy = int(np.floor((y - r.translate[0]) / r.scale[0] + 0.5))
        ix = int(np.floor((x - r.translate[1]) / r.scale[1] + 0.5))
        assert r.image[iy, ix] >= 1
        assert abs(r.translate[1] + ix * 10 - x) <= 5 and abs(r.translate[0] + iy * 10 - y) <= 5


def test_bounds_clip_and_counts():
    rng = np.random.default_rng(0)
    df = _df(rng.uniform(0, 1000, 5000), rng.uniform(0, 1000, 5000))
    r = render_localizations(
        df, pixel_size_nm=20, method="histogram", bounds_nm={"x": [0, 499.9], "y": [0, 999]}
    )
    inside = (df.x_nm < 500).sum()
    assert r.image.shape == (50, 25) and r.image.sum() == inside == r.n_rendered


@pytest.mark.parametrize("method", ["gaussian", "precision"])
def test_blurred_methods_conserve_mass(method):
    rng = np.random.default_rng(1)
    n = 4000
    df = _df(rng.normal(5000, 300, n), rng.normal(5000, 300, n), precision_nm=rng.uniform(5, 25, n))
    r = render_localizations(
        df, pixel_size_nm=10, method=method, bounds_nm={"x": [3000, 7000], "y": [3000, 7000]}
    )
    assert r.image.sum() == pytest.approx(n, rel=1e-3)
    assert r.image.max() < render_localizations(df, 10, "histogram").image.max()


def test_precision_width_follows_each_localization():
    # two points: one precise, one imprecise -> the imprecise blob is wider
    df = _df([1000, 3000], [1000, 1000], precision_nm=[5.0, 40.0])
    r = render_localizations(
        df, pixel_size_nm=2, method="precision", bounds_nm={"x": [500, 3500], "y": [500, 1500]}
    )
    row = r.image[round((1000 - r.translate[0]) / 2)]
    left, right = row[: row.size // 2], row[row.size // 2 :]
    width = lambda a: (a > a.max() / 2).sum() * 2  # noqa: E731 - FWHM in nm
    assert width(left) == pytest.approx(2.355 * 5, abs=4)
    assert width(right) == pytest.approx(2.355 * 40, rel=0.12)
    g = render_localizations(
        df,
        pixel_size_nm=2,
        method="gaussian",
        sigma_nm=10,
        bounds_nm={"x": [500, 3500], "y": [500, 1500]},
    )
    assert g.sigma_nm == 10


def test_default_sigma_is_median_precision():
    df = _df([0, 100, 200], [0, 0, 0], precision_nm=[8.0, 12.0, 30.0])
    assert render_localizations(df, pixel_size_nm=5).sigma_nm == 12.0
    assert render_localizations(_df([0, 1], [0, 1]), pixel_size_nm=5).sigma_nm == 5.0


def test_3d_stack_and_colour():
    rng = np.random.default_rng(2)
    n = 3000
    df = _df(rng.uniform(0, 2000, n), rng.uniform(0, 2000, n), z_nm=rng.uniform(-500, 500, n))
    s = render_localizations(
        df, pixel_size_nm=20, method="histogram", z_mode="stack", z_pixel_size_nm=100
    )
    assert s.image.ndim == 3 and s.scale == (100.0, 20.0, 20.0) and s.image.sum() == n
    assert s.translate[0] == -500 + 50
    c = render_localizations(df, pixel_size_nm=20, z_mode="color")
    assert c.rgb and c.image.shape[-1] == 3 and c.image.min() >= 0 and c.image.max() <= 1.0001
    # depth is colour: the deep and the shallow halves have different hues
    deep = render_localizations(
        df[df.z_nm < -250], pixel_size_nm=20, z_mode="color", z_range_nm=(-500, 500)
    )
    top = render_localizations(
        df[df.z_nm > 250], pixel_size_nm=20, z_mode="color", z_range_nm=(-500, 500)
    )
    assert not np.allclose(
        deep.image.sum((0, 1)) / deep.image.sum(),
        top.image.sum((0, 1)) / top.image.sum(),
        atol=0.05,
    )
    p = render_localizations(df, pixel_size_nm=20)
    assert p.image.ndim == 2  # default: projection


def test_errors_are_input_errors():
    df = _df([0, 1e7], [0, 1e7])
    with pytest.raises(InputError, match="too large"):
        render_localizations(df, pixel_size_nm=0.5)
    with pytest.raises(InputError):
        render_localizations(df, method="nope")
    with pytest.raises(InputError):
        render_localizations(df, pixel_size_nm=0)


def test_zoom_rerender_finer_pixels_only_when_useful():
    rng = np.random.default_rng(3)
    df = _df(
        rng.uniform(0, 20000, 20000),
        rng.uniform(0, 20000, 20000),
        precision_nm=np.full(20000, 10.0),
    )
    # a 20 um view on an 800 px canvas needs 25 nm pixels: the 10 nm base is enough
    assert render_view(df, (0, 0), (20000, 20000), 800, base_pixel_nm=10) is None
    # a 2 um view on 800 px: 2.5 nm pixels over exactly the visible region
    r = render_view(df, (5000, 6000), (7000, 8000), 800, base_pixel_nm=10)
    assert r.pixel_size_nm == 2.5 and r.image.shape == (801, 801)
    assert r.translate == (5000 + 1.25, 6000 + 1.25)
    inside = (df.x_nm.between(6000, 8000) & df.y_nm.between(5000, 7000)).sum()
    assert r.image.sum() == pytest.approx(inside, rel=0.02)
    assert zoom_pixel_size((0, 0), (100, 100), 1000, 10, min_pixel_nm=1) == 1.0


def test_pyramid_levels():
    img = np.ones((5000, 3000), np.float32)
    levels = pyramid(img, min_size=1024)
    assert [lv.shape for lv in levels] == [(5000, 3000), (2500, 1500), (1250, 750), (625, 375)]
    assert all(lv.dtype == np.float32 and lv.mean() == 1 for lv in levels)


def test_tiff_writer_physical_pixel_size(tmp_path):
    from napari_nucleus_ai.localizations.writers import write_rendered_tiff

    r = render_localizations(_df([100, 900], [200, 800]), pixel_size_nm=20, method="histogram")
    out = write_rendered_tiff(tmp_path / "r.tif", r.image, r.scale, r.translate)
    with tifffile.TiffFile(out) as t:
        assert t.imagej_metadata["unit"] == "micron"
        num, den = t.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(50.0)  # 50 px per um = 20 nm
        info = json.loads(t.imagej_metadata["Info"])
        assert info["scale_nm"] == [20.0, 20.0] and info["translate_nm"] == list(r.translate)
        np.testing.assert_array_equal(t.asarray(), r.image)


def test_cli_render_and_info(tmp_path, capsys):
    from napari_nucleus_ai.cli import main
    from napari_nucleus_ai.localizations import write_thunderstorm_csv
    from napari_nucleus_ai.samples.storm import simulate_nucleus

    df = simulate_nucleus("pluripotent", seed=1, n_localizations=20_000)
    src = write_thunderstorm_csv(df, tmp_path / "nucleus.csv")
    assert main(["info", src, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (
        info["kind"] == "localizations"
        and info["format"] == "thunderstorm"
        and info["count"] == 20_000
    )
    assert info["bounds_nm"]["x"] == pytest.approx([df.x_nm.min(), df.x_nm.max()], rel=1e-5)
    out = tmp_path / "n.tif"
    assert (
        main(
            [
                "render",
                src,
                "--pixel-size",
                "20",
                "--out",
                str(out),
                "--method",
                "histogram",
                "--max-precision",
                "15",
                "--frames",
                "1:15000",
            ]
        )
        == 0
    )
    img = tifffile.imread(out)
    keep = (df.precision_nm <= 15) & df.frame.between(1, 15000)
    assert img.sum() == pytest.approx(keep.sum(), rel=1e-4)
    assert main(["render", src, "--out", str(out)]) == 0  # default: gaussian, 10 nm
    with tifffile.TiffFile(out) as t:
        num, den = t.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(100.0)


def test_non_finite_and_empty_inputs():
    r = render_localizations(
        _df([10.0, np.nan, 30.0], [10.0, 20.0, np.inf]), pixel_size_nm=10, method="histogram"
    )
    assert r.image.sum() == 1 and r.n_rendered == 1
    e = render_localizations(_df([], []), pixel_size_nm=10)
    assert e.image.sum() == 0 and e.n_rendered == 0
