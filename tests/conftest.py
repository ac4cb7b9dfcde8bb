"""Shared fixtures: the real data folder beside the checkout, settings isolation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get(
        "NAPARI_NUCLEUS_AI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (see docs/testing.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def crop_folder(tmp_path_factory) -> Path:
    """Class folders ``disc`` / ``square`` of 10 tiny RGB crops each (see ``blob``)."""
    from PIL import Image

    from test_train_predict import blob

    root = tmp_path_factory.mktemp("crops")
    for k, name in enumerate(["disc", "square"]):
        (root / name).mkdir()
        for i in range(10):
            Image.fromarray(blob(k, 100 * k + i)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Never read or write the developer's own settings file or cache; run on the CPU."""
    monkeypatch.setenv("NAPARI_NUCLEUS_AI_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    # caches (the ONNX copy of a backbone) in the test run's own folder, not ~/.cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv(
        "NAPARI_NUCLEUS_AI_DEVICE", os.environ.get("NAPARI_NUCLEUS_AI_TEST_DEVICE", "cpu")
    )


@pytest.fixture(scope="module")
def cluster():
    """One in-process Dask cluster per module, 2 threads (the same API as a remote scheduler)."""
    import logging

    distributed = pytest.importorskip("distributed")
    c = distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    yield c
    c.close()


@pytest.fixture
def client(cluster):
    """A Dask client of :func:`cluster`."""
    import distributed

    c = distributed.Client(cluster)
    yield c
    c.close()
