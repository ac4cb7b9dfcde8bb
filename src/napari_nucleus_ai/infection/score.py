"""Virus infection from the nuclear stain: per-nucleus probability, per-track table (Qt-free).

After Andriasyan et al. (iScience 2021): a classifier trained on Hoechst nuclear
crops tells infected from uninfected nuclei; following each tracked nucleus over
time gives a probability curve, the frame it became infected, and - for
infected tracks - a lytic vs non-lytic prediction from the first hours after
infection (see :mod:`napari_nucleus_ai.infection.lytic`).

- :func:`nucleus_crops` cuts fixed-size crops (``crop_um`` wide) centred on each
  tracked nucleus; :func:`infection_trainingset` builds an ``infected`` /
  ``uninfected`` :class:`~napari_nucleus_ai.classify.trainset.TrainingSet` from the
  simulator, for the classifier trainer.
- :func:`predict_infection` (core generator) runs a model package over every
  nucleus of every frame and adds ``p_infected`` and ``uncertainty`` to the tracks
  table, plus the shape/texture measurements the lytic predictor uses
  (:func:`nucleus_features`).
- :func:`infection_table` summarises tracks: when each became infected and how
  it ended.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import Cancelled, InputError
from napari_nucleus_ai.core.progress import Progress

INFECTED, UNINFECTED = "infected", "uninfected"
CLASSES = [UNINFECTED, INFECTED]
CROP_UM = 32.0


def crop_size_px(pixel_size_um: float | None, crop_um: float = CROP_UM) -> int:
    """Crop side in pixels (even) for ``crop_um`` at ``pixel_size_um`` (48 px at 0.65 um)."""
    px = float(pixel_size_um) if pixel_size_um else 0.65
    return max(16, int(round(crop_um / px / 2)) * 2)


def nucleus_crops(
    frame: np.ndarray, centres: np.ndarray, size: int, normalise: bool = True
) -> np.ndarray:
    """Square ``size`` crops of ``frame`` centred on ``centres`` ((N, 2) y, x px), float32.

    Crops that run over the edge are padded with the frame's median (background).
    With ``normalise`` each crop is scaled so its 1st percentile is 0 and its
    99.5th is 1: the model then sees chromatin patterns, not the stain's
    brightness, which photobleaching and staining change.
    """
    frame = np.asarray(frame, np.float32)
    half = size // 2
    pad = np.pad(
        frame, half + 1, mode="constant", constant_values=float(np.median(frame[::4, ::4]))
    )
    out = np.empty((len(centres), size, size), np.float32)
    for i, (y, x) in enumerate(np.asarray(centres, float).reshape(-1, 2)):
        cy, cx = int(round(y)) + half + 1, int(round(x)) + half + 1
        out[i] = pad[cy - half : cy - half + size, cx - half : cx - half + size]
    if normalise and len(out):
        lo = np.percentile(out, 1, axis=(1, 2), keepdims=True)
        hi = np.percentile(out, 99.5, axis=(1, 2), keepdims=True)
        out = (out - lo) / np.maximum(hi - lo, 1e-6)
    return out


def nucleus_features(frame: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    """Per-nucleus chromatin measurements of one frame.

    ``rim_ratio`` = mean intensity within 2 px of the nuclear envelope / mean of
    the interior (margination raises it); ``interior_cv`` = coefficient of
    variation of the interior (replication compartments raise it).
    """
    from scipy import ndimage as ndi

    ids = np.asarray(ids, np.int64)
    if ids.size == 0:
        return pd.DataFrame({"label": ids, "rim_ratio": [], "interior_cv": []})
    img = np.asarray(frame, np.float32)
    inner = ndi.grey_erosion(labels, size=5)  # labels shrunk by 2 px (0 where an edge is near)
    interior = np.where(inner == labels, labels, 0)
    rim = np.where((labels > 0) & (interior == 0), labels, 0)
    bg = float(np.percentile(img[::4, ::4], 10))
    with np.errstate(invalid="ignore", divide="ignore"):
        m_rim = np.asarray(ndi.mean(img, rim, ids)) - bg
        m_in = np.asarray(ndi.mean(img, interior, ids)) - bg
        sd_in = np.asarray(ndi.standard_deviation(img, interior, ids))
        rim_ratio = np.where(m_in > 0, m_rim / m_in, np.nan)
        cv = np.where(m_in > 0, sd_in / m_in, np.nan)
    return pd.DataFrame({"label": ids, "rim_ratio": rim_ratio, "interior_cv": cv})


def infection_trainingset(
    timelapses, *, crop_um: float = CROP_UM, max_per_class: int = 600, seed: int = 0
):
    """An ``uninfected`` / ``infected`` training set of nuclear crops from simulated time-lapses.

    Nuclei at the start of infection (phenotype strength between 0 and 0.25,
    not yet visible) and nuclei cut by the image edge are left out.
    """
    from napari_nucleus_ai.classify.trainset import TrainingSet

    rng = np.random.default_rng(seed)
    crops, labels, sources = [], [], []
    px = timelapses[0].pixel_size_um
    size = crop_size_px(px, crop_um)
    for k, tl in enumerate(timelapses):
        truth = tl.truth
        med = truth["area_px"].median()
        ok = (truth["area_px"] > 0.7 * med) & ~(
            (truth["phenotype"] > 0) & (truth["phenotype"] < 0.25)
        )
        ok &= truth["infected"] | (truth["phenotype"] == 0)
        sel = truth[ok]
        for t, rows in sel.groupby("t"):
            c = nucleus_crops(tl.image[t], rows[["y", "x"]].to_numpy(), size)
            crops += list(c)
            labels += [int(v) for v in rows["infected"]]
            sources += [f"sim{k}:t{t}:cell{cid}" for cid in rows["cell_id"]]
    labels = np.asarray(labels)
    keep = []
    for cls in (0, 1):
        idx = np.nonzero(labels == cls)[0]
        keep += list(rng.choice(idx, min(len(idx), max_per_class), replace=False))
    keep = np.sort(np.asarray(keep, int))
    return TrainingSet(
        [crops[i] for i in keep],
        labels[keep],
        list(CLASSES),
        "fluorescence",
        [sources[i] for i in keep],
        px,
        "um",
    )


def train_infection_model(
    out,
    *,
    seeds=(101, 102, 103),
    n_frames: int = 48,
    shape=(384, 384),
    epochs: int = 25,
    max_per_class: int = 1500,
    seed: int = 0,
    threads: int | None = None,
    **train_options,
) -> Generator[Progress, None, object]:
    """Train an ``uninfected`` / ``infected`` model package on simulated nuclear crops; a core generator.

    Simulates ``len(seeds)`` time-lapses, cuts :func:`infection_trainingset`
    crops and trains them with :func:`~napari_nucleus_ai.classify.train.train_gen`
    (small CNN, augmentation, validation split, calibration). Returns its ``TrainResult``.
    """
    from napari_nucleus_ai.classify.train import train_gen
    from napari_nucleus_ai.samples.timelapse import simulate_timelapse

    tls = []
    for i, s in enumerate(seeds):
        yield Progress(i, len(seeds) + 1, f"simulating training movie {i + 1}/{len(seeds)}")
        tls.append(simulate_timelapse(n_frames, shape, seed=int(s)))
    ts = infection_trainingset(tls, max_per_class=max_per_class, seed=seed)
    size = crop_size_px(tls[0].pixel_size_um)
    opts = {"arch": "smallcnn", "epochs": epochs, "crop_size": size, "pixel_size": tls[0].pixel_size_um,
            "unit": "um", "name": "infection-hoechst-sim", "seed": seed, "threads": threads, **train_options}  # fmt: skip
    result = yield from train_gen(ts, out, **opts)
    return result


def _p_infected(model, crops: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(p_infected, uncertainty)`` for crops from an classifier model package."""
    if INFECTED not in model.classes:
        raise InputError(model.path, f"model classes {model.classes} have no '{INFECTED}' class")
    from napari_nucleus_ai.classify.predict import predict_items

    pred = predict_items(model, list(crops), batch_size=batch_size)
    j = list(pred.classes).index(INFECTED)
    return np.asarray(pred.probs)[:, j].astype(float), np.asarray(pred.uncertainty, float)


