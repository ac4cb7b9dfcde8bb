"""Training, prediction and cell classification end to end, on tiny data (seconds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from napari_nucleus_ai.classify.predict import predict_items  # noqa: E402
from napari_nucleus_ai.classify.train import train, train_gen  # noqa: E402
from napari_nucleus_ai.cli import main  # noqa: E402
from napari_nucleus_ai.core.errors import InputError  # noqa: E402
from napari_nucleus_ai.core.progress import EpochProgress, run_sync  # noqa: E402

TINY = {
    "epochs": 3,
    "crop_size": 24,
    "params": {"widths": [8, 16]},
    "batch_size": 16,
    "threads": 1,
    "tta": 2,
}


def write_storm_classes(root, per_class: int = 3) -> dict:
    """ThunderSTORM files of nuclei with 15 nm (``small``) and 45 nm (``large``) clutches."""
    from napari_nucleus_ai.localizations.thunderstorm import write_thunderstorm_csv
    from napari_nucleus_ai.samples.storm import simulate_nucleus

    sim = {"radius_nm": 1200.0, "n_localizations": 6000}
    for cls, size in (("small", 15.0), ("large", 45.0)):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            write_thunderstorm_csv(
                simulate_nucleus("default", seed=i, clutch_size_nm=size, **sim),
                root / cls / f"{i}.csv",
            )
    return sim


def blob(kind: int, seed: int, size: int = 40) -> np.ndarray:
    """A purple disc (0) or a blue square (1) on a pale background."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 225.0)
    yy, xx = np.mgrid[:size, :size] - size / 2 + rng.uniform(-2, 2, 2)[:, None, None]
    r = size * rng.uniform(0.18, 0.24)
    mask = yy**2 + xx**2 < r * r if kind == 0 else (abs(yy) < r) & (abs(xx) < r * 0.6)
    img[mask] = (150, 60, 160) if kind == 0 else (70, 70, 210)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def trained(crop_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "blobs.zip"
    progress = []
    res = train(crop_folder, out, on_progress=progress.append, seed=1, **TINY)
    return res, out, progress


def test_train_writes_a_complete_package(trained, crop_folder):
    res, out, progress = trained
    card = res.card
    assert out.is_file() and res.path == str(out)
    assert [c["name"] for c in card["classes"]] == ["disc", "square"]
    assert card["modality"] == "brightfield_rgb" and card["input"]["crop_size"] == 24
    assert card["input"]["unit"] == "px" and card["input"]["pixel_size"] == pytest.approx(40 / 24)
    prov = card["provenance"]
    assert prov["class_counts"] == {"disc": 10, "square": 10} and prov["seed"] == 1
    assert prov["n_train"] + prov["n_val"] == 20 and prov["n_val"] == 4
    assert 0 < card["calibration"]["temperature"] <= 20
    assert {
        "val_accuracy",
        "val_balanced_accuracy",
        "val_uncertainty_auroc",
        "val_confusion",
    } <= set(card["metrics"])
    epochs = [p for p in progress if isinstance(p, EpochProgress)]
    assert len(epochs) == 3 and {
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "val_balanced_accuracy",
    } <= set(epochs[-1].metrics)
    pred = predict_items(res.package, [blob(0, 999), blob(1, 998)])
    assert pred.predicted == ["disc", "square"]


def test_predict_cli_writes_the_documented_columns(trained, crop_folder, tmp_path, capsys):
    _, model, _ = trained
    paths = sorted(str(p) for p in crop_folder.glob("*/*.png"))
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), *paths, "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns[:5]) == ["path", "label", "uncertainty", "p_disc", "p_square"]
    assert df["path"].tolist() == paths
    truth = ["disc" if "/disc/" in p else "square" for p in paths]
    assert (df["predicted"] == truth).mean() >= 0.9
    np.testing.assert_allclose(df[["p_disc", "p_square"]].sum(1), 1, atol=1e-5)
    assert set(df["label"]) <= {"disc", "square", "unidentified"}
    # a threshold of ~0 sends every cell to a human
    assert main(["predict", str(model), *paths[:3], "--out", str(out), "--threshold", "1e-9"]) == 0
    assert set(pd.read_csv(out)["label"]) == {"unidentified"}


def test_same_seed_same_model(crop_folder):
    opts = dict(TINY, epochs=1, val_fraction=0.0)
    a = train(crop_folder, None, seed=3, **opts).package.modules[0].state_dict()
    b = train(crop_folder, None, seed=3, **opts).package.modules[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cancel_writes_nothing(crop_folder, tmp_path):
    gen = train_gen(crop_folder, tmp_path / "m", **TINY)
    for item in gen:
        if isinstance(item, EpochProgress):
            gen.close()  # what worker.quit() does
            break
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    "layout, match",
    [
        ({"a": 3}, "at least 2 class sub-folders"),
        ({"a": 3, "b": 0}, "class folder is empty"),
        ({"a": 3, "b": 1}, "at least 2 samples per class"),
    ],
)
def test_bad_training_folders_one_line(tmp_path, layout, match):
    from PIL import Image

    for name, n in layout.items():
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.fromarray(blob(0, i)).save(tmp_path / name / f"{i}.png")
    with pytest.raises(InputError, match=match) as e:
        run_sync(train_gen(tmp_path, None, **TINY))
    assert "\n" not in str(e.value)


