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
