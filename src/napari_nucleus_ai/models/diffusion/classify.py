"""Classification by denoising error, with adaptive pruning (CytoDiffusion-style).

For a cell crop ``x0`` and each candidate class ``c``, a *trial* ``k`` draws a
noise level ``t_k`` and a noise image ``eps_k``, and measures
``||eps(x_t, t_k, c) - eps_k||^2``: how well the model denoises the cell when
told it is class ``c``. The class with the lowest mean error wins. The noise
of trial ``k`` is the same for every class (and every cell), so class errors
are compared *paired*: most trial-to-trial variance cancels.

Adaptive protocol: every ``check_every`` trials, a one-sided paired t-test
compares each remaining class with the current best; classes significantly
worse (``p < alpha``) are pruned and never evaluated again; a cell stops when
one class remains, after ``max_trials``, or (``stable_checks`` > 0) when the
same class has led for that many consecutive checks. The *naive* protocol evaluates every
class at every trial (``max_trials * n_classes`` network evaluations).

Outputs per cell: the class, ``p_<class>`` (softmax of the paired error gap to
the winner over a calibrated temperature), confidence (the winner's
probability), ``anomaly`` (log ratio of the winner's denoising error to the
median error of training cells at the same noise levels: higher = more unlike
the training classes) and ``evaluations`` (network evaluations spent).
"""

from __future__ import annotations

import warnings

import numpy as np

from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.models.diffusion.protocol import advance, naive, scored
from napari_nucleus_ai.models.diffusion.schedule import trial_timesteps

# classes a proposer left out have no trials: their means are NaN on purpose
warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning, __name__)


def trial_plan(model, max_trials: int | None = None):
    """Noise levels ``t`` (K,) and noise images ``eps`` (K, C, S, S) shared by all cells."""
    import torch

    p = model.protocol
    k = int(max_trials or p["max_trials"])
    steps = int(model.config.get("timesteps", 1000))
    t = trial_timesteps(k, steps, p["t_lo"], p["t_hi"], seed=int(p["seed"]))
    g = torch.Generator().manual_seed(int(p["seed"]) + 7919)
    eps = torch.randn((k, *model.z_shape), generator=g)
    return t, eps


def _eval_pairs(model, x0, cells, classes, trials, t_plan, eps_plan, batch_size):
    """Denoising error for each (cell, class, trial) triple; returns float64 (P,)."""
    import torch

    out = np.empty(len(cells), np.float64)
    with torch.inference_mode():
        for s in range(0, len(cells), batch_size):
            sl = slice(s, s + batch_size)
            b = torch.as_tensor(cells[sl])
            k = torch.as_tensor(trials[sl])
            eps = eps_plan[k].to(model.device)
            t = torch.as_tensor(t_plan[trials[sl]], device=model.device)
            xt = model.noisy(x0[b].to(model.device), t, eps)
            y = torch.as_tensor(classes[sl], device=model.device)
            pred = model.eps(xt, t, y)
            out[sl] = ((pred.float() - eps) ** 2).mean(dim=(1, 2, 3)).double().cpu().numpy()
    return out


