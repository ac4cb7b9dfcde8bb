"""Batch runs on Dask: same files as segment/classify, failed rows, resume, tiles, CLI."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_nucleus_ai.batch import run_batch
from napari_nucleus_ai.cli import main

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from napari_nucleus_ai.samples.smear import simulate_smear

    d = tmp_path_factory.mktemp("batch_in")
    (d / "a").mkdir()
    (d / "b").mkdir()
    for i, sub in enumerate(["a", "a", "b"]):
        sim = simulate_smear(seed=i, shape=(360, 480), n_wbc=3)
        tifffile.imwrite(d / sub / f"field{i}.tif", sim.image)
    # the same file name in two folders gets two output stems
    sim = simulate_smear(seed=7, shape=(360, 480), n_wbc=2)
    tifffile.imwrite(d / "b" / "field0.tif", sim.image)
    (d / "a" / "broken.tif").write_bytes(b"II*\x00 this is not a TIFF")
    (d / "a" / "notes.yaml").write_text("ignored: true\n")
    return d


def _segment_alone(path, out, *extra):
    assert main(["segment", str(path), "--method", "wbc", "--out", str(out), *extra]) == 0


def test_batch_equals_segment_and_resumes(client, inputs, tmp_path):
    out = tmp_path / "out"
    res = run_batch([inputs], out, client=client)
    s = res.summary.set_index("stem")
    assert list(res.summary.columns[:4]) == ["path", "status", "error", "n_cells"]
    assert len(s) == 5 and res.n_failed == 1
    assert s.loc["broken", "status"] == "failed" and "broken.tif" in s.loc["broken", "error"]
    assert {"a_field0", "b_field0", "field1", "field2"} <= set(s.index)
    # identical to running segment on each input alone
    alone = tmp_path / "alone"
    _segment_alone(inputs / "b" / "field2.tif", alone)
    a = tifffile.imread(out / "field2_labels.tif")
    b = tifffile.imread(alone / "field2_labels.tif")
    assert a.max() > 0 and np.array_equal(a, b)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "field2_cells.csv"), pd.read_csv(alone / "field2_cells.csv")
    )
    assert s.loc["field2", "n_cells"] == len(pd.read_csv(out / "field2_cells.csv"))
    assert (out / "summary.csv").is_file() and "Batch report" in (out / "report.html").read_text()
    assert not list((out / ".batch" / "work").glob("*/*"))  # nothing half-written left

    # a second run skips finished inputs (files untouched) and retries the failed one
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*_labels.tif")}
    res2 = run_batch([inputs], out, client=client)
    s2 = res2.summary.set_index("stem")
    assert s2["resumed"].sum() == 4 and s2.loc["broken", "status"] == "failed"
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*_labels.tif")} == before
    # a changed input is redone
    os.utime(inputs / "a" / "field1.tif", ns=(1, 1))
    res3 = run_batch([inputs], out, client=client)
    assert res3.summary.set_index("stem")["resumed"].sum() == 3
    assert (out / "field1_labels.tif").stat().st_mtime_ns != before["field1_labels.tif"]


def test_whole_image_split_into_tile_tasks_matches_segment(client, tmp_path):
    from napari_nucleus_ai.samples.smear import simulate_smear

    sim = simulate_smear(seed=3, shape=(900, 1100), n_wbc=8)
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, sim.image)
    out = tmp_path / "out"
    res = run_batch([src], out, client=client, tile=384, tile_above=100_000)
    row = res.summary.iloc[0]
    assert row["status"] == "ok" and row["tiles"] == 9
    _segment_alone(src, tmp_path / "alone", "--tile", "384")
    a = tifffile.imread(out / "big_labels.tif")
    b = tifffile.imread(tmp_path / "alone" / "big_labels.tif")
    assert a.max() >= 4 and np.array_equal(a, b)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "big_cells.csv"), pd.read_csv(tmp_path / "alone" / "big_cells.csv")
    )


def test_tile_tasks_read_a_lazily_read_image(client, tmp_path, monkeypatch):
    """A slide too big to read into memory comes as a dask array: a tile task computes its
    block in the task (not by sending a graph that holds an open file to the cluster)."""
    import napari_nucleus_ai.images.tiff as tiff
    from napari_nucleus_ai.samples.smear import simulate_smear

    monkeypatch.setattr(tiff, "EAGER_BYTES", 1024)  # every TIFF is read lazily
    sim = simulate_smear(seed=4, shape=(700, 900), n_wbc=6)
    src = tmp_path / "lazy.tif"
    tifffile.imwrite(src, sim.image, tile=(256, 256))
    res = run_batch([src], tmp_path / "out", client=client, tile=384, tile_above=100_000)
    row = res.summary.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert row["tiles"] == 6
    assert tifffile.imread(tmp_path / "out" / "lazy_labels.tif").max() >= 3


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small untrained crop classifier (fixed seed): deterministic, enough to compare runs."""
    import torch

    from napari_nucleus_ai.classify.train import make_card
    from napari_nucleus_ai.classify.trainset import TrainingSet
    from napari_nucleus_ai.models.classifier_kind import build
    from napari_nucleus_ai.models.package import save_model

    rng = np.random.default_rng(0)
    ts = TrainingSet(
        [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(4)],
        np.array([0, 0, 1, 1]),
        ["lymphocyte", "neutrophil"],
        "brightfield_rgb",
    )
    card = make_card(ts, arch="smallcnn", name="test model", crop_size=32, tta=1)
    torch.manual_seed(0)
    return save_model(card, build(card), tmp_path_factory.mktemp("model") / "m.zip")


