"""The adaptive classification protocol on synthetic error matrices (numpy only, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_nucleus_ai.models.diffusion.protocol import keep_top, naive, prune, scored, simulate

PROTOCOLS = [
    {"check_every": 4, "alpha": 0.01},
    {"check_every": 2, "alpha": 0.05, "score": "log"},
    {"check_every": 1, "alpha": 0.1, "score": "log"},
    {"check_every": 2, "alpha": 0.01, "score": "log", "keep_top": [[2, 4], [6, 2]]},
    {"check_every": 2, "alpha": 0.05, "keep_top": [[4, 3]], "stable_checks": 3},
]


def oracle(b=40, c=8, k=64, gap=0.3, seed=0):
    """Errors of an oracle with clear separation: class 0 has the lowest expected error.

    Each trial has its own scale (noise level) shared by every class of a cell, as with
    shared noise; class ``j > 0`` is ``1 + gap + 0.1 j`` times worse on average, with
    independent per-class jitter (3 %) far smaller than the trial-to-trial variation.
    """
    rng = np.random.default_rng(seed)
    level = np.exp(rng.uniform(np.log(0.02), np.log(0.3), (b, 1, k)))  # shared by classes
    factor = 1 + gap + 0.1 * np.arange(c)
    factor[0] = 1.0
    jitter = np.exp(rng.normal(0, 0.03, (b, c, k)))
    return level * factor[None, :, None] * jitter


def winners(errs, evaluated, score):
    s = np.where(evaluated, scored(np.where(evaluated, errs, 1.0), score), np.nan)
    n = evaluated.sum(axis=2)
    full = n == n.max(axis=1, keepdims=True)
    return np.argmin(np.where(full, np.nanmean(s, axis=2), np.inf), axis=1)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_pruning_never_drops_the_class_the_naive_protocol_picks(proto):
    score = proto.get("score", "error")
    for seed in range(5):
        full = oracle(seed=seed)
        ones = np.ones(full.shape, bool)
        naive_win = winners(full, ones, score)
        assert (naive_win == 0).all()  # clear separation: the oracle's class wins
        ev = simulate(full, {"max_trials": 64, **proto})
        n = ev.sum(axis=2)  # trials per class; a pruned class has fewer than the cell's last
        assert (n[np.arange(len(full)), naive_win] == n.max(axis=1)).all(), "naive winner pruned"
        assert (winners(full, ev, score) == naive_win).all()
        assert ev.sum() < ones.sum() / 4  # and pruning saves work


def test_naive_protocol_evaluates_everything():
    full = oracle(b=5, c=6, k=20)
    proto = naive({"check_every": 3, "alpha": 0.5, "keep_top": [[1, 1]], "stable_checks": 1})
    ev = simulate(full, proto)
    assert ev.all() and ev.sum() == 5 * 6 * 20


def test_evaluation_count_is_exact_under_a_top_k_schedule():
    c = 8
    full = oracle(b=7, c=c, k=32)
    # all 8 classes for 2 trials, the best 3 for 2 more, then the best one: stop
    ev = simulate(full, {"check_every": 2, "alpha": 0.0, "keep_top": [[2, 3], [4, 1]]})
    assert (ev.sum(axis=(1, 2)) == 2 * c + 2 * 3).all()
    assert ev[:, :, 4:].sum() == 0
    # an evaluated class was evaluated at every trial up to where it was dropped (a prefix)
    n = ev.sum(axis=2)
    for b in range(len(ev)):
        for j in range(c):
            assert ev[b, j, : n[b, j]].all() and not ev[b, j, n[b, j] :].any()


def test_check_every_sets_the_block_size_and_max_trials_caps_the_work():
    full = np.repeat(oracle(b=3, c=1, k=32), 4, axis=1)  # identical classes: nothing is pruned
    ev = simulate(full, {"check_every": 5, "alpha": 1e-9, "max_trials": 12})
    assert (ev.sum(axis=(1, 2)) == 4 * 12).all()
    assert not ev[:, :, 12:].any()


def test_stable_leader_stop_ends_a_cell_after_that_many_checks():
    full = oracle(b=4, c=5, k=40, gap=2.0)
    ev = simulate(full, {"check_every": 2, "alpha": 0.0, "stable_checks": 3})
    assert (ev.sum(axis=(1, 2)) == 5 * 2 * 3).all()


def test_prune_is_paired_and_keep_top_keeps_the_lowest_means():
    rng = np.random.default_rng(0)
    k = 12
    shared = rng.normal(1.0, 0.5, k)  # trial-to-trial variation shared by all classes
    errs = np.stack(
        [shared, shared + 0.01 * rng.normal(size=k), shared + 0.3 + 0.01 * rng.normal(size=k)]
    )[None]
    keep = prune(errs, k, np.ones((1, 3), bool), alpha=0.01)
    assert keep.tolist() == [[True, True, False]]  # an unpaired test could not tell (sd 0.5 >> 0.3)
    assert prune(errs, 1, np.ones((1, 3), bool), 0.01).all()  # one trial: nothing to test
    active = np.array([[True, True, True, False]])
    s = np.array([[[3.0], [1.0], [2.0], [0.0]]])  # class 3 is inactive despite its low score
    assert keep_top(s, 1, active, [[1, 2]]).tolist() == [[False, True, True, False]]
    assert keep_top(s, 1, active, [[2, 1]]).tolist() == active.tolist()  # not yet due


def test_log_score_weighs_noise_levels_equally():
    e = np.array(
        [[[0.2, 0.02], [0.21, 0.01]]]
    )  # class 1: 5 % worse at one level, 2x better at the other
    assert scored(e, "error")[0].mean(axis=1).argmin() == 0
    assert scored(e, "log")[0].mean(axis=1).argmin() == 1
    with pytest.raises(ValueError):
        scored(e, "median")
