"""The one-pass paths of ``info`` / ``render``: column reads, the table, the histogram, imports.

Each fast path is checked against a straightforward reference: pandas' C parser for the
column reads, a plain ``numpy`` histogram (and ``scipy.ndimage.gaussian_filter``) for the
render, and the modules a whole ``info`` / ``render`` process imports.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.localizations import (
    READERS,
    read_localizations,
    reader_name,
    write_nstorm_txt,
    write_thunderstorm_csv,
)
from test_localizations import _nuclear_df as _locs  # noqa: E402


@pytest.fixture
def via_pyarrow(monkeypatch):
    """Every file goes to pyarrow (the size threshold off)."""
    pytest.importorskip("pyarrow")
    from napari_nucleus_ai.localizations import csvread

    monkeypatch.setattr(csvread, "PYARROW_MIN_BYTES", 0)
    monkeypatch.setattr(csvread, "busy", lambda: False)
    return csvread


def _by_c_parser(monkeypatch, fn):
    from napari_nucleus_ai.localizations import csvread

    with monkeypatch.context() as m:
        m.setattr(csvread, "have_pyarrow", lambda: False)
        return fn()


@pytest.mark.parametrize(
    "only", [("x_nm", "y_nm", "z_nm"), ("precision_nm",), ("precision_nm", "frame", "channel")]
)
@pytest.mark.parametrize("fmt", ["thunderstorm", "nstorm"])
def test_column_reads_equal_the_c_parser(tmp_path, monkeypatch, via_pyarrow, fmt, only):
    """Counts, columns, dtypes, values and nm bounds are those of pandas' C parser."""
    df = _locs(3000, seed=4)
    if fmt == "thunderstorm":
        path = write_thunderstorm_csv(df, tmp_path / "a.csv")
    else:
        path = write_nstorm_txt(df, tmp_path / "a.txt")
    fast = read_localizations(path, only=only)
    ref = _by_c_parser(monkeypatch, lambda: read_localizations(path, only=only))
    pd.testing.assert_frame_equal(fast.data, ref.data)
    assert fast.bounds_nm() == ref.bounds_nm()
    assert fast.metadata["columns"] == ref.metadata["columns"]
    assert len(fast) == len(df) and fast.n_dropped == ref.n_dropped == 0
    if "channel" in only and fmt == "nstorm":  # N-STORM's text "Channel Name" column
        assert fast.channels == ["488", "647"]


def test_missing_values_read_as_the_c_parser_reads_them(tmp_path, monkeypatch, via_pyarrow):
    """Empty fields and pandas' NA spellings are NaN on both paths; rows without a
    position are dropped and counted the same way."""
    p = tmp_path / "gaps.csv"
    p.write_text(
        '"frame","x [nm]","y [nm]","intensity [photon]","uncertainty_xy [nm]"\n'
        "1,10.5,20,100,12\n"
        "2,,30,NA,\n"
        ",30.25,40,nan,n/a\n"
        "4,50,NaN,300,9.5\n"
        "5,60,70,null,8\n"
    )
    only = ("precision_nm", "photons", "frame")
    fast = read_localizations(p, only=only)
    ref = _by_c_parser(monkeypatch, lambda: read_localizations(p, only=only))
    pd.testing.assert_frame_equal(fast.data, ref.data)
    assert fast.n_dropped == ref.n_dropped == 2 and len(fast) == 3
    assert fast.data["frame"].tolist() == [1, -1, 5]


def test_whole_header_quoted_as_one_field(tmp_path, monkeypatch, via_pyarrow):
    p = tmp_path / "quoted.csv"
    p.write_text('"id,frame,x [nm],y [nm],uncertainty [nm]"\n1,1,5.5,6.5,10\n2,1,7.25,8,11\n')
    fast = read_localizations(p, only=("precision_nm",))
    ref = _by_c_parser(monkeypatch, lambda: read_localizations(p, only=("precision_nm",)))
    pd.testing.assert_frame_equal(fast.data, ref.data)
    assert fast.data["x_nm"].tolist() == [5.5, 7.25]


def test_column_types_pyarrow_does_not_map_are_read_by_pandas(tmp_path, via_pyarrow):
    """A column pyarrow infers as boolean goes back to pandas' own reader."""
    p = tmp_path / "flags.csv"
    p.write_text("x,y,flag,name\n1.5,2,true,a\n3,4,false,\n")
    got = via_pyarrow.read_columns(p, ["x", "flag", "name"], sep=",")
    ref = pd.read_csv(p, usecols=["x", "flag", "name"])[["x", "flag", "name"]]
    pd.testing.assert_frame_equal(got, ref)
    strings = via_pyarrow.read_columns(p, ["y", "name"], sep=",")
    pd.testing.assert_frame_equal(strings, pd.read_csv(p, usecols=["y", "name"]))


