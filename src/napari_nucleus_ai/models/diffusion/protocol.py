"""The adaptive classification protocol: which (class, trial) errors to evaluate.

Pure numpy, shared by the live classifier (:func:`~.classify.classify_crops`)
and by :func:`simulate`, which replays it on a precomputed error matrix and so
makes exactly the decisions the live run makes.

A cell starts with every class active. Trials are evaluated in blocks of
``check_every``; after each block, :func:`advance`

1. scores the errors (``score="log"``: log errors, so a trial at a high noise
   level, whose errors are ten times smaller, weighs as much as one at a low
   level; ``"error"``: raw errors),
2. prunes with one-sided *paired* t-tests of each active class against the
   current best (:func:`prune`, level ``alpha``),
3. keeps at most ``k`` classes with the lowest mean score once ``n`` trials are
   done, for every ``[n, k]`` of the ``keep_top`` schedule (a successive-halving
   rule in the spirit of Li et al. 2023; empty = off),
4. stops the cell when one class remains, after ``max_trials``, or (when
   ``stable_checks`` > 0) when the same class led that many checks in a row.

The *naive* protocol evaluates every class at every trial:
``max_trials * n_classes`` network evaluations per cell.
"""

from __future__ import annotations

import numpy as np

SCORES = ("log", "error")


def scored(errs: np.ndarray, score: str = "error") -> np.ndarray:
    """Errors -> the statistic that is averaged and tested (``log`` or raw ``error``)."""
    if score == "log":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.maximum(errs, 1e-12))
    if score != "error":
        raise ValueError(f"unknown score {score!r} (choose {', '.join(SCORES)})")
    return errs


def prune(errs: np.ndarray, n: int, active: np.ndarray, alpha: float) -> np.ndarray:
    """One pruning round: paired one-sided t-tests of each active class vs the best.

    Parameters
    ----------
    errs : (B, C, K) float
        Scored errors so far (only the first ``n`` trials of active classes are read).
    n : int
        Trials done.
    active : (B, C) bool
        Classes still in play.
    alpha : float
        Prune a class when the p-value that it is *not* worse is below this.

    Returns
    -------
    (B, C) bool
        Classes kept; the best class of every cell is always kept.
    """
    from scipy.stats import t as t_dist

    if n < 2 or alpha <= 0:
        return active
    e = errs[:, :, :n]
    mean = np.where(active, np.where(active[..., None], e, 0.0).mean(axis=2), np.inf)
    best = np.argmin(mean, axis=1)
    d = e - e[np.arange(len(e)), best][:, None, :]
    md = d.mean(axis=2)
    sd = d.std(axis=2, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tstat = md / (sd / np.sqrt(n))
    tstat = np.where(sd > 0, tstat, np.where(md > 0, np.inf, 0.0))
    pval = t_dist.sf(tstat, n - 1)
    keep = active & ~(pval < alpha)
    keep[np.arange(len(e)), best] = True
    return keep


def keep_top(scores: np.ndarray, n: int, active: np.ndarray, schedule) -> np.ndarray:
    """Limit active classes to the ``k`` lowest mean scores for each ``[m, k]`` with ``m <= n``."""
    ks = [int(k) for m, k in (schedule or []) if n >= int(m)]
    if not ks:
        return active
    k = max(1, min(ks))
    mean = np.where(active, scores[:, :, :n].mean(axis=2), np.inf)
    rank = np.argsort(np.argsort(mean, axis=1, kind="stable"), axis=1, kind="stable")
    return active & (rank < k)


def advance(errs, n, active, leader, streak, proto: dict):
    """State update after a check at ``n`` trials (live and simulated protocol alike).

    Parameters
    ----------
    errs : (B, C, K) float
        Raw errors so far (entries not evaluated are ignored).
    n : int
        Trials done.
    active, leader, streak : arrays
        Classes in play (B, C), current leader (B,), consecutive checks it led (B,).
    proto : dict
        ``alpha``, ``score``, ``keep_top``, ``stable_checks``.

    Returns
    -------
    tuple
        ``(active, leader, streak, running)``; ``running`` (B,) says which cells continue.
    """
    s = scored(errs[:, :, :n], proto.get("score", "error"))
    active = prune(s, n, active, float(proto.get("alpha", 0.0)))
    active = keep_top(s, n, active, proto.get("keep_top"))
    mean = np.where(active, s.mean(axis=2), np.inf)
    new_leader = np.argmin(mean, axis=1)
    streak = np.where(new_leader == leader, streak + 1, 1)
    running = active.sum(axis=1) > 1
    stable = int(proto.get("stable_checks", 0) or 0)
    if stable:
        running &= streak < stable
    return active, new_leader, streak, running


def naive(proto: dict) -> dict:
    """The protocol with pruning, top-k and early stops switched off."""
    return {**proto, "alpha": 0.0, "keep_top": [], "stable_checks": 0}


def simulate(
    full_errs: np.ndarray, proto: dict, max_trials: int | None = None, candidates=None
) -> np.ndarray:
    """Which entries the adaptive protocol evaluates, given every error up front.

    Exactly what :func:`~.classify.classify_crops` does live (same blocks, same
    tests), so benchmarks can compute the full error matrix once and compare
    protocols on identical noise. ``candidates`` (B, C) bool: the classes a
    proposer left in play (default: all).

    Returns
    -------
    evaluated : (B, C, K) bool
    """
    b, c, k = full_errs.shape
    k = min(k, int(max_trials or proto.get("max_trials") or k))
    every = max(1, int(proto.get("check_every", 1)))
    evaluated = np.zeros(full_errs.shape, bool)
    active = np.ones((b, c), bool) if candidates is None else np.asarray(candidates, bool).copy()
    leader, streak = np.full(b, -1), np.zeros(b, int)
    running = np.ones(b, bool)
    n = 0
    while n < k and running.any():
        step = min(every, k - n)
        evaluated[:, :, n : n + step] = (active & running[:, None])[..., None]
        n += step
        errs = np.where(evaluated, full_errs, 1.0)
        a, ld, st, run = advance(errs, n, active, leader, streak, proto)
        active = np.where(running[:, None], a, active)
        leader, streak = np.where(running, ld, leader), np.where(running, st, streak)
        running = running & run
    return evaluated


def unconditional_mask(evaluated: np.ndarray, anomaly_trials: int) -> np.ndarray:
    """Trials (B, K) that get an unconditional evaluation: the first ``anomaly_trials`` a cell ran.

    The live protocol evaluates the "no class" error alongside the classes on
    these trials (for the ``unconditional`` anomaly score); they count as
    network evaluations.
    """
    ran = evaluated.any(axis=1)
    ran[:, int(anomaly_trials) :] = False
    return ran
