"""Batch with a model: a big input's cells classified in chunks over the workers.

The chunked run must give the same files as classifying every cell of the input in
one task (``cells_per_task=0``), plain and tile-wise, and a failing chunk must give a
``failed`` row, not a stopped run.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_nucleus_ai.batch import run_batch

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """One smear field with a dozen white cells (several chunks of 4 cells)."""
    from napari_nucleus_ai.samples.smear import simulate_smear

    d = tmp_path_factory.mktemp("cells_in")
    sim = simulate_smear(seed=3, shape=(720, 960), n_wbc=12)
    tifffile.imwrite(d / "field.tif", sim.image)
    return d / "field.tif"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small untrained crop classifier with a fixed seed (deterministic)."""
    import torch

    from napari_nucleus_ai.classify.train import make_card
    from napari_nucleus_ai.classify.trainset import TrainingSet
    from napari_nucleus_ai.models.classifier_kind import build
    from napari_nucleus_ai.models.package import save_model

    rng = np.random.default_rng(1)
    ts = TrainingSet(
        [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(6)],
        np.array([0, 0, 1, 1, 2, 2]),
        ["lymphocyte", "monocyte", "neutrophil"],
        "brightfield_rgb",
    )
    card = make_card(ts, arch="smallcnn", name="chunk model", crop_size=32, tta=2)
    torch.manual_seed(1)
    return save_model(card, build(card), tmp_path_factory.mktemp("model") / "m.zip")


def _run(field, out, client, model, **options):
    res = run_batch([field], out, client=client, model=str(model), device="cpu", **options)
    row = res.summary.iloc[0]
    assert row["status"] == "ok", row["error"]
    return row


def _same_outputs(a, b, stem="field"):
    """Same labels; same cell table (predictions within float rounding of batch sizes)."""
    np.testing.assert_array_equal(
        tifffile.imread(a / f"{stem}_labels.tif"), tifffile.imread(b / f"{stem}_labels.tif")
    )
    ca, cb = pd.read_csv(a / f"{stem}_cells.csv"), pd.read_csv(b / f"{stem}_cells.csv")
    assert list(ca.columns) == list(cb.columns)
    assert ca["label"].tolist() == cb["label"].tolist()
    assert ca["class"].tolist() == cb["class"].tolist()
    pd.testing.assert_frame_equal(ca, cb, check_exact=False, rtol=1e-5, atol=1e-6)
    return ca