def test_table_does_not_write_into_the_callers_frame():
    from napari_nucleus_ai.localizations import from_dataframe

    df = _locs(100)
    before = df.copy()
    table = from_dataframe(df)
    table.data["x_nm"] += 1.0
    table.data.loc[0, "precision_nm"] = -5.0
    pd.testing.assert_frame_equal(df, before)
    np.testing.assert_array_equal(table.data["x_nm"].to_numpy(), before["x_nm"].to_numpy() + 1)


@pytest.mark.parametrize("engine", ["c", "pyarrow"])
def test_tables_read_from_files_can_be_edited(tmp_path, monkeypatch, engine):
    """Columns taken over from the reader's buffers without a copy stay writeable."""
    from napari_nucleus_ai.localizations import csvread

    if engine == "pyarrow":
        pytest.importorskip("pyarrow")
        monkeypatch.setattr(csvread, "PYARROW_MIN_BYTES", 0)
        monkeypatch.setattr(csvread, "busy", lambda: False)
    else:
        monkeypatch.setattr(csvread, "have_pyarrow", lambda: False)
    path = write_thunderstorm_csv(_locs(500), tmp_path / "a.csv")
    for only in (None, ("precision_nm",)):
        table = read_localizations(path, only=only)
        x = table.data["x_nm"].to_numpy().copy()
        table.data.loc[3, "x_nm"] = -1.0
        table.data["y_nm"] *= 2
        assert table.data["x_nm"].iloc[3] == -1.0 and table.data["x_nm"].iloc[4] == x[4]


def test_reader_name_is_the_reader_that_runs():
    from napari_nucleus_ai.localizations import _reader

    for fmt in READERS:
        fn = _reader(fmt)
        assert reader_name(fmt) == f"{fn.__module__}:{fn.__name__}"


# ---------------------------------------------------------------- histogram
def _reference_histogram(coords, lowers, pxs, shape):
    """Localizations per pixel, straightforwardly: pixel ``floor((v - lower) / px)`` on
    each axis, rows outside the grid dropped, one ``bincount``."""
    keep = np.ones(len(coords[0]), bool)
    idx = []
    for v, lo, px, m in zip(coords, lowers, pxs, shape, strict=True):
        f = (np.asarray(v) - lo) * (1.0 / px)
        keep &= (f >= 0) & (f < m)
        idx.append(np.floor(f).astype(np.intp))
    flat = np.ravel_multi_index([i[keep] for i in idx], shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.float32)


@pytest.mark.parametrize("threads", [False, True])
def test_histogram_equals_a_plain_numpy_histogram(monkeypatch, threads):
    from napari_nucleus_ai.localizations import render

    if threads:  # many blocks on a thread pool
        monkeypatch.setattr(render, "THREAD_MIN_ROWS", 10)
        monkeypatch.setattr(render, "BLOCK_ROWS", 997)
    rng = np.random.default_rng(7)
    n = 20_000
    df = _locs(n, seed=7)
    df.loc[:9, "x_nm"] = np.floor(df.loc[:9, "x_nm"] / 10) * 10  # rows on pixel edges
    r = render.render_localizations(df, 10.0, "histogram")
    (y0, x0), ny_nx = [t - 5.0 for t in r.translate], r.image.shape
    ref = _reference_histogram([df.y_nm, df.x_nm], [y0, x0], [10.0, 10.0], ny_nx)
    np.testing.assert_array_equal(r.image, ref)
    assert r.n_rendered == n == r.image.sum()
    # explicit bounds: rows outside are not drawn
    bounds = {"x": [3000.0, 6000.0], "y": [2500.0, 7000.0]}
    r = render.render_localizations(df, 20.0, "histogram", bounds_nm=bounds)
    ref = _reference_histogram([df.y_nm, df.x_nm], [2500.0, 3000.0], [20.0, 20.0], r.image.shape)
    np.testing.assert_array_equal(r.image, ref)
    assert r.n_rendered == ref.sum() < n
    # a voxel stack
    df["z_nm"] = rng.uniform(-300, 300, n)
    r = render.render_localizations(df, 20.0, "histogram", z_mode="stack", z_pixel_size_nm=100)
    lowers = [t - s / 2 for t, s in zip(r.translate, r.scale, strict=True)]
    ref = _reference_histogram([df.z_nm, df.y_nm, df.x_nm], lowers, r.scale, r.image.shape)
    np.testing.assert_array_equal(r.image, ref)


