"""Importers on miniature copies of each public layout (real structure and naming)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import run_sync
from napari_nucleus_ai.datasets import import_dataset, kind_options
from napari_nucleus_ai.datasets.harmonise import load_vocabulary
from napari_nucleus_ai.datasets.matek import choose

RNG = np.random.default_rng(0)


def _rgba(n=40):
    img = RNG.integers(0, 255, (n, n, 4), dtype=np.uint8)
    img[..., 3] = 255
    return img


def _jpeg(path, n=36):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (n, n, 3), dtype=np.uint8)).save(path, quality=90)


def _run(*args, **kw):
    rep = run_sync(import_dataset(*args, **kw))
    if len(rep.classes) >= 2:  # what train reads: the same classes and counts
        from napari_nucleus_ai.classify.trainset import load_class_folders

        assert load_class_folders(rep.out).counts() == rep.classes
    return rep


# --- Matek AML-Cytomorphology_LMU -------------------------------------------------

# lines as in the real annotations.dat (TCIA), including UNC, nan and disagreement
MATEK_LINES = """\
BAS/BAS_0001.tiff BAS nan nan
BAS/BAS_0021.tiff BAS UNC UNC
BAS/BAS_0026.tiff BAS BAS BAS
BAS/BAS_0040.tiff BAS EOS EOS
EBO/EBO_0014.tiff EBO LYT EBO
EBO/EBO_0027.tiff EBO UNC EBO
EBO/EBO_0033.tiff EBO LYT LYT
EOS/EOS_0063.tiff EOS EOS MMZ
NGS/NGS_0001.tiff NGS nan nan
NGS/NGS_0002.tiff NGS nan nan
MYO/MYO_0001.tiff MYO nan nan
LYT/LYT_0001.tiff LYT nan nan
"""


@pytest.fixture
def matek(tmp_path):
    root = tmp_path / "AML-Cytomorphology_LMU"
    tree = root / "AML-Cytomorphology"
    for line in MATEK_LINES.splitlines():
        rel = line.split()[0]
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(tree / rel, _rgba())
    (root / "annotations.dat").write_text(MATEK_LINES)
    return root


def test_matek_original_labels_all_15_codes_known(matek, tmp_path):
    rep = _run("matek", matek, tmp_path / "out", labels="code")
    assert rep.classes == {"BAS": 4, "EBO": 3, "EOS": 1, "LYT": 1, "MYO": 1, "NGS": 2}
    files = pd.read_csv(tmp_path / "out" / "_files.csv", keep_default_na=False)
    assert len(files) == 12 and set(files["reannotation_1"].astype(str)) >= {"UNC", "nan", "LYT"}
    assert (tmp_path / "out" / "BAS" / "BAS_0021.tiff").is_file()
    man = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert man["licence"].startswith("CC BY") and man["notes"]["annotation_used"] == "original"
    assert man["classes"] == rep.classes and man["n_files"] == 12
    vocab = load_vocabulary()
    codes = {e.label for e in vocab.entries("matek")}
    assert codes == set(
        [
            "NGS",
            "LYT",
            "MYO",
            "MON",
            "EOS",
            "NGB",
            "BAS",
            "EBO",
            "PMO",
            "MYB",
            "MOB",
            "PMB",
            "KSC",
            "MMZ",
            "LYA",
        ]
    )
    assert all(e.description for e in vocab.entries("matek"))


@pytest.mark.parametrize(
    ("annotation", "expected", "n_skipped"),
    [
        # first re-annotation where made: BAS_0040 -> EOS, EBO_0014/0033 -> LYT; UNC skipped x2
        ("first", {"BAS": 2, "EOS": 2, "LYT": 3, "EBO": 0, "MYO": 1, "NGS": 2}, 2),
        ("second", {"BAS": 2, "EOS": 1, "MMZ": 1, "EBO": 2, "LYT": 2, "MYO": 1, "NGS": 2}, 1),
        ("agreed", {"BAS": 2, "NGS": 2, "MYO": 1, "LYT": 1}, 6),
        ("majority", {"BAS": 2, "EBO": 2, "EOS": 2, "LYT": 2, "MYO": 1, "NGS": 2}, 1),
    ],
)
def test_matek_choice_of_annotation(matek, tmp_path, annotation, expected, n_skipped):
    rep = _run("matek", matek, tmp_path / "o", labels="code", annotation=annotation)
    assert rep.classes == {k: v for k, v in expected.items() if v}
    assert len(rep.skipped) == n_skipped
    assert rep.manifest["options"]["annotation"] == annotation


def test_matek_choose_rules():
    assert choose("EOS", "EOS", "MMZ", "majority") == ("EOS", "")
    assert choose("BAS", "UNC", "UNC", "majority")[0] is None
    assert choose("BAS", "nan", "nan", "agreed") == ("BAS", "")
    assert choose("EBO", "LYT", "EBO", "agreed")[0] is None


def test_matek_native_and_common_names(matek, tmp_path):
    rep = _run("matek", matek, tmp_path / "n")
    assert "neutrophil segmented" in rep.classes and "myeloblast" in rep.classes
    rep = _run("matek", matek, tmp_path / "c", labels="common")
    assert rep.classes["neutrophil"] == 2 and rep.classes["blast"] == 1


def test_matek_malformed(matek, tmp_path):
    ann = matek / "annotations.dat"
    tree = matek / "AML-Cytomorphology"
    ann.write_text(
        MATEK_LINES
        + "XYZ/XYZ_0001.tiff XYZ nan nan\n"  # unknown class code
        + "NGS/NGS_0099.tiff NGS nan nan\n"  # listed, file missing
        + "NGS/NGS_0003.tiff NGS\n"  # truncated line
    )
    (tree / "XYZ").mkdir()
    tifffile.imwrite(tree / "XYZ" / "XYZ_0001.tiff", _rgba())
    (tree / "NGS" / "NGS_0002.tiff").write_bytes(b"II*\x00garbage")  # unreadable
    tifffile.imwrite(tree / "NGS" / "NGS_0500.tiff", _rgba())  # not annotated
    rep = _run("matek", matek, tmp_path / "m", labels="code")
    cats = {s.category for s in rep.skipped}
    assert cats == {
        "unknown class",
        "missing file",
        "unreadable",
        "bad annotation line",
        "not annotated",
    }
    assert rep.classes["NGS"] == 1
    skipped = pd.read_csv(tmp_path / "m" / "_skipped.csv")
    assert len(skipped) == 5 and skipped["detail"].str.contains("XYZ").any()
    assert "skipped 5" in rep.summary()
    with pytest.raises(InputError, match="XYZ|bad annotation"):
        _run("matek", matek, tmp_path / "s", strict=True)
    assert not (tmp_path / "s").exists()


def test_matek_missing_annotation_file(matek, tmp_path):
    (matek / "annotations.dat").unlink()
    with pytest.raises(InputError, match="annotations.dat"):
        _run("matek", matek, tmp_path / "x")
    assert not (tmp_path / "x").exists()


# --- PBC ----------------------------------------------------------------------------


@pytest.fixture
def pbc(tmp_path):
    root = tmp_path / "pbc" / "PBC_dataset_normal_DIB"
    names = {
        "basophil": ["BA_100102.jpg", "BA_47.jpg"],
        "ig": ["MMY_1.jpg", "MY_2.jpg", "PMY_3.jpg", "IG_4.jpg"],
        "neutrophil": ["SNE_5.jpg", "BNE_6.jpg", "NEUTROPHIL_7.jpg"],
        "monocyte": ["MO_8.jpg", "LY_9.jpg"],  # LY_ here is a misplaced lymphocyte
        "platelet": ["PLATELET_10.jpg"],
    }
    for folder, files in names.items():
        for f in files:
            _jpeg(root / folder / f)
    return tmp_path / "pbc"


def test_pbc_folders_prefix_check_and_fine(pbc, tmp_path):
    rep = _run("pbc", pbc, tmp_path / "p")
    assert rep.classes == {
        "basophil": 2,
        "immature granulocyte": 4,
        "neutrophil": 3,
        "monocyte": 1,
        "platelet": 1,
    }
    assert [s.category for s in rep.skipped] == ["misplaced file"]
    rep = _run("pbc", pbc, tmp_path / "f", fine=True)
    assert rep.classes["neutrophil segmented"] == 1 and rep.classes["metamyelocyte"] == 1
    assert rep.classes["lymphocyte"] == 1  # by prefix, the misplaced file is a lymphocyte
    files = pd.read_csv(tmp_path / "f" / "_files.csv")
    assert set(files["prefix"]) >= {"SNE", "BNE", "MMY", "PMY"}


# --- BloodMNIST ---------------------------------------------------------------------


def _bloodmnist(path, n=(16, 4, 6), side=28):
    arrays = {}
    for split, k in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{split}_images"] = RNG.integers(0, 255, (k, side, side, 3), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(k) % 8).reshape(-1, 1).astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return arrays


def test_bloodmnist_npz(tmp_path):
    arrays = _bloodmnist(tmp_path / "bloodmnist.npz")
    rep = _run("bloodmnist", tmp_path, tmp_path / "b")
    assert rep.n_files == 26 and rep.classes["basophil"] == 4 and rep.classes["platelet"] == 2
    rep = _run("bloodmnist", tmp_path / "bloodmnist.npz", tmp_path / "t", split="test")
    assert rep.n_files == 6
    files = pd.read_csv(tmp_path / "t" / "_files.csv")
    first = files.iloc[0]
    img = np.asarray(Image.open(tmp_path / "t" / first["file"]))
    assert np.array_equal(img, arrays["test_images"][int(first["index"])])


def test_bloodmnist_malformed(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 4, 4)))
    with pytest.raises(InputError, match="train_images"):
        _run("bloodmnist", tmp_path / "bad.npz", tmp_path / "o")
    np.savez(
        tmp_path / "obj.npz",
        train_images=np.array([None, 1], dtype=object),
        train_labels=np.zeros(2),
    )
    with pytest.raises(InputError):  # object arrays would need pickle: refused
        _run("bloodmnist", tmp_path / "obj.npz", tmp_path / "o")
    arr = {
        "train_images": np.zeros((3, 8, 8, 3), np.uint8),
        "train_labels": np.array([[0], [9], [1]]),
    }
    np.savez(tmp_path / "nine.npz", **arr)
    rep = _run("bloodmnist", tmp_path / "nine.npz", tmp_path / "n")
    assert rep.n_files == 2 and rep.skipped[0].category == "unknown class"


# --- Raabin-WBC ---------------------------------------------------------------------


def test_raabin_splits_and_unknown_folder(tmp_path):
    src = tmp_path / "Raabin-WBC"
    for split, classes in {
        "Train": ["Basophil", "Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil"],
        "TestA": ["Lymphocyte", "Neutrophil"],
    }.items():
        for c in classes:
            for k in range(2):
                _jpeg(src / split / c / f"{k:05d}.jpg")
    _jpeg(src / "Train" / "Artifact" / "x.jpg")
    (src / "Train" / "Basophil" / "notes.txt").write_text("x")
    rep = _run("raabin", src, tmp_path / "r")
    assert rep.classes == {
        "basophil": 2,
        "eosinophil": 2,
        "lymphocyte": 4,
        "monocyte": 2,
        "neutrophil": 4,
    }
    assert {s.category for s in rep.skipped} == {"unknown class", "not an image"}
    # same file names in two splits do not overwrite each other
    assert len(list((tmp_path / "r" / "lymphocyte").iterdir())) == 4
    rep = _run("raabin", src, tmp_path / "ta", split="testa")
    assert rep.classes == {"lymphocyte": 2, "neutrophil": 2}


# --- Pascal VOC with a per-field labels file (BCCD labels.csv) ----------------------


def _voc(root, stem, boxes, size=(120, 160)):
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
        root / "JPEGImages" / f"{stem}.jpg"
    )
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
        f"<ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in boxes
    )
    (root / "Annotations" / f"{stem}.xml").write_text(
        f"<annotation><folder>JPEGImages</folder><filename>{stem}.jpg</filename>"
        f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>"
        f"{objs}</annotation>"
    )


def test_voc_crops_sizes_and_labels_csv(tmp_path):
    src = tmp_path / "BCCD"
    _voc(src, "BloodImage_00000", [("WBC", 40, 30, 90, 80), ("RBC", 0, 0, 20, 20)])
    _voc(src, "BloodImage_00001", [("WBC", 100, 60, 160, 120), ("Platelets", 5, 5, 15, 15)])
    _voc(src, "BloodImage_00002", [("WBC", 10, 10, 50, 50), ("WBC", 60, 60, 100, 100)])
    rep = _run("voc", src, tmp_path / "a", size=64)
    assert rep.classes == {"white cell": 4}
    img = np.asarray(Image.open(next((tmp_path / "a" / "white cell").iterdir())))
    assert img.shape == (64, 64, 3)
    rep = _run("voc", src, tmp_path / "b", objects="WBC,RBC,Platelets", size=32)
    assert rep.classes == {"platelet": 1, "red cell": 1, "white cell": 4}
    (tmp_path / "labels.csv").write_text(
        ',Image,Category\n0,0,NEUTROPHIL\n1,1,"NEUTROPHIL, LYMPHOCYTE"\n2,2,MONOCYTE\n'
    )
    rep = _run("bccd", src, tmp_path / "c", labels_csv=str(tmp_path / "labels.csv"), size=48)
    assert rep.classes == {"monocyte": 2, "neutrophil": 1}
    assert [s.category for s in rep.skipped] == ["unlabelled field"]


def test_voc_fit_box_centres_the_box(tmp_path):
    src = tmp_path / "voc"
    _voc(src, "f", [("WBC", 20, 20, 100, 100)])
    rep = _run("voc", src, tmp_path / "o", size=32, fit_box=True)
    assert rep.n_files == 1
    assert np.asarray(Image.open(next((tmp_path / "o" / "white cell").iterdir()))).shape == (
        32,
        32,
        3,
    )


# --- general behaviour --------------------------------------------------------------


def test_out_folder_is_protected_and_replaced_atomically(pbc, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not empty"):
        _run("pbc", pbc, out)
    with pytest.raises(InputError, match="not a folder made by import-dataset"):
        _run("pbc", pbc, out, overwrite=True)
    (out / "mine.txt").unlink()
    _run("pbc", pbc, out)
    rep = _run("pbc", pbc, out, overwrite=True, labels="common")
    assert (
        rep.n_files == 11 and json.loads((out / "_manifest.json").read_text())["labels"] == "common"
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data.")]


def test_png_format_and_links(pbc, tmp_path):
    rep = _run("pbc", pbc, tmp_path / "png", fmt="png")
    assert all(p.suffix == ".png" for p in (tmp_path / "png" / "basophil").iterdir())
    rep = _run("pbc", pbc, tmp_path / "sym", link="symlink")
    f = next((tmp_path / "sym" / "basophil").iterdir())
    assert f.is_symlink() and rep.n_files == 11


def test_nothing_usable_is_an_error(tmp_path):
    (tmp_path / "src" / "unknowncells").mkdir(parents=True)
    _jpeg(tmp_path / "src" / "unknowncells" / "a.jpg")
    with pytest.raises(InputError, match="no usable"):
        _run("raabin", tmp_path / "src", tmp_path / "o")
    with pytest.raises(InputError, match="no such folder"):
        _run("raabin", tmp_path / "does-not-exist", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no class folders"):
        _run("raabin", tmp_path / "empty", tmp_path / "o")
    with pytest.raises(InputError, match="inside SOURCE"):
        _run("raabin", tmp_path / "src", tmp_path / "src" / "out")


def test_kind_options_are_checked(pbc, tmp_path):
    assert "annotation" in kind_options("matek") and "size" in kind_options("voc")
    with pytest.raises(InputError, match="does not take"):
        _run("pbc", pbc, tmp_path / "o", annotation="first")


def test_score_across_datasets_maps_both_sides():
    from napari_nucleus_ai.datasets.harmonise import score_across_datasets

    preds = pd.DataFrame(
        {
            # a PBC folder scored by a Matek-named model
            "path": [
                "d/neutrophil/SNE_1.jpg",
                "d/neutrophil/BNE_2.jpg",
                "d/ig/MY_3.jpg",
                "d/monocyte/MO_4.jpg",
                "d/monocyte/MO_5.jpg",
            ],
            "label": [
                "neutrophil segmented",
                "neutrophil band",
                "metamyelocyte",
                "lymphocyte",
                "unidentified",
            ],
        }
    )
    s = score_across_datasets(preds)
    assert s["n"] == 4 and s["n_unmapped"] == 1
    assert s["accuracy"] == 0.75 and s["balanced_accuracy"] == pytest.approx(2 / 3)
    assert s["confusion"]["monocyte"] == {"lymphocyte": 1}


def test_generic_class_folders(tmp_path):
    src = tmp_path / "kaggle"
    for c, n in {"NEUTROPHIL": 3, "monoblast": 2, "my odd cells": 2}.items():
        for k in range(n):
            _jpeg(src / "TRAIN" / c / f"{k}.jpg")
    rep = _run("folders", src, tmp_path / "n")
    assert rep.classes == {"NEUTROPHIL": 3, "monoblast": 2, "my odd cells": 2}
    rep = _run("folders", src, tmp_path / "c", labels="common")
    assert rep.classes == {"neutrophil": 3, "blast": 2}
    assert rep.skipped[0].category == "unknown class"
