"""Localization readers: every real file in ../shared/data/smlm, bad files, writers, filters, drift."""

from __future__ import annotations

import json
import shutil
import zipfile

import h5py
import numpy as np
import pandas as pd
import pytest

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.io import describe as io_describe
from napari_nucleus_ai.localizations import (
    describe,
    detect_format,
    read_localizations,
    sniff,
    write_nstorm_txt,
    write_thunderstorm_csv,
)


def _tsv_bounds(path, xcol, ycol, sep="\t"):
    """Independent reference: the raw columns through the csv module, no pandas."""
    import csv

    with open(path, encoding="latin-1") as fh:
        text = fh.read().split("\x00")[0]
    rows = list(csv.reader(text.splitlines(), delimiter=sep))
    head = [h.strip() for h in rows[0]]
    data = [r for r in rows[1:] if len(r) == len(head)]
    x = np.array([float(r[head.index(xcol)]) for r in data])
    y = np.array([float(r[head.index(ycol)]) for r in data])
    return len(data), [x.min(), x.max()], [y.min(), y.max()]


# (relative path, format, count, x bounds, y bounds, z bounds or None) - counts checked by
# line counts; bounds from the raw columns (see test bodies for the independent readers).
REAL = {
    "locan/Thunderstorm_dstorm_data.csv": ("thunderstorm", 19),
    "locan/Elyra_dstorm_data.txt": ("elyra", 15),
    "locan/Nanoimager_dstorm_data.csv": ("oni", 14),
    "locan/rapidSTORM_dstorm_data.txt": ("rapidstorm", 14),
    "locan/SMLM_dstorm_data.smlm": ("smlm", 10),
    "locan/decode_dstorm_data.h5": ("decode-h5", 96),
    "locan/smap_dstorm_data.mat": ("smap", 4884),
    "locan/five_blobs.txt": ("csv", 50),
    "locan/five_blobs_3D.txt": ("csv", 50),
    "picasso/testdata_locs.hdf5": ("picasso", 564),
    "picasso/raw_movie_locs.hdf5": ("picasso", 2399),
    "colicoords/01_storm.csv": ("thunderstorm", 29995),
    "colicoords/02_storm.csv": ("thunderstorm", 28757),
    "colicoords/03_storm.csv": ("thunderstorm", 17361),
    "colicoords/04_storm.csv": ("thunderstorm", 26087),
    "colicoords/ds3_storm_table.csv": ("thunderstorm", 48),
}


def _reference_xy(path, fmt):
    """x, y (and z) in nm from each format's own layout, read without our readers."""
    name = str(path)
    if fmt == "thunderstorm":
        names = [
            h.strip().strip('"')
            for h in path.read_text()
            .split("\n", 1)[0]
            .replace('""', '"')
            .strip()
            .strip('"')
            .split(",")
        ]
        a = np.genfromtxt(path, delimiter=",", skip_header=1)
        return a[:, names.index("x [nm]")], a[:, names.index("y [nm]")], None
    if fmt == "elyra":
        n, xb, yb = _tsv_bounds(path, "Position X [nm]", "Position Y [nm]")
        return np.array(xb), np.array(yb), None
    if fmt == "oni":
        a = pd.read_csv(path)
        return a["X (nm)"].to_numpy(), a["Y (nm)"].to_numpy(), None  # Z (nm) is all 0: 2D
    if fmt == "rapidstorm":
        a = np.loadtxt(path, comments="#")
        return a[:, 0], a[:, 1], None  # Position-0-0 / Position-1-0, unit nanometer
    if fmt == "smlm":
        with zipfile.ZipFile(path) as z:
            man = json.loads(z.read("manifest.json"))
            f = man["files"][0]
            return (
                np.array([f["min"]["position_x"], f["max"]["position_x"]]),
                np.array([f["min"]["position_y"], f["max"]["position_y"]]),
                None,
            )
    if fmt == "decode-h5":
        with h5py.File(path) as h:
            xyz = h["data/xyz"][()]
            px = h["meta"].attrs["px_size"]  # xy_unit == "px"
        return xyz[:, 0] * px[0], xyz[:, 1] * px[1], xyz[:, 2]
    if fmt == "smap":
        with h5py.File(path) as h:
            loc = h["saveloc/loc"]
            return loc["xnm"][()].ravel(), loc["ynm"][()].ravel(), loc["znm"][()].ravel()
    if fmt == "picasso":
        px = 130.0  # Pixelsize of the last YAML document that has one (checked by hand)
        with h5py.File(path) as h:
            locs = h["locs"][()]
        return locs["x"] * px, locs["y"] * px, None
    if fmt == "csv":
        a = pd.read_csv(path)
        z = a["position_z"].to_numpy() if "position_z" in a else None
        return a["position_x"].to_numpy(), a["position_y"].to_numpy(), z
    raise AssertionError(name)


