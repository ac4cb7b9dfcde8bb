"""The pieces training and fine-tuning share: the epoch, the split, the options, the names."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def test_one_split_two_rules():
    """Training keeps every class learnable; fine-tuning holds out 1 from 2-item classes."""
    from napari_nucleus_ai.classify.trainset import stratified_split
    from napari_nucleus_ai.review.retrain import split_holdout

    labels = np.repeat(np.arange(4), [1, 2, 3, 7])
    tr, va = stratified_split(labels, 0.25, 0)
    assert tr.dtype.kind == va.dtype.kind == "i"
    assert sorted(np.concatenate([tr, va])) == list(range(len(labels)))
    assert np.bincount(labels[va], minlength=4).tolist() == [0, 0, 1, 2]
    learn, test = split_holdout(labels, 0.25, 0)
    assert np.bincount(labels[test], minlength=4).tolist() == [0, 1, 1, 2]
    # same shuffles: the held-out items of the classes both rules treat alike agree
    assert set(va[labels[va] >= 2]) == set(test[labels[test] >= 2])
    # training never holds out a whole class; fine-tuning does what the fraction says
    assert np.bincount(labels[stratified_split(labels, 0.9, 0)[0]], minlength=4).min() == 1
    assert 1 not in labels[split_holdout(labels, 0.9, 0)[0]]
    empty = stratified_split(labels, 0.0, 0)[1]
    assert len(empty) == 0 and empty.dtype.kind == "i"


def test_unknown_option_is_refused():
    from napari_nucleus_ai.batch.run import run_batch_gen
    from napari_nucleus_ai.classify.train import train_gen
    from napari_nucleus_ai.core.progress import run_sync
    from napari_nucleus_ai.review.retrain import retrain_gen

    for gen in (
        train_gen("x", epoch=3),
        retrain_gen("m", "d", epoch=3),
        run_batch_gen([], "o", worker=2),
    ):
        with pytest.raises(TypeError, match="unexpected keyword argument"):
            run_sync(gen)


def test_entry_points_stay_generator_functions():
    """napari's thread_worker runs a function as a generator only if it is one."""
    import inspect

    from napari_nucleus_ai.batch.run import run_batch_gen
    from napari_nucleus_ai.classify.train import train_gen
    from napari_nucleus_ai.review.retrain import retrain_from_items, retrain_gen

    for f in (train_gen, retrain_gen, retrain_from_items, run_batch_gen):
        assert inspect.isgeneratorfunction(f), f


