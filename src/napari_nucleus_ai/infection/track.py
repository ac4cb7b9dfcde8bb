"""Nuclei over time: segment each frame, link into tracks with divisions (Qt-free).

Pipeline of :func:`track_stack` (a core generator):

1. Nuclei per frame with :func:`~napari_nucleus_ai.segment.nuclei.segment_nuclei`,
   measured (centroid, area, mean intensity) per frame.
2. Stage drift estimated by phase correlation between consecutive frames and
   removed from the coordinates used for linking (outputs stay in raw image pixels).
3. Linking with `laptrack <https://github.com/yfukai/laptrack>`_ (the linear
   assignment problem tracker of Jaqaman et al. 2008): frame-to-frame links up to
   ``max_step_um``, gap closing over ``max_gap`` missed frames, and splitting
   (divisions) up to ``split_distance_um``. A track ends where its nucleus bursts
   (lysis), leaves the field or the movie ends; new tracks start where nuclei enter.
4. Labels re-numbered so that each nucleus carries its track id in every frame.

Tracks table
------------
``track_id`` (1..N), ``t`` (frame), ``y, x`` (centroid, pixels of that frame),
``parent_id`` (track it divided from, 0 = none) - exactly these columns in
``tracks.csv`` - then ``label`` (= track_id in the track labels), ``area_px``,
``mean_intensity`` (in ``nuclei.csv``). A track is one segment between
divisions, as in a napari Tracks layer (``graph`` = {child: [parent]}).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from napari_nucleus_ai.core.errors import Cancelled, InputError
from napari_nucleus_ai.core.progress import Progress

TRACK_COLUMNS = ["track_id", "t", "y", "x", "parent_id"]


@dataclass
class TrackingResult:
    """What :func:`track_stack` returns."""

    tracks: pd.DataFrame  # one row per nucleus and frame (TRACK_COLUMNS + measurements)
    labels: np.ndarray  # (T, Y, X) nuclei labelled with their track id
    drift: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (T, 2) y, x pixels
    seconds_per_frame: float = float("nan")

    @property
    def graph(self) -> dict[int, list[int]]:
        """napari Tracks ``graph``: child track id -> [parent track id]."""
        return tracks_graph(self.tracks)


def tracks_graph(tracks: pd.DataFrame) -> dict[int, list[int]]:
    """child -> [parent] from a tracks table's ``parent_id`` column."""
    first = tracks.drop_duplicates("track_id")
    return {
        int(c): [int(p)]
        for c, p in zip(first["track_id"], first["parent_id"], strict=True)
        if p > 0
    }


def tracks_layer_data(tracks: pd.DataFrame) -> tuple[np.ndarray, dict]:
    """``(data, graph)`` for ``napari.layers.Tracks`` (data = track_id, t, y, x)."""
    t = tracks.sort_values(["track_id", "t"])
    return t[["track_id", "t", "y", "x"]].to_numpy(float), tracks_graph(t)


def measure_frame(labels: np.ndarray, image: np.ndarray, t: int) -> pd.DataFrame:
    """Per-nucleus centroid (px), area (px) and mean intensity of one frame."""
    from scipy import ndimage as ndi

    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size == 0:
        return pd.DataFrame(
            {
                c: pd.Series(dtype=float)
                for c in ["t", "label", "y", "x", "area_px", "mean_intensity"]
            }
        )
    area = ndi.sum_labels(np.ones(labels.shape, np.float32), labels, ids)
    com = np.asarray(ndi.center_of_mass(np.ones(labels.shape, np.uint8), labels, ids), float)
    mean = ndi.mean(image.astype(np.float32), labels, ids)
    return pd.DataFrame(
        {
            "t": t,
            "label": ids.astype(np.int64),
            "y": com[:, 0],
            "x": com[:, 1],
            "area_px": area,
            "mean_intensity": mean,
        }
    )