def test_batch_with_model_equals_classify(client, inputs, model, tmp_path):
    out = tmp_path / "out"
    res = run_batch(
        [inputs / "a" / "field1.tif"], out, client=client, model=str(model), device="cpu"
    )
    row = res.summary.iloc[0]
    assert row["status"] == "ok"
    assert (
        row["n_lymphocyte"] + row["n_neutrophil"] + row.get("n_unidentified", 0) == row["n_cells"]
    )
    cells = pd.read_csv(out / "field1_cells.csv")
    # classify alone on the labels segment wrote gives the same predictions
    alone = tmp_path / "alone"
    _segment_alone(inputs / "a" / "field1.tif", alone)
    assert (
        main(
            [
                "classify",
                str(model),
                str(inputs / "a" / "field1.tif"),
                "--labels",
                str(alone / "field1_labels.tif"),
                "--out",
                str(alone / "cls"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    ref = pd.read_csv(alone / "cls" / "cells.csv")
    cols = ["label", "class", "uncertainty", "p_lymphocyte", "p_neutrophil"]
    pd.testing.assert_frame_equal(cells[cols], ref[cols])
    assert "mean_r" in cells.columns  # segment's measurements are kept beside the predictions


def test_cli_with_existing_scheduler(cluster, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "batch",
            str(inputs / "a"),
            "--out",
            str(out),
            "--scheduler",
            cluster.scheduler_address,
            "--segment",
            "wbc",
        ]
    )
    captured = capsys.readouterr()
    assert code == 2  # one input failed
    assert "3 inputs: 2 ok (0 from an earlier run), 1 failed" in captured.out
    assert "dashboard" in captured.err and "broken.tif" in captured.err
    assert (
        main(
            [
                "batch",
                str(tmp_path / "nothing"),
                "--out",
                str(out),
                "--scheduler",
                cluster.scheduler_address,
            ]
        )
        == 2
    )
    s = pd.read_csv(out / "summary.csv")
    assert s["error"].str.contains("no such file").any()


def test_storm_localization_files_auto_method(client, tmp_path):
    from napari_nucleus_ai.localizations import write_thunderstorm_csv
    from napari_nucleus_ai.samples.storm import simulate_field

    src = tmp_path / "storm"
    src.mkdir()
    write_thunderstorm_csv(
        simulate_field(n_nuclei=2, seed=1, n_localizations=20_000), src / "f1.csv"
    )
    out = tmp_path / "out"
    res = run_batch([src], out, client=client)
    row = res.summary.iloc[0]
    assert row["status"] == "ok" and row["method"] == "storm-nuclei" and row["n_cells"] == 2
    assert (out / "f1_localizations.csv").is_file()
    assert (
        main(
            [
                "segment",
                str(src / "f1.csv"),
                "--method",
                "storm-nuclei",
                "--out",
                str(tmp_path / "alone"),
            ]
        )
        == 0
    )
    assert np.array_equal(
        tifffile.imread(out / "f1_labels.tif"),
        tifffile.imread(tmp_path / "alone" / "f1_labels.tif"),
    )
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "f1_cells.csv"), pd.read_csv(tmp_path / "alone" / "f1_cells.csv")
    )


@pytest.mark.slow
def test_killing_a_worker_mid_run_still_finishes(inputs, tmp_path):
    """SIGKILL one of two worker processes after the first input: every input still ends ok."""
    import logging
    import signal

    from napari_nucleus_ai.batch import run_batch_gen
    from napari_nucleus_ai.core.progress import run_sync

    src = tmp_path / "in"
    src.mkdir()
    for p in sorted((inputs / "a").glob("field*.tif")) + sorted((inputs / "b").glob("field*.tif")):
        (src / f"{p.parent.name}_{p.name}").write_bytes(p.read_bytes())
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=logging.ERROR) as cl, \
            distributed.Client(cl) as c:  # fmt: skip
        pids = list(c.run(os.getpid).values())
        killed = []

        def kill_one(p):
            if not killed and p.total and p.done >= 1:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        res = run_sync(run_batch_gen([src], tmp_path / "out", client=c, method="wbc"), kill_one)
    assert killed and res.n_ok == 4 and res.n_failed == 0