def decide(
    errs: np.ndarray,
    evaluated: np.ndarray,
    tau: float = 1.0,
    ref=None,
    score: str = "error",
    unconditional=None,
    prior=None,
) -> dict:
    """Class, probabilities, confidence and anomaly from (partly evaluated) errors.

    Parameters
    ----------
    errs, evaluated : (B, C, K)
        Raw errors and which of them were evaluated.
    tau : float
        Temperature of the softmax over the paired score gaps.
    ref : sequence of float, optional
        Per-trial reference errors of training cells (anomaly score).
    score : str
        ``"log"`` or ``"error"``: the statistic averaged over trials (see :mod:`.protocol`).
    unconditional : (B, K) float, optional
        Unconditional ("no class") errors, NaN where not evaluated. When given, the
        anomaly is the mean log ratio of the winner's error to it (and these
        evaluations are counted); otherwise it is relative to ``ref``.
    prior : (B, C) float, optional
        Class probabilities from another look at the cell (the proposer's). The paired
        gaps act as log-likelihood ratios: ``p ∝ prior * exp(-gap / tau)`` over the classes
        evaluated, and the class is the most probable one.
    """
    e = np.where(evaluated, errs, np.nan)
    s = np.where(evaluated, scored(np.where(evaluated, errs, 1.0), score), np.nan)
    with np.errstate(invalid="ignore"):
        n_eval = evaluated.sum(axis=2)
        full = n_eval == n_eval.max(axis=1, keepdims=True)  # classes that survived to the end
        mean = np.where(full, np.nanmean(s, axis=2), np.inf)
    win = np.argmin(mean, axis=1)
    ew = e[np.arange(len(e)), win]  # (B, K)
    sw = s[np.arange(len(e)), win]
    with np.errstate(invalid="ignore"):
        d = np.nanmean(s - sw[:, None, :], axis=2)  # paired gap on trials both were evaluated
    d = np.where(np.isfinite(d), d, np.inf)
    d[np.arange(len(e)), win] = 0.0
    logits = -d / max(float(tau), 1e-12)
    if prior is not None:
        with np.errstate(divide="ignore"):
            logits = logits + np.log(np.clip(np.asarray(prior, float), 1e-12, None))
        win = np.argmax(logits, axis=1)  # the denoising winner unless the prior outweighs it
        ew, sw = e[np.arange(len(e)), win], s[np.arange(len(e)), win]
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    trials = evaluated[np.arange(len(e)), win].sum(axis=1)
    n_unc = 0
    if unconditional is not None:
        u = np.asarray(unconditional, float)
        n_unc = np.isfinite(u).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            anomaly = np.nanmean(np.log(np.maximum(ew, 1e-12) / u), axis=1)
    elif ref is not None:
        r = np.asarray(ref, float)[: e.shape[2]]  # trials beyond the reference are not scored
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log(np.maximum(ew[:, : len(r)], 1e-12) / r[None, :])
            anomaly = np.nanmean(ratio, axis=1)
    else:
        anomaly = np.nanmean(ew, axis=1)
    return {
        "index": win,
        "p": p,
        "confidence": p[np.arange(len(e)), win],
        "anomaly": anomaly,
        "evaluations": evaluated.sum(axis=(1, 2)) + n_unc,
        "trials": trials,
        "gap": np.sort(np.where(np.isinf(d), np.nan, d), axis=1)[:, 1]
        if e.shape[1] > 1
        else d[:, 0],
    }


def classify_crops(
    model,
    x,
    *,
    exhaustive: bool = False,
    batch_size: int = 256,
    cells_per_chunk: int = 64,
    candidates=None,
    prior=None,
    **protocol,
):
    """Classify crops ``x`` (N, C, S, S) in [-1, 1]; a generator yielding Progress.

    Parameters
    ----------
    model : DiffusionClassifier
    exhaustive : bool
        Naive protocol: every class at every trial (no pruning, no candidates).
    candidates : (N, C) bool, optional
        The classes each cell starts with (a proposer's short list, see
        :mod:`.proposer`); the others are never evaluated. Default: all.
    prior : (N, C) float, optional
        Class probabilities the decision weighs the denoising errors with (see :func:`decide`).
    batch_size : int
        Network evaluations per forward pass.
    **protocol
        Overrides of ``model.protocol`` (max_trials, check_every, alpha, ...).

    Returns
    -------
    dict
        ``index``, ``p`` (N, C), ``confidence``, ``anomaly``, ``evaluations``,
        ``trials``, ``gap`` as numpy arrays.
    """

    proto = {**model.protocol, **protocol}
    if protocol:
        model = _with_protocol(model, proto)
    if exhaustive:
        proto, candidates = naive(proto), None
    k_max, every = int(proto["max_trials"]), max(1, int(proto["check_every"]))
    t_plan, eps_plan = trial_plan(model, k_max)
    x = model.encode(np.asarray(x, np.float32))
    n_cells, n_cls = len(x), len(model.class_names)
    n_unc = int(proto.get("anomaly_trials", 0)) if proto.get("anomaly") == "unconditional" else 0
    errs = np.zeros((n_cells, n_cls + 1, k_max))  # last column: unconditional (anomaly)
    evaluated = np.zeros((n_cells, n_cls + 1, k_max), bool)
    done_cells = 0
    for s in range(0, n_cells, cells_per_chunk):
        xc = x[s : s + cells_per_chunk]
        bsz = len(xc)
        active = np.ones((bsz, n_cls), bool)
        if candidates is not None:
            active = np.asarray(candidates, bool)[s : s + cells_per_chunk].copy()
        leader, streak = np.full(bsz, -1), np.zeros(bsz, int)
        running = np.ones(bsz, bool)
        ec = np.zeros((bsz, n_cls + 1, k_max))
        ev = np.zeros((bsz, n_cls + 1, k_max), bool)
        n = 0
        while n < k_max and running.any():
            step = min(every, k_max - n)
            mask = np.zeros((bsz, n_cls + 1, step), bool)
            mask[:, :n_cls] = (active & running[:, None])[..., None]
            mask[:, n_cls, : max(0, n_unc - n)] = running[:, None]  # the unconditional trials
            bi, ci, ki = np.nonzero(mask)
            ki = ki + n
            ec[bi, ci, ki] = _eval_pairs(model, xc, bi, ci, ki, t_plan, eps_plan, batch_size)
            ev[bi, ci, ki] = True
            n += step
            a, ld, st, run = advance(ec[:, :n_cls], n, active, leader, streak, proto)
            active = np.where(running[:, None], a, active)
            leader, streak = np.where(running, ld, leader), np.where(running, st, streak)
            running = running & run
            yield Progress(
                done_cells + int((~running).sum()),
                n_cells,
                f"diffusion classification: trial {n}/{k_max}",
            )
        errs[s : s + bsz], evaluated[s : s + bsz] = ec, ev
        done_cells += bsz
        yield Progress(
            done_cells, n_cells, f"diffusion classification: {done_cells}/{n_cells} cells"
        )
    cal = model.config.get("calibration", {})
    unc = np.where(evaluated[:, n_cls], errs[:, n_cls], np.nan) if n_unc else None
    out = decide(
        errs[:, :n_cls],
        evaluated[:, :n_cls],
        tau=cal.get("tau", 1.0),
        ref=cal.get("ref"),
        score=proto["score"],
        unconditional=unc,
        prior=None if exhaustive else prior,
    )
    out["errors"] = np.where(evaluated[:, :n_cls], errs[:, :n_cls], np.nan)
    out["unconditional"] = unc
    return out