@pytest.mark.parametrize("rel", sorted(REAL))
def test_real_files_count_and_bounds(shared_data, rel):
    path = shared_data / "smlm" / rel
    fmt, count = REAL[rel]
    assert detect_format(path) == fmt
    t = read_localizations(path)
    assert t.format == fmt
    assert len(t) == count and t.n_dropped == 0
    x, y, z = _reference_xy(path, fmt)
    b = t.bounds_nm()
    np.testing.assert_allclose(b["x"], [np.min(x), np.max(x)], rtol=1e-6)
    np.testing.assert_allclose(b["y"], [np.min(y), np.max(y)], rtol=1e-6)
    if z is not None:
        np.testing.assert_allclose(b["z"], [np.min(z), np.max(z)], rtol=1e-6)
    else:
        assert "z" not in b
    cols = list(t.data.columns)
    assert cols[:2] == ["x_nm", "y_nm"] and {"frame", "photons", "precision_nm", "channel"} <= set(
        cols
    )
    d = io_describe(path)
    assert d["kind"] == "localizations" and d["format"] == fmt and d["count"] == count
    np.testing.assert_allclose(d["bounds_nm"]["x"], b["x"])
    json.dumps(d)  # info --json must serialise


def test_format_specifics(shared_data):
    smlm = shared_data / "smlm"
    # old ThunderSTORM header (uncertainty [nm]) quoted as one field -> precision
    t = read_localizations(smlm / "locan/Thunderstorm_dstorm_data.csv")
    assert t.data["precision_nm"].notna().all() and t.data["frame"].iloc[0] == 2001
    # current header: uncertainty_xy [nm]
    t = read_localizations(smlm / "colicoords/ds3_storm_table.csv")
    assert t.data["precision_nm"].iloc[0] == pytest.approx(11.57668)
    # Picasso: lpx/lpy (px) -> precision nm with the last YAML Pixelsize (130, not the 160 camera)
    t = read_localizations(smlm / "picasso/testdata_locs.hdf5")
    assert t.metadata["pixel_size_nm"] == 130.0
    with h5py.File(smlm / "picasso/testdata_locs.hdf5") as h:
        locs = h["locs"][()]
    np.testing.assert_allclose(
        t.data["precision_nm"], (locs["lpx"] + locs["lpy"]) / 2 * 130, rtol=1e-5
    )
    assert t.data["frame"].min() == locs["frame"].min()  # Picasso frames from 0 kept
    # ONI: two channels become two channels
    t = read_localizations(smlm / "locan/Nanoimager_dstorm_data.csv")
    assert t.channels == ["0", "1"]
    # SMAP: 3D with precision from locprecnm
    t = read_localizations(smlm / "locan/smap_dstorm_data.mat")
    assert t.is_3d and t.data["precision_nm"].min() > 0
    # Elyra metadata trailer after the NUL byte is parsed, not read as rows
    t = read_localizations(smlm / "locan/Elyra_dstorm_data.txt")
    assert "SizeX" in t.metadata["instrument"]


