"""Inference: crops and nuclei -> classes, probabilities and uncertainty.

``predict_items(_gen)``
    Raw samples (image crops, or STORM nuclei as localization arrays) through a
    package, batched on the chosen device, with test-time augmentation / MC
    dropout / ensemble members for disagreement; returns a
    :class:`~napari_nucleus_ai.models.uncertainty.Prediction`.
``predict_paths``
    Files (crops or localization files) -> table ``path, label, uncertainty,
    p_<class>`` (what ``napari-nucleus-ai predict`` writes).
``classify_cells_gen`` (in :mod:`napari_nucleus_ai.classify.cells`)
    A segmented image -> cell table with predictions, class image, uncertainty map.
``route``, ``adapt_routed``, ``adapt_table``
    A package with a fallback model: the cells out of the first model's domain classified by
    the fallback, which is then adapted to them as one batch of one microscope
    (:mod:`napari_nucleus_ai.models.adapt`; ``adapt="off"``: not adapted).

Devices: ``device`` is a choice for :func:`~.models.device.select_device`; when the
device is unavailable, or fails while running (out of memory, driver error), the
work falls back to the CPU and the reason is recorded in ``notes`` (and logged).
"""

from __future__ import annotations

import logging
import os

import numpy as np

from napari_nucleus_ai.core.device import resolve_device
from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress, run_sync
from napari_nucleus_ai.models.crops import read_item
from napari_nucleus_ai.models.engine import pool_items
from napari_nucleus_ai.models.package import as_package

log = logging.getLogger(__name__)
CHUNK = 256  # items per progress step


def predict_items_gen(
    model,
    items,
    *,
    device: str | None = None,
    batch_size: int = 64,
    tta: int | None = None,
    mc_dropout: int | None = None,
    threshold: float | None = None,
    notes: list | None = None,
    proposer: bool = True,
    pixel_size_um=None,
    workers: int | None = None,
    adapt: str = "auto",
    routed_features: list | None = None,
):
    """Generator form of :func:`predict_items` (yields progress per chunk of items).

    ``proposer=False`` makes a diffusion package with a proposer classify over every
    class (:mod:`.models.diffusion.proposer`); other kinds ignore it. ``pixel_size_um``
    (one number, or one per item) is the crops' pixel size: a model with a canonical
    cell frame then scales the cell physically (:mod:`.models.framing`). ``workers``: processes
    sharing the chunks of items on the CPU (None: :func:`cpu_workers`; 1: this process only).
    ``adapt``: ``"auto"`` adapts a package's fallback model to the cells routed to it when
    they are a batch of another microscope (:func:`adapt_routed`); ``"off"`` never.
    ``routed_features`` (a list): receives one array, the fallback's features of the cells
    routed to it in their order, so that the cells of several calls (chunks of one input,
    classified with ``adapt="off"``) can be adapted as one batch by :func:`adapt_table`.
    """
    if not (hasattr(items, "__len__") and hasattr(items, "__getitem__")):
        items = list(items)  # a sequence (a list, :class:`~.models.crops.CellWindows`) stays

    def source(step: int):
        for i in range(0, len(items), step):
            yield items[i : i + step], min(step, len(items) - i)

    return (
        yield from _predict_gen(
            as_package(model),
            source,
            len(items),
            device=device,
            batch_size=batch_size,
            tta=tta,
            mc_dropout=mc_dropout,
            threshold=threshold,
            notes=notes,
            proposer=proposer,
            pixel_size_um=pixel_size_um,
            workers=workers,
            adapt=adapt,
            routed_features=routed_features,
        )
    )


#: ``adapt`` choices of :func:`predict_items_gen` (and ``--adapt`` of the CLI).
ADAPT = ("auto", "off")