def fill_label_holes(labels: np.ndarray) -> np.ndarray:
    """Fill holes inside each labelled object (dim nuclear interiors) in place; return ``labels``."""
    from scipy import ndimage as ndi

    for i, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is None:
            continue
        obj = labels[sl] == i
        hole = ndi.binary_fill_holes(obj) & ~obj & (labels[sl] == 0)
        labels[sl][hole] = i
    return labels


def segment_frame(frame: np.ndarray, pixel_size_um: float | None, params: dict) -> np.ndarray:
    """Nuclei of one frame with ``segment_nuclei``, robust to marginated chromatin.

    Infected nuclei have a bright rim and a dim interior; Otsu's threshold then
    lands inside them and the watershed cuts the ring into pieces. Unless a
    ``threshold`` is given, the threshold is set halfway between the background
    and Otsu's (never below the noise guard), and holes inside nuclei are filled.
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    from napari_nucleus_ai.segment.nuclei import background_stats, segment_nuclei

    p = dict(params)
    img = np.asarray(frame, np.float32)
    if img.ndim == 2 and img.size and float(img.min()) == float(img.max()):
        return np.zeros(img.shape, np.int32)  # a blank frame (shutter, focus loss): gap-closed over
    if p.get("threshold") is None:
        sm = ndi.gaussian_filter(img[::2, ::2] if img.size > 2_000_000 else img, 1.5)
        bg, noise = background_stats(sm)
        floor = bg + float(p.get("min_snr", 5.0)) * noise
        if float(sm.max()) > floor:
            p["threshold"] = max(floor, bg + 0.5 * (float(threshold_otsu(sm)) - bg))
    return fill_label_holes(segment_nuclei(frame, pixel_size_um, **p))


def estimate_drift(prev: np.ndarray, cur: np.ndarray, max_side: int = 512) -> np.ndarray:
    """Shift (dy, dx) in pixels of ``cur`` relative to ``prev`` (phase correlation)."""
    from skimage.registration import phase_cross_correlation

    step = max(1, int(np.ceil(max(prev.shape) / max_side)))
    a = np.asarray(prev[::step, ::step], np.float32)
    b = np.asarray(cur[::step, ::step], np.float32)
    if a.std() == 0 or b.std() == 0:
        return np.zeros(2)
    shift, _, _ = phase_cross_correlation(a, b, upsample_factor=4, normalization=None)
    return -np.asarray(shift, float) * step


def link(
    detections: pd.DataFrame,
    *,
    max_step_px: float = 12.0,
    split_distance_px: float | None = 15.0,
    max_gap: int = 2,
    drift: np.ndarray | None = None,
    min_daughter_frames: int = 3,
    n_frames: int | None = None,
) -> pd.DataFrame:
    """Link per-frame detections (``t, label, y, x, ...``) into tracks with laptrack.

    Parameters
    ----------
    detections : DataFrame
        One row per nucleus and frame, centroids in pixels.
    max_step_px : float
        Largest movement between consecutive frames (after drift correction).
    split_distance_px : float or None
        Largest distance from a mother's last position to a daughter; None = no divisions.
    max_gap : int
        Frames a nucleus may be missed and still be linked (gap closing); 0 = none.
    drift : (T, 2) array, optional
        Cumulative stage drift per frame, subtracted before linking.
    min_daughter_frames : int
        A split whose daughter lives fewer frames than this (and does not reach
        the end of the movie) is not a division but a nucleus falling apart
        (lysis, a segmentation split): the split is undone and such short
        fragments are dropped, so the mother's track ends there.
    n_frames : int, optional
        Frames in the movie (default: last detection's frame + 1).

    Returns
    -------
    DataFrame
        ``detections`` plus ``track_id`` (1..N) and ``parent_id`` (0 = none), sorted by track and frame.
    """
    from laptrack import LapTrack

    det = detections.reset_index(drop=True).copy()
    if det.empty:
        det["track_id"] = pd.Series(dtype=np.int64)
        det["parent_id"] = pd.Series(dtype=np.int64)
        return det
    det["_ly"], det["_lx"] = det["y"].to_numpy(float), det["x"].to_numpy(float)
    if drift is not None and len(drift):
        t = det["t"].to_numpy(int)
        det["_ly"] -= drift[t, 0]
        det["_lx"] -= drift[t, 1]
    gap = max(0, int(max_gap))
    lt = LapTrack(
        cutoff=float(max_step_px) ** 2,
        gap_closing_cutoff=float(max_step_px * 1.5) ** 2 if gap else False,
        gap_closing_max_frame_count=max(1, gap),
        splitting_cutoff=float(split_distance_px) ** 2 if split_distance_px else False,
    )
    det["_row"] = np.arange(len(det))
    cols = ["t", "_ly", "_lx", "_row"]
    with no_cyclic_gc():
        out, splits, _ = lt.predict_dataframe(
            det[cols].astype({"t": int}), ["_ly", "_lx"], frame_col="t", only_coordinate_cols=False
        )
    # laptrack returns rows sorted by frame: map back by the original row number
    det["_seg"] = out.set_index("_row")["track_id"].reindex(det["_row"]).to_numpy()
    splits = _prune_splits(det, splits, min_daughter_frames, n_frames or int(det["t"].max()) + 1)
    det = det[det["_seg"] >= 0]
    # number tracks 1..N in order of appearance (first frame, then position)
    first = det.groupby("_seg").agg(t0=("t", "min"), y0=("y", "first")).sort_values(["t0", "y0"])
    new_id = {int(s): i + 1 for i, s in enumerate(first.index)}
    det["track_id"] = det["_seg"].map(new_id).astype(np.int64)
    # a kept split may hang off a fragment that was dropped (a short daughter that itself
    # split): its daughters start new lineages rather than point at a missing track
    parent = {
        new_id[int(c)]: new_id[int(p)]
        for p, c in zip(
            splits.get("parent_track_id", []), splits.get("child_track_id", []), strict=True
        )
        if int(p) in new_id and int(c) in new_id
    }
    det["parent_id"] = det["track_id"].map(lambda k: parent.get(k, 0)).astype(np.int64)
    det = det.drop(columns=["_ly", "_lx", "_seg", "_row"])
    return det.sort_values(["track_id", "t"], ignore_index=True)


@contextlib.contextmanager
def no_cyclic_gc():
    """Automatic cyclic garbage collection off inside the block (the previous state restored after).

    laptrack builds graphs of about a million small objects for a 100-frame 1024 x 1024
    movie; each full collection they trigger scans the whole heap holding the GIL. In a
    napari process (~0.5 M objects before the run) that was 6 passes of 0.5-1 s while
    linking 144 k detections (the viewer frozen each time, under load). Their garbage has
    no cycles, so reference counting frees it; the switch is process-wide, for the
    seconds that linking takes.
    """
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _prune_splits(
    det: pd.DataFrame, splits: pd.DataFrame, min_frames: int, n_frames: int
) -> pd.DataFrame:
    """Undo splits with a short-lived daughter; mark short fragments for removal (``_seg = -1``)."""
    if splits is None or len(splits) == 0 or min_frames <= 1:
        return splits
    seg = det.groupby("_seg")["t"].agg(["size", "max"])
    short = (seg["size"] < min_frames) & (seg["max"] < n_frames - 1)
    keep = []
    for _parent, g in splits.groupby("parent_track_id"):
        kids = g["child_track_id"].to_numpy()
        if short.reindex(kids, fill_value=False).any():
            for k in kids:
                if short.get(k, False):
                    det.loc[det["_seg"] == k, "_seg"] = -1
        else:
            keep.append(g)
    return pd.concat(keep) if keep else splits.iloc[:0]


def relabel_by_track(
    labels: np.ndarray, tracks: pd.DataFrame, t: int, dtype=np.uint32
) -> np.ndarray:
    """Frame ``t``'s labels with each nucleus renumbered to its track id (unlinked = 0)."""
    rows = tracks[tracks["t"] == t]
    lut = np.zeros(int(labels.max()) + 1, dtype)
    lut[rows["label"].to_numpy(int)] = rows["track_id"].to_numpy(int)
    return lut[labels]


def track_stack(
    stack,
    pixel_size_um: float | None = None,
    *,
    max_step_um: float = 8.0,
    split_distance_um: float | None = 10.0,
    max_gap: int = 2,
    correct_drift: bool = True,
    min_area_um2: float | None = None,
    segment_params: dict | None = None,
    cancel: Callable[[], bool] | None = None,
) -> Generator[Progress, None, TrackingResult]:
    """Segment and track nuclei in a (T, Y, X) nuclear-stain stack; a core generator.

    Parameters
    ----------
    stack : (T, Y, X) array-like
        Numpy, dask or zarr; frames are read one at a time.
    pixel_size_um : float, optional
        Pixel size; distances below are in um when given, else in pixels.
    max_step_um, split_distance_um, max_gap : see :func:`link`
    correct_drift : bool
        Estimate and remove stage drift before linking.
    min_area_um2 : float, optional
        Drop detections smaller than this (debris); default a third of the median nucleus.
    segment_params : dict, optional
        Passed to :func:`~napari_nucleus_ai.segment.nuclei.segment_nuclei`.
    cancel : callable, optional
        Returns True to stop; raises :class:`~napari_nucleus_ai.core.errors.Cancelled`.

    Yields
    ------
    Progress
    Returns
    -------
    TrackingResult
    """
    import time

    shape = getattr(stack, "shape", None)
    if shape is None or len(shape) != 3:
        raise InputError(None, f"time-lapse must be (T, Y, X), got shape {shape}")
    n = int(shape[0])
    if n == 0:
        raise InputError(None, "time-lapse has no frames")
    px = float(pixel_size_um) if pixel_size_um else 1.0
    seg = dict(segment_params or {})
    t_start = time.perf_counter()
    raw_labels = np.zeros(shape, np.int32)
    tables = []
    drift = np.zeros((n, 2))
    prev = None
    for t in range(n):
        if cancel is not None and cancel():
            raise Cancelled("tracking cancelled")
        yield Progress(t, n + 1, f"segmenting frame {t + 1}/{n}")
        frame = np.asarray(stack[t])
        raw_labels[t] = segment_frame(frame, pixel_size_um, seg)
        tables.append(measure_frame(raw_labels[t], frame, t))
        if correct_drift and prev is not None:
            drift[t] = drift[t - 1] + estimate_drift(prev, frame)
        prev = frame
    yield Progress(n, n + 1, "linking")
    det = pd.concat(tables, ignore_index=True)
    if len(det):
        min_px = (min_area_um2 / px**2) if min_area_um2 else det["area_px"].median() / 3.0
        small = det["area_px"] < min_px
        if small.any():
            for t, lab in det.loc[small, ["t", "label"]].itertuples(index=False):
                raw_labels[t][raw_labels[t] == lab] = 0
            det = det[~small]
    tracks = link(
        det,
        n_frames=n,
        max_step_px=max_step_um / px,
        split_distance_px=(split_distance_um / px) if split_distance_um else None,
        max_gap=max_gap,
        drift=drift if correct_drift else None,
    )
    n_tracks = int(tracks["track_id"].max()) if len(tracks) else 0
    dtype = np.uint16 if n_tracks < 65535 else np.uint32
    labels = np.zeros(shape, dtype)
    for t in range(n):
        if cancel is not None and cancel():
            raise Cancelled("tracking cancelled")
        labels[t] = relabel_by_track(raw_labels[t], tracks, t, dtype)
    tracks["label"] = tracks["track_id"]
    order = TRACK_COLUMNS + [c for c in tracks.columns if c not in TRACK_COLUMNS]
    tracks = tracks[order]
    yield Progress(n + 1, n + 1, f"{n_tracks} tracks")
    return TrackingResult(tracks, labels, drift, (time.perf_counter() - t_start) / n)


def track_ends(
    tracks: pd.DataFrame, shape: tuple[int, int], n_frames: int, border_px: float = 10.0
) -> pd.DataFrame:
    """How each track ends: ``division`` (has children), ``end`` (last frame), ``left`` (at the border) or ``vanished`` (e.g. lysis).

    Returns one row per track: ``track_id, parent_id, t_start, t_end, n_frames, end``.
    """
    g = tracks.sort_values("t").groupby("track_id")
    info = g.agg(
        parent_id=("parent_id", "first"),
        t_start=("t", "min"),
        t_end=("t", "max"),
        n_frames=("t", "size"),
        y=("y", "last"),
        x=("x", "last"),
    )
    parents = set(tracks.loc[tracks["parent_id"] > 0, "parent_id"].astype(int))
    near = (
        (info["y"] < border_px)
        | (info["x"] < border_px)
        | (info["y"] > shape[0] - 1 - border_px)
        | (info["x"] > shape[1] - 1 - border_px)
    )
    end = np.where(
        info.index.isin(list(parents)),
        "division",
        np.where(info["t_end"] >= n_frames - 1, "end", np.where(near, "left", "vanished")),
    )
    info["end"] = end
    return info.drop(columns=["y", "x"]).reset_index()


def match_to_truth(track_labels: np.ndarray, truth_labels: np.ndarray) -> pd.DataFrame:
    """One-to-one matches of tracked nuclei to ground-truth nuclei per frame.

    A pair matches when their overlap covers more than half of each. Returns
    ``t, track_id, cell_id``.
    """
    rows = []
    for t in range(track_labels.shape[0]):
        a = track_labels[t].ravel().astype(np.int64)
        b = truth_labels[t].ravel().astype(np.int64)
        both = (a > 0) & (b > 0)
        if not both.any():
            continue
        pair, cnt = np.unique(a[both] * (int(b.max()) + 1) + b[both], return_counts=True)
        pa, pb = pair // (int(b.max()) + 1), pair % (int(b.max()) + 1)
        na, nb = np.bincount(a), np.bincount(b)
        ok = (cnt > 0.5 * na[pa]) & (cnt > 0.5 * nb[pb])
        rows += [(t, int(x), int(y)) for x, y in zip(pa[ok], pb[ok], strict=True)]
    return pd.DataFrame(rows, columns=["t", "track_id", "cell_id"])


def predicted_links(tracks: pd.DataFrame) -> set[tuple[int, int, int]]:
    """Links ``(track_a, t, track_b)`` from frame t to t + 1, including division links."""
    out = set()
    for tid, g in tracks.groupby("track_id"):
        ts = np.sort(g["t"].to_numpy(int))
        out |= {
            (int(tid), int(t), int(tid))
            for t, t1 in zip(ts[:-1], ts[1:], strict=True)
            if t1 == t + 1
        }
    first = tracks.sort_values("t").drop_duplicates("track_id")
    last_t = tracks.groupby("track_id")["t"].max()
    for tid, p, t0 in first[["track_id", "parent_id", "t"]].itertuples(index=False):
        if p > 0 and last_t.get(p, -9) == t0 - 1:
            out.add((int(p), int(t0 - 1), int(tid)))
    return out


def link_accuracy(
    result_tracks: pd.DataFrame, track_labels: np.ndarray, truth, min_area_px: float | None = None
) -> dict:
    """Linking accuracy against a simulated ground truth (``TimeLapse``).

    ``accuracy`` = correct links / true links, where a true link joins a nucleus in
    frame t to itself (or a mother to a daughter) in t + 1, counted when both
    nuclei are at least ``min_area_px`` inside the field (default a quarter of
    the median nucleus). A true link is correct when the tracker linked the
    nuclei matched to its two ends.
    """
    truth_df = truth.truth
    if min_area_px is None:
        min_area_px = 0.25 * float(truth_df["area_px"].median())
    big = set(
        zip(
            truth_df.loc[truth_df["area_px"] >= min_area_px, "cell_id"],
            truth_df.loc[truth_df["area_px"] >= min_area_px, "t"],
            strict=True,
        )
    )
    tl = truth.true_links()
    keep = [((a, t) in big) and ((b, t + 1) in big) for a, t, b in tl.itertuples(index=False)]
    tl = tl[keep]
    m = match_to_truth(track_labels, truth.labels)
    cell_to_track = {(c, t): k for t, k, c in m.itertuples(index=False)}
    pred = predicted_links(result_tracks)
    correct = 0
    div_true = div_ok = 0
    for a, t, b in tl.itertuples(index=False):
        ka, kb = cell_to_track.get((a, t)), cell_to_track.get((b, t + 1))
        hit = ka is not None and kb is not None and (ka, t, kb) in pred
        correct += hit
        if a != b:
            div_true += 1
            div_ok += hit
    n_true = len(tl)
    n_pred = len(pred)
    return {
        "true_links": n_true,
        "correct_links": int(correct),
        "accuracy": correct / n_true if n_true else float("nan"),
        "predicted_links": n_pred,
        "precision": correct / n_pred if n_pred else float("nan"),
        "true_divisions": div_true,
        "divisions_found": div_ok,
        "detected_fraction": len(m) / max(1, len(truth_df[truth_df["area_px"] >= min_area_px])),
    }


def track_at(labels: np.ndarray, tracks: pd.DataFrame, tyx, radius_px: float = 10.0) -> int | None:
    """The track at pixel position ``tyx`` (frame, y, x) of a tracking result.

    The nucleus there in the track-id ``labels`` (T, Y, X), else the nearest row of
    ``tracks`` in that frame within ``radius_px`` (a click on a track's line); None
    outside the movie or far from every track.
    """
    t, y, x = (int(round(v)) for v in tyx)
    if not (0 <= t < labels.shape[0]):
        return None
    if 0 <= y < labels.shape[1] and 0 <= x < labels.shape[2] and labels[t, y, x]:
        return int(labels[t, y, x])
    rows = tracks[tracks["t"] == t]
    if rows.empty:
        return None
    d = np.hypot(rows["y"].to_numpy() - tyx[1], rows["x"].to_numpy() - tyx[2])
    k = int(np.argmin(d))
    return int(rows["track_id"].iloc[k]) if d[k] <= radius_px else None


def write_tracks(
    result: TrackingResult,
    out_dir,
    *,
    pixel_size_um: float | None = None,
    nuclei=None,
    write_labels: bool = True,
) -> dict:
    """Write ``tracks.csv``, ``nuclei.csv`` and ``labels.tif`` atomically into ``out_dir``.

    ``tracks.csv`` has exactly :data:`TRACK_COLUMNS` (``track_id, t, y, x`` in pixels,
    ``parent_id``), the issue's exchange format; the per-nucleus measurements
    (``label, area_px, mean_intensity`` and, after ``predict_infection``, ``rim_ratio,
    interior_cv, p_infected, uncertainty``) go to ``nuclei.csv``, keyed by ``track_id, t``,
    from ``nuclei`` (default ``result.tracks``). ``labels.tif`` is the (T, Y, X) track-id labels.
    """
    from pathlib import Path

    import tifffile

    from napari_nucleus_ai.core.files import atomic_path, atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "tracks.csv", "w", newline="") as fh:
        result.tracks[TRACK_COLUMNS].to_csv(fh, index=False, float_format="%.3f")
    nuc = result.tracks if nuclei is None else nuclei
    cols = ["track_id", "t"] + [c for c in nuc.columns if c not in TRACK_COLUMNS]
    with atomic_write(out / "nuclei.csv", "w", newline="") as fh:
        nuc[cols].to_csv(fh, index=False, float_format="%.6g")
    paths = {
        "tracks": out / "tracks.csv",
        "nuclei": out / "nuclei.csv",
        "labels": out / "labels.tif",
    }
    if not write_labels:
        return paths
    kw = {"metadata": {"axes": "TYX"}}
    if pixel_size_um:
        kw["resolution"] = (1e4 / pixel_size_um, 1e4 / pixel_size_um)  # pixels per cm
        kw["resolutionunit"] = "CENTIMETER"
    with atomic_path(out / "labels.tif") as tmp:
        tifffile.imwrite(tmp, result.labels, compression="zlib", **kw)
    return paths