def test_cli_errors_are_one_line(tmp_path, crop_folder, capsys):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    assert main(["train", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 1
    assert main(["train", str(crop_folder), "--out", str(tmp_path / "m"), "--arch", "nope"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 2 and "missing" in err[0] and "unknown architecture" in err[1]


def test_timm_backbone_absent_or_working(crop_folder, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "timm", None)
    assert (
        main(
            [
                "train",
                str(crop_folder),
                "--out",
                str(tmp_path / "m"),
                "--arch",
                "densenet121",
                "--epochs",
                "1",
            ]
        )
        == 1
    )
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "backbones" in err[0]


def test_device_fallback_is_reported(trained):
    res, _, _ = trained
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    notes = []
    pred = predict_items(res.package, [blob(0, 5)], device="cuda", notes=notes)
    assert pred.probs.shape == (1, 2) and "using the CPU" in notes[0]


def test_classify_cells_builds_table_and_images(trained):
    from napari_nucleus_ai.cells import measure_cells
    from napari_nucleus_ai.classify.cells import classify_cells

    res, _, _ = trained
    image = np.full((120, 200, 3), 225, np.uint8)
    labels = np.zeros((120, 200), np.int32)
    for i, (y, x, k) in enumerate([(30, 30, 0), (30, 110, 1), (85, 60, 0), (85, 160, 1)]):
        image[y - 20 : y + 20, x - 20 : x + 20] = blob(k, 50 + i)
        yy, xx = np.mgrid[:120, :200]
        labels[(yy - y) ** 2 + (xx - x) ** 2 < 12**2] = i + 5
    table = measure_cells(labels, image, scale=0.5, unit="um")
    out = classify_cells(res.package, image, labels, table, scale=0.5, unit="um", threshold=1.0)
    t = out.table
    assert t["label"].tolist() == [5, 6, 7, 8]
    assert t["predicted"].tolist() == ["disc", "square", "disc", "square"]
    assert {"p_disc", "p_square", "uncertainty", "entropy", "disagreement", "model", "area"} <= set(
        t.columns
    )
    assert out.class_image.dtype == np.uint8
    assert (
        out.class_image[30, 30] == 1
        and out.class_image[30, 110] == 2
        and out.class_image[0, 0] == 0
    )
    assert out.uncertainty_image[85, 60] == pytest.approx(t.loc[2, "uncertainty"])
    assert out.counts() == {"disc": 2, "square": 2, "unidentified": 0}


def test_classify_cli(trained, tmp_path):
    import tifffile

    res, model, _ = trained
    image = np.full((80, 80, 3), 225, np.uint8)
    image[20:60, 20:60] = blob(1, 7)
    labels = np.zeros((80, 80), np.uint16)
    labels[28:52, 28:52] = 3
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "lab.tif", labels)
    assert (
        main(
            [
                "classify",
                str(model),
                str(tmp_path / "img.tif"),
                "--labels",
                str(tmp_path / "lab.tif"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    assert cells["label"].tolist() == [3] and cells["predicted"].tolist() == ["square"]
    classes = tifffile.imread(tmp_path / "out" / "classes.tif")
    unc = tifffile.imread(tmp_path / "out" / "uncertainty.tif")
    assert classes.shape == labels.shape and classes[40, 40] in (2, 3) and classes[0, 0] == 0
    assert unc[40, 40] == pytest.approx(cells["uncertainty"][0], abs=1e-6)
    legend = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert legend["values"]["2"] == "square"


def test_storm_training_from_localization_files(tmp_path):
    """Nuclei as ThunderSTORM files train a patch model; N-STORM files are classified."""
    from napari_nucleus_ai.classify.predict import predict_paths
    from napari_nucleus_ai.localizations.nstorm import write_nstorm_txt
    from napari_nucleus_ai.samples.storm import simulate_nucleus

    sim = write_storm_classes(tmp_path / "train")
    res = train(
        tmp_path / "train",
        tmp_path / "storm",
        epochs=1,
        crop_size=32,
        patches=4,
        patches_per_epoch=2,
        params={"widths": [8, 16]},
        threads=1,
        tta=1,
    )
    card = res.card
    assert card["modality"] == "storm" and card["input"]["unit"] == "nm"
    assert card["input"]["storm"]["render_pixel_nm"] <= 20
    test = tmp_path / "n.txt"
    write_nstorm_txt(simulate_nucleus("default", seed=50, clutch_size_nm=45.0, **sim), test)
    df = predict_paths(tmp_path / "storm", [str(test)])
    assert df["path"].tolist() == [str(test)] and {"p_small", "p_large"} <= set(df.columns)
    with pytest.raises(InputError, match="20 nm or finer"):
        train(tmp_path / "train", None, render_pixel_nm=40, epochs=1)
    # a field: each nucleus' own localizations are found through the label image
    import pandas as pd

    from napari_nucleus_ai.classify.cells import classify_cells
    from napari_nucleus_ai.samples.storm import labels_from_outlines

    parts, nuclei = [], []
    for i, (cx, size) in enumerate(((2000.0, 15.0), (6000.0, 45.0))):
        df = simulate_nucleus(
            "default", seed=60 + i, clutch_size_nm=size, center_nm=(cx, 2000.0), **sim
        )
        parts.append(df)
        nuclei.append({"label": i + 1, "outline_nm": df.attrs["outline_nm"]})
    field = pd.concat(parts, ignore_index=True)
    labels = labels_from_outlines(nuclei, (200, 400), (20.0, 20.0), (10.0, 10.0))
    out = classify_cells(
        res.package,
        None,
        labels,
        scale=20.0,
        unit="nm",
        translate=(10.0, 10.0),
        localizations=field,
    )
    assert out.table["label"].tolist() == [1, 2] and out.class_image[100, 100] > 0
    with pytest.raises(InputError, match="too coarse"):
        classify_cells(res.package, np.zeros((20, 40)), labels[::10, ::10], scale=200.0, unit="nm")
