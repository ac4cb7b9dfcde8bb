"""Scoring the infection workflow against the simulator's ground truth (Qt-free).

Used by the tests, ``benchmarks/bench_infection.py`` and the script that trains
the shipped lytic model. Everything here needs a
:class:`~napari_nucleus_ai.samples.timelapse.TimeLapse` (simulated, so the truth is known).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.progress import run_sync


def run_pipeline(tl, model=None, probability=None, lytic_model=None) -> dict:
    """Track, add infection probabilities / features, tabulate (and predict lysis) on a time-lapse."""
    from napari_nucleus_ai.infection.score import infection_table, predict_infection
    from napari_nucleus_ai.infection.track import track_stack

    res = run_sync(track_stack(tl.image, tl.pixel_size_um))
    tracks = run_sync(
        predict_infection(
            tl.image,
            res.tracks,
            res.labels,
            model,
            pixel_size_um=tl.pixel_size_um,
            probability=probability,
        )
    )
    out = {"result": res, "tracks": tracks}
    if "p_infected" in tracks.columns:
        table = infection_table(
            tracks, tl.image.shape[1:], tl.image.shape[0], frame_interval_h=tl.frame_interval_h
        )
        if lytic_model is not None:
            from napari_nucleus_ai.infection.lytic import predict_lytic

            table = predict_lytic(tracks, table, lytic_model, tl.frame_interval_h)
        out["table"] = table
    return out


def truth_for_tracks(tl, tracks: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """``tracks`` joined with the matched ground-truth nucleus (``cell_id``, ``infected_true``, ``phenotype``)."""
    from napari_nucleus_ai.infection.track import match_to_truth

    m = match_to_truth(labels, tl.labels)
    truth = tl.truth.rename(columns={"infected": "infected_true", "y": "y_true", "x": "x_true"})
    m = m.merge(
        truth[["cell_id", "t", "infected_true", "phenotype"]], on=["cell_id", "t"], how="left"
    )
    return tracks.merge(m, on=["t", "track_id"], how="inner")


def infection_accuracy(
    tl, tracks: pd.DataFrame, labels: np.ndarray, threshold: float = 0.5
) -> dict:
    """Per-nucleus accuracy of ``p_infected > threshold`` against the truth.

    ``accuracy`` counts every matched nucleus; ``accuracy_visible`` leaves out
    nuclei in the first quarter of their phenotype ramp (infected, but with no
    visible change yet); ``balanced_accuracy`` averages the two classes' recall.
    """
    j = truth_for_tracks(tl, tracks, labels)
    pred = j["p_infected"].to_numpy(float) > threshold
    true = j["infected_true"].to_numpy(bool)
    vis = ~((j["phenotype"] > 0) & (j["phenotype"] < 0.25)).to_numpy()
    rec = [float((pred[true == c] == c).mean()) for c in (False, True) if (true == c).any()]
    return {
        "nuclei": int(len(j)),
        "accuracy": float((pred == true).mean()) if len(j) else float("nan"),
        "accuracy_visible": float((pred[vis] == true[vis]).mean()) if vis.any() else float("nan"),
        "balanced_accuracy": float(np.mean(rec)) if rec else float("nan"),
    }


def track_truth(tl, tracks: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Per track: the ground-truth cell it follows most (``cell_id``) and that cell's fate."""
    j = truth_for_tracks(tl, tracks, labels)
    if j.empty:
        return pd.DataFrame(
            columns=["track_id", "cell_id", "infected_cell", "lytic_true", "fate", "t_lysis"]
        )
    best = j.groupby("track_id")["cell_id"].agg(lambda s: s.value_counts().index[0]).reset_index()
    cells = tl.cells.rename(columns={"infected": "infected_cell", "lytic": "lytic_true"})
    return best.merge(
        cells[["cell_id", "infected_cell", "lytic_true", "fate", "t_lysis"]],
        on="cell_id",
        how="left",
    )


def lytic_accuracy(tl, tracks: pd.DataFrame, labels: np.ndarray, table: pd.DataFrame) -> dict:
    """Accuracy of ``lytic_predicted`` on infected tracks that got a prediction, and lead times.

    The truth is the simulated cell's destiny (``lytic``), which also covers cells
    that would burst after the movie ends. ``median_lead_time_h`` is over
    correctly predicted tracks whose lysis was seen; the lead time there is
    measured against the true lysis frame.
    """
    tt = track_truth(tl, tracks, labels)
    j = table.merge(tt, on="track_id", how="left")
    j = j[j["p_lytic"].notna() & j["infected_cell"].eq(True)]
    pred = j["lytic_predicted"].fillna(False).astype(bool).to_numpy()
    true = j["lytic_true"].astype(bool).to_numpy()
    seen = j["fate"].eq("lysis") & j["t_lysis"].ge(0)
    hit = seen.to_numpy() & pred & true
    lead = (
        j["t_lysis"].to_numpy(float)[hit] - j["t_predict"].to_numpy(float)[hit]
    ) * tl.frame_interval_h
    return {
        "tracks": int(len(j)),
        "lytic": int(true.sum()),
        "accuracy": float((pred == true).mean()) if len(j) else float("nan"),
        "lead_times_h": lead.tolist(),
        "median_lead_time_h": float(np.median(lead)) if lead.size else float("nan"),
    }


def lytic_training_rows(
    tl, tracks: pd.DataFrame, labels: np.ndarray, table: pd.DataFrame, window_frames: int
):
    """``(features, y)`` for infected tracks of a simulated movie (y = the cell's lytic destiny)."""
    from napari_nucleus_ai.infection.lytic import window_features

    X = window_features(tracks, table, window_frames)
    tt = track_truth(tl, tracks, labels)
    X = X.merge(tt[["track_id", "infected_cell", "lytic_true"]], on="track_id", how="left")
    X = X[X["infected_cell"].eq(True)]
    return X, X["lytic_true"].astype(int).to_numpy()


def train_lytic_on_simulation(
    model=None,
    probability=None,
    *,
    seeds=(201, 202, 203, 204),
    n_frames: int = 72,
    shape=(384, 384),
    window_frames: int = 6,
):
    """Fit a :class:`~napari_nucleus_ai.infection.lytic.LyticModel` on simulated movies; a core generator.

    Each movie is tracked and scored with the infection ``model`` (so the onset
    the window starts from is the one the model will give in use); the label is
    each infected cell's simulated destiny.
    """
    from napari_nucleus_ai.core.progress import Progress
    from napari_nucleus_ai.infection.lytic import LyticModel
    from napari_nucleus_ai.samples.timelapse import simulate_timelapse

    Xs, ys = [], []
    for i, s in enumerate(seeds):
        yield Progress(i, len(seeds), f"lytic training movie {i + 1}/{len(seeds)}")
        tl = simulate_timelapse(n_frames, shape, seed=int(s))
        o = run_pipeline(tl, model, probability)
        X, y = lytic_training_rows(tl, o["tracks"], o["result"].labels, o["table"], window_frames)
        Xs.append(X)
        ys.append(y)
    X = pd.concat(Xs, ignore_index=True)
    return LyticModel.fit(
        X, np.concatenate(ys), window_frames, tl.frame_interval_h,
        trained_on=f"simulated time-lapses seeds {list(seeds)}, {n_frames} frames {shape[0]}x{shape[1]}",
    )  # fmt: skip