def _predict_gen(
    package,
    source,
    n: int,
    *,
    device: str | None = None,
    batch_size: int = 64,
    tta: int | None = None,
    mc_dropout: int | None = None,
    threshold: float | None = None,
    notes: list | None = None,
    proposer: bool = True,
    pixel_size_um=None,
    workers: int | None = None,
    adapt: str = "auto",
    routed_features: list | None = None,
):
    """:func:`predict_items_gen` over the chunks ``source(step)`` yields: ``(items, inputs
    covered)`` for about ``n`` inputs in all (an input that could not be read is covered
    without an item). The chunks are read as they are needed, so reading them overlaps the
    work of the worker processes. A package with a fallback brings back the fallback's
    features of the cells it routed (from every chunk), and after the last chunk adapts the
    fallback to them as one batch (:func:`adapt_routed`, unless ``adapt="off"``)."""
    from napari_nucleus_ai.models.uncertainty import summarise

    if adapt not in ADAPT:
        raise InputError(None, f"adapt must be one of {ADAPT}, got {adapt!r}")
    notes = notes if notes is not None else []
    dev = resolve_device(device, notes)
    package.to(dev)
    options = {"batch_size": batch_size, "tta": tta, "mc_dropout": mc_dropout}
    options["propose"] = bool(proposer)
    chunks, extras, embedded = [], [], []
    domain = (package.card.get("trust") or {}).get("domain")
    embed = bool(domain) and hasattr(package.modules[0], "embed")
    # about 32 progress steps (a slow model on 64 crops still reports), at most CHUNK items each
    step = min(CHUNK, max(8, -(-n // 32)))
    px = pixel_size_um

    def jobs():
        start = 0
        for chunk, covered in source(step):
            per_item = px is not None and np.ndim(px) > 0
            yield chunk, list(px)[start : start + len(chunk)] if per_item else px, covered
            start += len(chunk)

    done = 0
    routing = package.fallback is not None and embed  # route() runs on every chunk
    for pooled, extra, emb, covered in _run_chunks(
        package, jobs(), n, step, options, embed, notes, workers
    ):
        done += covered
        yield Progress(done, n, f"classifying {done}/{n}")
        if pooled is None:
            continue
        chunks.append(pooled)
        if extra is not None:
            extras.append(extra)
        keep = not routing or adapt != "off" or routed_features is not None
        if emb is not None and keep:
            embedded.append(emb)  # routing: the fallback's features of the routed cells
    n_classes = len(package.classes)
    samples = np.concatenate(chunks, 1) if chunks else np.zeros((1, 0, n_classes))
    thr = package.card["uncertainty"]["threshold"] if threshold is None else threshold
    cols = None
    if extras:
        cols = {k: np.concatenate([np.asarray(e[k]) for e in extras]) for k in extras[0]}
    if routing and routed_features is not None:
        routed_features.append(np.concatenate(embedded) if embedded else None)
    if routing and adapt != "off" and cols is not None:
        features = np.concatenate(embedded) if embedded else None
        samples = adapt_routed(package.fallback, samples, cols, features)
        if "adapted" in cols and cols["adapted"].any():
            notes.append(
                f"the fallback model was adapted to the {int(cols['adapted'].sum())} cells it "
                "classified, as one batch of one microscope (column 'adapted')"
            )
    pred = summarise(samples, package.classes, thr)
    if cols is not None:
        if "uncertainty" in cols:  # the kind's own uncertainty replaces the entropy
            pred.uncertainty = cols.pop("uncertainty")
        pred.extra = cols
    features = None if routing or not embedded else np.concatenate(embedded)
    _add_trust(pred, package.card, features)
    return pred


def adapt_routed(fallback, samples: np.ndarray, cols: dict, features) -> np.ndarray:
    """Test-time adaptation of a package's fallback model to the cells routed to it.

    The routed cells of one input are a batch of one microscope. When the fallback's card
    has ``trust.adapt`` and the batch passes its gate (at least ``min_cells`` routed cells,
    at least ``min_out_of_domain`` of them out of the fallback's own domain;
    :func:`~napari_nucleus_ai.models.adapt.should_adapt`), their features are re-standardised
    on the batch (:func:`~napari_nucleus_ai.models.adapt.adapt_batch`) and classified again
    by the fallback's linear head. Every probability sample of an adapted cell (test-time
    views, members) becomes its adapted single-view probabilities: the adaptation is
    fitted on the features the domain score reads, which are the first view's. Their ``set``
    and ``set_size`` are recomputed from them; ``ood`` and ``out_of_domain`` stay (the
    alarm still says the cells are from another microscope). ``cols`` gains ``adapted``.

    Parameters
    ----------
    fallback : ModelPackage
        The package's fallback model.
    samples : array (S, N, C)
        Probability samples of all the input's cells.
    cols : dict
        Their columns (``routed``, the fallback's ``out_of_domain``, ``set``...), updated
        in place.
    features : array (R, F) or None
        The fallback's :meth:`embed` of the routed cells, in their order.

    Returns
    -------
    array (S, N, C)
        ``samples`` with the adapted cells replaced (the same array when none is).
    """
    from napari_nucleus_ai.models.adapt import adapt_batch

    entry = (fallback.card.get("trust") or {}).get("adapt")
    if not entry or "routed" not in cols:
        return samples
    routed = np.asarray(cols["routed"], bool)
    adapted = np.zeros(len(routed), bool)
    cols["adapted"] = adapted
    idx = np.flatnonzero(routed)
    module = fallback.modules[0]
    head = module.linear_head() if hasattr(module, "linear_head") else None
    if features is None or len(features) != len(idx) or head is None:
        return samples
    probs = adapt_batch(
        features,
        head[0],
        head[1],
        entry,
        np.asarray(cols["out_of_domain"], bool)[idx] if "out_of_domain" in cols else None,
        fallback.temperature,
        min_cells=int(entry["min_cells"]),
        min_out_of_domain=float(entry["min_out_of_domain"]),
    )
    if probs is None:
        return samples
    samples = np.array(samples, copy=True)
    samples[:, idx] = probs.astype(samples.dtype)[None]
    adapted[idx] = True
    conformal = (fallback.card.get("trust") or {}).get("conformal")
    if conformal and "set" in cols:
        from napari_nucleus_ai.models.trust import set_columns

        for key, values in set_columns(probs, conformal, fallback.classes).items():
            column = cols.get(key)
            if column is None:
                continue
            if np.asarray(column).dtype.kind in "US":  # strings: no fixed width to cut them
                column = [str(v) for v in column]
            cols[key] = _replace_at(column, idx, values)
    return samples


def adapt_table(model, table, features, threshold: float | None = None):
    """A table of predictions made with ``adapt="off"`` (``predict``'s, or a cell table from
    :func:`~napari_nucleus_ai.classify.cells.classify_cells_gen`; possibly the chunks of one
    input joined), its routed cells adapted as one batch (:func:`adapt_routed`).

    Gives what one call with ``adapt="auto"`` on all the cells gives: the adapted cells'
    ``p_<class>``, ``predicted``, class (``class``, or ``label`` in ``predict``'s table),
    ``uncertainty``, ``entropy``, ``disagreement`` (0), ``set`` and ``set_size`` replaced,
    and the ``adapted`` column (NaN for cells without a prediction).

    Parameters
    ----------
    model : ModelPackage or path
        The package that classified the cells.
    table : DataFrame
        Its predictions; rows without one (``routed`` NaN) are left alone.
    features : array (R, F) or list of arrays
        The fallback's features of the routed cells, in table order (the ``routed_features``
        of the calls, in the order of their rows).
    threshold : float, optional
        The ``unidentified`` threshold the predictions used (default: the card's).

    Returns
    -------
    DataFrame
        A copy of ``table`` (``table`` itself when the package has no fallback that can be
        adapted).
    """
    from napari_nucleus_ai.models.uncertainty import CLASS_UNIDENTIFIED, summarise

    package = as_package(model)
    if package.fallback is None or "routed" not in table.columns:
        return table
    if isinstance(features, list | tuple):
        parts = [f for f in features if f is not None and len(f)]
        features = np.concatenate(parts) if parts else None
    rows = np.flatnonzero(table["routed"].notna().to_numpy())
    sub = table.iloc[rows]
    p_cols = [f"p_{c}" for c in package.classes]
    cols = {"routed": sub["routed"].astype(bool).to_numpy()}
    for key in ("out_of_domain", "set", "set_size"):
        if key in table.columns:
            cols[key] = sub[key].to_numpy()
    probs = sub[p_cols].to_numpy(np.float64)
    samples = adapt_routed(package.fallback, probs[None], cols, features)
    if "adapted" not in cols:
        return table
    out = table.copy()
    out["adapted"] = _nan_column(len(out), rows, cols["adapted"])
    idx = np.flatnonzero(cols["adapted"])
    if not len(idx):
        return out
    thr = package.card["uncertainty"]["threshold"] if threshold is None else threshold
    pred = summarise(samples[:, idx], package.classes, thr)
    at = rows[idx]
    ood = np.asarray(cols.get("out_of_domain", np.zeros(len(rows))), bool)[idx]
    shown = [CLASS_UNIDENTIFIED if o else c for c, o in zip(pred.labels, ood, strict=True)]
    name = "class" if "class" in out.columns else "label"
    values = {
        name: shown,
        "predicted": pred.predicted,
        "uncertainty": pred.uncertainty,
        "entropy": pred.entropy,
        "disagreement": pred.disagreement,
        **{c: pred.probs[:, j] for j, c in enumerate(p_cols)},
    }
    if "set" in cols:
        values["set"] = [str(cols["set"][i]) for i in idx]
    if "set_size" in cols:
        values["set_size"] = np.asarray(cols["set_size"], np.int64)[idx]
    for key, v in values.items():
        if key in out.columns:
            out.iloc[at, out.columns.get_loc(key)] = v
    return out


def _nan_column(n: int, rows: np.ndarray, values) -> list:
    """A column of ``n`` rows: ``values`` at ``rows``, NaN elsewhere."""
    out = [np.nan] * n
    for i, v in zip(rows, values, strict=True):
        out[i] = bool(v)
    return out


# ------------------------------------------------------------------ chunks, here or in workers
MIN_ITEMS_PER_WORKER = 64  # fewer items than this per extra process: not worth its start


def can_fork() -> bool:
    """Whether this process may fork workers: the platform forks processes (Linux), this is not
    a worker itself, and it runs one thread (a command line or a script, not a viewer: forking
    a process with other threads running is not safe)."""
    import multiprocessing
    import sys
    import threading

    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return False
    return threading.active_count() == 1 and multiprocessing.parent_process() is None


def cpu_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_workers(n_items: int) -> int:
    """Processes to share ``n_items`` on the CPU: the CPUs this process may run on, at most one
    per :data:`MIN_ITEMS_PER_WORKER` items, and 1 (this process alone) unless it
    :func:`can_fork`."""
    if not can_fork():
        return 1
    return max(1, min(cpu_cores(), n_items // MIN_ITEMS_PER_WORKER))


def _classify_chunk(package, chunk, px_chunk, options: dict, embed: bool, notes: list):
    """One chunk of items: inputs, the kind's predict (falling back to the CPU when the device
    fails), per-item pooling and the features the domain score reads.

    Returns ``(samples (S, n, C), extra columns or None, features or None)``.
    """
    from napari_nucleus_ai.models.inputs import prepare

    x, groups = prepare(chunk, package.card, pixel_size_um=px_chunk)
    # raw items, for kinds that look at them (a proposer); ``settled``: inputs the first
    # model's extra test-time views cannot keep from the fallback (not the fallback's own);
    # ``skip``: inputs the first model need not see at all (:func:`_routes_first`)
    options = {**options, "items": chunk, "settled": None, "skip": None}
    held: dict = {}  # the features ``settled`` / ``skip`` measured, read again below
    routing = (
        package.fallback is not None and embed and np.array_equal(groups, np.arange(len(chunk)))
    )

    def classify():
        if routing and _routes_first(package):
            options["skip"] = surely_routed(package, x, held, descriptor_only=True)
        elif routing:
            options["settled"] = lambda: surely_routed(package, x, held)
        return package.kind.predict(package, x, options)

    try:
        s = classify()
    except (RuntimeError, MemoryError) as e:
        if package.device.type == "cpu":
            raise
        msg = f"{package.device} failed ({' '.join(str(e).split())[:100]}); continuing on the CPU"
        log.warning(msg)
        notes.append(msg)
        package.to("cpu")
        held.clear()  # measured on the device that failed
        s = classify()
    extra = None
    if isinstance(s, tuple):  # a kind may add per-item columns: (samples, {name: (N,) array})
        s, extra = s
    pooled = pool_items(np.asarray(s), groups, len(chunk))
    features = held.get("features") if embed else None
    if embed and features is None:
        features = _embed(package, x)
    if routing:
        settled = options["skip"]
        package.settled_share = float(
            np.mean(_settled(package, features) if settled is None else settled)
        )
    if package.fallback is not None and features is not None:
        return route(package, chunk, px_chunk, options, (pooled, extra, features), notes)
    return pooled, extra, features


#: A chunk is routed before the first model sees it (:func:`_routes_first`) when at least
#: this share of the last chunk's cells went to the fallback whatever their views gave.
ROUTE_FIRST_SHARE = 0.5


def _routes_first(package) -> bool:
    """Whether this chunk's cells that surely go to the fallback (:func:`surely_routed`) are
    found from the descriptor alone before the first model sees any cell, and are then not
    seen by it at all (its backbone's views of them would be thrown away).

    Only where that gives the same output: the first model's domain score reads the
    descriptor's columns alone (:func:`~napari_nucleus_ai.models.trust.descriptor_span`), its
    kind can skip inputs, and the fallback replaces every trust column of the cells it takes
    (it has a domain score, and a conformal set where the first model has one). The
    other order (the first model's views first, the backbone beside the descriptor on a
    second thread) is the faster one on cells of the training microscope, so this one is
    taken when most cells of the last chunk were sure to go (:data:`ROUTE_FIRST_SHARE`).
    """
    from napari_nucleus_ai.models.trust import descriptor_span

    first = package.card.get("trust") or {}
    other = package.fallback.card.get("trust") or {}
    domain = first.get("domain")
    return bool(
        package.kind.skips_inputs
        and domain
        and descriptor_span(domain) is not None
        and hasattr(package.modules[0], "descriptors")
        and other.get("domain")
        and (bool(other.get("conformal")) or not first.get("conformal"))
        and package.settled_share >= ROUTE_FIRST_SHARE
    )


def surely_routed(
    package, x: np.ndarray, held: dict | None = None, descriptor_only: bool = False
) -> np.ndarray:
    """Inputs ``x`` that :func:`route` sends to the fallback whatever their probabilities.

    The domain score grows with the entropy of a cell's probabilities and the other terms
    read its features alone, so a cell whose score at zero entropy (a one-hot probability)
    is already above the threshold goes to the fallback whatever the first model's
    test-time views would give: it needs none of them (exact; ``test_fallback``).
    ``held`` (a dict) receives the features measured (``"features"``): the caller reads them
    again for the routing itself. ``descriptor_only``: measure the descriptor's columns
    alone (for a score that reads no others: :func:`_routes_first`).
    """
    domain = ((package.card.get("trust") or {}).get("domain")) or {}
    if not domain:
        return np.zeros(len(x), bool)
    package.kind.ready(package)
    features = _embed(package, x, descriptor_only=descriptor_only)
    if held is not None:
        held["features"] = features
    return _settled(package, features)


def _settled(package, features: np.ndarray) -> np.ndarray:
    """Items whose domain score under ``package`` is above its threshold even at zero
    entropy (:func:`surely_routed`), from their features."""
    from napari_nucleus_ai.models.trust import domain_scores

    domain = ((package.card.get("trust") or {}).get("domain")) or {}
    if not domain or features is None:
        return np.zeros(0 if features is None else len(features), bool)
    onehot = np.zeros((len(features), len(package.card["classes"])))
    onehot[:, 0] = 1.0
    return domain_scores(features, onehot, domain) > domain["threshold"]


def route(package, chunk, px_chunk, options: dict, first, notes: list):
    """The cells of ``chunk`` that ``package``'s domain-shift score puts out of its domain,
    classified again by its fallback model (and their trust columns from that model).

    A package with a fallback (:mod:`.models.package`) holds two models of the same classes:
    the first, most accurate on its training microscope, and a fallback that transfers to
    other microscopes (``morph`` in the canonical cell frame). A cell whose ``ood`` under the
    first model is above the card's threshold goes to the fallback. Every cell's ``set``,
    ``ood`` and ``out_of_domain`` come from the model that classified it; ``routed`` says
    which (``True``: the fallback).

    Parameters
    ----------
    package : ModelPackage
        With a ``fallback``.
    chunk, px_chunk, options, notes
        As :func:`_classify_chunk` got them.
    first : tuple
        ``(samples (S, n, C), extra columns or None, features)`` of the first model.

    Returns
    -------
    ``(samples (S, n, C), extra columns, fallback features)``: the trust columns are in
    ``extra``; the fallback's :meth:`embed` of the routed cells, in their order, or None
    when none was routed (the test-time adaptation reads them: :func:`adapt_routed`).
    """
    pooled, extra, features = first
    cols = trust_columns(pooled.mean(0), package.card, features)
    routed = np.asarray(cols["out_of_domain"], bool)
    cols["routed"] = routed.copy()
    if extra:
        cols = {**extra, **cols}
    idx = np.flatnonzero(routed)
    f_feat = None
    if len(idx):
        fb = package.fallback
        px_sub = [px_chunk[i] for i in idx] if np.ndim(px_chunk) > 0 else px_chunk
        embed = bool((fb.card.get("trust") or {}).get("domain"))
        f_s, f_extra, f_feat = _classify_chunk(
            fb, [chunk[i] for i in idx], px_sub, options, embed, notes
        )
        pooled = pooled.copy()
        pooled[:, idx] = f_s[np.arange(len(pooled)) % len(f_s)]  # as many samples as the first
        f_cols = {**(f_extra or {}), **trust_columns(f_s.mean(0), fb.card, f_feat)}
        for key, values in f_cols.items():
            if key in cols:
                cols[key] = _replace_at(cols[key], idx, values)
    return pooled, cols, f_feat


_WORKER: dict = {}  # the package in a worker process (inherited when it forks)


def _worker_start() -> None:
    """A worker process computes on one thread: the processes share the cores."""
    import torch

    torch.set_num_threads(1)


def _worker_chunk(chunk, px_chunk, options: dict, embed: bool):
    """:func:`_classify_chunk` in a worker process; an error comes back as :class:`_Failed`."""
    try:
        return _classify_chunk(_WORKER["package"], chunk, px_chunk, options, embed, [])
    except Exception as e:  # noqa: BLE001 - sent back whole: not every error pickles by its args
        return _Failed(type(e), str(e), dict(vars(e)))


class _Failed(tuple):
    """An error raised in a worker: its class, message and attributes, rebuilt by :meth:`error`
    in the parent (``InputError(path, problem)`` does not unpickle from its message alone)."""

    def error(self) -> Exception:
        cls, message, state = self
        err = cls.__new__(cls)
        Exception.__init__(err, message)
        err.__dict__.update(state)
        return err

    def __new__(cls, *parts):
        return super().__new__(cls, parts)

    def __getnewargs__(self):
        return tuple(self)


#: Chunks :func:`_run_chunks` keeps queued per worker process: enough that a worker never
#: waits for this process to read its next chunk, few enough that a whole slide's cells are
#: not all read (and held) before the first is classified.
AHEAD = 2


def _run_chunks(package, jobs, n: int, step: int, options: dict, embed: bool, notes, workers):
    """``(samples, extra, features, covered)`` of every ``(chunk, px_chunk, covered)`` of the
    iterator ``jobs``, in order (:func:`_classify_chunk`): in this process, or on the CPU in
    ``workers`` forked processes (each with the package as this process has it, on one
    thread) while this process takes the next jobs from ``jobs`` (reads the next crops), at
    most :data:`AHEAD` per worker ahead of the results."""
    workers = cpu_workers(n) if workers is None else int(workers)
    n_jobs = -(-n // step)
    if workers <= 1 or n_jobs < 2 or package.device.type != "cpu":
        for chunk, px_chunk, covered in jobs:
            if not chunk:  # no input of this chunk could be read
                yield None, None, None, covered
                continue
            yield (*_classify_chunk(package, chunk, px_chunk, options, embed, notes), covered)
        return
    import collections
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def result(future, covered):
        if future is None:
            return None, None, None, covered
        got = future.result()
        if isinstance(got, _Failed):
            raise got.error()
        return (*got, covered)

    _WORKER["package"] = package  # before the processes fork
    ctx = multiprocessing.get_context("fork")
    pending: collections.deque = collections.deque()
    try:
        with ProcessPoolExecutor(min(workers, n_jobs), ctx, _worker_start) as pool:
            try:
                for chunk, px_chunk, covered in jobs:
                    job = None
                    if chunk:
                        job = pool.submit(_worker_chunk, chunk, px_chunk, options, embed)
                    pending.append((job, covered))
                    while pending and (pending[0][0] is None or pending[0][0].done()):
                        yield result(*pending.popleft())
                    while len(pending) > AHEAD * workers:  # the chunks queued hold their items
                        yield result(*pending.popleft())
                while pending:
                    yield result(*pending.popleft())
            except BaseException:  # an error, or the caller stopped: drop the work queued
                pool.shutdown(cancel_futures=True)
                raise
    finally:
        _WORKER.clear()


def _embed(package, x: np.ndarray, descriptor_only: bool = False) -> np.ndarray:
    """The first member's :meth:`embed` of prepared inputs (features the domain score reads;
    ``descriptor_only``: the descriptor's columns, for a ``morph`` member)."""
    import torch

    module = package.modules[0]
    kwargs = {"descriptor_only": True} if descriptor_only else {}
    with torch.inference_mode():
        return module.embed(torch.as_tensor(x).to(package.device), **kwargs).cpu().numpy()


def _add_trust(pred, card: dict, features=None) -> None:
    """``set`` / ``set_size`` (conformal) and ``ood`` / ``out_of_domain`` where the card has them.

    An out-of-domain cell is ``unidentified`` whatever its probabilities say.
    """
    if not len(pred.probs):
        return
    extra = dict(pred.extra)
    if features is not None and len(features) != len(pred.probs):
        features = None
    for key, values in trust_columns(pred.probs, card, features).items():
        extra.setdefault(key, values)  # a routed package's chunks brought their own
    pred.extra = extra


def _replace_at(column, idx: np.ndarray, values):
    """A copy of ``column`` (array, or list of strings) with ``values`` at ``idx``."""
    if isinstance(column, list):
        out = list(column)
        for i, v in zip(idx, values, strict=True):
            out[i] = v
        return out
    out = np.asarray(column).copy()
    out[idx] = values
    return out


def trust_columns(probs: np.ndarray, card: dict, features=None) -> dict:
    """``set`` / ``set_size`` (conformal) and ``ood`` / ``out_of_domain`` (domain-shift score
    of ``features``) of probabilities ``probs (N, C)`` where ``card`` has them."""
    from napari_nucleus_ai.models.trust import domain_scores, set_columns

    info = card.get("trust") or {}
    cols = {}
    if info.get("conformal"):
        classes = [c["name"] for c in card["classes"]]
        cols.update(set_columns(probs, info["conformal"], classes))
    if info.get("domain") and features is not None:
        score = domain_scores(features, probs, info["domain"])
        cols["ood"] = score.astype(np.float32)
        cols["out_of_domain"] = score > info["domain"]["threshold"]
    return cols


def predict_items(model, items, **options):
    """Classify raw samples; returns a :class:`~napari_nucleus_ai.models.uncertainty.Prediction`.

    Parameters
    ----------
    model : ModelPackage or path
    items : sequence
        Image crops ``(H, W[, C])`` for crop models; for STORM models, per-nucleus
        localization arrays ``(N, 2)`` (x, y nm) or images rendered at the card's
        ``render_pixel_nm``.
    device, batch_size, tta, mc_dropout, threshold, notes, pixel_size_um, workers : see
        :func:`predict_items_gen`.
    """
    return run_sync(predict_items_gen(model, items, **options))


def predict_paths_gen(model, paths, *, skip_bad: bool = False, **options):
    """Generator form of :func:`predict_paths`.

    ``skip_bad=True``: an input that cannot be read does not stop the others; it
    is a row with an empty ``label`` and its one-line ``error`` (the column is
    added only when some input failed). When no input can be read, the first
    error is raised.
    """
    from napari_nucleus_ai.core.errors import NucleusAIError, one_line

    package = as_package(model)
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise InputError(None, "no input files given")
    good, errors = [], {}

    def source(step: int):  # reads each chunk of paths when it is needed
        for start in range(0, len(paths), step):
            chunk = []
            for i in range(start, min(start + step, len(paths))):
                try:
                    chunk.append(read_item(paths[i], package))
                    good.append(i)
                except (NucleusAIError, OSError, ValueError) as e:
                    if not skip_bad:
                        raise
                    errors[i] = one_line(e, paths[i])
            yield chunk, min(step, len(paths) - start)
        if not good:
            first = next(iter(errors.values()))
            raise InputError(None, f"none of the {len(paths)} inputs could be read; first: {first}")

    pred = yield from _predict_gen(package, source, len(paths), **options)
    df = pred.to_frame(path=[paths[i] for i in good])
    df = df.rename(columns={"class": "label"})
    cols = ["path", "label", "uncertainty"] + [f"p_{c}" for c in package.classes]
    df = df[cols + ["predicted", "entropy", "disagreement"] + list(pred.extra)]
    if errors:
        import pandas as pd

        bad = pd.DataFrame(
            {"path": [paths[i] for i in errors], "error": list(errors.values()), "_i": list(errors)}
        )
        df = pd.concat([df.assign(error="", _i=good), bad], ignore_index=True)
        df = df.sort_values("_i", kind="stable").drop(columns="_i").reset_index(drop=True)
    return df


def predict_paths(model, paths, **options):  # skip_bad=True: see predict_paths_gen
    """Classify files: DataFrame ``path`` (as given), ``label`` (class or ``unidentified``),
    ``uncertainty``, ``p_<class>`` for every class, then ``predicted``, ``entropy``,
    ``disagreement``."""
    return run_sync(predict_paths_gen(model, paths, **options))


def saliency(
    model,
    item,
    class_index: int | None = None,
    *,
    samples: int = 8,
    noise: float = 0.1,
    seed: int = 0,
    pixel_size_um: float | None = None,
) -> np.ndarray:
    """Where the model looked: SmoothGrad |gradient x input| of the class logit.

    Returns an ``(H, W)`` map in [0, 1] over the network input of ``item`` (the
    resized crop or its canonical frame; for STORM nuclei, the first patch).
    """
    import torch

    from napari_nucleus_ai.models.inputs import prepare

    package = as_package(model)
    x, _ = prepare([item], package.card, n_patches=1, pixel_size_um=pixel_size_um)
    module = package.modules[0].to("cpu").eval()
    t = torch.from_numpy(x[:1])
    if class_index is None:
        with torch.no_grad():
            class_index = int(module(t).argmax(1))
    g = torch.Generator().manual_seed(seed)
    total = torch.zeros_like(t)
    for _ in range(samples):
        xi = (t + noise * torch.randn(t.shape, generator=g)).requires_grad_(True)
        module(xi)[0, class_index].backward()
        total += (xi.grad * xi).abs().detach()
    if package.device is not None:
        module.to(package.device)
    sal = total[0].sum(0).numpy()
    from scipy import ndimage

    sal = ndimage.gaussian_filter(sal, 1.5)
    return (sal / max(float(sal.max()), 1e-12)).astype(np.float32)
