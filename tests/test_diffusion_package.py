"""The diffusion kind inside model packages: train / predict / classify CLI, loading, refusal."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from _diffusion_data import toy_crops  # noqa: E402


def _write_class_folders(root, per_class=4, seed=0):
    import imageio.v3 as iio

    x, y, names = toy_crops(per_class=per_class, seed=seed)
    for i, (img, c) in enumerate(zip(x, y, strict=True)):
        d = root / names[c]
        d.mkdir(parents=True, exist_ok=True)
        rgb = np.clip((np.moveaxis(img, 0, -1) + 1) * 127.5, 0, 255).astype(np.uint8)
        iio.imwrite(
            d / f"cell{i:03d}.png", np.kron(rgb, np.ones((2, 2, 1), np.uint8))
        )  # 32 px files
    return names


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from napari_nucleus_ai.classify.train import train

    root = tmp_path_factory.mktemp("diffdata")
    names = _write_class_folders(root / "data", per_class=6)
    out = root / "model.zip"
    res = train(
        root / "data",
        out,
        arch="diffusion",
        crop_size=16,
        val_fraction=0.34,
        seed=0,
        params={"base": 8, "mults": [1, 2], "dropout": 0.0},
        kind_options={"steps": 120, "lr": 3e-3},
    )
    return root, out, names, res


def test_train_writes_a_diffusion_package_with_calibration(trained):
    from napari_nucleus_ai.models.package import clear_cache, load_model

    root, out, names, res = trained
    with zipfile.ZipFile(out) as zf:
        card = json.loads(zf.read("card.json"))
    assert card["kind"] == "diffusion" and card["architecture"]["name"] == "diffusion"
    assert card["input"]["crop_size"] == 16
    cal = card["diffusion"]["calibration"]
    assert cal["tau"] > 0 and len(cal["ref"]) == card["diffusion"]["protocol"]["max_trials"]
    assert "val_balanced_accuracy" in card["metrics"], card["metrics"]
    clear_cache()
    pkg = load_model(out)
    assert pkg.classes == sorted(names)


def test_predict_csv_has_evaluations_anomaly_and_confidence(trained, tmp_path):
    from napari_nucleus_ai.cli import main

    root, out, names, _ = trained
    test_dir = tmp_path / "test"
    _write_class_folders(test_dir, per_class=3, seed=7)
    csv = tmp_path / "preds.csv"
    assert main(["predict", str(out), str(test_dir), "--out", str(csv), "--device", "cpu"]) == 0
    df = pd.read_csv(csv)
    for col in ("path", "label", "uncertainty", "evaluations", "anomaly", "confidence", "trials"):
        assert col in df.columns, col
    assert set(f"p_{c}" for c in names) <= set(df.columns)
    card = json.loads(zipfile.ZipFile(out).read("card.json"))
    k = card["diffusion"]["protocol"]["max_trials"]
    assert (df["evaluations"] >= 1).all() and (df["evaluations"] <= k * len(names)).all()
    np.testing.assert_allclose(df["uncertainty"], 1 - df["confidence"], atol=1e-6)
    low = df["confidence"] < card["uncertainty"]["threshold"]
    assert (df.loc[low, "label"] == "unidentified").all()
    assert (df.loc[~low, "label"] == df.loc[~low, "predicted"]).all()
    truth = [p.split("/")[-2] for p in df["path"]]
    assert (df["predicted"] == truth).mean() >= 0.6


def test_cli_train_arch_diffusion(tmp_path):
    from napari_nucleus_ai.cli import main

    _write_class_folders(tmp_path / "data", per_class=3)
    out = tmp_path / "m"
    code = main(
        [
            "train",
            str(tmp_path / "data"),
            "--out",
            str(out),
            "--arch",
            "diffusion",
            "--crop-size",
            "16",
            "--epochs",
            "1",
            "--val-fraction",
            "0",
            "--quiet",
        ]
    )
    assert code == 0
    card = json.loads((out / "card.json").read_text())
    assert card["kind"] == "diffusion" and card["provenance"]["n_train"] == 9


def test_corrupt_or_inconsistent_diffusion_packages_are_refused(trained, tmp_path):
    from napari_nucleus_ai.core.errors import InputError
    from napari_nucleus_ai.models.package import clear_cache, load_model

    _, out, _, _ = trained
    with zipfile.ZipFile(out) as zf:
        card = json.loads(zf.read("card.json"))
        weights = zf.read("weights.safetensors")
    cases = {
        "mults": lambda c: c["architecture"]["params"].update(mults=[1, 2, 2, 2, 2, 2, 2]),
        "base": lambda c: c["architecture"]["params"].update(base=9),  # weights no longer fit
        "ref": lambda c: c["diffusion"]["calibration"].update(ref=[1.0]),
        "tlo": lambda c: c["diffusion"]["protocol"].update(t_lo=0.9, t_hi=0.1),
        "proposer shape": lambda c: c["diffusion"]["proposer"].update(bias=[0.0]),
        "proposer nan": lambda c: c["diffusion"]["proposer"]["weight"][0].__setitem__(0, "x"),
        "proposer top": lambda c: c["diffusion"]["proposer"].update(top=0),
        "proposer prior": lambda c: c["diffusion"]["proposer"].update(prior="yes"),
    }
    for name, edit in cases.items():
        bad = json.loads(json.dumps(card))
        edit(bad)
        d = tmp_path / name
        d.mkdir()
        (d / "card.json").write_text(json.dumps(bad))
        (d / "weights.safetensors").write_bytes(weights)
        clear_cache()
        with pytest.raises(InputError) as err:
            load_model(d)
        assert "\n" not in str(err.value) and str(d) in str(err.value), name


def test_cli_generate_writes_a_grid(trained, tmp_path):
    import imageio.v3 as iio

    from napari_nucleus_ai.cli import main

    _, out, names, _ = trained
    png = tmp_path / "grid.png"
    args = ["generate", str(out), "--class", names[0], "-n", "4", "--steps", "4", "--device", "cpu"]
    assert main(args + ["--out", str(png)]) == 0
    assert iio.imread(png).shape == (2 * 18 + 2, 2 * 18 + 2, 3)
    assert main(["generate", str(out), "--class", "nope", "--out", str(tmp_path / "x.png")]) == 1
    assert not (tmp_path / "x.png").exists()


def test_classify_cells_carries_anomaly_and_evaluations(tmp_path):
    from _diffusion_data import tiny_package, toy_field
    from napari_nucleus_ai.classify.cells import classify_cells_gen
    from napari_nucleus_ai.core.progress import run_sync

    pkg = tiny_package(tmp_path / "tiny")
    img, labels, y = toy_field()
    res = run_sync(classify_cells_gen(pkg, img, labels, device="cpu"))
    table = res.table
    assert {"class", "anomaly", "evaluations", "confidence", "uncertainty"} <= set(table.columns)
    assert len(table) == 3 and (table["evaluations"] > 0).all()
