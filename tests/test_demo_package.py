"""The demo's shipped models and real samples: present, small, labelled, never trained at demo time."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "napari_nucleus_ai"


def _script():
    spec = importlib.util.spec_from_file_location(
        "train_demo_models", ROOT / "scripts" / "train_demo_models.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_models_are_small_and_say_what_they_are():
    from napari_nucleus_ai.classify.demo_models import SHIPPED_MODELS, shipped_path
    from napari_nucleus_ai.models.package import read_package

    total = 0
    for name in SHIPPED_MODELS:
        path = shipped_path(name)
        assert path.is_file(), f"{path} missing: run scripts/train_demo_models.py --write"
        total += path.stat().st_size
        card = read_package(path)[0]
        assert "demonstration" in card["intended_use"].lower()
        assert "simulated" in card["training_data"]
        assert card["demo_model"] == name
        assert card["metrics"]["val_balanced_accuracy"] >= 0.8
        assert card["provenance"]["seed"] == 0
    assert total < 5 * 2**20  # a few MB in all


def test_demo_models_load_without_training(tmp_path, monkeypatch):
    """With an empty cache, the demo's three models come from the package, never training."""
    from napari_nucleus_ai.classify import demo_models
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.infection import score

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_CACHE_DIR", str(tmp_path / "cache"))

    def no_training(*a, **k):
        raise AssertionError("the demo trained a model")

    monkeypatch.setattr(demo_models, "build_demo_model_gen", no_training)
    monkeypatch.setattr(score, "train_infection_model", no_training)
    for name in demo_models.DEMO_MODELS:
        package = run_sync(demo_models.resolve_model_gen(demo_models.DEMO_PREFIX + name))
        assert package.path == str(demo_models.shipped_path(name))
    infection = run_sync(score.ensure_demo_model())
    assert "infected" in infection.classes
    assert not (tmp_path / "cache" / "models").exists()


def test_cache_stays_for_models_without_a_shipped_file(tmp_path, monkeypatch):
    from napari_nucleus_ai.classify import demo_models

    monkeypatch.setenv("NAPARI_NUCLEUS_AI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(demo_models, "SHIPPED_DIR", tmp_path / "none")
    assert demo_models.model_path("smear-wbc") == demo_models.cache_path("smear-wbc")
    assert demo_models.cache_path("smear-wbc").parent == tmp_path / "models"


def test_check_compares_data_and_metrics():
    compare = _script().compare
    card = {
        "provenance": {"data_digest": "a", "class_counts": {"x": 3}, "n_train": 5, "n_val": 2},
        "metrics": {"val_balanced_accuracy": 0.9, "val_recall": {"x": 1.0}},
    }
    assert compare(card, card, 0.01) == []
    other = {**card, "metrics": {"val_balanced_accuracy": 0.7, "val_recall": {"x": 1.0}}}
    assert compare(card, other, 0.05) == ["metrics.val_balanced_accuracy: shipped 0.9, now 0.7"]
    moved = {**card, "provenance": {**card["provenance"], "data_digest": "b"}}
    assert "provenance.data_digest" in compare(card, moved, 1.0)[0]


def test_real_samples_are_small_licensed_and_in_physical_units():
    from napari_nucleus_ai.samples.real import (
        BCCD_FIELD,
        COLICOORDS_STORM,
        DATA_DIR,
        bccd_smear_sample,
        colicoords_storm_sample,
    )

    assert BCCD_FIELD.stat().st_size + COLICOORDS_STORM.stat().st_size < 1 * 2**20
    sources = (DATA_DIR / "SOURCES.md").read_text()
    for name in (BCCD_FIELD.name, COLICOORDS_STORM.name, "MIT"):
        assert name in sources
    assert {p.name for p in (DATA_DIR / "LICENSES").iterdir()} == {
        "BCCD-MIT.txt",
        "ColiCoords-MIT.txt",
    }
    (image, kw, kind), *_ = bccd_smear_sample()
    assert kind == "image" and image.shape == (480, 640, 3)
    assert kw["units"] == ("um", "um") and kw["scale"] == (0.08, 0.08)
    (render, kw, kind), *_ = colicoords_storm_sample()
    assert kind == "image" and kw["units"] == "nm" and kw["scale"] == (10.0, 10.0)
    assert kw["metadata"]["localizations"] is not None and render.sum() > 0


def test_manifest_offers_the_real_samples():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(PKG / "napari.yaml")
    keys = {s.key for s in pm.contributions.sample_data}
    assert {"bccd_smear", "colicoords_storm"} <= keys


@pytest.mark.slow
def test_wheel_carries_models_and_samples_and_stays_small(tmp_path):
    """Built from the working tree: the shipped files are package data and the wheel is small."""
    tree = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", tree / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(tree)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("napari_nucleus_ai-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for need in (
        "napari_nucleus_ai/demo/models/smear-wbc.zip",
        "napari_nucleus_ai/demo/models/storm-chromatin.zip",
        "napari_nucleus_ai/demo/models/infection-hoechst.zip",
        "napari_nucleus_ai/samples/data/bccd_BloodImage_00000.jpg",
        "napari_nucleus_ai/samples/data/colicoords_03_storm_crop.csv",
        "napari_nucleus_ai/samples/data/SOURCES.md",
        "napari_nucleus_ai/samples/data/LICENSES/BCCD-MIT.txt",
        "napari_nucleus_ai/samples/data/LICENSES/ColiCoords-MIT.txt",
    ):
        assert need in names
    assert wheel.stat().st_size < 8 * 2**20
