"""Importers on the real shared data (PBC, BCCD, STORM files), the CLI, and train's reader."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_nucleus_ai.cli import main
from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import run_sync
from napari_nucleus_ai.datasets import import_dataset
from napari_nucleus_ai.datasets.harmonise import load_vocabulary, safe_class_name


def _run(*args, **kw):
    rep = run_sync(import_dataset(*args, **kw))
    if len(rep.classes) >= 2:  # what train reads: the same classes and counts
        from napari_nucleus_ai.classify.trainset import load_class_folders

        assert load_class_folders(rep.out).counts() == rep.classes
    return rep


def test_real_pbc(shared_data, tmp_path):
    rep = _run("pbc", shared_data / "smear" / "pbc", tmp_path / "pbc")
    assert rep.classes == {
        c: 12
        for c in [
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocyte",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ]
    }
    assert not rep.skipped
    # the crops are copied byte for byte
    src = shared_data / "smear" / "pbc" / "basophil" / "BA_114542.png"
    assert (tmp_path / "pbc" / "basophil" / "BA_114542.png").read_bytes() == src.read_bytes()
    rep = _run("pbc", shared_data / "smear" / "pbc", tmp_path / "fine", fine=True)
    assert rep.classes["neutrophil segmented"] + rep.classes["neutrophil band"] == 12
    ig = sum(rep.classes.get(c, 0) for c in ("promyelocyte", "myelocyte", "metamyelocyte"))
    assert ig == 12


def test_real_bccd_white_cell_crops(shared_data, tmp_path):
    bccd = shared_data / "smear" / "bccd"
    n_boxes = sum(
        len(re.findall(r"<name>\s*WBC\s*</name>", x.read_text()))
        for x in (bccd / "Annotations").glob("*.xml")
    )
    extra = pd.read_csv(bccd / "wbc_extra.csv")
    n_extra = int((extra["kind"] == "wbc").sum())
    rep = _run("bccd", bccd, tmp_path / "wbc", size=128, extra_boxes=str(bccd / "wbc_extra.csv"))
    assert rep.n_files + len(rep.skipped) == n_boxes + n_extra
    assert rep.n_files >= 0.95 * (n_boxes + n_extra)
    files = pd.read_csv(tmp_path / "wbc" / "_files.csv")
    row = files.iloc[0]
    crop = np.asarray(Image.open(tmp_path / "wbc" / row["file"]))
    assert crop.shape == (128, 128, 3)
    # the crop is the field's pixels around the box centre
    field = np.asarray(Image.open(row["image"]))
    x0, y0, x1, y1 = (float(v) for v in row["box"].split(","))
    cy, cx = int(round((y0 + y1) / 2 - 64)), int(round((x0 + x1) / 2 - 64))
    if cy >= 0 and cy + 128 <= field.shape[0] and cx >= 0 and cx + 128 <= field.shape[1]:
        assert np.array_equal(crop, field[cy : cy + 128, cx : cx + 128])


def _storm_reader_available() -> bool:
    try:
        from napari_nucleus_ai.localizations import read_localizations  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _storm_reader_available(), reason="localization readers absent")
def test_real_storm_folder_with_labels(shared_data, tmp_path):
    src = tmp_path / "nuclei"
    src.mkdir()
    real = sorted((shared_data / "smlm" / "colicoords").glob("0*_storm.csv"))
    for p in real:
        shutil.copy(p, src / p.name)
    (src / "broken.csv").write_text("this is, not\na localization table\n")
    (src / "forgotten.csv").write_text("x\n")
    (src / "labels.csv").write_text(
        "file,label\n01_storm.csv,somatic\n02_storm.csv,somatic\n03_storm.csv,hiPSC\n"
        "04_storm.csv,hiPSC\nbroken.csv,hiPSC\nmissing.csv,somatic\n"
    )
    rep = _run("localizations", src, tmp_path / "data")
    assert rep.classes == {"hiPSC": 2, "somatic": 2}
    cats = sorted(s.category for s in rep.skipped)
    assert cats == ["missing file", "unlabelled", "unreadable"]
    assert (
        json.loads((tmp_path / "data" / "_manifest.json").read_text())["modality"]
        == "localizations"
    )
    # Picasso HDF5 + YAML: rewritten as self-contained ThunderSTORM CSVs in nm (no side-files)
    for f in ("raw_movie_locs", "testdata_locs"):
        for suffix in (".hdf5", ".yaml"):
            shutil.copy(shared_data / "smlm" / "picasso" / f"{f}{suffix}", src / f"{f}{suffix}")
    with open(src / "labels.csv", "a") as fh:
        fh.write("raw_movie_locs.hdf5,somatic\ntestdata_locs.hdf5,hiPSC\n")
    rep = _run("localizations", src, tmp_path / "data2", overwrite=False)
    assert rep.classes == {"hiPSC": 3, "somatic": 3}
    assert sorted(p.name for p in (tmp_path / "data2" / "somatic").iterdir()) == [
        "01_storm.csv", "02_storm.csv", "raw_movie_locs.csv",
    ]  # fmt: skip
    from napari_nucleus_ai.localizations import read_localizations

    direct = read_localizations(src / "raw_movie_locs.hdf5").data
    converted = read_localizations(tmp_path / "data2" / "somatic" / "raw_movie_locs.csv").data
    assert len(converted) == len(direct)
    assert np.allclose(converted["x_nm"], direct["x_nm"], atol=0.01)  # nm, not camera pixels
    rep = _run("localizations", src, tmp_path / "data3", fmt="csv")
    assert all(p.suffix == ".csv" for p in (tmp_path / "data3" / "hiPSC").iterdir())
    with pytest.raises(InputError, match="labels.csv"):
        (src / "labels.csv").unlink()
        _run("localizations", src, tmp_path / "x")


def test_cli_import_and_errors(shared_data, tmp_path, capsys):
    out = tmp_path / "pbc"
    assert (
        main(
            [
                "import-dataset",
                "pbc",
                str(shared_data / "smear" / "pbc"),
                "--out",
                str(out),
                "--labels",
                "common",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "96 files in 8 classes" in text and "immature granulocyte  12" in text
    # a second run refuses to overwrite, one line, exit 1
    assert (
        main(["import-dataset", "pbc", str(shared_data / "smear" / "pbc"), "--out", str(out)]) == 1
    )
    err = capsys.readouterr().err.strip()
    assert "not empty" in err and "\n" not in err and "Traceback" not in err
    assert (
        main(["import-dataset", "pbc", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 1
    )
    assert "no such folder" in capsys.readouterr().err
    assert (
        main(
            [
                "import-dataset",
                "pbc",
                str(shared_data / "smear" / "pbc"),
                "--out",
                str(tmp_path / "o"),
                "--size",
                "64",
            ]
        )
        == 1
    )
    assert "--size does not apply to pbc" in capsys.readouterr().err
    assert main(["import-dataset", "matek", "--show-vocabulary"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("dataset,label,name,common,description") and "Smudge cell" in shown


def test_vocabulary_is_user_editable(tmp_path, shared_data):
    vocab = load_vocabulary()
    # the cross-data-set mapping: Matek codes, PBC folders and native names meet
    assert vocab.to_common("NGS") == vocab.to_common("neutrophil band") == "neutrophil"
    assert vocab.to_common("MYO") == vocab.to_common("monoblast") == "blast"
    assert vocab.to_common("ig") == vocab.to_common("metamyelocyte") == "immature granulocyte"
    assert vocab.to_common("KSC") == "artefact" and vocab.to_common("no such cell") is None
    assert set(vocab.common_classes()) >= {
        "basophil",
        "blast",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "erythroblast",
        "eosinophil",
        "immature granulocyte",
        "platelet",
        "artefact",
    }
    mine = tmp_path / "mine.csv"
    mine.write_text(
        "dataset,label,name,common\npbc,immature granulocyte,granulocyte precursor,immature granulocyte\n"
    )
    rep = _run("pbc", shared_data / "smear" / "pbc", tmp_path / "o", vocabulary=mine)
    assert rep.classes["granulocyte precursor"] == 12
    assert str(mine) in rep.manifest["vocabulary"]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="missing"):
        load_vocabulary(tmp_path / "bad.csv")
    assert safe_class_name("a/b: c") == "a-b- c"


def test_train_cli_accepts_an_imported_folder(shared_data, tmp_path):
    """``train`` runs on what ``import-dataset`` writes (a tiny run: 2 epochs, 32 px, on
    a PBC tree of 3 classes x 6 real crops, so it stays quick)."""
    pytest.importorskip("napari_nucleus_ai.cli.train")
    src = tmp_path / "PBC_dataset_normal_DIB"
    for c in ("basophil", "lymphocyte", "platelet"):
        (src / c).mkdir(parents=True)
        for f in sorted((shared_data / "smear" / "pbc" / c).iterdir())[:6]:
            shutil.copy(f, src / c / f.name)
    data = tmp_path / "pbc"
    assert main(["import-dataset", "pbc", str(src), "--out", str(data)]) == 0
    trainset = pytest.importorskip("napari_nucleus_ai.classify.trainset")
    ts = trainset.load_class_folders(data)
    assert ts.counts() == json.loads((data / "_manifest.json").read_text())["classes"]
    model = tmp_path / "model"
    code = main(
        [
            "train",
            str(data),
            "--out",
            str(model),
            "--epochs",
            "2",
            "--crop-size",
            "32",
            "--threads",
            "1",
            "--quiet",
            "--tta",
            "1",
        ]
    )
    assert code == 0 and model.exists()
    from napari_nucleus_ai.models.package import load_model

    names = load_model(model, cache=False).classes
    assert sorted(names) == sorted(json.loads((data / "_manifest.json").read_text())["classes"])
    # predict reads the folder as it is (the _manifest/_files/_skipped tables are not inputs)
    preds = tmp_path / "preds.csv"
    assert main(["predict", str(model), str(data), "--out", str(preds), "--tta", "1"]) == 0
    from napari_nucleus_ai.datasets.harmonise import score_across_datasets

    score = score_across_datasets(preds)
    assert score["n"] + score["n_unmapped"] == 18 and 0 <= score["balanced_accuracy"] <= 1
