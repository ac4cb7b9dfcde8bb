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