def test_gaussian_render_is_the_histogram_blurred_once():
    from scipy.ndimage import gaussian_filter

    from napari_nucleus_ai.localizations.render import render_localizations

    df = _locs(5000, seed=2)
    r = render_localizations(df, 10.0)  # default: Gaussian of the median precision
    assert r.method == "gaussian" and r.sigma_nm == pytest.approx(df.precision_nm.median())
    (y0, x0) = [t - 5.0 for t in r.translate]
    hist = _reference_histogram([df.y_nm, df.x_nm], [y0, x0], [10.0, 10.0], r.image.shape)
    ref = gaussian_filter(hist, r.sigma_nm / 10.0, mode="constant", truncate=4.0)
    np.testing.assert_array_equal(r.image, ref)


# ---------------------------------------------------------------- whole processes
def _imports_of(argv) -> set:
    code = (
        "import sys\n"
        "from napari_nucleus_ai.cli import main\n"
        f"rc = main({argv!r})\n"
        "print('RC', rc)\n"
        "print('MODULES', ' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "RC 0" in out.stdout, out.stdout + out.stderr
    return set(out.stdout.split("MODULES", 1)[1].split())


HEAVY = ("torch", "napari", "qtpy", "dask", "skimage", "matplotlib", "h5py", "sklearn", "zarr")


def test_info_and_render_import_only_what_they_use(tmp_path):
    path = write_thunderstorm_csv(_locs(200), tmp_path / "a.csv")
    info = _imports_of(["info", str(path)])
    assert not [m for m in (*HEAVY, "scipy", "tifffile", "pandas") if m in info]
    # only the command that runs is built, and only the reader that reads
    assert "napari_nucleus_ai.cli.render" not in info
    assert "napari_nucleus_ai.datasets" not in info
    assert "napari_nucleus_ai.localizations.binary" not in info
    render = _imports_of(["render", str(path), "--out", str(tmp_path / "a.tif")])
    assert not [m for m in HEAVY if m in render]
    assert (tmp_path / "a.tif").exists()


def test_command_of_argv():
    from napari_nucleus_ai.cli import _command_of

    assert _command_of(["info", "x.csv"]) == "info"
    assert _command_of(["--debug", "render", "x.csv"]) == "render"
    assert _command_of(["--help", "info"]) is None
    assert _command_of(["nope", "info"]) is None
    assert _command_of([]) is None


def test_big_files_parse_on_every_core_small_ones_on_one(tmp_path, monkeypatch, via_pyarrow):
    """Files of PYARROW_MIN_BYTES and more parse on pyarrow's threads, busy machine or not;
    smaller ones on one thread (``info``'s reads without pandas); the same table."""
    import pyarrow.csv

    from napari_nucleus_ai.localizations import read_positions

    threads = []
    real = pyarrow.csv.read_csv

    def spy(*a, **k):
        threads.append(k["read_options"].use_threads)
        return real(*a, **k)

    monkeypatch.setattr(pyarrow.csv, "read_csv", spy)
    path = write_thunderstorm_csv(_locs(300), tmp_path / "a.csv")
    idle = read_localizations(path, only=("precision_nm",))
    monkeypatch.setattr(via_pyarrow, "busy", lambda: True)
    loaded = read_localizations(path, only=("precision_nm",))
    pd.testing.assert_frame_equal(idle.data, loaded.data)
    monkeypatch.setattr(via_pyarrow, "PYARROW_MIN_BYTES", 10**9)
    assert len(read_positions(path)) == 300
    assert threads == [True, True, False]


def test_busy_follows_the_load_average(monkeypatch):
    from napari_nucleus_ai.localizations import csvread

    monkeypatch.setattr(csvread.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(csvread.os, "getloadavg", lambda: (2.5, 0.0, 0.0))
    assert csvread.busy()
    monkeypatch.setattr(csvread.os, "getloadavg", lambda: (0.7, 9.0, 9.0))
    assert not csvread.busy()


# ---------------------------------------------------------------- info without a table
def _summary_cases(tmp_path):
    """ThunderSTORM and N-STORM files of each kind ``info`` meets: (path, read options)."""
    df = _locs(2000, seed=9)
    df.loc[[3, 700, 1500], "x_nm"] = np.nan  # rows without a position: dropped
    cases = [(write_thunderstorm_csv(df, tmp_path / "a.csv"), {})]
    cases.append((write_nstorm_txt(df, tmp_path / "a.txt"), {}))  # z and zc all zeros
    d3 = df.assign(z_nm=np.linspace(-300, 300, len(df)))
    cases.append((write_nstorm_txt(d3, tmp_path / "z.txt"), {}))
    cases.append((write_thunderstorm_csv(d3, tmp_path / "z.csv"), {}))
    um = tmp_path / "um.csv"  # micrometres and integers with a gap
    um.write_text('"frame","x [um]","y [um]"\n' + "".join(f"{i},{i}.5,{i}\n" for i in range(1, 40)))
    um.write_text(um.read_text() + "40,3.25,\n")
    cases.append((um, {}))
    px = tmp_path / "px.csv"
    px.write_text('"x [px]","y [px]","z [px]"\n1.5,2,0\n3,4.25,0\n7,8,0\n')
    cases.append((px, {"pixel_size_nm": 160.0}))
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('"id,frame,x [nm],y [nm],uncertainty [nm]"\n1,1,5.5,6.5,10\n2,1,7.25,8,11\n')
    cases.append((quoted, {}))
    return cases


@pytest.mark.parametrize("engine", ["pyarrow", "busy", "c"])
def test_info_summary_equals_the_table(tmp_path, monkeypatch, engine):
    """Counts, dropped rows, bounds and columns without a table equal the table's."""
    from napari_nucleus_ai.localizations import csvread, read_positions
    from napari_nucleus_ai.localizations.positions import PositionSummary

    monkeypatch.setattr(csvread, "PYARROW_MIN_BLOCK", 64)  # several blocks: offsets, gaps
    monkeypatch.setattr(csvread, "busy", lambda: engine == "busy")
    if engine == "c":
        monkeypatch.setattr(csvread, "have_pyarrow", lambda: False)
    for path, options in _summary_cases(tmp_path):
        summary = read_positions(path, **options)
        table = read_localizations(path, positions_only=True, **options)
        assert isinstance(summary, PositionSummary) == (engine != "c"), path
        assert (len(summary), summary.n_dropped) == (len(table), table.n_dropped), path
        assert summary.bounds_nm() == table.bounds_nm(), path
        assert summary.metadata["columns"] == table.metadata["columns"], path
        assert summary.format == table.format
    assert table.n_dropped == 0 and read_positions(tmp_path / "a.csv").n_dropped == 3


def test_info_prints_the_same_with_and_without_a_table(tmp_path, monkeypatch):
    from napari_nucleus_ai import localizations
    from napari_nucleus_ai.localizations import nstorm, thunderstorm

    cases = _summary_cases(tmp_path)
    fast = [localizations.describe(p, **o) for p, o in cases]
    for module in (nstorm, thunderstorm):  # every file through a table
        monkeypatch.setattr(module, "read_positions", lambda *a, **k: None)
    assert fast == [localizations.describe(p, **o) for p, o in cases]
    assert fast[2]["bounds_nm"]["z"] == [-300.0, 300.0] and "z" not in fast[1]["bounds_nm"]


@pytest.mark.parametrize(
    "body, problem",
    [
        ("1,2\n3,4e12\n", "beyond 1 m"),
        ("nan,2\n,4\n", "no localization has a finite position"),
        ("", "no localizations in the file"),
        ("a,2\nb,4\n", "is not numeric"),
    ],
)
def test_info_errors_are_the_tables(tmp_path, body, problem):
    """What the summary cannot settle is read as a table, which names the problem."""
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.localizations import describe

    p = tmp_path / "bad.csv"
    p.write_text('"x [nm]","y [nm]"\n' + body)
    with pytest.raises(InputError, match=problem) as info_error:
        describe(p)
    with pytest.raises(InputError) as table_error:
        read_localizations(p)
    assert str(info_error.value) == str(table_error.value)


def test_nstorm_header_names_are_pandas(tmp_path):
    from napari_nucleus_ai.localizations.nstorm import header_names

    for header in ("Channel Name\tX\tY\tXc\n", "A\tX\tX\t\tX.1\tX\n", " A \tX\t\n"):
        p = tmp_path / "h.txt"
        p.write_text(header + "1\t2\t3\t4\t5\t6\n")
        ref = [str(c).strip() for c in pd.read_csv(p, sep="\t", nrows=0).columns]
        assert header_names(p) == ref


def test_info_of_a_localization_table_imports_no_pandas(tmp_path):
    path = write_thunderstorm_csv(_locs(200), tmp_path / "a.csv")
    code = (
        "import sys\n"
        "from napari_nucleus_ai.localizations import describe\n"
        f"print(describe({str(path)!r})['count'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pandas'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["200", "[]"], out.stdout + out.stderr
