"""Bad options and inputs: one line naming the option, value and range; exit 2 before any work.

Also: bounds on inputs (coordinates beyond 1 m, ``--out`` checked first) and
skip-and-report where a command takes many inputs (predict, train, import-dataset).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_nucleus_ai.cli import main
from napari_nucleus_ai.core.errors import InputError, NucleusAIError, UsageError
from napari_nucleus_ai.core.params import Param, check_allocation, validate
from test_train_predict import TINY, blob, trained  # noqa: F401 - trained is a fixture


def _run(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_validate_messages_name_option_value_and_range():
    schema = [
        Param("--tta", int, choices=(1, 2, 4, 8), optional=True),
        Param("--epochs", int, 1),
        Param("min_snr", float, 0, 1000, low_open=True),
        Param("--val-fraction", float, 0, 1, high_open=True),
    ]
    assert validate(schema, {"tta": None, "epochs": "3"}) == {"tta": None, "epochs": 3}
    cases = {
        ("tta", 3): "--tta 3: must be one of 1, 2, 4, 8",
        ("epochs", 0): "--epochs 0: must be an integer >= 1",
        ("epochs", 2.5): "--epochs 2.5: must be an integer >= 1",
        ("min_snr", "abc"): "min_snr abc: must be a finite number in (0, 1000]",
        ("min_snr", float("nan")): "min_snr nan",
        ("val_fraction", 1.5): "--val-fraction 1.5: must be a finite number in [0, 1)",
    }
    for (key, value), text in cases.items():
        with pytest.raises(UsageError) as e:
            validate(schema, {key: value}, "cmd")
        assert str(e.value).startswith(f"cmd: {text}") and "\n" not in str(e.value)
    with pytest.raises(UsageError, match="unknown parameter"):
        validate(schema, {"nope": 1}, unknown="parameter")
    assert isinstance(UsageError("x"), InputError)  # callers catching bad input catch it too


def test_check_allocation_refuses_headers_beyond_memory(tmp_path):
    check_allocation("f.tif", (1000, 1000), 1)
    with pytest.raises(InputError, match="f.tif: the header promises 200000 x 200000"):
        check_allocation("f.tif", (200_000, 200_000), 1)


@pytest.fixture(scope="module")
def smear(tmp_path_factory):
    path = tmp_path_factory.mktemp("smear") / "smear.png"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "method, param",
    [
        ("wbc", "min_nucleus_um=abc"),
        ("wbc", "min_nucleus_um=nan"),
        ("wbc", "min_nucleus_um=-5"),
        ("nuclei", "min_snr=abc"),
        ("nuclei", "split_ratio=inf"),
        ("storm-nuclei", "edge_fraction=2"),
        ("wbc", "nucleus_size=4"),
    ],
)
def test_segment_param_is_checked_before_any_file(capsys, tmp_path, smear, method, param):
    rc, out, err = _run(capsys, "segment", smear, "--method", method, "--param", param,
                        "--out", tmp_path / "o")  # fmt: skip
    line = _one_line(err)
    assert rc == 2 and param.split("=")[0] in line, line
    assert not (tmp_path / "o").exists()  # nothing was done


def test_batch_param_is_checked_before_the_run(capsys, tmp_path, smear):
    rc, _, err = _run(capsys, "batch", smear, "--out", tmp_path / "b", "--param", "min_snr=abc")
    assert rc == 2 and "min_snr=abc" in _one_line(err)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "argv, text",
    [
        (["train", "DATA", "--out", "m.zip", "--epochs", "0"], "--epochs 0"),
        (["train", "DATA", "--out", "m.zip", "--val-fraction", "1.5"], "--val-fraction 1.5"),
        (["train", "DATA", "--out", "m.zip", "--lr", "nan"], "--lr nan"),
        (["predict", "M", "x.png", "--out", "p.csv", "--tta", "3"], "one of 1, 2, 4, 8"),
        (["predict", "M", "x.png", "--out", "p.csv", "--tta", "0"], "--tta 0"),
        (["predict", "M", "x.png", "--out", "p.csv", "--mc-dropout", "-2"], "--mc-dropout -2"),
        (["predict", "M", "x.png", "--out", "p.csv", "--pixel-size", "-1"], "--pixel-size -1"),
        (["train", "DATA", "--out", "m.zip", "--stain-augment", "9"], "--stain-augment 9"),
        (["render", "F.csv", "--out", "r.tif", "--sigma", "-3"], "--sigma -3"),
        (["render", "F.csv", "--out", "r.tif", "--pixel-size", "0"], "--pixel-size 0"),
        (["segment", "x.png", "--out", "o", "--tile", "5"], "--tile 5"),
        (["retrain", "M", "C.sqlite", "--out", "m.zip", "--epochs", "-1"], "--epochs -1"),
    ],
)
def test_numeric_options_out_of_range_exit_2(capsys, tmp_path, argv, text):
    rc, _, err = _run(capsys, *argv)
    line = _one_line(err)
    assert rc == 2 and text in line and "must be" in line, line


@pytest.fixture(scope="module")
def locs(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("locs") / "locs.csv"
    xy = rng.uniform(0, 5000, (500, 2))
    path.write_text("x [nm],y [nm]\n" + "\n".join(f"{x:.1f},{y:.1f}" for x, y in xy) + "\n")
    return path


def test_render_checks_out_and_channel_first(capsys, tmp_path, locs):
    rc, _, err = _run(capsys, "render", locs, "--out", tmp_path / "x.png")
    assert rc == 2 and ".tif" in _one_line(err) and not (tmp_path / "x.png").exists()
    rc, _, err = _run(capsys, "render", locs, "--out", tmp_path / "nope" / "x.tif")
    assert rc == 2 and "does not exist" in _one_line(err)
    rc, _, err = _run(capsys, "render", locs, "--channel", "7", "--out", tmp_path / "x.tif")
    assert rc == 2 and "--channel 7" in _one_line(err) and "1 channel" in err
    assert not (tmp_path / "x.tif").exists()
    assert _run(capsys, "render", locs, "--out", tmp_path / "x.tif")[0] == 0


def test_coordinates_beyond_one_metre_are_refused(capsys, tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("x [nm],y [nm]\n1,2\n1e308,5\n3,4\n")
    rc, _, err = _run(capsys, "render", path, "--out", tmp_path / "r.tif")
    line = _one_line(err)
    assert rc == 1 and "big.csv" in line and "beyond 1 m" in line and "1e+308" in line


def test_predict_checks_out_first_and_skips_bad_inputs(capsys, tmp_path, trained):  # noqa: F811
    _, model, _ = trained
    good = []
    for i in range(3):
        good.append(tmp_path / f"c{i}.png")
        Image.fromarray(blob(i % 2, 900 + i)).save(good[-1])
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(50))
    rc, _, err = _run(capsys, "predict", model, *good, "--out", tmp_path)
    assert rc == 2 and "is a folder" in _one_line(err)
    out = tmp_path / "p.csv"
    rc, stdout, err = _run(capsys, "predict", model, good[0], bad, *good[1:], "--out", out,
                           "--quiet")  # fmt: skip
    assert rc == 2 and "1 failed" in stdout and "broken.png" in err
    import pandas as pd

    df = pd.read_csv(out, keep_default_na=False)
    assert df["path"].tolist() == [str(p) for p in [good[0], bad, *good[1:]]]
    assert df.loc[1, "label"] == "" and "broken.png" in df.loc[1, "error"]
    assert (df.loc[[0, 2, 3], "label"] != "").all()


def test_train_messages_and_skipped_images(capsys, tmp_path, crop_folder):
    import shutil

    rc, _, err = _run(capsys, "train", tmp_path / "nope", "--out", tmp_path / "m.zip")
    assert rc == 1 and "does not exist" in _one_line(err)
    data = tmp_path / "data"
    shutil.copytree(crop_folder, data)
    (data / "disc" / "corrupt.png").write_bytes(b"not a png at all")
    argv = ["train", data, "--out", tmp_path / "m.zip", "--quiet", "--epochs", "1"]
    argv += ["--crop-size", str(TINY.get("crop_size", 24)), "--arch", "smallcnn", "--tta", "1"]
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and (tmp_path / "m.zip").is_file(), err
    assert "corrupt.png" in err


def test_import_dataset_junk_message_is_whole(capsys, tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(3000))
    rc, _, err = _run(capsys, "import-dataset", "bloodmnist", junk, "--out", tmp_path / "d")
    line = _one_line(err)
    assert rc == 1 and "junk.npz" in line and line.endswith(")"), line


def test_progress_printer_lines_and_quiet():
    import io

    from napari_nucleus_ai.cli._progress import ProgressPrinter
    from napari_nucleus_ai.core.progress import Progress

    buf = io.StringIO()
    p = ProgressPrinter("predict", stream=buf, tty=False, every=0, delay=0)
    for i in range(1, 4):
        p(Progress(i, 3, f"{i}/3 crops"))
    p.close()
    assert buf.getvalue().splitlines()[-1].startswith("predict: 3/3 crops (100%)")
    buf = io.StringIO()
    p = ProgressPrinter("predict", stream=buf, tty=True, delay=0)
    p(Progress(1, 2, "half"))
    p(Progress(2, 2, "done"))
    p.close()
    assert "\r" in buf.getvalue() and "[####" in buf.getvalue() and buf.getvalue().endswith("\n")
    buf = io.StringIO()
    q = ProgressPrinter("x", stream=buf, quiet=True, delay=0)
    assert not ProgressPrinter("x", stream=buf, tty=False).lines  # quick work: silent
    q(Progress(1, 1, "done"))
    assert buf.getvalue() == ""


def test_usage_errors_are_nucleus_ai_errors():
    assert issubclass(UsageError, NucleusAIError)


@pytest.mark.parametrize(
    "argv, text",
    [
        (["export-zarr", "{img}", "--out", "{tmp}/x.zarr", "--pixel-size", "nan"], "--pixel-size nan"),
        (["export-zarr", "{img}", "--out", "{tmp}/x.zarr", "--pixel-size", "-1"], "--pixel-size -1"),
        (["export-zarr", "{img}", "--out", "{tmp}/x.zarr", "--unit", "mm"], "--unit mm"),
        (["export-zarr", "{img}", "--out", "{tmp}/x.zarr", "--name", "../up"], "--name ../up"),
        (["export-zarr", "{img}", "--out", "{tmp}/x.zarr", "--name", "a/b"], "--name a/b"),
        (["export-zarr", "{img}", "--out", "{tmp}/x.zarr", "--name", ".."], "--name .."),
        (["export-geojson", "{img}", "--out", "{tmp}/c.geojson", "--object-type", "polygon"],
         "--object-type polygon"),
    ],
)  # fmt: skip
def test_export_options_out_of_range_exit_2(capsys, tmp_path, smear, argv, text):
    argv = [a.format(img=smear, tmp=tmp_path) for a in argv]
    rc, _, err = _run(capsys, *argv)
    line = _one_line(err)
    assert rc == 2 and text in line and "must be" in line, line
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "c.geojson").exists()


def test_export_options_in_range_pass_the_schema():
    from argparse import Namespace

    from napari_nucleus_ai.cli._params import check_args

    args = Namespace(pixel_size="0.25", unit="nm", name="cells_v2.1", labels=None)
    check_args("export-zarr", args)
    assert args.pixel_size == 0.25 and args.unit == "nm" and args.name == "cells_v2.1"
    args = Namespace(object_type="annotation")
    check_args("export-geojson", args)
    assert args.object_type == "annotation"


def test_widget_options_are_the_schema_range():
    from napari_nucleus_ai.core.params import INT_WIDGET_MAX, UNBOUNDED, widget_options

    opts = widget_options(Param("od", float, 0, 5, low_open=True, step=0.005))
    assert opts == {"min": 0.001, "max": 5, "step": 0.005, "decimals": 3}
    opts = widget_options(Param("f", float, 0, 1, high_open=True, step=0.05))
    assert opts["min"] == 0 and opts["max"] == 0.99
    opts = widget_options(Param("--seed", int, 0, 2**32 - 1))
    assert opts["max"] == INT_WIDGET_MAX and opts["step"] == 1 and opts["decimals"] == 0
    assert widget_options(Param("x", float))["min"] == -UNBOUNDED
    px = Param("--pixel-size-um", float, high=1e4, optional=True, low=0, low_open=True, step=0.001)
    assert widget_options(px, none_value=0.0)["min"] == 0.0
    assert widget_options(Param("--tta", int, choices=(1, 2)))["choices"] == [1, 2]
    with pytest.raises(ValueError, match="not optional"):
        widget_options(Param("--epochs", int, 1), none_value=0)


def test_render_frames_checked_against_the_schema(capsys, tmp_path, locs):
    """``--frames`` ends are checked against the same entries as the dock's frame boxes."""
    rc, _, err = _run(capsys, "render", locs, "--out", tmp_path / "x.tif", "--frames=-3:5")
    line = _one_line(err)
    assert rc == 2 and "--frames FIRST -3" in line and "must be" in line, line
    assert not (tmp_path / "x.tif").exists()


def test_input_errors_pickle_with_their_file_and_problem():
    """Errors cross process boundaries (predict's workers, Dask) as the same one line."""
    import pickle

    from napari_nucleus_ai.core.errors import InputError, UsageError

    for err in (
        InputError("a.csv", "no x column"),
        InputError(None, "empty"),
        UsageError("--eps 0"),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert (back.path, back.problem) == (err.path, err.problem)
