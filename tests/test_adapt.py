"""Test-time adaptation of a linear head to a batch (models/adapt.py)."""

import numpy as np
import pytest

from napari_nucleus_ai.models.adapt import (
    MIN_CELLS,
    adapt_batch,
    balanced_standardise,
    fit_reference,
    should_adapt,
)

N_FEAT = 12


def _cells(rng, counts, sep=2.5):
    """Two classes apart along the first feature (unit spread): ``counts`` per class."""
    y = np.repeat([0, 1], counts)
    z = rng.normal(size=(len(y), N_FEAT))
    z[:, 0] += np.where(y == 0, -sep, sep)
    return z, y


def _head():
    """The ideal head of :func:`_cells` (the sign of the first feature)."""
    w = np.zeros((2, N_FEAT))
    w[:, 0] = [-2.0, 2.0]
    return w, np.zeros(2)


def _microscope(z):
    """Another microscope: every cell moved, most far along the class axis."""
    out = z.copy()
    out[:, 0] += 3.5
    out[:, 1:] += 1.0
    return out


def _accuracy(z, y, w, b):
    return float(((z @ w.T + b).argmax(1) == y).mean())


def _balanced(z, y, w, b):
    pred = (z @ w.T + b).argmax(1)
    return float(np.mean([(pred[y == k] == k).mean() for k in np.unique(y)]))


@pytest.fixture
def reference():
    z, y = _cells(np.random.default_rng(0), [200, 200])
    return fit_reference(z, y, 2)


def test_fit_reference_class_means_and_within_spread():
    z = np.array([[0.0, 1.0], [2.0, 1.0], [10.0, 5.0], [12.0, 7.0]])
    ref = fit_reference(z, np.array([0, 0, 2, 2]), 3)
    np.testing.assert_allclose(ref["class_means"], [[1, 1], [0, 0], [11, 6]])
    np.testing.assert_allclose(ref["within_sd"], [1.0, 0.5 * np.sqrt(2)], atol=2e-4)


def test_shifted_batch_with_a_blood_like_mix_is_fixed(reference):
    """A shifted batch of 80 % class 0: the head calls most of class 0 class 1; moved onto
    the training statistics it is mostly right again."""
    z, y = _cells(np.random.default_rng(1), [160, 40])
    shifted = _microscope(z)
    w, b = _head()
    assert _balanced(shifted, y, w, b) < 0.65
    assert _balanced(balanced_standardise(shifted, w, b, reference), y, w, b) > 0.8


def test_class_mix_is_not_taken_for_a_shift(reference):
    """An unshifted batch of 90 % class 0 keeps its accuracy, where re-standardising it on
    its own mean and spread (which the mix pulls towards class 0) loses."""
    z, y = _cells(np.random.default_rng(2), [180, 20])
    w, b = _head()
    before = _balanced(z, y, w, b)
    moved = balanced_standardise(z, w, b, reference)
    same = ((moved @ w.T + b).argmax(1) == (z @ w.T + b).argmax(1)).mean()
    assert same > 0.95
    assert _balanced(moved, y, w, b) >= before - 0.02
    plain = (z - z.mean(0)) / z.std(0)
    assert _balanced(plain, y, w, b) < before - 0.1


def test_no_class_with_two_cells_leaves_features_alone(reference):
    w, b = _head()
    z = np.array([[-3.0] + [0.0] * (N_FEAT - 1), [3.0] + [0.0] * (N_FEAT - 1)])
    np.testing.assert_array_equal(balanced_standardise(z, w, b, reference), z)


def test_small_or_in_domain_batches_are_left_alone(reference):
    rng = np.random.default_rng(3)
    z, y = _cells(rng, [160, 40])
    shifted = _microscope(z)
    w, b = _head()
    assert adapt_batch(shifted[: MIN_CELLS - 1], w, b, reference) is None
    few_flagged = np.zeros(len(shifted), bool)
    few_flagged[:20] = True
    assert adapt_batch(shifted, w, b, reference, few_flagged) is None
    probs = adapt_batch(shifted, w, b, reference, np.ones(len(shifted), bool))
    assert probs.shape == (200, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert _balanced(np.log(probs), y, np.eye(2), np.zeros(2)) > 0.8


def test_should_adapt_thresholds():
    assert not should_adapt(MIN_CELLS - 1)
    assert should_adapt(MIN_CELLS)
    assert should_adapt(40, np.r_[np.ones(20, bool), np.zeros(20, bool)])
    assert not should_adapt(40, np.r_[np.ones(19, bool), np.zeros(21, bool)])
    assert not should_adapt(40, [])
    assert should_adapt(5, min_cells=5)