def predict_infection(
    stack,
    tracks: pd.DataFrame,
    labels: np.ndarray,
    model=None,
    *,
    pixel_size_um: float | None = None,
    crop_um: float = CROP_UM,
    batch_size: int = 256,
    probability: Callable[[np.ndarray], np.ndarray] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, pd.DataFrame]:
    """Infection probability and chromatin features for every tracked nucleus; a core generator.

    Parameters
    ----------
    stack : (T, Y, X) array-like
        The nuclear-stain time-lapse.
    tracks : DataFrame
        From :func:`napari_nucleus_ai.infection.track.track_stack` (``track_id, t, y, x, label``).
    labels : (T, Y, X) array
        Track-id labels from the same run.
    model : ModelPackage or path, optional
        An classifier model package with an ``infected`` class. Without a model (and
        without ``probability``) only the chromatin features are added.
    probability : callable, optional
        ``crops -> p_infected`` instead of a model package (tests, other backends).

    Returns
    -------
    DataFrame
        ``tracks`` with ``rim_ratio``, ``interior_cv`` and, given a model,
        ``p_infected`` and ``uncertainty``.
    """
    if model is not None:  # a path, or a loaded package passed through
        from napari_nucleus_ai.models.package import as_package

        model = as_package(model)
    size = crop_size_px(pixel_size_um, crop_um)
    out = tracks.copy()
    frames = sorted(out["t"].unique())
    cols = {
        c: np.full(len(out), np.nan)
        for c in ("rim_ratio", "interior_cv", "p_infected", "uncertainty")
    }
    pos = {k: i for i, k in enumerate(zip(out["t"], out["track_id"], strict=True))}
    for n, t in enumerate(frames):
        if cancel is not None and cancel():
            raise Cancelled("infection prediction cancelled")
        yield Progress(n, len(frames), f"infection, frame {n + 1}/{len(frames)}")
        rows = out[out["t"] == t]
        frame = np.asarray(stack[int(t)])
        ids = rows["track_id"].to_numpy(np.int64)
        idx = [pos[(t, k)] for k in ids]
        feats = nucleus_features(frame, np.asarray(labels[int(t)]), ids)
        cols["rim_ratio"][idx] = feats["rim_ratio"].to_numpy()
        cols["interior_cv"][idx] = feats["interior_cv"].to_numpy()
        if model is not None or probability is not None:
            crops = nucleus_crops(frame, rows[["y", "x"]].to_numpy(), size)
            if probability is not None:
                p, u = np.asarray(probability(crops), float), np.full(len(crops), np.nan)
            else:
                p, u = _p_infected(model, crops, batch_size)
            cols["p_infected"][idx] = p
            cols["uncertainty"][idx] = u
    for c, v in cols.items():
        if c in ("p_infected", "uncertainty") and model is None and probability is None:
            continue
        out[c] = v
    yield Progress(len(frames), len(frames), "done")
    return out


