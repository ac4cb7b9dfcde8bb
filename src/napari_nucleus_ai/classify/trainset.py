"""Training sets: labelled crops or STORM nuclei, from class folders or from memory.

A class-folder layout is what ``napari-nucleus-ai train DATA`` reads and what the
dataset importers and the corrections store write::

    DATA/
      lymphocyte/  a.png  b.tif ...
      neutrophil/  c.png ...

or, for STORM nuclei, one localization file per nucleus in any format the
plugin reads (ThunderSTORM CSV, N-STORM TXT, Picasso HDF5...)::

    DATA/
      small_clutches/  n01.csv  n02.txt ...
      large_clutches/  ...

Hidden files and files starting with ``_`` or ``.`` are ignored.

Several labelled sources (a public set and a lab's own corrections, say) train one model
through :func:`combine_sources`: each cell of a small source is repeated so that every
source counts as much as the others in every class (:func:`source_weights`). A network
trained by gradient descent sees the copies through its training augmentation; the
closed-form logistic heads of ``morph`` weigh a repeated cell as a sample weight would.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.errors import InputError, UsageError
from napari_nucleus_ai.models.crops import is_image_file, read_crop, read_nucleus_xy

#: Files skipped by :func:`load_class_folders` are logged here (``train`` lists them).
log = logging.getLogger(__name__)

MODALITIES = ("brightfield_rgb", "fluorescence", "storm")


@dataclass
class TrainingSet:
    """Labelled samples in memory.

    Attributes
    ----------
    samples : list of numpy arrays
        Image crops ``(H, W)`` / ``(H, W, 3)``, or for ``modality="storm"``
        localization positions ``(N, 2)`` as ``x, y`` in nm.
    labels : (N,) int array
        Index into ``classes``.
    classes : list of str
    modality : {"brightfield_rgb", "fluorescence", "storm"}
    sources : list of str
        Where each sample came from (file path or layer/label id).
    pixel_size, unit : float, str
        Physical pixel size of the image crops (``unit="px"`` when unknown).
    """

    samples: list
    labels: np.ndarray
    classes: list[str]
    modality: str
    sources: list[str] = field(default_factory=list)
    pixel_size: float = 1.0
    unit: str = "px"
    skipped: list = field(default_factory=list)  # (path, error) of unreadable files
    #: Copies of each sample in every :meth:`subset` (``None``: one each). Set by
    #: :func:`combine_sources` so a small source's few cells count; the split into
    #: training and validation is made on the cells, never between copies of one cell.
    repeats: np.ndarray | None = None
    #: Where the samples came from when combined: one dict per source (``data``,
    #: ``n``, ``weight``); :func:`combine_sources` fills it.
    origins: list = field(default_factory=list)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.samples) != len(self.labels):
            raise InputError(None, "training set has different numbers of samples and labels")
        if not self.sources:
            self.sources = [f"sample {i}" for i in range(len(self.samples))]
        if self.repeats is not None:
            self.repeats = np.asarray(self.repeats, dtype=np.int64)
            if len(self.repeats) != len(self.labels) or (self.repeats < 1).any():
                raise InputError(None, "training set repeats must be >= 1, one per sample")
        if self.modality not in MODALITIES:
            raise InputError(None, f"unknown modality {self.modality!r}; one of {MODALITIES}")

    def __len__(self) -> int:
        return len(self.samples)

    def counts(self) -> dict[str, int]:
        return {c: int((self.labels == i).sum()) for i, c in enumerate(self.classes)}

    def check(self, min_per_class: int = 2) -> None:
        """Refuse sets a classifier cannot learn from, with a one-line reason."""
        if len(self.classes) < 2:
            raise InputError(None, f"need at least 2 classes to train, got {len(self.classes)}")
        few = {c: n for c, n in self.counts().items() if n < min_per_class}
        if few:
            listed = ", ".join(f"{c} ({n})" for c, n in few.items())
            raise InputError(
                None, f"need at least {min_per_class} samples per class; too few: {listed}"
            )

    def subset(self, idx) -> TrainingSet:
        """The samples at ``idx``, each repeated ``repeats`` times (the copies of a cell
        stay together: both sides of a split are weighted alike, and no copy of a training
        cell is ever validated on)."""
        idx = np.asarray(idx, dtype=int)
        if self.repeats is not None:
            idx = np.repeat(idx, self.repeats[idx])
        return TrainingSet(
            [self.samples[i] for i in idx],
            self.labels[idx],
            list(self.classes),
            self.modality,
            [self.sources[i] for i in idx],
            self.pixel_size,
            self.unit,
        )


def _visible(p: Path) -> bool:
    return not p.name.startswith((".", "_"))


def sample_kind(path) -> str:
    """``"image"`` for crops, ``"localizations"`` for everything else."""
    return "image" if is_image_file(path) else "localizations"


def load_class_folders(root, *, pixel_size: float | None = None, unit: str = "um") -> TrainingSet:
    """Read a class-folder layout into a :class:`TrainingSet`.

    Parameters
    ----------
    root : path
        Folder with one sub-folder per class.
    pixel_size, unit : float, str, optional
        Pixel size of the image crops; unknown (``unit="px"``) when omitted.

    Raises
    ------
    InputError
        Missing folder, fewer than 2 classes, empty classes (also when every file of
        a class is unreadable), or crops and localization files mixed. Single
        unreadable files are skipped: each is logged (warning) on :data:`log` and
        listed in the set's ``skipped`` (``(path, one-line error)``).
    """
    root = Path(root)
    if not root.exists():
        raise InputError(
            root, "does not exist (training data: a folder with one sub-folder per class)"
        )
    if not root.is_dir():
        raise InputError(root, "training data must be a folder with one sub-folder per class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if len(class_dirs) < 2:
        raise InputError(root, f"need at least 2 class sub-folders, found {len(class_dirs)}")
    files, labels = [], []
    for i, d in enumerate(class_dirs):
        members = sorted(p for p in d.iterdir() if p.is_file() and _visible(p))
        if not members:
            raise InputError(d, "class folder is empty")
        files += members
        labels += [i] * len(members)
    kinds = {sample_kind(f) for f in files}
    if len(kinds) > 1:
        raise InputError(
            root, "mixes image crops and localization files; use one kind per data set"
        )
    kind = kinds.pop()
    samples, files, labels, skipped = _read_all(
        files, labels, read_crop if kind == "image" else read_nucleus_xy
    )
    for i, d in enumerate(class_dirs):
        if i not in set(labels):
            raise InputError(d, f"no readable file in this class folder (first: {skipped[0][1]})")
    if kind == "image":
        rgb = {s.ndim == 3 for s in samples}
        if len(rgb) > 1:
            samples = [s if s.ndim == 3 else np.repeat(s[..., None], 3, -1) for s in samples]
        modality = "brightfield_rgb" if samples[0].ndim == 3 else "fluorescence"
    else:
        modality, pixel_size, unit = "storm", 1.0, "nm"
    ts = TrainingSet(
        samples,
        np.array(labels),
        [d.name for d in class_dirs],
        modality,
        [os.fspath(f) for f in files],
        float(pixel_size) if pixel_size else 1.0,
        unit if pixel_size else "px",
    )
    ts.skipped = skipped
    return ts


def _read_all(files, labels, read):
    """Read every file; unreadable ones are skipped (logged), the rest kept in order."""
    from napari_nucleus_ai.core.errors import NucleusAIError, one_line

    samples, kept, kept_labels, skipped = [], [], [], []
    for f, lab in zip(files, labels, strict=True):
        try:
            samples.append(read(f))
        except (NucleusAIError, OSError, ValueError) as e:
            msg = one_line(e, f)
            skipped.append((os.fspath(f), msg))
            log.warning("skipped: %s", msg)
            continue
        kept.append(f)
        kept_labels.append(lab)
    return samples, kept, kept_labels, skipped


def stratified_split(
    labels: np.ndarray,
    fraction: float,
    seed: int,
    *,
    at_least_one_from: int = 3,
    keep_one: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Kept / held-out indices with ``fraction`` of every class held out.

    The one split of training (validation hold-out) and fine-tuning (corrections held out
    to score both models).

    Parameters
    ----------
    labels : (N,) int array
    fraction : float
        Share of each class held out (rounded per class; a class of one item is never
        held out).
    seed : int
        Seeds the per-class shuffles.
    at_least_one_from : int
        Classes with at least this many items hold out at least one when ``fraction > 0``
        (training: 3, so 2-item classes keep both for training; fine-tuning: 2).
    keep_one : bool
        Every class keeps at least one item (training); fine-tuning holds out what
        ``fraction`` asks even if that is the whole class.

    Returns
    -------
    kept, held_out : sorted int arrays
    """
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < 2:
            kept += idx.tolist()
            continue
        k = int(round(fraction * len(idx)))
        if fraction > 0 and len(idx) >= at_least_one_from:
            k = max(k, 1)
        if keep_one:
            k = min(k, len(idx) - 1)
        held += idx[:k].tolist()
        kept += idx[k:].tolist()
    return np.array(sorted(kept), int), np.array(sorted(held), int)