def _with_protocol(model, proto):
    from napari_nucleus_ai.models.diffusion.model import DiffusionClassifier

    cfg = {**model.config, "protocol": proto}
    clone = DiffusionClassifier.__new__(DiffusionClassifier)
    clone.__dict__.update(model.__dict__)
    clone.config = cfg
    return clone


def fit_temperature(errs, evaluated, y, grid=None, score: str = "error", prior=None) -> float:
    """Temperature minimising the negative log-likelihood of the true classes."""
    grid = np.geomspace(1e-5, 10.0, 141) if grid is None else grid
    best, best_nll = 1.0, np.inf
    for tau in grid:
        p = decide(errs, evaluated, tau=tau, score=score, prior=prior)["p"]
        nll = -np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)))
        if nll < best_nll:
            best, best_nll = float(tau), nll
    return best


def true_class_errors(model, x, y, trials: int | None = None, batch_size: int = 256) -> np.ndarray:
    """Errors (N, K) of each crop under its own class at the shared trials."""

    k = int(trials or model.protocol["max_trials"])
    t_plan, eps_plan = trial_plan(model, k)
    n = len(x)
    bi = np.repeat(np.arange(n), k)
    ki = np.tile(np.arange(k), n)
    ci = np.asarray(y)[bi]
    xt = model.encode(np.asarray(x, np.float32))
    return _eval_pairs(model, xt, bi, ci, ki, t_plan, eps_plan, batch_size).reshape(n, k)


def calibrate(
    model,
    x,
    y,
    trials: int | None = None,
    x_tau=None,
    y_tau=None,
    candidates=None,
    overrides=None,
    prior=None,
) -> dict:
    """Fit the confidence temperature and anomaly reference on labelled crops.

    Stores ``config["calibration"] = {"tau", "ref", "n"}`` and returns it (plus
    ``_val_p``, the calibrated probabilities of the crops ``tau`` was fitted on).
    ``ref[k]`` is the median error of ``x`` under its own class at trial ``k``
    (every trial of the protocol); ``tau`` is the NLL-optimal temperature of the
    adaptive protocol on ``x_tau`` (default ``x``: held-out crops are better,
    training crops are denoised too well and give over-confident temperatures).
    ``candidates`` and ``overrides`` (the proposer's short lists of ``x_tau`` and its
    protocol) make the temperature fit the protocol that will be run; ``prior`` (the
    proposer's probabilities of ``x_tau``, when the decision weighs them) the decision.
    """
    from napari_nucleus_ai.core.progress import run_sync

    k = int(model.protocol["max_trials"])
    ref = np.median(true_class_errors(model, x, y, trials=k), axis=0)
    xs, ys = (x, y) if x_tau is None else (x_tau, y_tau)
    over = {"max_trials": min(k, int(trials or k)), **(overrides or {})}
    res = run_sync(classify_crops(model, xs, candidates=candidates, **over))
    ev = ~np.isnan(res["errors"])
    errs = np.nan_to_num(res["errors"])
    score = model.protocol["score"]
    tau = fit_temperature(errs, ev, np.asarray(ys), score=score, prior=prior)
    cal = {"tau": tau, "ref": [float(v) for v in ref], "n": int(len(x)), "n_tau": int(len(xs))}
    model.config["calibration"] = dict(cal)
    return {**cal, "_val_p": decide(errs, ev, tau=tau, score=score, prior=prior)["p"]}