def _stitched(plan, results):
    """Stitch tile results as the batch parent does; returns ``(labels, table, seams)``."""
    from napari_nucleus_ai.batch.run import _stitch, _table

    sl = {"plan": plan, "labels": np.zeros(plan.shape, np.int32), "results": dict(results),
          "next": 0, "next_id": 1, "tables": [], "seams": []}  # fmt: skip
    _stitch(sl)
    assert sl["next"] == len(plan.tiles)
    return sl["labels"], _table(sl), sl["seams"]


def _whole(plan, labels):
    """The cell table of the stitched labels measured whole (what ``segment`` does)."""
    from napari_nucleus_ai.batch.tasks import _level0
    from napari_nucleus_ai.segment.run import _measure

    scale, translate, unit = plan.frame()
    image = _level0(plan.path, plan.rgb)
    return _measure(labels, image, plan.rgb, scale, translate, unit, plan.path, (0, 0))


def test_tile_tasks_measure_their_cells_as_the_whole_image(tmp_path):
    """Each tile task measures the cells it keeps; end to end (ids after the tiles before)
    their tables are the stitched labels' cell table measured whole, seam-cut cells included."""
    from napari_nucleus_ai.batch.tasks import Settings, plan_tiles, segment_tile
    from napari_nucleus_ai.samples.smear import simulate_smear

    sim = simulate_smear(seed=4, shape=(900, 1100), n_wbc=16)
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, sim.image)
    plan = plan_tiles(str(src), "big", Settings(method="wbc", tile=256), "wbc")
    labels, table, seams = _stitched(
        plan, {i: segment_tile(plan, i) for i in range(len(plan.tiles))}
    )
    whole = _whole(plan, labels)
    assert len(whole) >= 10 and seams == []
    # cells whose pixels lie on both sides of a tile border: cut by a seam, whole in one tile
    cores = [core for core, _ in plan.tiles]
    ys, xs = {c[1] for c in cores} - {900}, {c[3] for c in cores} - {1100}
    cut = [
        i for i in whole["label"]
        if any(len(set(np.unique(np.nonzero(labels == i)[0] >= y))) == 2 for y in ys)
        or any(len(set(np.unique(np.nonzero(labels == i)[1] >= x))) == 2 for x in xs)
    ]  # fmt: skip
    assert len(cut) >= 3
    assert list(table.columns) == list(whole.columns) and "mean_r" in table.columns
    pd.testing.assert_frame_equal(table, whole, check_exact=False, rtol=1e-12, atol=1e-9)


def test_cells_that_lose_pixels_at_a_seam_are_measured_again(tmp_path):
    """Two tiles whose kept objects overlap: the earlier tile keeps the pixels (as
    ``segment`` stitches); the later tile's cells that lost pixels are measured again
    on the stitched labels, and one left with no pixel has no row."""
    from napari_nucleus_ai.batch.tasks import TilePlan, _measure_part, _remeasured

    rng = np.random.default_rng(0)
    src = tmp_path / "f.tif"
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    tifffile.imwrite(src, image)
    tiles = [((0, 64, 0, 32), (0, 64, 0, 40)), ((0, 64, 32, 64), (0, 64, 24, 64))]
    plan = TilePlan(str(src), "f", "wbc", (64, 64), True, 0.5, 0.5, {}, tiles, {})
    a = np.zeros((64, 40), np.int32)
    a[10:20, 25:35] = 1  # centroid in tile 0's core
    a[40:50, 20:38] = 2
    b = np.zeros((64, 40), np.int32)
    b[12:22, 6:16] = 1  # x 30..40: overlaps tile 0's cell 1, centroid in tile 1's core
    b[42:46, 8:12] = 2  # x 32..36: inside tile 0's cell 2, keeps no pixel
    b[30:36, 20:30] = 3  # no overlap
    results = {0: (a, _measure_part(plan, a, image[:, :40], (0, 0))),
               1: (b, _measure_part(plan, b, image[:, 24:], (0, 24)))}  # fmt: skip
    labels, table, seams = _stitched(plan, results)
    assert seams == [3, 4]
    assert (labels[12:20, 30:35] == 1).all() and not (labels == 4).any()
    whole = _whole(plan, labels)
    assert not np.allclose(
        table.set_index("label").loc[3, "area"], whole.set_index("label").loc[3, "area"]
    )
    fixed = _remeasured(plan, labels, table, seams)
    assert fixed["label"].tolist() == [1, 2, 3, 5]
    pd.testing.assert_frame_equal(fixed, whole, check_exact=False, rtol=1e-12, atol=1e-9)


def test_local_workers_start_from_a_fork_server():
    """Local worker processes are forked by multiprocessing's fork server (not children of
    this process), so they end without the interpreter's clean-up."""
    import multiprocessing

    from napari_nucleus_ai.batch import connect

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork server on this platform")
    client, close = connect(workers=1)
    try:
        parents = set(client.run(os.getppid).values())
    finally:
        close()
    assert len(parents) == 1 and os.getpid() not in parents