def from_labelled_image(
    image: np.ndarray,
    labels: np.ndarray,
    classes_by_label: dict,
    *,
    scale: float = 1.0,
    unit: str = "px",
    window: float = 64.0,
    size: int = 64,
    classes: list[str] | None = None,
    source: str = "layer",
) -> TrainingSet:
    """Crops of labelled cells in an image (the dock's layers, a corrected review session).

    Parameters
    ----------
    image : (Y, X[, C]) array
    labels : (Y, X) int array
    classes_by_label : {label id: class name}
        Cells without a class (or with ``unidentified``) are skipped.
    scale, unit : pixel size of the image
    window : float
        Side of each crop in the same physical unit (pixels when ``unit="px"``).
    size : int
        Crop side in pixels (the network input; crops are made at exactly this size).
    """
    from napari_nucleus_ai.cells import CLASS_UNIDENTIFIED
    from napari_nucleus_ai.classify.cells import centroids_px
    from napari_nucleus_ai.models.crops import cell_windows

    keep = {
        int(k): str(v)
        for k, v in classes_by_label.items()
        if isinstance(v, str) and v and v != CLASS_UNIDENTIFIED and int(k) > 0
    }
    if not keep:
        raise InputError(source, "no labelled cells with a class to train from")
    classes = list(classes or sorted(set(keep.values())))
    ids = np.array(sorted(k for k, v in keep.items() if v in classes), dtype=np.int64)
    cents = centroids_px(np.asarray(labels), ids)
    ok = np.all(np.isfinite(cents), axis=1)
    ids, cents = ids[ok], cents[ok]
    crops = cell_windows(np.asarray(image), cents, window / float(scale), size)
    arr = (np.clip(crops, 0, 1) * 255).round().astype(np.uint8)
    samples = [a if a.shape[-1] == 3 else a[..., 0] for a in arr]
    modality = "brightfield_rgb" if arr.shape[-1] == 3 else "fluorescence"
    return TrainingSet(
        samples,
        np.array([classes.index(keep[i]) for i in ids]),
        classes,
        modality,
        [f"{source}#{i}" for i in ids],
        window / size if unit != "px" else window / size,
        unit,
    )