def test_train_epoch_steps_and_skips_single_sample_batches():
    from napari_nucleus_ai.models.nets.registry import build_architecture
    from napari_nucleus_ai.models.training import make_optimizer, train_epoch

    torch.manual_seed(0)
    net = build_architecture("smallcnn", 3, 2, {"widths": [4, 8]})
    before = [q.detach().clone() for q in net.parameters()]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3, 16, 16)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 0, 1])
    opt = make_optimizer(net, 1e-2, 1e-3)
    stats = train_epoch(net, opt, x, y, [np.arange(4), np.array([5])], rng, "fluorescence", "cpu")
    assert len(stats.losses) == 1 and 0 <= stats.correct <= 4 and np.isfinite(stats.mean_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_networks_declare_their_training_capabilities():
    from napari_nucleus_ai.models.nets.registry import build_architecture
    from napari_nucleus_ai.models.training import CLOSED_FORM_HEADS, FITS_FEATURE_STATS, declares

    hybrid = build_architecture("hybrid", 3, 2, {"widths": [4, 8]})
    small = build_architecture("smallcnn", 3, 2, {"widths": [4, 8]})
    morph = build_architecture("morph", 3, 2, {"cnn": False, "imagenet": None})
    assert declares(hybrid, FITS_FEATURE_STATS) and not declares(hybrid, CLOSED_FORM_HEADS)
    assert declares(morph, CLOSED_FORM_HEADS) and not declares(morph, FITS_FEATURE_STATS)
    assert not declares(small, FITS_FEATURE_STATS) and not declares(small, CLOSED_FORM_HEADS)


def test_metric_names_are_the_card_keys():
    """Cards already on disk carry these keys: renaming one would hide their metrics."""
    from napari_nucleus_ai.models import uncertainty as u

    assert (u.VAL_ACCURACY, u.VAL_BALANCED_ACCURACY) == ("val_accuracy", "val_balanced_accuracy")
    assert (u.ACCURACY, u.BALANCED_ACCURACY) == ("accuracy", "balanced_accuracy")
    scores = u.accuracy_scores([0, 0, 0, 1], [0, 0, 0, 0], prefix="val_")
    assert scores == {"val_accuracy": 0.75, "val_balanced_accuracy": 0.5}
    empty = u.accuracy_scores([], [])
    assert np.isnan(empty["accuracy"]) and np.isnan(empty["balanced_accuracy"])


def _crop_set(classes, n_per_class, shade, source):
    from napari_nucleus_ai.classify.trainset import TrainingSet

    rng = np.random.default_rng(len(source))
    samples = [
        np.full((8, 8, 3), shade + 40 * i, np.uint8) + rng.integers(0, 3, (8, 8, 3), np.uint8)
        for i, _ in enumerate(classes)
        for _ in range(n_per_class)
    ]
    labels = np.repeat(np.arange(len(classes)), n_per_class)
    names = [f"{source}/{i}" for i in range(len(labels))]
    return TrainingSet(samples, labels, list(classes), "brightfield_rgb", names)


def test_every_source_counts_equally_per_class():
    from napari_nucleus_ai.classify.trainset import source_weights

    labels = np.array([0] * 12 + [1] * 12 + [0] * 3 + [1] * 4)
    source = np.array([0] * 24 + [1] * 7)
    w = source_weights(labels, source)
    for c in (0, 1):  # each source's cells of a class weigh as much as the other's
        totals = [w[(labels == c) & (source == s)].sum() for s in (0, 1)]
        assert totals[0] == pytest.approx(totals[1])
    assert w[:24].tolist() == [1.0] * 24 and w[24] == 4.0 and w[-1] == 3.0
    # a class only one source has keeps weight 1
    assert source_weights(np.array([0, 0, 1]), np.array([0, 1, 0])).tolist() == [1, 1, 1]


def test_combined_sources_repeat_small_sources_and_split_whole_cells():
    from napari_nucleus_ai.classify.trainset import combine_sources, stratified_split

    big = _crop_set(["lymphocyte", "neutrophil"], 12, 20, "pbc")
    small = _crop_set(["eosinophil", "lymphocyte", "neutrophil"], 3, 60, "lab")
    ts = combine_sources([big, small], "auto", names=["pbc", "lab"])
    assert ts.classes == ["eosinophil", "lymphocyte", "neutrophil"]
    assert len(ts) == 24 + 9 and ts.counts() == {
        "eosinophil": 3,
        "lymphocyte": 15,
        "neutrophil": 15,
    }
    lab = np.array([s.startswith("lab/") for s in ts.sources])
    assert ts.repeats[~lab].tolist() == [1] * 24
    # lab cells of shared classes x4 (12 vs 3); its own class (eosinophil) x1
    eos = ts.labels == 0
    assert ts.repeats[lab & ~eos].tolist() == [4] * 6 and ts.repeats[eos].tolist() == [1] * 3
    assert [o["data"] for o in ts.origins] == ["pbc", "lab"]
    assert ts.origins[1]["n"] == 9 and ts.origins[1]["weight"] == pytest.approx(3.0)
    # the split is on cells: every copy of a cell is on one side, counted in its subset
    tr, va = stratified_split(ts.labels, 0.25, 0)
    train, val = ts.subset(tr), ts.subset(va)
    assert len(train) == int(ts.repeats[tr].sum()) and len(val) == int(ts.repeats[va].sum())
    assert not set(train.sources) & set(val.sources)
    assert train.repeats is None  # a subset is already expanded
    # explicit weights: a lab cell counts as 5 pbc cells
    ts5 = combine_sources([big, small], [1, 5])
    assert set(ts5.repeats[:24]) == {1} and set(ts5.repeats[24:]) == {5}
    # one source with auto weights is the set itself
    assert combine_sources([big]) is big


def test_source_weights_are_checked():
    from napari_nucleus_ai.classify.trainset import Sources, combine_sources
    from napari_nucleus_ai.core.errors import InputError, UsageError

    for bad in ("1", "1,x", "1,-2", "0,1", [1, float("nan")]):
        with pytest.raises(UsageError):
            Sources(["a", "b"], bad)
    assert Sources(["a", "b"], " 1, 5 ").weights == [1.0, 5.0]
    grey = _crop_set(["a", "b"], 2, 10, "g")
    storm = type(grey)([np.zeros((5, 2))] * 4, [0, 0, 1, 1], ["a", "b"], "storm")
    with pytest.raises(InputError, match="mixes image crops"):
        combine_sources([grey, storm])


def test_train_reads_several_sources(crop_folder, tmp_path):
    """``train A B``: the card says where every cell came from and how much it counted."""
    import shutil

    from napari_nucleus_ai.cli import main

    small = tmp_path / "lab"
    for d in sorted(p for p in crop_folder.iterdir() if p.is_dir()):
        (small / d.name).mkdir(parents=True)
        for f in sorted(d.iterdir())[:2]:
            shutil.copy(f, small / d.name / f.name)
    out = tmp_path / "model"
    argv = ["train", str(crop_folder), str(small), "--out", str(out), "--arch", "smallcnn"]
    argv += ["--epochs", "1", "--quiet", "--crop-size", "32", "--val-fraction", "0"]
    assert main(argv) == 0
    import json

    card = json.loads((out / "card.json").read_text())
    data = card["provenance"]["data"]
    assert str(crop_folder) in data and f"{small} (weight" in data
    n_big = sum(len(list(d.iterdir())) for d in crop_folder.iterdir() if d.is_dir())
    assert card["provenance"]["n_train"] > n_big + 2 * len(card["classes"])  # lab cells repeated
    with pytest.raises(SystemExit) as e:
        main(["train", str(crop_folder), str(small), "--out", str(out), "--source-weights", "1"])
    assert e.value.code == 2


def test_train_cli_reads_sources_and_weights_in_any_order():
    import argparse

    from napari_nucleus_ai.classify.trainset import Sources
    from napari_nucleus_ai.cli.train import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    one = p.parse_args(["a", "--out", "m"])
    assert one.data == "a"  # one folder: the path as before
    for argv in (["a", "b", "--source-weights", "1,5"], ["--source-weights", "1,5", "a", "b"]):
        data = p.parse_args([*argv, "--out", "m"]).data
        assert isinstance(data, Sources) and data.paths == ["a", "b"] and data.weights == [1, 5]
    auto = p.parse_args(["a", "b", "--out", "m"]).data
    assert auto.paths == ["a", "b"] and auto.weights == "auto"
