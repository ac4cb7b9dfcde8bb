"""Issue 19 formats: storm-analysis HDF5, Insight3 .bin, tracked rapidSTORM, commented and
gzipped CSVs, SMLM-challenge columns, Picasso metadata inside the HDF5, and the
``--camera-pixel`` / ``--columns`` options every localization-reading command shares.

Real files (``../shared/data/smlm/storm-analysis``) are read where they exist; the other
layouts are written here to their documented form (each test's docstring says which).
"""

from __future__ import annotations

import gzip
import json
import shutil

import h5py
import numpy as np
import pytest

from napari_nucleus_ai.cli import build_parser, main
from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.localizations import describe, detect_format, read_localizations
from napari_nucleus_ai.localizations.options import parse_columns, reading_options
from napari_nucleus_ai.localizations.stormanalysis import I3_DTYPE, write_insight3


def _info(capsys, *argv) -> dict:
    assert main(["info", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------ storm-analysis HDF5
def test_storm_analysis_real_file(shared_data, capsys):
    """The real storm-analysis test file: 200 localizations in fr_0, pixel_size 100 nm."""
    path = shared_data / "smlm" / "storm-analysis" / "test_ref.hdf5"
    with h5py.File(path) as h:  # independent reference: the datasets times the attribute
        px = float(h.attrs["pixel_size"])
        x = np.concatenate([h[k]["x"][()] for k in h if k.startswith("fr_")]) * px
        y = np.concatenate([h[k]["y"][()] for k in h if k.startswith("fr_")]) * px
    assert px == 100.0 and len(x) == 200
    assert detect_format(path) == "storm-analysis"
    t = read_localizations(path)
    assert len(t) == 200 and t.format == "storm-analysis"
    assert t.metadata["pixel_size_nm"] == 100.0 and t.metadata["n_tracks"] == 0
    np.testing.assert_allclose(t.bounds_nm()["x"], [x.min(), x.max()], rtol=1e-6)
    np.testing.assert_allclose(t.bounds_nm()["y"], [y.min(), y.max()], rtol=1e-6)
    assert set(t.data["frame"]) == {0} and t.data["photons"].iloc[0] == 10000.0
    assert not t.is_3d  # the file's z is all zero: a 2D fit
    info = _info(capsys, path)
    assert info["format"] == "storm-analysis" and info["count"] == 200
    assert info["reader"].endswith("stormanalysis:read_storm_analysis")


def _write_sa(path, pixel_size=160.0, tracks=False):
    """storm-analysis layout (sa_h5py.SAH5Py): root attrs, fr_N groups, c1_ channel, tracks."""
    with h5py.File(path, "w") as h:
        h.attrs.update(sa_type="3D-DAOSTORM", version=0.1, n_channels=2, movie_l=3)
        h.attrs.update(movie_x=64, movie_y=64, movie_hash_value="")
        if pixel_size:
            h.attrs["pixel_size"] = pixel_size
        for f, (xs, z_um) in enumerate([([1.0, 2.0], [0.1, -0.2]), ([3.0], [0.3])]):
            g = h.create_group(f"fr_{f * 2}")  # frames 0 and 2 analysed, 1 empty
            g.attrs.update(n_locs=len(xs), dx=0.5 if f else 0.0, dy=0.0, dz=0.0)
            g["x"] = np.array(xs, np.float32)
            g["y"] = np.array(xs, np.float32) + 10
            g["z"] = np.array(z_um, np.float32)
            g["sum"] = np.full(len(xs), 500.0, np.float32)
            g["xsigma"] = np.ones(len(xs), np.float32)
            g["c1_x"] = np.array(xs, np.float32) + 20  # the second channel
            g["c1_y"] = np.array(xs, np.float32) + 20
            g["c1_z"] = np.array(z_um, np.float32)
        if tracks:
            t = h.create_group("tracks")
            t.attrs["n_groups"] = 1
            g = t.create_group("tracks_0")
            g.attrs["n_tracks"] = 2
            g["x"] = np.array([5.0, 6.0], np.float32)
            g["y"] = np.array([7.0, 8.0], np.float32)
            g["z"] = np.array([0.05, 0.06], np.float32)
            g["frame"] = np.array([0, 2], np.int32)
            g["track_length"] = np.array([3, 1], np.int32)


def test_storm_analysis_layout_units_drift_channels_tracks(tmp_path):
    """Written to the sa_h5py layout: pixels -> nm, z microns -> nm, frame drift, c1_, tracks."""
    p = tmp_path / "movie.hdf5"
    _write_sa(p, tracks=True)
    t = read_localizations(p)
    d = t.data
    assert len(t) == 6 and t.is_3d
    ch0 = d[d["channel"] == "0"].sort_values("frame")
    np.testing.assert_allclose(ch0["x_nm"], [160.0, 320.0, (3.0 + 0.5) * 160])  # dx added
    np.testing.assert_allclose(ch0["z_nm"], [100.0, -200.0, 300.0], rtol=1e-5)
    assert list(ch0["frame"]) == [0, 0, 2] and set(d["channel"]) == {"0", "1"}
    np.testing.assert_allclose(d[d["channel"] == "1"]["x_nm"].min(), 21 * 160.0)
    assert t.metadata["drift_corrected"] and t.metadata["n_tracks"] == 2
    tr = read_localizations(p, tracks=True)
    assert len(tr) == 2 and list(tr.data["x_nm"]) == [800.0, 960.0]
    np.testing.assert_allclose(tr.data["z_nm"], [50.0, 60.0], rtol=1e-5)


def test_storm_analysis_without_pixel_size_needs_camera_pixel(tmp_path, capsys):
    """A file without the pixel_size attribute: the error names --camera-pixel; the flag works."""
    p = tmp_path / "nopx.h5"
    _write_sa(p, pixel_size=None)
    with pytest.raises(InputError, match="--camera-pixel") as e:
        read_localizations(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)
    assert main(["info", str(p)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--camera-pixel" in err
    info = _info(capsys, p, "--camera-pixel", 100)
    assert info["count"] == 6 and info["pixel_size_nm"] == 100.0


# ------------------------------------------------------------------ Insight3 .bin
def _i3_reference(path, px=160.0):
    """Independent read with the documented header + 18-field record layout."""
    raw = path.read_bytes()
    assert raw[:4] == b"M425"
    frames, status, n = np.frombuffer(raw[4:16], "<i4")
    rec = np.frombuffer(raw[16 : 16 + 72 * n], dtype=I3_DTYPE)
    return int(status), (rec["xc"] - 1) * px, (rec["yc"] - 1) * px, rec


def test_insight3_real_file(shared_data, tmp_path, capsys):
    """The real storm-analysis Insight3 list: 2000 molecules; 160 nm unless --camera-pixel."""
    path = shared_data / "smlm" / "storm-analysis" / "test_olist.bin"
    status, x, y, rec = _i3_reference(path)
    assert status == 6 and len(x) == 2000
    t = read_localizations(path)
    assert t.format == "insight3" and len(t) == 2000
    assert t.metadata["pixel_size_nm"] == 160.0 and t.metadata["pixel_size_default"]
    np.testing.assert_allclose(t.bounds_nm()["x"], [x.min(), x.max()], rtol=1e-6)
    np.testing.assert_allclose(t.bounds_nm()["y"], [y.min(), y.max()], rtol=1e-6)
    assert list(t.data["frame"][:3]) == list(rec["fr"][:3])
    info = _info(capsys, path, "--camera-pixel", 100)
    assert info["format"] == "insight3" and info["pixel_size_nm"] == 100.0
    assert info["reader"].endswith("stormanalysis:read_insight3")
    np.testing.assert_allclose(info["bounds_nm"]["x"], [x.min() / 1.6, x.max() / 1.6], rtol=1e-5)
    renamed = tmp_path / "molecules.dat"  # content, not the extension, decides
    shutil.copy(path, renamed)
    assert detect_format(renamed) == "insight3"


def test_insight3_written_and_bad_files(tmp_path):
    """Written to the documented layout (header, 72-byte records, trailing per-frame count)."""
    import pandas as pd

    df = pd.DataFrame(
        {"x_nm": [160.0, 320.0], "y_nm": [480.0, 640.0], "z_nm": [-50.0, 75.0], "frame": [1, 2]}
    )
    p = tmp_path / "list_mlist.bin"
    write_insight3(df, p)
    t = read_localizations(p)
    np.testing.assert_allclose(t.data["x_nm"], df["x_nm"])
    np.testing.assert_allclose(t.data["z_nm"], df["z_nm"])
    raw = p.read_bytes()
    open_file = tmp_path / "open.bin"
    open_file.write_bytes(raw[:8] + np.int32(0).tobytes() + raw[12:])  # status 0: not closed
    short = tmp_path / "short.bin"
    short.write_bytes(raw[:60])  # header says 2 molecules, less than one record follows
    for bad, problem in ((open_file, "not closed properly"), (short, "truncated")):
        with pytest.raises(InputError, match=problem) as e:
            read_localizations(bad)
        assert str(e.value).startswith(str(bad)) and "\n" not in str(e.value)


# ------------------------------------------------------------------ rapidSTORM tracked
def test_rapidstorm_tracked_nested_header(tmp_path):
    """Locan's documented track layout: a child <localizations> repeats the field names; each
    row holds the track's values, its localization count, then the children's values."""
    fields = (
        '<field identifier="Position-0-0" unit="nanometer" />'
        '<field identifier="Position-1-0" unit="nanometer" />'
        '<field identifier="ImageNumber-0-0" unit="frame" />'
        '<field identifier="Amplitude-0-0" unit="A/D count" />'
    )
    head = (
        f'# <localizations insequence="true" repetitions="variable">{fields}'
        f'<localizations insequence="true" repetitions="variable">{fields}'
        "</localizations></localizations>\n"
    )
    rows = [
        "100 200 0 50 2 99 199 0 25 101 201 1 25",
        "300 400 5 80 1 300 400 5 80",
        "500 600 9 70 3 1 2 9 1 3 4 10 1 5 6 11 1",
    ]
    p = tmp_path / "tracked.txt"
    p.write_text(head + "\n".join(rows) + "\n")
    assert detect_format(p) == "rapidstorm"
    t = read_localizations(p)
    assert len(t) == 3 and t.metadata["tracked"]
    assert list(t.data["x_nm"]) == [100.0, 300.0, 500.0]
    assert list(t.data["frame"]) == [0, 5, 9] and list(t.data["track_length"]) == [2, 1, 3]
    p2 = tmp_path / "broken.txt"
    p2.write_text(head + "1 2\n")
    with pytest.raises(InputError, match="fewer values") as e:
        read_localizations(p2)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ CSV variants
def test_comment_prefixed_csv_vlume(tmp_path):
    """vLUME-style export written here: '#LUME VERSION' comment lines, then a nm table."""
    p = tmp_path / "vlume.csv"
    p.write_text(
        "#LUME VERSION 1.0\n# exported by a test\n# units: nm\n"
        "x,y,z,intensity\n10,20,-5,100\n30,40,5,200\n"
    )
    assert detect_format(p) == "vlume"
    t = read_localizations(p)
    assert t.format == "vlume" and len(t) == 2 and t.bounds_nm()["z"] == [-5.0, 5.0]
    q = tmp_path / "commented.csv"  # any comment lines, not only vLUME's
    q.write_text("# a comment\n# another\nx_nm,y_nm,frame\n1,2,3\n")
    assert detect_format(q) == "csv" and len(read_localizations(q)) == 1


def test_smlm_challenge_columns(tmp_path, capsys):
    """SMLM-challenge layout written here: frame, xnano, ynano, znano, intensity (nm)."""
    p = tmp_path / "activations.csv"
    p.write_text(
        "Ground-truth,frame,xnano,ynano,znano,intensity\n"
        "1,1,1000.5,2000.5,-300,5000\n2,1,1500,2500,300,4000\n"
    )
    assert detect_format(p) == "smlm-challenge"
    t = read_localizations(p)
    assert t.bounds_nm() == {"x": [1000.5, 1500.0], "y": [2000.5, 2500.0], "z": [-300.0, 300.0]}
    assert list(t.data["photons"]) == [5000.0, 4000.0]
    assert _info(capsys, p)["format"] == "smlm-challenge"


def test_gzipped_csv_real_file(shared_data, tmp_path, capsys):
    """A real ThunderSTORM file gzipped here reads as the plain one; a corrupt gzip is one line."""
    src = shared_data / "smlm" / "colicoords" / "03_storm.csv"
    gz = tmp_path / "03_storm.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    assert detect_format(gz) == "thunderstorm"
    plain, packed = read_localizations(src), read_localizations(gz)
    assert len(packed) == len(plain) == 17361 and packed.path == str(gz)
    assert packed.bounds_nm() == plain.bounds_nm()
    info = _info(capsys, gz)
    assert info["compression"] == "gzip" and info["count"] == 17361
    bad = tmp_path / "cut.csv.gz"
    bad.write_bytes(gz.read_bytes()[:2000])
    with pytest.raises(InputError) as e:
        read_localizations(bad)
    assert str(e.value).startswith(str(bad)) and "\n" not in str(e.value)


# ------------------------------------------------------------------ Picasso metadata in HDF5
def test_picasso_metadata_inside_the_hdf5(shared_data, tmp_path):
    """The real Picasso locs copied without their .yaml; the metadata written into the HDF5
    (as YAML documents in an 'info' attribute, and as a plain root attribute)."""
    src = shared_data / "smlm" / "picasso" / "testdata_locs.hdf5"
    with h5py.File(src) as h:
        x = h["locs"]["x"][()]
    for how in ("yaml-attr", "plain-attr"):
        p = tmp_path / how / "locs.hdf5"
        p.parent.mkdir()
        shutil.copy(src, p)
        with h5py.File(p, "a") as h:
            if how == "yaml-attr":
                h.attrs["info"] = "Byte Order: <\nPixelsize: 160\n---\nPixelsize: 130\n"
            else:
                h.attrs["Pixelsize"] = 130.0
        t = read_localizations(p)
        assert t.metadata["pixel_size_source"] == "hdf5" and t.metadata["pixel_size_nm"] == 130
        np.testing.assert_allclose(t.bounds_nm()["x"], [x.min() * 130, x.max() * 130], rtol=1e-5)
    bare = tmp_path / "bare_locs.hdf5"
    shutil.copy(src, bare)
    with pytest.raises(InputError, match="--camera-pixel"):
        read_localizations(bare)


# ------------------------------------------------------------------ shared CLI options
COMMANDS = ("info", "render", "segment", "train", "predict", "batch")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_localization_command_takes_the_shared_options(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    flags = {s for a in sub._actions for s in a.option_strings}
    assert {"--camera-pixel", "--columns"} <= flags


def test_columns_option_parsing_and_errors():
    assert parse_columns("x=X (px),y=Y,frame=F,sigma=S,photons=P") == {
        "x_nm": "X (px)",
        "y_nm": "Y",
        "frame": "F",
        "precision_nm": "S",
        "photons": "P",
    }
    for text, problem in (("x=a", "--columns must name the y"), ("x=a,y=b,w=c", "unknown key")):
        with pytest.raises(InputError, match=problem):
            parse_columns(text)


def test_columns_and_camera_pixel_from_the_command_line(tmp_path, capsys):
    """A table with unknown names in camera pixels: --columns + --camera-pixel read it."""
    p = tmp_path / "pix.csv"
    p.write_text("col_a,col_b,col_c,col_d\n1,2,7,0.1\n3,4,8,0.2\n")
    assert main(["info", str(p)]) == 1
    err = capsys.readouterr().err
    assert "--columns" in err and "mapping={" not in err and err.count("\n") == 1
    info = _info(capsys, p, "--columns", "x=col_a,y=col_b,frame=col_c,sigma=col_d")
    assert info["bounds_nm"] == {"x": [1.0, 3.0], "y": [2.0, 4.0]}  # nm: no unit, no pixel
    cols = "x=col_a,y=col_b,frame=col_c,sigma=col_d"
    info = _info(capsys, p, "--columns", cols, "--camera-pixel", 100)
    assert info["bounds_nm"] == {"x": [100.0, 300.0], "y": [200.0, 400.0]}
    out = tmp_path / "r.tif"
    rc = main(["render", str(p), "--out", str(out), "--columns", cols, "--camera-pixel", "100"])
    assert rc == 0 and out.exists()
    assert main(["info", str(p), "--columns", "x=col_a"]) == 1
    assert "--columns must name the y" in capsys.readouterr().err
    assert main(["info", str(p), "--columns", "x=nope,y=col_b"]) == 1
    assert "(--columns) not in the file" in capsys.readouterr().err


def test_columns_on_a_known_format_and_on_binary_files(shared_data, capsys):
    """--columns reads a ThunderSTORM table by the named columns; binary formats ignore it."""
    ts = shared_data / "smlm" / "colicoords" / "ds3_storm_table.csv"
    info = _info(capsys, ts, "--columns", "x=y [nm],y=x [nm]")  # swapped on purpose
    plain = _info(capsys, ts)
    assert info["count"] == plain["count"] == 48
    assert info["bounds_nm"]["x"] == plain["bounds_nm"]["y"]
    assert info["reader"].endswith("generic:read_csv_table")
    i3 = shared_data / "smlm" / "storm-analysis" / "test_olist.bin"
    assert _info(capsys, i3, "--columns", "x=a,y=b")["format"] == "insight3"


def test_reading_options_are_scoped_and_explicit_arguments_win(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b\n1,2\n")
    with reading_options(10.0, {"x_nm": "a", "y_nm": "b"}):
        assert read_localizations(p).bounds_nm() == {"x": [10.0, 10.0], "y": [20.0, 20.0]}
        t = read_localizations(p, mapping={"x_nm": "b", "y_nm": "a"}, pixel_size_nm=1.0)
        assert t.bounds_nm() == {"x": [2.0, 2.0], "y": [1.0, 1.0]}
        assert describe(p)["count"] == 1
    with pytest.raises(InputError, match="unknown columns"):
        read_localizations(p)  # the defaults ended with the block