def source_weights(labels: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Per-sample weights so that every source counts equally in every class.

    Within a class, each source's cells share the same total weight however few they
    are; a class only one source has is unchanged. Weights are relative to the largest
    source of each class (its cells weigh 1), so they are >= 1.

    Parameters
    ----------
    labels, source : (N,) int arrays
        Class index and source index of each sample.

    Returns
    -------
    (N,) float array
    """
    labels, source = np.asarray(labels), np.asarray(source)
    w = np.ones(len(labels), float)
    for c in np.unique(labels):
        in_c = labels == c
        n = {s: int((in_c & (source == s)).sum()) for s in np.unique(source[in_c])}
        most = max(n.values())
        for s, k in n.items():
            w[in_c & (source == s)] = most / k
    return w


@dataclass
class Sources:
    """Several labelled sources to train one model from (``train SRC1 SRC2 ...``).

    Attributes
    ----------
    paths : list of paths
        Class-folder training sets.
    weights : ``"auto"`` or list of float
        ``"auto"``: every source counts equally per class (:func:`source_weights`); or one
        relative weight per cell of each source (``[1, 5]``: a cell of the second source
        counts as 5 of the first).
    """

    paths: list
    weights: str | list = "auto"

    def __post_init__(self):
        self.paths = [os.fspath(p) for p in self.paths]
        self.weights = parse_source_weights(self.weights, len(self.paths))


def parse_source_weights(weights, n_sources: int):
    """``"auto"`` or one positive number per source (a list, or text such as ``"1,5"``).

    Raises
    ------
    UsageError
        Not ``auto``, not numbers, not one per source, or not positive.
    """
    if weights is None or (isinstance(weights, str) and weights.strip() == "auto"):
        return "auto"
    text = weights if isinstance(weights, str) else ",".join(str(w) for w in weights)
    try:
        values = [float(w) for w in text.split(",")]
    except ValueError:
        raise UsageError(
            f"source weights must be 'auto' or numbers such as 1,5; got {text!r}"
        ) from None
    if len(values) != n_sources:
        raise UsageError(
            f"{len(values)} source weight(s) for {n_sources} source(s); give one per source"
        )
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise UsageError(f"source weights must be positive, got {text!r}")
    return values


def combine_sources(sets: list, weights="auto", names: list | None = None) -> TrainingSet:
    """One training set from several, each source weighted by repeating its cells.

    Parameters
    ----------
    sets : list of TrainingSet
        Of one kind (image crops or STORM nuclei); classes are the union, by name.
    weights : ``"auto"`` or list of float
        See :class:`Sources`. Each cell is repeated ``round(weight / smallest weight)``
        times in training (``repeats``; the augmentation varies the copies).
    names : list of str, optional
        What to call each source in ``origins`` (default ``source 1``...).

    Returns
    -------
    TrainingSet
        With ``repeats`` and ``origins`` (``data``, ``n``, ``weight``: the mean repeat of
        the source's cells, ``class_counts``).
    """
    if not sets:
        raise InputError(None, "no training data given")
    names = list(names or [f"source {i + 1}" for i in range(len(sets))])
    if len(sets) == 1 and weights == "auto":
        return sets[0]
    weights = parse_source_weights(weights, len(sets))
    storm = {ts.modality == "storm" for ts in sets}
    if len(storm) > 1:
        raise InputError(None, "mixes image crops and localization files; use one kind per model")
    classes = sorted({c for ts in sets for c in ts.classes})
    samples, labels, source, paths = [], [], [], []
    for k, ts in enumerate(sets):
        samples += list(ts.samples)
        labels += [classes.index(ts.classes[y]) for y in ts.labels]
        source += [k] * len(ts)
        paths += list(ts.sources)
    labels, source = np.array(labels, np.int64), np.array(source)
    if weights == "auto":
        w = source_weights(labels, source)
    else:
        w = np.asarray(weights, float)[source] / min(weights)
    repeats = np.maximum(np.round(w), 1).astype(np.int64)
    modality = sets[0].modality
    if len({ts.modality for ts in sets}) > 1:  # grey and colour crops: all as colour
        samples = [
            x if np.asarray(x).ndim == 3 else np.repeat(x[..., None], 3, -1) for x in samples
        ]
        modality = "brightfield_rgb"
    out = TrainingSet(
        samples, labels, classes, modality, paths, sets[0].pixel_size, sets[0].unit, repeats=repeats
    )
    out.skipped = [s for ts in sets for s in ts.skipped]
    out.origins = [
        {
            "data": names[k],
            "n": int((source == k).sum()),
            "weight": round(float(repeats[source == k].mean()), 3),
            "class_counts": {
                classes[c]: int(n)
                for c, n in enumerate(np.bincount(labels[source == k], minlength=len(classes)))
                if n
            },
        }
        for k in range(len(sets))
    ]
    return out


def load_sources(sources: Sources, *, pixel_size: float | None = None, unit: str = "um"):
    """Read every class-folder source of ``sources`` and :func:`combine_sources` them."""
    sets = [load_class_folders(p, pixel_size=pixel_size, unit=unit) for p in sources.paths]
    return combine_sources(sets, sources.weights, names=sources.paths)