def infection_onset(p: np.ndarray, threshold: float = 0.5, sustain: int = 3) -> int:
    """Index of the first of ``sustain`` consecutive values above ``threshold`` (-1 if none)."""
    above = np.asarray(p, float) > threshold
    if len(above) < sustain:
        return 0 if len(above) and above.all() else -1
    run = np.convolve(above.astype(int), np.ones(sustain, int), "valid")
    hit = np.nonzero(run == sustain)[0]
    return int(hit[0]) if hit.size else -1


def infection_table(
    tracks: pd.DataFrame,
    shape: tuple[int, int],
    n_frames: int,
    *,
    frame_interval_h: float = 1.0,
    threshold: float = 0.5,
    sustain: int = 3,
) -> pd.DataFrame:
    """One row per track: infection status and onset, how the track ended.

    Columns: ``track_id, parent_id, t_start, t_end, n_frames, end`` (see
    :func:`napari_nucleus_ai.infection.track.track_ends`), ``p_infected_mean``,
    ``p_infected_last``, ``infected`` (``sustain`` consecutive frames above
    ``threshold``), ``t_infected`` (first of them, -1 if never) and
    ``infected_h`` (hours infected before the track ends).
    """
    from napari_nucleus_ai.infection.track import track_ends

    if "p_infected" not in tracks.columns:
        raise InputError(
            None, "tracks have no p_infected column; run predict_infection with a model"
        )
    table = track_ends(tracks, shape, n_frames)
    rows = []
    for tid, g in tracks.sort_values("t").groupby("track_id"):
        p = g["p_infected"].to_numpy(float)
        k = infection_onset(p, threshold, sustain)
        t_inf = int(g["t"].iloc[k]) if k >= 0 else -1
        rows.append((tid, float(np.nanmean(p)), float(p[-1]), k >= 0, t_inf))
    info = pd.DataFrame(
        rows, columns=["track_id", "p_infected_mean", "p_infected_last", "infected", "t_infected"]
    )
    table = table.merge(info, on="track_id", how="left")
    table["infected_h"] = np.where(
        table["infected"], (table["t_end"] - table["t_infected"] + 1) * frame_interval_h, 0.0
    )
    return table


