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
4. scores the new model on the same held-out cells (*after*) and saves it as the
   next version of the package, with both scores and the provenance in its card.

Corrections to classes the base model does not have (``artefact``...) cannot be
learnt by fine-tuning and are reported as skipped.
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_nucleus_ai.core.errors import InputError
from napari_nucleus_ai.core.progress import Progress


def _metrics(pred: list[str], truth: list[str]) -> dict:
    from napari_nucleus_ai.models.uncertainty import balanced_accuracy

    classes = sorted(set(truth) | set(pred))
    idx = {c: i for i, c in enumerate(classes)}
    t = np.array([idx[c] for c in truth])
    p = np.array([idx[c] for c in pred])
    if not len(t):
        return {"n": 0, "accuracy": float("nan"), "balanced_accuracy": float("nan")}
    return {
        "n": int(len(t)),
        "accuracy": float((t == p).mean()),
        "balanced_accuracy": float(balanced_accuracy(t, p)),
    }


def split_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class, ``fraction`` of the items (at least 1 when a class has 2+) held out."""
    rng = np.random.default_rng(seed)
    learn, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * len(idx))) if len(idx) > 1 else 0
        k = max(k, 1) if len(idx) > 1 and fraction > 0 else k
        test += idx[:k].tolist()
        learn += idx[k:].tolist()
    return np.array(sorted(learn), int), np.array(sorted(test), int)


def next_version_path(base_path: str | os.PathLike, version: int) -> Path:
    p = Path(base_path)
    stem = p.stem if p.suffix.lower() in (".zip", ".safetensors") else p.name
    for suffix in (f"-v{version - 1}", "-v1"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return p.with_name(f"{stem}-v{version}" + (p.suffix if p.suffix.lower() == ".zip" else ""))


def retrain_gen(
    base_model,
    data,
    out=None,
    *,
    base_data=None,
    holdout: float = 0.25,
    epochs: int = 10,
    lr: float = 3e-4,
    batch_size: int = 32,
    seed: int = 0,
    device: str | None = "cpu",
    threads: int | None = None,
):
    """Fine-tune ``base_model`` on corrections ``data``; yields Progress, returns a result dict.

    Parameters
    ----------
    base_model : path or ModelPackage
    data : path or TrainingSet
        The exported corrections (class folders).
    out : path, optional
        Where the new package goes (default: beside the base, ``<name>-v<N>``).
    base_data : path, optional
        The base model's training data to replay (default: the card's provenance data
        folder when it exists; ``False`` for none).
    holdout : float
        Fraction of corrected cells per class kept out of training to score both models.
    epochs, lr, batch_size, seed, device, threads : fine-tuning schedule.

    Returns
    -------
    dict
        ``out``, ``version``, ``before`` / ``after`` (balanced accuracy on the held-out
        corrections), ``metrics_before`` / ``metrics_after``, ``n_learn``, ``n_test``,
        ``n_replay``, ``skipped`` (corrections to classes the model lacks), ``seconds``.
    """
    import torch

    from napari_nucleus_ai.classify.predict import as_package, predict_items
    from napari_nucleus_ai.classify.trainset import TrainingSet, load_class_folders
    from napari_nucleus_ai.core.device import select_device
    from napari_nucleus_ai.models.inputs import prepare
    from napari_nucleus_ai.models.package import ModelPackage, save_model

    if threads:
        torch.set_num_threads(int(threads))
    t0 = time.perf_counter()
    yield Progress(0, None, "loading the base model and the corrections")
    base = as_package(base_model)
    card = copy.deepcopy(base.card)
    if card.get("kind") != "classifier":
        raise InputError(
            base.path, f"fine-tuning needs a classifier package, not {card.get('kind')!r}"
        )
    classes = list(base.classes)
    ts = data if isinstance(data, TrainingSet) else load_class_folders(data)
    if (ts.modality == "storm") != (card["modality"] == "storm"):
        raise InputError(
            data if not isinstance(data, TrainingSet) else None,
            f"corrections are {ts.modality} but the model reads {card['modality']}",
        )
    names = [ts.classes[i] for i in ts.labels]
    keep = np.array([n in classes for n in names], bool)
    skipped = {c: int(sum(1 for n in names if n == c)) for c in sorted(set(names) - set(classes))}
    samples = [s for s, k in zip(ts.samples, keep, strict=True) if k]
    truth = np.array([classes.index(n) for n, k in zip(names, keep, strict=True) if k], int)
    if len(samples) < 2:
        raise InputError(None, "fewer than 2 corrected cells of the model's classes to learn from")
    learn, test = split_holdout(truth, holdout, seed)

    # replay the base model's own training data so fine-tuning does not forget it
    replay_x, replay_y = [], []
    if base_data is None:
        prov = (card.get("provenance") or {}).get("data")
        base_data = prov if prov and Path(str(prov)).is_dir() else False
    if base_data:
        yield Progress(0, None, "reading the base model's training data")
        bd = load_class_folders(base_data)
        for s, y in zip(bd.samples, bd.labels, strict=True):
            if bd.classes[y] in classes:
                replay_x.append(s)
                replay_y.append(classes.index(bd.classes[y]))

    test_items = [samples[i] for i in test]
    test_truth = [classes[i] for i in truth[test]]
    dev = select_device(device)
    yield Progress(0, epochs, "scoring the base model on held-out corrections")
    before = _metrics(
        predict_items(base, test_items, device=device).predicted if test_items else [], test_truth
    )

    items = [samples[i] for i in learn] + replay_x
    labels = np.concatenate([truth[learn], np.asarray(replay_y, int)]).astype(np.int64)
    modules = [copy.deepcopy(m).to(dev).train() for m in base.modules]
    from napari_nucleus_ai.models.classifier_kind import augment

    modality = card["modality"]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    per_item = 4 if modality == "storm" else 1
    x_fixed = None if modality == "storm" else prepare(items, card)[0]
    # corrections weigh as much as all replayed data together
    w = np.where(
        np.arange(len(labels)) < len(learn), 1.0 / max(len(learn), 1), 1.0 / max(len(replay_x), 1)
    )
    w = w / w.sum()
    refit = _refit_closed_form(modules, x_fixed, labels, len(learn), len(replay_x), seed)
    if refit:
        yield Progress(0, epochs, "refitting the logistic heads on corrections + replay")
    # the rest is fine-tuned by gradient descent (modules with nothing to train are skipped)
    modules_gd = [m for m in modules if any(q.requires_grad for q in m.parameters())]
    opts = [torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=1e-4) for m in modules_gd]
    steps = max(int(np.ceil(len(labels) / batch_size)), 4)
    for epoch in range(epochs if modules_gd else 0):
        if modality == "storm":
            x, groups = prepare(items, card, rng=rng, n_patches=per_item)
        else:
            x, groups = x_fixed, np.arange(len(items))
        y = labels[groups]
        ww = w[groups] / w[groups].sum()
        for m, opt in zip(modules_gd, opts, strict=True):
            for _ in range(steps):
                idx = rng.choice(len(y), size=min(batch_size, len(y)), p=ww)
                if len(idx) < 2:
                    continue
                xb = augment(torch.from_numpy(x[idx]), rng, modality).to(dev)
                loss = torch.nn.functional.cross_entropy(
                    m(xb), torch.from_numpy(y[idx]).to(dev), label_smoothing=0.05
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
        yield Progress(epoch + 1, epochs, f"fine-tuning epoch {epoch + 1}/{epochs}")
    modules = [m.cpu().eval() for m in modules]
    new = ModelPackage(card, modules, None)
    after = _metrics(
        predict_items(new, test_items, device=device).predicted if test_items else [], test_truth
    )
    version = int(card.get("version", 1)) + 1
    card["version"] = version
    prov = dict(card.get("provenance") or {})
    card["provenance"] = {
        **prov,
        "fine_tuned_from": {"name": base.name, "version": version - 1, "path": base.path},
        "corrections": {
            "data": getattr(ts, "sources", [""])[0].rsplit("/", 2)[0] if ts.sources else "",
            "n_learn": int(len(learn)),
            "n_test": int(len(test)),
            "skipped": skipped,
            "n_replay": len(replay_x),
            "epochs": epochs if modules_gd else 0,
            "lr": lr,
            "seed": seed,
            **({"heads_refit": refit} if refit else {}),
        },
    }
    metrics = dict(card.get("metrics") or {})
    metrics["corrections_before"] = before
    metrics["corrections_after"] = after
    card["metrics"] = metrics
    if out is None:
        if base.path is None:
            raise InputError(None, "give an output path for the new model")
        out = next_version_path(base.path, version)
    yield Progress(epochs, epochs, "saving the new model version")
    path = save_model(card, modules, out)
    return {
        "out": Path(path),
        "version": version,
        "before": before["balanced_accuracy"],
        "after": after["balanced_accuracy"],
        "metrics_before": before,
        "metrics_after": after,
        "n_learn": int(len(learn)),
        "n_test": int(len(test)),
        "n_replay": len(replay_x),
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _refit_closed_form(modules, x, labels, n_learn: int, n_replay: int, seed: int) -> list:
    """Refit the closed-form heads (``morph``) of ``modules`` on corrections + replay.

    The corrections weigh as much as all replayed crops together, as in fine-tuning: their
    rows are repeated (the copies of a crop stay in one inner fold when ``C`` is chosen).
    Returns what each refit chose (empty when no module has such heads).
    """
    if x is None or not any(hasattr(m, "refit_heads") for m in modules):
        return []
    reps = max(1, round(n_replay / max(n_learn, 1))) if n_replay else 1
    idx = np.concatenate([np.repeat(np.arange(n_learn), reps), n_learn + np.arange(n_replay)])
    out = []
    for m in modules:
        if hasattr(m, "refit_heads"):
            was = m.training
            out.append(m.eval().refit_heads(x[idx], labels[idx], seed, groups=idx))
            m.train(was)
    return out


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