def test_detection_by_content_not_extension(shared_data, tmp_path):
    src = shared_data / "smlm"
    a = tmp_path / "looks_like.txt"
    shutil.copy(src / "colicoords/ds3_storm_table.csv", a)
    assert detect_format(a) == "thunderstorm"
    b = tmp_path / "picasso_named.dat"
    shutil.copy(src / "picasso/testdata_locs.hdf5", b)
    assert detect_format(b) == "picasso"
    # no .yaml beside the copy: positions in pixels need a pixel size
    with pytest.raises(InputError, match="pixel"):
        read_localizations(b)
    assert len(read_localizations(b, pixel_size_nm=130)) == 564


def test_empty_decode_file_is_reported(shared_data):
    p = shared_data / "smlm/locan/decode_dstorm_data_empty.h5"
    assert detect_format(p) == "decode-h5"
    with pytest.raises(InputError, match="no localizations"):
        read_localizations(p)
    assert len(read_localizations(p, allow_empty=True)) == 0


def _bad_files(tmp_path, shared_data=None):
    files = {}
    (tmp_path / "garbage.csv").write_bytes(bytes(range(256)) * 20)
    files["garbage"] = tmp_path / "garbage.csv"
    (tmp_path / "empty.csv").write_bytes(b"")
    files["empty"] = tmp_path / "empty.csv"
    (tmp_path / "header_only.csv").write_text(
        '"id","frame","x [nm]","y [nm]","uncertainty_xy [nm]"\n'
    )
    files["header only"] = tmp_path / "header_only.csv"
    (tmp_path / "unknown.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    files["unknown columns"] = tmp_path / "unknown.csv"
    (tmp_path / "text.h5").write_text("this is not HDF5 at all\n")
    files["text posing as HDF5"] = tmp_path / "text.h5"
    (tmp_path / "words.csv").write_text('"x [nm]","y [nm]"\nhello,world\nfoo,bar\n')
    files["non-numeric"] = tmp_path / "words.csv"
    (tmp_path / "nan.csv").write_text('"x [nm]","y [nm]"\nnan,1\ninf,2\n')
    files["all non-finite"] = tmp_path / "nan.csv"
    with zipfile.ZipFile(tmp_path / "broken.smlm", "w") as z:
        z.writestr("manifest.json", "{not json")
    files["broken smlm"] = tmp_path / "broken.smlm"
    return files


def _truncated_h5(tmp_path, shared_data):
    src = (shared_data / "smlm/picasso/testdata_locs.hdf5").read_bytes()
    p = tmp_path / "truncated_locs.hdf5"
    p.write_bytes(src[: len(src) // 3])
    return p


def test_bad_files_one_line_errors(tmp_path, shared_data):
    files = _bad_files(tmp_path)
    files["truncated HDF5"] = _truncated_h5(tmp_path, shared_data)
    for name in ("smap_dstorm_data.mat", "SMLM_dstorm_data.smlm"):
        data = (shared_data / "smlm/locan" / name).read_bytes()
        files[f"truncated {name}"] = tmp_path / f"cut_{name}"
        files[f"truncated {name}"].write_bytes(data[: len(data) // 2])
    for what, path in files.items():
        with pytest.raises(InputError) as err:
            io_describe(path)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg, (what, msg)
    with pytest.raises(InputError, match="unknown columns"):
        read_localizations(files["unknown columns"])
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_localizations(files["truncated HDF5"])
    with pytest.raises(InputError, match="not an HDF5"):
        read_localizations(files["text posing as HDF5"])


# what the one-line message must say for each bad file (the problem, not only the name)
PROBLEMS = {
    "garbage": "binary content",
    "empty": "file is empty",
    "header only": "no localizations",
    "unknown columns": "unknown columns (a, b, c)",
    "text posing as HDF5": "not an HDF5 file",
    "non-numeric": "is not numeric",
    "all non-finite": "finite position",
    "broken smlm": "not a readable ShareLoc .smlm",
    "truncated HDF5": "truncated or corrupt HDF5",
    "truncated SMAP": "truncated or corrupt MATLAB 7.3",
}


def _all_bad_files(tmp_path, shared_data):
    files = _bad_files(tmp_path)
    files["truncated HDF5"] = _truncated_h5(tmp_path, shared_data)
    data = (shared_data / "smlm/locan/smap_dstorm_data.mat").read_bytes()
    files["truncated SMAP"] = tmp_path / "cut_sml.mat"
    files["truncated SMAP"].write_bytes(data[: len(data) // 2])
    return files


def test_cli_bad_file_exit_and_one_line(tmp_path, capsys, shared_data):
    from napari_nucleus_ai.cli import main

    files = _all_bad_files(tmp_path, shared_data)
    assert set(files) == set(PROBLEMS)
    for what, path in files.items():
        assert main(["info", str(path), "--json"]) == 1
        out = capsys.readouterr()
        err = out.err.strip()
        assert err.count("\n") == 0 and str(path) in err and "Traceback" not in err
        assert PROBLEMS[what] in err, (what, err)
        assert out.out == ""
        assert main(["render", str(path), "--out", str(tmp_path / "x.tif")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "x.tif").exists()


def test_napari_reader_bad_file_notifies_and_no_layer(tmp_path, monkeypatch, shared_data):
    from napari_nucleus_ai.io import napari_io

    shown = []
    monkeypatch.setattr(napari_io, "_notify", shown.append)
    for what, p in _all_bad_files(tmp_path, shared_data).items():
        shown.clear()
        reader = napari_io.get_reader(str(p))
        assert reader is not None, what  # taken, so the problem can be named
        assert reader(str(p)) == [(None,)]
        assert len(shown) == 1 and "\n" not in shown[0] and str(p) in shown[0], (what, shown)
        assert PROBLEMS[what] in shown[0], (what, shown)
    # napari's own layer CSVs and files of other kinds stay with other readers
    pts = tmp_path / "points.csv"
    pts.write_text("index,axis-0,axis-1\n0,10.0,20.0\n")
    assert napari_io.get_reader(str(pts)) is None
    notes = tmp_path / "notes.md"
    notes.write_text("# hello\n")
    assert napari_io.get_reader(str(notes)) is None


def test_column_mapping_for_unknown_table(tmp_path):
    p = tmp_path / "custom.csv"
    p.write_text("a,b,c,q\n1.5,2.0,7,300\n2.5,4.0,8,200\n")
    t = read_localizations(p, mapping={"x_nm": "a", "y_nm": "b", "frame": "c"}, scale_nm=1000.0)
    np.testing.assert_allclose(t.data["x_nm"], [1500, 2500])
    assert list(t.data["frame"]) == [7, 8] and "q" in t.data.columns
    with pytest.raises(InputError, match="not in the file"):
        read_localizations(p, mapping={"x_nm": "nope", "y_nm": "b"})


def test_non_finite_positions_dropped_and_counted(tmp_path):
    p = tmp_path / "ts.csv"
    p.write_text(
        '"frame","x [nm]","y [nm]","uncertainty_xy [nm]"\n1,10,20,5\n2,nan,30,5\n3,40,inf,5\n4,50,60,5\n'
    )
    t = read_localizations(p)
    assert len(t) == 2 and t.n_dropped == 2
    d = describe(p)
    assert d["count"] == 2 and d["n_dropped"] == 2 and d["bounds_nm"]["x"] == [10.0, 50.0]


def test_rapidstorm_tracked_rows_and_units(tmp_path):
    head = (
        '# <localizations insequence="true" repetitions="variable">'
        '<field identifier="Position-0-0" unit="micrometer" />'
        '<field identifier="Position-1-0" unit="nanometer" />'
        '<field identifier="ImageNumber-0-0" unit="frame" /></localizations>\n'
    )
    p = tmp_path / "tracked.txt"
    p.write_text(head + "1.5 200 3\n2.5 300 4 9 9 9 9 9 9\n")  # 2nd row nests children
    t = read_localizations(p)
    assert t.format == "rapidstorm" and list(t.data["x_nm"]) == [1500.0, 2500.0]
    assert list(t.data["y_nm"]) == [200.0, 300.0] and list(t.data["frame"]) == [3, 4]


def test_decode_csv_in_pixels(tmp_path):
    p = tmp_path / "emitters.csv"
    p.write_text(
        "# DECODE emitter set\n# {'xy_unit': 'px', 'px_size': tensor([100., 110.])}\n# v0.10\n"
        "x,y,z,phot,frame_ix,x_sig,y_sig\n1.5,2.0,-30,1000,0,0.1,0.2\n3.0,4.0,40,900,1,0.1,0.1\n"
    )
    t = read_localizations(p)
    assert t.format == "decode-csv" and list(t.data["x_nm"]) == [150.0, 300.0]
    assert list(t.data["y_nm"]) == [220.0, 440.0] and t.is_3d
    np.testing.assert_allclose(t.data["precision_nm"], [(10 + 22) / 2, (10 + 11) / 2])


def test_thunderstorm_tab_separated_export(tmp_path):
    p = tmp_path / "ts.tsv"
    p.write_text(
        "id\tframe\tx [nm]\ty [nm]\tuncertainty_xy [nm]\n1\t1\t10.5\t20\t7\n2\t3\t30\t40\t8\n"
    )
    t = read_localizations(p)
    assert t.format == "thunderstorm" and list(t.data["x_nm"]) == [10.5, 30.0]
    assert describe(p)["count"] == 2


def test_um_units_and_3d_thunderstorm(tmp_path):
    p = tmp_path / "um.csv"
    p.write_text('"frame","x [um]","y [um]","z [nm]"\n1,1.5,2.5,100\n2,3.0,4.0,-50\n')
    t = read_localizations(p)
    np.testing.assert_allclose(t.data["x_nm"], [1500, 3000])
    assert t.bounds_nm()["z"] == [-50.0, 100.0]


def _nuclear_df(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x_nm": rng.uniform(1000, 9000, n),
            "y_nm": rng.uniform(2000, 8000, n),
            "frame": rng.integers(1, 1000, n),
            "photons": rng.uniform(100, 5000, n),
            "precision_nm": rng.uniform(5, 25, n),
            "channel": np.where(rng.random(n) < 0.3, "488", "647"),
        }
    )


def test_writers_round_trip(tmp_path):
    df = _nuclear_df()
    t = read_localizations(write_thunderstorm_csv(df, tmp_path / "a.csv"))
    assert t.format == "thunderstorm" and len(t) == len(df)
    np.testing.assert_allclose(t.data["x_nm"], df["x_nm"], rtol=1e-5)
    np.testing.assert_allclose(t.data["precision_nm"], df["precision_nm"], rtol=1e-5)
    assert list(t.data["frame"]) == list(df["frame"])
    t = read_localizations(write_nstorm_txt(df, tmp_path / "b.txt"))
    assert t.format == "nstorm" and not t.is_3d and len(t) == len(df)
    np.testing.assert_allclose(t.data["y_nm"], df["y_nm"], rtol=1e-5)
    assert sorted(t.channels) == ["488", "647"]
    assert (t.data["channel"].to_numpy() == df["channel"].to_numpy()).all()
    with pytest.raises(InputError):
        write_thunderstorm_csv(df.drop(columns=["x_nm"]), tmp_path / "c.csv")


def test_nstorm_prefers_drift_corrected_and_reads_v5(tmp_path):
    p = tmp_path / "v1.txt"
    p.write_text(
        "Channel Name\tX\tY\tXc\tYc\tFrame\tPhotons\tLateral Localization Accuracy\tZ\tZc\n"
        "647\t100\t200\t110\t190\t1\t900\t12\t0\t0\n750\t300\t400\t305\t395\t2\t800\t14\t0\t0\n"
    )
    t = read_localizations(p)
    assert list(t.data["x_nm"]) == [110, 305] and t.channels == ["647", "750"] and not t.is_3d
    assert list(read_localizations(p, prefer_corrected=False).data["x_nm"]) == [100, 300]
    q = tmp_path / "v5.txt"
    q.write_text(
        "ID\tX\tY\tZ\tLateral Localization Accuracy\tChannel\tFrame\tXc\tYc\tZc\n"
        "1\t10\t20\t-5\t9\t1\t3\t11\t21\t-6\n2\t30\t40\t7\t8\t2\t4\t31\t41\t8\n"
    )
    t = read_localizations(q)
    assert t.format == "nstorm" and t.is_3d and list(t.data["z_nm"]) == [-6, 8]


def test_filters_and_roi():
    from napari_nucleus_ai.localizations.filters import filter_localizations

    df = _nuclear_df(2000)
    out = filter_localizations(df, precision_max_nm=15, photons_min=1000, frame_range=(100, 500))
    assert (out["precision_nm"] <= 15).all() and (out["photons"] >= 1000).all()
    assert out["frame"].between(100, 500).all() and len(out) > 0
    rect = np.array([[3000, 2000], [3000, 5000], [6000, 5000], [6000, 2000]])  # (y, x)
    inside = filter_localizations(df, roi=[rect])
    assert inside["x_nm"].between(2000, 5000).all() and inside["y_nm"].between(3000, 6000).all()
    expected = ((df.x_nm.between(2000, 5000)) & (df.y_nm.between(3000, 6000))).sum()
    assert len(inside) == expected
    ell = filter_localizations(df, roi=[rect], roi_types=["ellipse"])
    c = np.array([4500, 3500])
    r = ((df[["y_nm", "x_nm"]].to_numpy() - c) / [1500, 1500]) ** 2
    assert len(ell) == int((r.sum(1) <= 1).sum()) < len(inside)
    assert set(filter_localizations(df, channels=["488"])["channel"]) == {"488"}


def test_drift_correction_recovers_linear_drift():
    from napari_nucleus_ai.localizations.drift import drift_correct
    from napari_nucleus_ai.samples.storm import simulate_nucleus

    df = simulate_nucleus(
        "somatic", seed=2, n_localizations=60_000, drift_nm_per_frame=(0.012, -0.006)
    )
    r = drift_correct(df, segments=6)
    true = np.outer(r.segment_frames, [0.012, -0.006])
    true -= true[0]
    assert np.abs(r.drift_nm - true).max() < 8.0  # nm, over 240 nm of drift
    # corrected positions are closer to the drift-free simulation
    clean = simulate_nucleus("somatic", seed=2, n_localizations=60_000)
    before = np.abs(df["x_nm"] - clean["x_nm"]).mean()
    after = np.abs(r.data["x_nm"] - clean["x_nm"]).mean()
    assert after < before / 5


def test_generic_tables_claimed_only_with_xy_columns(tmp_path):
    napari_points = tmp_path / "points.csv"
    napari_points.write_text("index,axis-0,axis-1\n0,10.0,20.0\n")
    cells = tmp_path / "cells.csv"
    cells.write_text("label,centroid_y,centroid_x,area\n1,5,6,30\n")
    assert not sniff(napari_points) and not sniff(cells)  # left to other readers
    with pytest.raises(InputError, match="unknown columns"):
        read_localizations(cells)  # asked for explicitly: say what is missing
    ok = tmp_path / "xy.tsv"
    ok.write_text("x\ty\tframe\n1\t2\t3\n")
    assert detect_format(ok) == "csv" and len(read_localizations(ok)) == 1


def test_sniff_never_raises(tmp_path):
    assert sniff(tmp_path) is False
    assert sniff(tmp_path / "missing.csv") is False
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert sniff(tmp_path / "img.png") is False


def test_layers_multiscale_channels_and_writers(tmp_path):
    from napari_nucleus_ai.localizations import from_dataframe
    from napari_nucleus_ai.localizations.layers import table_layers
    from napari_nucleus_ai.localizations.writers import (
        write_localizations_layer,
        write_rendered_tiff_layer,
    )

    rng = np.random.default_rng(0)
    n = 20_000
    df = pd.DataFrame(
        {
            "x_nm": rng.uniform(0, 50_000, n),
            "y_nm": rng.uniform(0, 20_000, n),
            "frame": rng.integers(1, 100, n),
            "channel": np.where(rng.random(n) < 0.5, "a", "b"),
        }
    )
    layers = table_layers(from_dataframe(df, fmt="test"), points=False)
    assert [ly[1]["name"] for ly in layers] == ["localizations [a]", "localizations [b]"]
    data, kw, kind = layers[0]
    assert kind == "image" and kw["multiscale"] and isinstance(data, list)
    assert data[0].shape[1] > 4096 and data[-1].shape[1] <= 1024 * 2
    assert kw["colormap"] != layers[1][1]["colormap"]  # one colour per channel
    assert kw["metadata"]["channel"] == "a" and len(kw["metadata"]["localizations"]) < n
    csv = write_localizations_layer(str(tmp_path / "a.csv"), data, kw)[0]
    assert len(read_localizations(csv)) == len(kw["metadata"]["localizations"])
    tif = write_rendered_tiff_layer(str(tmp_path / "a.tif"), data, kw)[0]
    import tifffile

    assert tifffile.imread(tif).shape == data[0].shape
    pts = table_layers(from_dataframe(df.iloc[:100], fmt="test"), points=True)
    assert [ly[2] for ly in pts] == ["image", "points", "image", "points"]
    assert write_localizations_layer(str(tmp_path / "p.csv"), pts[1][0], pts[1][1])


def test_huge_field_gets_coarser_display_pixels():
    from napari_nucleus_ai.localizations import from_dataframe
    from napari_nucleus_ai.localizations.layers import MAX_LAYER_SIDE, table_layers

    df = pd.DataFrame({"x_nm": [0.0, 200_000.0, 5.0], "y_nm": [0.0, 1000.0, 7.0]})  # 200 um wide
    data, kw, _ = table_layers(from_dataframe(df), points=False, pixel_size_nm=10)[0]
    render = kw["metadata"]["render"]
    assert render["requested_pixel_size_nm"] == 10 and render["pixel_size_nm"] == 25
    assert data[0].shape[1] <= MAX_LAYER_SIDE + 1 and kw["scale"] == (25.0, 25.0)


@pytest.mark.parametrize("engine", ["c", "pyarrow"])
def test_column_subset_reads_agree_across_engines(tmp_path, monkeypatch, engine):
    """Large files' ``only=`` reads go through pyarrow (all cores, selected columns) when it
    is installed and through pandas' C parser otherwise; both give the same table."""
    from napari_nucleus_ai.localizations import csvread

    if engine == "pyarrow":
        pytest.importorskip("pyarrow")
        monkeypatch.setattr(csvread, "PYARROW_MIN_BYTES", 0)
        monkeypatch.setattr(csvread, "busy", lambda: False)
    else:
        monkeypatch.setattr(csvread, "have_pyarrow", lambda: False)
    df = _nuclear_df(n=30_000, seed=3)
    paths = [
        write_thunderstorm_csv(df, tmp_path / "a.csv"),
        write_nstorm_txt(df, tmp_path / "b.txt"),
    ]
    for p in paths:
        full = read_localizations(p).data
        some = read_localizations(p, only=("precision_nm",)).data
        assert list(some.columns[:2]) == ["x_nm", "y_nm"] and len(some) == len(full)
        for c in ("x_nm", "y_nm", "precision_nm"):
            np.testing.assert_array_equal(some[c].to_numpy(), full[c].to_numpy())
            np.testing.assert_allclose(some[c].to_numpy(), df[c].to_numpy(), rtol=1e-5)
        assert "photons" not in some.columns or some["photons"].isna().all()


def test_pyarrow_refusal_falls_back_to_the_c_parser(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    from napari_nucleus_ai.localizations import csvread

    monkeypatch.setattr(csvread, "PYARROW_MIN_BYTES", 0)
    monkeypatch.setattr(csvread, "busy", lambda: False)
    p = tmp_path / "ragged.csv"  # a short row: pyarrow refuses it, pandas fills NaN
    p.write_text('"frame","x [nm]","y [nm]"\n1,10,20\n2,30\n3,50,60\n')
    t = read_localizations(p)
    assert len(t) == 2 and t.n_dropped == 1
    bad = tmp_path / "garbage.csv"
    bad.write_bytes(b'"x [nm]","y [nm]"\n' + bytes(range(256)) * 40)
    with pytest.raises(InputError, match="garbage.csv"):
        read_localizations(bad)


def test_vutara_csv_in_nm_and_in_um(tmp_path):
    """Bruker Vutara SRX layout (no real file here): nm, or um when precisionx says so."""
    head = "frame,image-ID,z-step,cycle,time-point,x,y,z,precisionx,precisiony,photon-count,probe\n"
    nm = tmp_path / "vutara_nm.csv"
    nm.write_text(
        head + "1,1,0,0,0,1500.5,2500,-100,12,13,900,0\n2,2,0,0,0,3000,4000,50,9,9,800,1\n"
    )
    t = read_localizations(nm)
    assert t.format == "vutara" and list(t.data["x_nm"]) == [1500.5, 3000.0] and t.is_3d
    assert list(t.data["precision_nm"]) == [12.0, 9.0] and t.channels == ["0", "1"]
    assert list(t.data["photons"]) == [900, 800] and list(t.data["frame"]) == [1, 2]
    um = tmp_path / "vutara_um.csv"
    um.write_text(head + "1,1,0,0,0,1.5,2.5,-0.1,0.012,0.013,900,0\n")
    t = read_localizations(um)
    np.testing.assert_allclose(t.data[["x_nm", "y_nm", "z_nm"]].iloc[0], [1500, 2500, -100])
    assert t.data["precision_nm"].iloc[0] == pytest.approx(12.0)


def test_newer_oni_export_after_a_line_to_skip(tmp_path):
    p = tmp_path / "oni_new.csv"
    p.write_text(
        "ONI Nanoimager localisation export\n"
        "x-nm,y-nm,frame,channel,photons\n100.5,200,1,0,500\n300,400,2,1,700\n"
    )
    assert detect_format(p) == "oni"
    t = read_localizations(p)
    assert list(t.data["x_nm"]) == [100.5, 300.0] and list(t.data["y_nm"]) == [200.0, 400.0]
    assert t.channels == ["0", "1"] and list(t.data["frame"]) == [1, 2]


def test_nstorm_older_name_header(tmp_path):
    p = tmp_path / "old.txt"
    p.write_text("Name\tX\tY\tXc\tYc\tFrame\n647\t100\t200\t101\t199\t1\n")
    t = read_localizations(p)
    assert t.format == "nstorm" and list(t.data["x_nm"]) == [101] and t.channels == ["647"]


def test_picasso_pixel_size_from_the_last_yaml_document_that_gives_one(tmp_path, shared_data):
    src = shared_data / "smlm/picasso/testdata_locs.hdf5"
    shutil.copy(src, tmp_path / "m_locs.hdf5")
    (tmp_path / "m_locs.yaml").write_text(
        "Pixelsize: 160\n---\nGenerated by: Picasso Localize\nPixelsize: 100\n---\nMin. Gradient: 5\n"
    )
    t = read_localizations(tmp_path / "m_locs.hdf5")
    assert t.metadata["pixel_size_nm"] == 100.0  # not the first document's 160
    with h5py.File(src) as h:
        x = h["locs"]["x"]
    np.testing.assert_allclose(t.data["x_nm"], x * 100.0, rtol=1e-6)
