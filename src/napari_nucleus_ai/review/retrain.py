"""Fine-tune a model package on the annotators' corrections: a new version, metrics before and after.

Qt-free. The corrections arrive as a class-folder training set (written by
:func:`napari_nucleus_ai.review.export.export_training_set`, from the dock or
``napari-nucleus-ai export-trainset``). :func:`retrain_gen`

1. splits the corrected cells per class into a part to learn from and a held-out
   part (``holdout``) that neither model trains on;
2. scores the base model on the held-out cells (*before*);
3. fine-tunes a copy of the base model's weights (same classes, input spec,
   normalisation and calibration) on the learning part, replaying the base
   model's own training data when it is available (``base_data``, or the folder
   named in the card's provenance) so it does not forget the rest;
4. for models whose logistic heads were refitted (``morph``), refits the card's
   domain-shift score on the corrections and the replayed data (:func:`_refit_domain`),
   so cells like the corrections are no longer out of domain, and a fallback model's
   test-time adaptation reference on the rows its heads were refitted on
   (:func:`_refit_adapt`);
5. scores the new model on the same held-out cells (*after*) and saves it as the
   next version of the package, with both scores and the provenance in its card.

The corrections and the replayed data are two sources weighted as ``train`` weights
several (:func:`~napari_nucleus_ai.classify.trainset.source_weights`): in every class the
few corrected cells count as much as all the replayed cells of that class, so a handful
of cells from a new microscope teach the model that microscope. :func:`summary` says what
the scores were measured on (a handful of held-out cells is a rough measure).

Corrections to classes the base model does not have (``artefact``...) cannot be
learnt by fine-tuning and are reported as skipped.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress
from napari_nucleus_ai.models.training import (
    CLOSED_FORM_HEADS,
    declares,
    make_optimizer,
    train_epoch,
    trainable_parameters,
)
from napari_nucleus_ai.models.uncertainty import BALANCED_ACCURACY

FINE_TUNE_WEIGHT_DECAY = 1e-4
MIN_STEPS = 4  # gradient steps per member and epoch, however few the corrections
STORM_PATCHES = 4  # patches per STORM nucleus and epoch


@dataclass
class RetrainOptions:
    """How :func:`retrain_gen` fine-tunes (its keyword arguments).

    Attributes
    ----------
    base_data : path or bool, optional
        The base model's training data to replay (default: the card's provenance data
        folder when it exists; ``False`` for none).
    holdout : float
        Fraction of corrected cells per class kept out of training to score both models.
    epochs, lr, batch_size, seed : fine-tuning schedule.
    device : str, optional
        ``auto``, ``cuda``, ``mps`` or ``cpu`` (``None``: the plugin setting).
    threads : int, optional
        torch CPU threads (``torch.set_num_threads``).
    """

    base_data: str | os.PathLike | bool | None = None
    holdout: float = 0.25
    epochs: int = 10
    lr: float = 3e-4
    batch_size: int = 32
    seed: int = 0
    device: str | None = "cpu"
    threads: int | None = None


def _metrics(pred: list[str], truth: list[str]) -> dict:
    """``n``, ``accuracy`` and ``balanced_accuracy`` of class names ``pred`` against ``truth``."""
    from napari_nucleus_ai.models.uncertainty import accuracy_scores

    classes = sorted(set(truth) | set(pred))
    idx = {c: i for i, c in enumerate(classes)}
    t = np.array([idx[c] for c in truth])
    p = np.array([idx[c] for c in pred])
    return {"n": int(len(t)), **accuracy_scores(t, p)}


def split_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learn / held-out indices: per class ``fraction`` of the items, at least 1 when a class
    has 2+ (:func:`~napari_nucleus_ai.classify.trainset.stratified_split`'s hold-out rule)."""
    from napari_nucleus_ai.classify.trainset import stratified_split

    return stratified_split(labels, fraction, seed, at_least_one_from=2, keep_one=False)


