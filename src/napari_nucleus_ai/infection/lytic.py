"""Lytic vs non-lytic prediction for infected tracks from their first hours (Qt-free).

Andriasyan et al. (2021) predicted which infected nuclei will burst (lyse) many
hours before they do. Here each infected track is described by how its nucleus
changes over a window of ``window_frames`` frames starting at its infection
onset (``t_infected`` from :func:`napari_nucleus_ai.infection.score.infection_table`):
growth of the nuclear area, level and trend of chromatin margination
(``rim_ratio``) and interior heterogeneity (``interior_cv``), and the trend of
the mean intensity. A standardised logistic regression (scikit-learn) turns
these into ``p_lytic``. The prediction is made at the end of the window
(``t_predict``); for tracks that then disappear in the field (lysis), the lead
time is the time from ``t_predict`` to the first frame without the nucleus.

The model is a small JSON file (feature names, standardisation, coefficients,
window, training provenance); no pickle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import InputError

FEATURES = (
    "area_growth",
    "area_rel",
    "rim_mean",
    "rim_slope",
    "cv_mean",
    "cv_slope",
    "intensity_slope",
)


def _slope(y: np.ndarray) -> float:
    y = np.asarray(y, float)
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return 0.0
    x = np.arange(len(y))[ok]
    return float(np.polyfit(x, y[ok], 1)[0])


def window_features(tracks: pd.DataFrame, table: pd.DataFrame, window_frames: int) -> pd.DataFrame:
    """Features of each infected track over ``window_frames`` from its infection onset.

    Tracks whose nucleus is seen for fewer than ``window_frames`` frames after
    onset are left out (they cannot be predicted that early). Returns
    ``track_id, t_predict`` and :data:`FEATURES`.
    """
    need = {"area_px", "mean_intensity", "rim_ratio", "interior_cv"}
    if missing := need - set(tracks.columns):
        raise InputError(None, f"tracks lack {sorted(missing)}; run predict_infection first")
    rows = []
    inf = table[table["infected"] & (table["t_infected"] >= 0)]
    by_track = dict(tuple(tracks.sort_values("t").groupby("track_id")))
    for tid, t_inf in inf[["track_id", "t_infected"]].itertuples(index=False):
        g = by_track[tid]
        w = g[(g["t"] >= t_inf) & (g["t"] < t_inf + window_frames)]
        if len(w) < window_frames:
            continue
        before = g[g["t"] < t_inf]["area_px"]
        base = float(before.median()) if len(before) >= 2 else float(w["area_px"].iloc[0])
        area = w["area_px"].to_numpy(float)
        rows.append(
            {
                "track_id": int(tid),
                "t_predict": int(w["t"].iloc[-1]),
                "area_growth": _slope(np.log(np.maximum(area, 1.0))),
                "area_rel": float(np.mean(area[-3:]) / max(base, 1.0)),
                "rim_mean": float(np.nanmean(w["rim_ratio"])),
                "rim_slope": _slope(w["rim_ratio"].to_numpy()),
                "cv_mean": float(np.nanmean(w["interior_cv"])),
                "cv_slope": _slope(w["interior_cv"].to_numpy()),
                "intensity_slope": _slope(
                    np.log(np.maximum(w["mean_intensity"].to_numpy(float), 1.0))
                ),
            }
        )
    cols = ["track_id", "t_predict", *FEATURES]
    return pd.DataFrame(rows, columns=cols)


@dataclass
class LyticModel:
    """Standardised logistic regression on :data:`FEATURES` of the first ``window_frames``."""

    window_frames: int
    frame_interval_h: float
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    features: list[str] = field(default_factory=lambda: list(FEATURES))
    threshold: float = 0.5
    provenance: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, X: pd.DataFrame, y, window_frames: int, frame_interval_h: float, **provenance):
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y, int)
        if len(np.unique(y)) < 2:
            raise InputError(
                None, "need lytic and non-lytic infected tracks to train the lytic predictor"
            )
        A = X[list(FEATURES)].to_numpy(float)
        A = np.where(np.isfinite(A), A, np.nanmedian(A, 0))
        mean, scale = A.mean(0), A.std(0) + 1e-9
        clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
        clf.fit((A - mean) / scale, y)
        return cls(
            int(window_frames),
            float(frame_interval_h),
            mean.tolist(),
            scale.tolist(),
            clf.coef_[0].tolist(),
            float(clf.intercept_[0]),
            provenance={"n_tracks": int(len(y)), "n_lytic": int(y.sum()), **provenance},
        )

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if X.empty:
            return np.zeros(0)
        A = X[self.features].to_numpy(float)
        A = np.where(np.isfinite(A), A, np.asarray(self.mean))
        z = ((A - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(
            self.coef
        ) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def save(self, path) -> None:
        from napari_nucleus_ai.core.files import atomic_write

        with atomic_write(path, "w") as fh:
            json.dump({"kind": "lytic-logistic", **asdict(self)}, fh, indent=1)

    @classmethod
    def load(cls, path) -> LyticModel:
        try:
            with open(path) as fh:
                d = json.load(fh)
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(path, "not a lytic model (invalid JSON)") from None
        if not isinstance(d, dict) or d.pop("kind", None) != "lytic-logistic":
            raise InputError(path, "not a lytic model (kind is not 'lytic-logistic')")
        try:
            m = cls(**d)
        except TypeError as e:
            raise InputError(path, f"lytic model has wrong fields ({e})") from None
        n = len(m.features)
        if not (len(m.mean) == len(m.scale) == len(m.coef) == n) or set(m.features) - set(FEATURES):
            raise InputError(path, "lytic model's feature lists do not match")
        if not np.all(np.isfinite(m.mean + m.scale + m.coef + [m.intercept])):
            raise InputError(path, "lytic model holds NaN or infinite numbers")
        return m


def predict_lytic(
    tracks: pd.DataFrame,
    table: pd.DataFrame,
    model: LyticModel,
    frame_interval_h: float | None = None,
) -> pd.DataFrame:
    """Add ``p_lytic``, ``lytic_predicted``, ``t_predict`` and ``lead_time_h`` to an infection table.

    ``lead_time_h`` is set for tracks predicted lytic that then vanish in the
    field (``end == "vanished"``): hours from ``t_predict`` to the first frame
    without the nucleus, at ``frame_interval_h`` hours per frame of *this* movie
    (default: the interval the model was trained at). Tracks not infected, or not
    followed long enough after onset, get NaN.
    """
    dt = float(frame_interval_h) if frame_interval_h else model.frame_interval_h
    X = window_features(tracks, table, model.window_frames)
    X["p_lytic"] = model.predict_proba(X)
    out = table.drop(
        columns=["p_lytic", "lytic_predicted", "t_predict", "lead_time_h"], errors="ignore"
    )
    out = out.merge(X[["track_id", "t_predict", "p_lytic"]], on="track_id", how="left")
    out["lytic_predicted"] = (out["p_lytic"] >= model.threshold).astype("boolean")
    out.loc[out["p_lytic"].isna(), "lytic_predicted"] = pd.NA
    vanished = (
        (out["end"].eq("vanished") & out["lytic_predicted"].eq(True)).fillna(False).to_numpy(bool)
    )
    out["lead_time_h"] = np.where(vanished, (out["t_end"] + 1 - out["t_predict"]) * dt, np.nan)
    return out


def default_model_path():
    """The lytic model trained on simulated time-lapses and shipped with the package."""
    from pathlib import Path

    return Path(__file__).with_name("lytic_default.json")