@pytest.mark.parametrize("tiled", [False, True], ids=["whole", "tiles"])
def test_cell_chunks_equal_one_task(client, field, model, tmp_path, tiled):
    extra = {"tile_above": 100_000, "tile": 256} if tiled else {}
    one = _run(field, tmp_path / "one", client, model, cells_per_task=0, **extra)
    split = _run(field, tmp_path / "split", client, model, cells_per_task=4, **extra)
    cells = _same_outputs(tmp_path / "one", tmp_path / "split")
    n = len(cells)
    assert n > 8, "the field must have enough cells for several chunks"
    assert split["n_cells"] == one["n_cells"] == n
    assert split["cell_tasks"] == -(-n // 8) * 2  # chunks of <= 4 cells, a multiple of 2 threads
    assert "cell_tasks" not in one.index or pd.isna(one["cell_tasks"])
    for c in ("lymphocyte", "monocyte", "neutrophil"):
        assert split[f"n_{c}"] == one[f"n_{c}"] == (cells["class"] == c).sum()
    assert cells["label"].is_monotonic_increasing  # merged back in label order
    if tiled:
        assert split["tiles"] > 1
    assert not (tmp_path / "split" / ".batch" / "work" / "field").exists()  # staging cleaned


@pytest.mark.parametrize(
    "n, per_task, slots", [(473, 100, 2), (473, 50, 2), (473, 100, 1), (11, 4, 2), (5, 1, 4)]
)
def test_cell_chunks_fill_every_worker(n, per_task, slots):
    """Chunks cover the table in order, at most ``per_task`` cells, equal sizes, and a
    multiple of the worker threads (never more chunks than cells)."""
    from napari_nucleus_ai.batch.tasks import Segmented

    seg = Segmented(*[None] * 6, pd.DataFrame({"label": np.arange(1, n + 1)}), *[None] * 5)
    chunks = seg.chunks(per_task, slots)
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(chunks[:-1], chunks[1:], strict=True))
    sizes = [b - a for a, b in chunks]
    assert max(sizes) <= per_task and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    plain = -(-n // per_task)
    assert len(chunks) == min(n, -(-plain // slots) * slots)


def test_small_inputs_keep_one_task(client, field, model, tmp_path):
    row = _run(field, tmp_path / "out", client, model, cells_per_task=10_000)
    assert "cell_tasks" not in row.index or pd.isna(row["cell_tasks"])


def test_cell_chunks_to_zarr(client, field, model, tmp_path):
    from napari_nucleus_ai.io.ngff import read_ngff

    _run(field, tmp_path / "out", client, model, cells_per_task=5, output="zarr")
    store = tmp_path / "out" / "field.zarr"
    assert store.is_dir() and not (tmp_path / "out" / "field_labels.tif").exists()
    (labels,) = read_ngff(store)["labels"].values()
    cells = pd.read_csv(tmp_path / "out" / "field_cells.csv")
    table = labels["table"].set_index("label").loc[cells["label"]]
    assert table["class"].tolist() == cells["class"].tolist()


def test_failing_chunk_is_a_failed_row(client, field, model, tmp_path, monkeypatch):
    from napari_nucleus_ai.batch import run as batch_run

    def broken(seg, start, stop, settings):
        raise RuntimeError(f"chunk {start}:{stop} broke")

    monkeypatch.setattr(batch_run, "classify_chunk", broken)
    res = run_batch(
        [field], tmp_path / "out", client=client, model=str(model), device="cpu", cells_per_task=4
    )
    row = res.summary.iloc[0]
    assert row["status"] == "failed"
    assert "broke" in row["error"] and "field.tif" in row["error"]
    assert not (tmp_path / "out" / "field_cells.csv").exists()


def test_cli_rejects_negative_cells_per_task(field, tmp_path, capsys):
    from napari_nucleus_ai.cli import main

    code = main(["batch", str(field), "--out", str(tmp_path / "o"), "--cells-per-task", "-1"])
    assert code == 1  # the run could not start (the batch command's documented exit status)
    err = capsys.readouterr().err
    assert "--cells-per-task" in err and "Traceback" not in err


def test_idle_workers_load_the_model_before_classifying(client, field, model, tmp_path):
    """While one input is segmented, the idle worker thread loads the model (one warm-up
    task), before the chunks classify; with an input per thread, none is idle: no warm-up;
    a slide's last tiles and final task leave threads idle: they load it."""
    import shutil

    from distributed import get_task_stream

    def starts_of(inputs, out, **extra):
        with get_task_stream(client) as stream:
            run_batch(inputs, out, client=client, model=str(model), device="cpu",
                      cells_per_task=4, **extra)  # fmt: skip
        starts = {}
        for t in stream.data:
            starts.setdefault(t["key"].split("-", 1)[0], []).append(t["startstops"][0]["start"])
        return starts

    threads = sum(w["nthreads"] for w in client.scheduler_info()["workers"].values())
    assert threads == 2
    starts = starts_of([field], tmp_path / "one")
    assert len(starts["warm"]) == 1 and min(starts["warm"]) < min(starts["cells"])
    (tmp_path / "two").mkdir()
    shutil.copy(field, tmp_path / "two" / "a.tif")
    shutil.copy(field, tmp_path / "two" / "b.tif")
    assert "warm" not in starts_of([tmp_path / "two"], tmp_path / "out2")
    # a slide in tile tasks: the threads its last tiles and its final task leave idle load
    # the model before the chunks classify; at most one warm-up per thread in all
    starts = starts_of([field], tmp_path / "tiles", tile_above=100_000, tile=256)
    assert len(starts["tile"]) > 2 and 1 <= len(starts["warm"]) <= threads
    assert max(starts["warm"]) < min(starts["cells"])


def test_warm_ups_go_to_idle_workers_that_have_not_loaded_the_model():
    from napari_nucleus_ai.batch.run import _Run

    class Client:
        def __init__(self, busy):
            self.busy = busy

        def processing(self):
            return self.busy

    run = _Run.__new__(_Run)
    run.threads, run.warmed = {"a": 1, "b": 1, "c": 2}, {}
    run.client = Client({"a": ("tile-0",), "b": (), "c": ("tile-1",)})
    assert run._idle_workers(2) == ["b", "c"]  # idle threads first
    run.warmed = {"b": 1, "c": 2}
    assert run._idle_workers(2) == ["a", None]  # then busy workers that lack the model
    run.client = Client({"a": (), "b": (), "c": ()})
    run.warmed = {"a": 1}
    assert run._idle_workers(4) == ["b", "c", "c", None]


def test_warm_leaves_the_model_loaded(model, monkeypatch):
    from napari_nucleus_ai.batch import tasks
    from napari_nucleus_ai.classify import predict

    settings = tasks.Settings(model=str(model))
    assert tasks.warm(settings) >= 0
    loaded = tasks._model(settings)

    def no_reload(_):
        raise AssertionError("the model was loaded again")

    monkeypatch.setattr(predict, "as_package", no_reload)
    assert tasks._model(settings) is loaded