def next_version_path(base_path: str | os.PathLike, version: int) -> Path:
    p = Path(base_path)
    stem = p.stem if p.suffix.lower() in (".zip", ".safetensors") else p.name
    for suffix in (f"-v{version - 1}", "-v1"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return p.with_name(f"{stem}-v{version}" + (p.suffix if p.suffix.lower() == ".zip" else ""))


def retrain_gen(base_model, data, out=None, **options):
    """Fine-tune ``base_model`` on corrections ``data``; yields Progress, returns a result dict.

    Parameters
    ----------
    base_model : path or ModelPackage
    data : path or TrainingSet
        The exported corrections (class folders).
    out : path, optional
        Where the new package goes (default: beside the base, ``<name>-v<N>``).
    **options
        The fields of :class:`RetrainOptions` (``base_data``, ``holdout``, ``epochs``,
        ``lr``, ``batch_size``, ``seed``, ``device``, ``threads``); an unknown one
        raises ``TypeError`` when the generator starts.

    Returns
    -------
    dict
        ``out``, ``version``, ``before`` / ``after`` (balanced accuracy on the held-out
        corrections), ``metrics_before`` / ``metrics_after``, ``n_learn``, ``n_test``,
        ``n_replay``, ``skipped`` (corrections to classes the model lacks), ``seconds``.
    """
    # a generator function itself, so napari's thread_worker runs it as a generator
    return (yield from _retrain(base_model, data, out, RetrainOptions(**options)))


def _retrain(base_model, data, out, o: RetrainOptions):
    """:func:`retrain_gen` with its options checked."""
    import torch

    from napari_nucleus_ai.classify.predict import as_package
    from napari_nucleus_ai.core.device import select_device
    from napari_nucleus_ai.models.package import ModelPackage, save_model

    if o.threads:
        torch.set_num_threads(int(o.threads))
    t0 = time.perf_counter()
    yield Progress(0, None, "loading the base model and the corrections")
    base = as_package(base_model)
    card = copy.deepcopy(base.card)
    if card.get("kind") != "classifier":
        raise InputError(
            base.path, f"fine-tuning needs a classifier package, not {card.get('kind')!r}"
        )
    classes = list(base.classes)
    ts, samples, truth, skipped = _read_corrections(data, classes, card["modality"])
    learn, test = split_holdout(truth, o.holdout, o.seed)
    replay_x, replay_y = yield from _replay_data(card, classes, o.base_data)
    test_items = [samples[i] for i in test]
    test_truth = [classes[i] for i in truth[test]]
    dev = select_device(o.device)
    yield Progress(0, o.epochs, "scoring the base model on held-out corrections")
    before = _score(base, test_items, test_truth, o.device)
    items = [samples[i] for i in learn] + replay_x
    labels = np.concatenate([truth[learn], np.asarray(replay_y, int)]).astype(np.int64)
    held = (test_items, truth[test])
    fb_card = card.pop("fallback", None)
    fb_args = (items, labels, len(learn), held, o, dev)
    # the fallback learns in a forked process while this one updates the first model
    job = _start_fallback(base.fallback.modules, fb_card, fb_args) if fb_card else None
    # with a fallback, the first model's score routes: cells like the corrections stay out
    # of its domain (they go to the fallback, which learns them) when there is replay data
    with _sharing_cores(job):
        modules, refit, epochs = yield from _update(
            base.modules, card, *fb_args, route=fb_card is not None
        )
    fallback = None
    if fb_card is not None:
        yield Progress(0, o.epochs, "fine-tuning the fallback model")
        fb_modules, fb_card = yield from _finish_fallback(job, base.fallback, fb_card, fb_args)
        fallback = ModelPackage(fb_card, fb_modules, None)
    after = _score(ModelPackage(card, modules, None, fallback), test_items, test_truth, o.device)
    corrections = {
        "data": getattr(ts, "sources", [""])[0].rsplit("/", 2)[0] if ts.sources else "",
        "n_learn": int(len(learn)),
        "n_test": int(len(test)),
        "skipped": skipped,
        "n_replay": len(replay_x),
        "epochs": epochs,
        "lr": o.lr,
        "seed": o.seed,
        **({"heads_refit": refit} if refit else {}),
    }
    version = _next_version_card(card, base, corrections, before, after)
    if out is None:
        if base.path is None:
            raise InputError(None, "give an output path for the new model")
        out = next_version_path(base.path, version)
    yield Progress(o.epochs, o.epochs, "saving the new model version")
    path = save_model(card, modules, out, fallback=fallback)
    return {
        "out": Path(path),
        "version": version,
        "before": before[BALANCED_ACCURACY],
        "after": after[BALANCED_ACCURACY],
        "metrics_before": before,
        "metrics_after": after,
        "n_learn": int(len(learn)),
        "n_test": int(len(test)),
        "n_replay": len(replay_x),
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _read_corrections(data, classes: list[str], modality: str):
    """The corrections to ``classes``: ``(training set, samples, class indices, skipped)``.

    ``skipped`` counts the corrections to classes the model lacks, by class.
    """
    from napari_nucleus_ai.classify.trainset import TrainingSet, load_class_folders

    ts = data if isinstance(data, TrainingSet) else load_class_folders(data)
    if (ts.modality == "storm") != (modality == "storm"):
        raise InputError(
            data if not isinstance(data, TrainingSet) else None,
            f"corrections are {ts.modality} but the model reads {modality}",
        )
    names = [ts.classes[i] for i in ts.labels]
    keep = np.array([n in classes for n in names], bool)
    skipped = {c: int(sum(1 for n in names if n == c)) for c in sorted(set(names) - set(classes))}
    samples = [s for s, k in zip(ts.samples, keep, strict=True) if k]
    truth = np.array([classes.index(n) for n, k in zip(names, keep, strict=True) if k], int)
    if len(samples) < 2:
        raise InputError(None, "fewer than 2 corrected cells of the model's classes to learn from")
    return ts, samples, truth, skipped


def _replay_data(card: dict, classes: list[str], base_data):
    """The base model's own training data, replayed so fine-tuning does not forget it."""
    from napari_nucleus_ai.classify.trainset import load_class_folders

    replay_x, replay_y = [], []
    if base_data is None:
        folders = _provenance_folders(card.get("provenance") or {})
    else:
        folders = [base_data] if base_data else []
    if folders:
        yield Progress(0, None, "reading the base model's training data")
    for folder in folders:
        bd = load_class_folders(folder)
        for s, y in zip(bd.samples, bd.labels, strict=True):
            if bd.classes[y] in classes:
                replay_x.append(s)
                replay_y.append(classes.index(bd.classes[y]))
    return replay_x, replay_y


def _provenance_folders(prov: dict) -> list:
    """The training-data folders a card names that exist here: ``provenance.sources`` (a model
    trained on several sources: each ``data``) or ``provenance.data``."""
    named = [s.get("data") for s in prov.get("sources") or [] if isinstance(s, dict)]
    named = named or [prov.get("data")]
    return [d for d in named if d and Path(str(d)).is_dir()]


def _score(package, items: list, truth: list[str], device) -> dict:
    """:func:`_metrics` of ``package``'s predictions for the held-out ``items``."""
    from napari_nucleus_ai.classify.predict import predict_items

    return _metrics(predict_items(package, items, device=device).predicted if items else [], truth)


def _start_fallback(modules, card: dict, args: tuple):
    """The fallback model's :func:`_update` (``args``: its arguments after the card) begun
    in a forked process on one thread: ``(process, connection)``, or ``None`` where this
    process should not fork (:func:`~napari_nucleus_ai.classify.predict.can_fork`: a
    viewer's threads, one core, not Linux) or the device is not the CPU."""
    import multiprocessing
    import pickle

    from napari_nucleus_ai.classify.predict import can_fork, cpu_cores
    from napari_nucleus_ai.core.progress import run_sync

    if args[-1].type != "cpu" or not can_fork() or cpu_cores() < 2:
        return None
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child() -> None:
        import torch

        torch.set_num_threads(1)  # the two processes share the cores
        try:
            fitted, _, _ = run_sync(_update(modules, card, *args, fallback=True))
            states = [{k: v.numpy() for k, v in m.state_dict().items()} for m in fitted]
            send.send_bytes(pickle.dumps(("ok", card, states), pickle.HIGHEST_PROTOCOL))
        except BaseException as e:  # noqa: BLE001 - the parent redoes the work and raises
            send.send_bytes(pickle.dumps(("failed", repr(e))))

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    return proc, receive


def _sharing_cores(job):
    """torch on one thread in this process while ``job`` (a forked process) runs."""
    import contextlib

    from napari_nucleus_ai.models.engine import one_thread

    return one_thread() if job is not None else contextlib.nullcontext()


def _finish_fallback(job, fallback, card: dict, args: tuple):
    """The fine-tuned fallback ``(modules, card)``: from the process :func:`_start_fallback`
    began, or computed here (no process, or it failed: here the error is raised)."""
    import pickle

    import torch

    if job is not None:
        proc, receive = job
        try:
            got = pickle.loads(receive.recv_bytes())
        except (EOFError, OSError):
            got = ("failed", "no result")
        finally:
            receive.close()
            proc.join()
        if got[0] == "ok":
            modules = [copy.deepcopy(m).cpu() for m in fallback.modules]
            for m, state in zip(modules, got[2], strict=True):
                m.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
            return [m.eval() for m in modules], got[1]
    modules, _, _ = yield from _update(fallback.modules, card, *args, fallback=True)
    return modules, card


def _update(base_modules, card, items, labels, n_learn, held, o, dev, route=False, fallback=False):
    """Fine-tune copies of ``base_modules`` (:func:`_fine_tune`) and refit ``card``'s
    domain-shift score after refitted heads (:func:`_refit_domain`); ``route``: the score's
    reference and calibration leave the corrections out; ``fallback``: ``card`` is a
    package's fallback model's, whose test-time adaptation reference follows its heads
    (:func:`_refit_adapt`). Returns ``(modules, refit, epochs)``.

    The items are prepared (read, framed, normalised) once for both steps, and the
    refitted heads' features (kept in the module's memo) serve the domain score."""
    from napari_nucleus_ai.models.inputs import prepare

    x_fixed = None if card["modality"] == "storm" else prepare(items, card)[0]
    modules, refit, epochs = yield from _fine_tune(
        base_modules, card, items, x_fixed, labels, n_learn, o, dev
    )
    if refit and (card.get("trust") or {}).get("domain"):
        yield Progress(o.epochs, o.epochs, "refitting the domain-shift score")
        _refit_domain(card, modules[0], x_fixed, labels, n_learn, *held, o, replay_only=route)
    if fallback:
        _refit_adapt(card, modules[0], bool(refit))
    return modules, refit, epochs


def _refit_adapt(card: dict, module, refit: bool) -> None:
    """A fallback model's test-time adaptation reference (``trust.adapt``) of the heads just
    refitted (on the corrections and the replayed crops, the rows they were fitted on:
    :func:`~napari_nucleus_ai.classify.train.set_adapt`), whether or not the base card had
    one (a card from before ``trust.adapt`` gains it); none when the heads cannot give one
    or were not refitted here, so the card never keeps the reference of other heads."""
    from napari_nucleus_ai.classify.train import set_adapt

    if refit:
        set_adapt(card, module)
    else:
        (card.get("trust") or {}).pop("adapt", None)


def _fine_tune(base_modules, card: dict, items, x_fixed, labels, n_learn: int, o, dev):
    """Copies of ``base_modules`` fine-tuned on ``items`` (``x_fixed``: their prepared inputs,
    ``None`` for STORM nuclei, whose patches are drawn every epoch): the first ``n_learn``
    are the corrections, the rest replayed data. Yields progress; returns ``(modules, what
    the closed-form refits chose, epochs of gradient descent run)``."""
    import torch

    from napari_nucleus_ai.models.inputs import prepare

    # in eval mode until gradient descent: the closed-form refits run in it, and a module
    # switched to training drops the features it memoised (the domain score reads them)
    modules = [copy.deepcopy(m).to(dev).eval() for m in base_modules]
    modality = card["modality"]
    rng = np.random.default_rng(o.seed)
    torch.manual_seed(o.seed)
    n_replay = len(labels) - n_learn
    # in every class, the corrections weigh as much as all replayed data of that class
    w = _correction_weights(labels, n_learn)
    w = w / w.sum()
    refit = _refit_closed_form(modules, x_fixed, labels, n_learn, n_replay, o.seed)
    if refit:
        yield Progress(0, o.epochs, "refitting the logistic heads on corrections + replay")
    # the rest is fine-tuned by gradient descent (modules with nothing to train are skipped)
    modules_gd = [m.train() for m in modules if trainable_parameters(m)]
    opts = [make_optimizer(m, o.lr, FINE_TUNE_WEIGHT_DECAY) for m in modules_gd]
    steps = max(int(np.ceil(len(labels) / o.batch_size)), MIN_STEPS)
    epochs = o.epochs if modules_gd else 0
    for epoch in range(epochs):
        if modality == "storm":
            x, groups = prepare(items, card, rng=rng, n_patches=STORM_PATCHES)
        else:
            x, groups = x_fixed, np.arange(len(items))
        y = labels[groups]
        ww = w[groups] / w[groups].sum()
        for m, opt in zip(modules_gd, opts, strict=True):
            # drawn lazily: each batch right before its augmentation, from the same stream
            batches = (
                rng.choice(len(y), size=min(o.batch_size, len(y)), p=ww) for _ in range(steps)
            )
            train_epoch(m, opt, x, y, batches, rng, modality, dev)
        yield Progress(epoch + 1, o.epochs, f"fine-tuning epoch {epoch + 1}/{o.epochs}")
    return [m.cpu().eval() for m in modules], refit, epochs


def _next_version_card(card: dict, base, corrections: dict, before: dict, after: dict) -> int:
    """Turn ``card`` (a copy of ``base``'s) into the next version's; returns that version."""
    version = int(card.get("version", 1)) + 1
    card["version"] = version
    prov = dict(card.get("provenance") or {})
    card["provenance"] = {
        **prov,
        "fine_tuned_from": {"name": base.name, "version": version - 1, "path": base.path},
        "corrections": corrections,
    }
    metrics = dict(card.get("metrics") or {})
    metrics["corrections_before"] = before
    metrics["corrections_after"] = after
    card["metrics"] = metrics
    return version


def _refit_closed_form(modules, x, labels, n_learn: int, n_replay: int, seed: int) -> list:
    """Refit the closed-form heads (``morph``) of ``modules`` on corrections + replay.

    In every class the corrections weigh as much as the replayed crops, as in fine-tuning:
    their rows are repeated (the copies of a crop stay in one inner fold when ``C`` is
    chosen). Returns what each refit chose (empty when no module has such heads).
    """
    with_heads = [m for m in modules if declares(m, CLOSED_FORM_HEADS)]
    if x is None or not with_heads:
        return []
    reps = np.maximum(np.round(_correction_weights(labels, n_learn)), 1).astype(int)
    idx = np.repeat(np.arange(n_learn + n_replay), reps)
    out = []
    for m in with_heads:
        was = m.training
        out.append(m.eval().refit_heads(x[idx], labels[idx], seed, groups=idx))
        m.train(was)
    return out


#: Share of the replayed crops per class held out of the refitted domain score's
#: reference to calibrate it (beside the held-out corrections).
DOMAIN_CALIBRATION = 0.2


def _refit_domain(
    card, module, x, labels, n_learn, test_items, test_labels, o, replay_only=False
) -> None:
    """Refit the card's domain-shift score after the heads were refitted (their feature
    standardisation changed): its reference is the learnt corrections and most replayed
    crops, so cells like the corrections are no longer out of domain; it is calibrated on
    the held-out corrections and a share of the replayed crops (:data:`DOMAIN_CALIBRATION`),
    which the heads did learn from. With fewer than ``MIN_CALIBRATION`` such cells the
    card's score is dropped rather than kept stale.

    ``x`` holds the prepared inputs of the learnt items (corrections, then replay), the
    held-out ``test_items`` are raw.

    ``replay_only`` (a package whose first model routes cells to a fallback): the
    reference and the calibration are the replayed crops alone, when there are enough, so
    the cells like the corrections stay out of this model's domain."""
    from napari_nucleus_ai.classify.train import MIN_CALIBRATION, descriptor_columns
    from napari_nucleus_ai.classify.trainset import stratified_split
    from napari_nucleus_ai.models.inputs import prepare
    from napari_nucleus_ai.models.trust import fit_domain

    labels = np.asarray(labels, np.int64)
    replay = np.arange(n_learn, len(labels))
    cal_replay = np.array([], int)
    if len(replay):
        _, held = stratified_split(labels[replay], DOMAIN_CALIBRATION, o.seed)
        cal_replay = replay[held]
    replay_only = replay_only and len(cal_replay) >= MIN_CALIBRATION
    pool = replay if replay_only else np.arange(len(labels))
    ref = np.setdiff1d(pool, cal_replay)
    if replay_only:
        test_items, test_labels = [], []
    cal_labels = np.r_[labels[cal_replay], np.asarray(test_labels, np.int64)]
    trust = card["trust"]
    if len(cal_labels) < MIN_CALIBRATION or len(np.unique(labels[ref])) < 2:
        trust.pop("domain", None)
        return
    x_cal = x[cal_replay]
    if len(test_items):
        x_cal = np.concatenate([x_cal, prepare(list(test_items), card)[0]])
    f_ref = _forward(module, x[ref], "embed")
    f_cal = _forward(module, x_cal, "embed")
    probs = _probs(module, x_cal, card)
    trust["domain"] = fit_domain(
        f_ref,
        labels[ref],
        f_cal,
        probs,
        descriptor=descriptor_columns(module),
        seed=o.seed,
    )
    trust["domain"]["refit"] = {"n_reference": int(len(ref)), "n_calibration": len(cal_labels)}


def _probs(module, x: np.ndarray, card) -> np.ndarray:
    """Calibrated probabilities of prepared inputs ``x`` (one view) as the card's
    temperature gives them."""
    import torch

    t = float((card.get("calibration") or {}).get("temperature", 1.0))
    z = torch.as_tensor(_forward(module, x, "__call__"))
    return torch.softmax(z.double() / t, 1).numpy()


def _forward(module, x: np.ndarray, method: str) -> np.ndarray:
    """``module``'s ``method`` (``embed``: the domain score's features; ``__call__``: the
    logits) of prepared inputs ``x`` in batches of about 32, in eval mode: ``(N, F)``."""
    import torch

    was = module.training
    module.eval()
    fn = getattr(module, method)
    try:
        with torch.inference_mode():
            parts = [fn(torch.as_tensor(b)) for b in np.array_split(x, max(1, len(x) // 32))]
    finally:
        module.train(was)
    return torch.cat(parts).numpy()


def _correction_weights(labels: np.ndarray, n_learn: int) -> np.ndarray:
    """Per-item weights: the first ``n_learn`` items (corrections) and the rest (replay)
    are two sources that count equally in every class."""
    from napari_nucleus_ai.classify.trainset import source_weights

    source = (np.arange(len(labels)) >= n_learn).astype(int)
    return source_weights(np.asarray(labels), source)


#: Fewer held-out corrected cells than this and :func:`summary` says the scores are rough.
FEW_HELD_OUT = 20


def summary(res: dict) -> str:
    """One line on what retraining measured, honest about how few cells that was.

    ``res`` is :func:`retrain_gen`'s result: balanced accuracy on the held-out corrected
    cells before and after, on how many cells, and what the new model learnt from.
    """
    n = int(res.get("n_test") or 0)
    if not n:
        return (
            f"no corrected cell held out (learnt from {res.get('n_learn', 0)}): "
            "review more cells to measure the new model"
        )
    line = (
        f"balanced accuracy {res['before']:.3f} -> {res['after']:.3f}, measured on {n} "
        f"held-out cell{'s' if n != 1 else ''} of the corrections (neither model learnt from "
        f"them; the new one learnt from {res.get('n_learn', 0)} corrected cells"
        f" + {res.get('n_replay', 0)} replayed)"
    )
    if n < FEW_HELD_OUT:
        line += "; too few to tell much: review more cells"
    return line


def retrain_from_items(base_model, items, out=None, *, include_predicted=False, **options):
    """Export ``items`` (see :class:`~napari_nucleus_ai.review.export.ExportItem`) and fine-tune."""
    from napari_nucleus_ai.models.framing import window_side
    from napari_nucleus_ai.models.package import as_package
    from napari_nucleus_ai.review.export import export_training_set

    base = as_package(base_model)
    window = None
    if base.card["modality"] != "storm" and items:
        # cut the cells exactly as classify does for this model (framing included)
        unit = str(items[0].table["unit"].iloc[0]) if "unit" in items[0].table else "px"
        window = window_side(base.card, unit)
    with tempfile.TemporaryDirectory(prefix="nucleus-ai-corrections-") as tmp:
        yield from export_training_set(
            tmp, items, include_predicted=include_predicted, window=window
        )
        return (yield from retrain_gen(base, tmp, out, **options))