DEMO_MODEL_VERSION = 1
#: The demo infection model's fixed recipe (:func:`train_infection_model` options); the shipped
#: package ``demo/models/infection-hoechst.zip`` is built from it by ``scripts/train_demo_models.py``.
#: One view per nucleus at inference (``tta=1``): a 40-frame demo movie has ~2,000 nuclei.
DEMO_RECIPE = dict(
    seeds=(101, 102), n_frames=36, shape=(320, 320), epochs=6, max_per_class=600, tta=1
)


def demo_model_path():
    """Where the demo infection model is: the package shipped with the plugin, else the cache."""
    from napari_nucleus_ai.classify.demo_models import shipped_path
    from napari_nucleus_ai.samples.slide import cache_dir

    shipped = shipped_path("infection-hoechst")
    return (
        shipped if shipped.exists() else cache_dir() / f"infection-model-sim-v{DEMO_MODEL_VERSION}"
    )


def ensure_demo_model(epochs: int = 6) -> Generator[Progress, None, object]:
    """The demo infection model: the shipped package, the cache, or trained on simulated crops first."""
    from napari_nucleus_ai.models.package import load_model

    path = demo_model_path()
    if path.suffix == ".zip" or (path / "weights.safetensors").exists():
        return load_model(path)
    yield Progress(0, 1, "training the demo infection model (once)")
    yield from train_infection_model(path, **dict(DEMO_RECIPE, epochs=epochs))
    return load_model(path)


@dataclass
class InfectionResult:
    """What :func:`analyse_timelapse` returns."""

    tracking: object  # TrackingResult
    tracks: pd.DataFrame
    table: pd.DataFrame | None
    frame_interval_h: float


def _phase(gen, offset: int, total: int, scale: float = 1.0):
    """Re-map a sub-generator's progress into one bar of ``total`` units starting at ``offset``."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if isinstance(item, Progress):
            frac = item.fraction or 0.0
            yield Progress(offset + int(frac * scale), total, item.message)


def analyse_timelapse(
    stack,
    pixel_size_um: float | None = None,
    *,
    model=None,
    lytic=None,
    frame_interval_h: float = 1.0,
    track_options: dict | None = None,
    batch_size: int = 256,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, InfectionResult]:
    """The whole workflow on a time-lapse; a core generator with one progress range.

    Track nuclei (:func:`~napari_nucleus_ai.infection.track.track_stack`); with an infection
    ``model``, add per-nucleus ``p_infected`` and build the per-track table; with a
    ``lytic`` model (:class:`~napari_nucleus_ai.infection.lytic.LyticModel` or path), add the
    lytic prediction and lead time.
    """
    from napari_nucleus_ai.infection.track import track_stack

    n = int(stack.shape[0]) if getattr(stack, "ndim", 0) == 3 else 1
    total = 2 * n if model is not None else n
    res = yield from _phase(
        track_stack(stack, pixel_size_um, cancel=cancel, **(track_options or {})), 0, total, n
    )
    tracks, table = res.tracks, None
    if model is not None:
        gen = predict_infection(
            stack,
            tracks,
            res.labels,
            model,
            pixel_size_um=pixel_size_um,
            batch_size=batch_size,
            cancel=cancel,
        )
        tracks = yield from _phase(gen, n, total, n)
        table = infection_table(tracks, stack.shape[1:], n, frame_interval_h=frame_interval_h)
        if lytic is not None:
            from napari_nucleus_ai.infection.lytic import LyticModel, predict_lytic

            lytic = lytic if isinstance(lytic, LyticModel) else LyticModel.load(lytic)
            table = predict_lytic(tracks, table, lytic, frame_interval_h=frame_interval_h)
    yield Progress(total, total, "done")
    return InfectionResult(res, tracks, table, frame_interval_h)
